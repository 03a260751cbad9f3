#!/usr/bin/env python3
"""Many clients at once against one gateway, for a given time: customers sending mail to
the inbound SMTP port, agents reading their folders over IMAPS and their INBOX over POP3S.
Prints one JSON object: per protocol the sessions, operations and errors (with samples),
and the markers of every mail the gateway acknowledged with 250.

  mixed_load.py --inbound N --imaps N --pop3s N --cafile PEM --agents a1,a2,...
                [--smtp K] [--imap K] [--pop3 K] [--seconds S]

Agents' passwords come from LOAD_PASSWORD (all agents share it), never from the command line.
"""
import argparse
import imaplib
import json
import os
import poplib
import smtplib
import ssl
import threading
import time

lock = threading.Lock()
stats = {p: {"sessions": 0, "operations": 0, "errors": 0, "samples": []} for p in ("smtp", "imap", "pop3")}
acknowledged = []


def note(proto, ok, sample=None):
    with lock:
        s = stats[proto]
        if ok:
            s["operations"] += 1
        else:
            s["errors"] += 1
            if len(s["samples"]) < 5:
                s["samples"].append(sample)


def context(cafile):
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.check_hostname = False
    return ctx


def customer(args, n, deadline):
    k = 0
    while time.monotonic() < deadline:
        marker = f"LOAD-{args.run}-{n}-{k}"
        k += 1
        try:
            with smtplib.SMTP("127.0.0.1", args.inbound, timeout=60) as s:
                with lock:
                    stats["smtp"]["sessions"] += 1
                s.sendmail(f"kunde{n}@last.example", ["support@shop.test"],
                           f"From: Kunde {n} <kunde{n}@last.example>\r\nTo: support@shop.test\r\n"
                           f"Subject: Frage {marker}\r\nMessage-ID: <{marker}@last.example>\r\n\r\n"
                           f"Hallo {marker}\r\n")
            with lock:
                acknowledged.append(marker)
            note("smtp", True)
        except Exception as e:  # noqa: BLE001 - every failure is counted and sampled
            note("smtp", False, f"{type(e).__name__}: {e}")
        time.sleep(1.0)


def agent_imap(args, login, deadline):
    while time.monotonic() < deadline:
        try:
            m = imaplib.IMAP4_SSL("127.0.0.1", args.imaps, ssl_context=context(args.cafile), timeout=60)
            with lock:
                stats["imap"]["sessions"] += 1
            m.login(login, os.environ["LOAD_PASSWORD"])
            typ, data = m.select("Queues/Support", readonly=True)
            note("imap", typ == "OK", f"SELECT {typ} {data}")
            for _ in range(10):
                if time.monotonic() >= deadline:
                    break
                typ, data = m.uid("SEARCH", None, "ALL")
                uids = data[0].split() if typ == "OK" and data and data[0] else []
                note("imap", typ == "OK", f"SEARCH {typ}")
                if uids:
                    typ, _ = m.uid("FETCH", b",".join(uids[-5:]).decode(), "(UID FLAGS RFC822.SIZE ENVELOPE)")
                    note("imap", typ == "OK", f"FETCH {typ}")
                typ, _ = m.noop()
                note("imap", typ == "OK", f"NOOP {typ}")
                time.sleep(0.5)
            m.logout()
        except Exception as e:  # noqa: BLE001
            note("imap", False, f"{type(e).__name__}: {e}")
            time.sleep(0.5)


def agent_pop3(args, login, deadline):
    while time.monotonic() < deadline:
        try:
            p = poplib.POP3_SSL("127.0.0.1", args.pop3s, context=context(args.cafile), timeout=60)
            with lock:
                stats["pop3"]["sessions"] += 1
            p.user(login)
            p.pass_(os.environ["LOAD_PASSWORD"])
            count, _ = p.stat()
            note("pop3", True)
            p.list()
            note("pop3", True)
            if count:
                p.retr(1)
                note("pop3", True)
            p.quit()
        except Exception as e:  # noqa: BLE001
            note("pop3", False, f"{type(e).__name__}: {e}")
        time.sleep(1.0)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--inbound", type=int, required=True)
    p.add_argument("--imaps", type=int, required=True)
    p.add_argument("--pop3s", type=int, required=True)
    p.add_argument("--cafile", required=True)
    p.add_argument("--agents", required=True)
    p.add_argument("--run", default="run")
    p.add_argument("--smtp", type=int, default=100)
    p.add_argument("--imap", type=int, default=100)
    p.add_argument("--pop3", type=int, default=100)
    p.add_argument("--seconds", type=float, default=60)
    args = p.parse_args()
    agents = args.agents.split(",")
    deadline = time.monotonic() + args.seconds
    threads = [threading.Thread(target=customer, args=(args, n, deadline)) for n in range(args.smtp)]
    threads += [threading.Thread(target=agent_imap, args=(args, agents[n % len(agents)], deadline))
                for n in range(args.imap)]
    threads += [threading.Thread(target=agent_pop3, args=(args, agents[n % len(agents)], deadline))
                for n in range(args.pop3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps({"stats": stats, "acknowledged": acknowledged}))


if __name__ == "__main__":
    main()
