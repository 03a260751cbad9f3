#!/usr/bin/env python3
"""SMTP load generator for the benchmarks: N sessions, one process each (so Python's GIL
is not what limits the rate), each keeping one connection open, saying STARTTLS (or TLS on
connect) and AUTH once, then sending its mails back to back (MAIL, RCPT, DATA on the same
connection). For every mail it records the acknowledgment latency: from the last byte of
the message (the final ".") to the server's reply to it.

The plan is a JSON file:
  {"sessions": [{"user": LOGIN or "", "mails": [{"from": ADDR, "to": [ADDR, ...],
                                                 "file": PATH.eml}, ...]}, ...]}
Mails are read and dot-stuffed before the clock starts. The password comes from the
SMTP_LOAD_PASSWORD environment variable, never from the command line; `--user` replaces
every session's login (a sink that knows one account). Without a login no AUTH is sent.

Prints one JSON object: sessions, sent, accepted, refused, seconds (first session start to
last session end, connection setup included), setup_seconds (slowest connect + TLS + AUTH),
started_at (wall clock, Unix seconds), cpu_seconds (the sessions' own CPU while sending), latency_ms {p50, p90, p99, max}, refusals (first few
replies other than 250).

  smtp_load.py --port N [--host H] [--tls starttls|implicit|none] [--cafile PEM]
               [--user LOGIN] [--auth PLAIN|LOGIN] PLAN.json
"""
import argparse
import json
import math
import multiprocessing
import os
import re
import smtplib
import socket
import ssl
import sys
import time


def context(cafile):
    ctx = ssl.create_default_context(cafile=cafile) if cafile else ssl.create_default_context()
    # Servers here have certificates for localhost; the tool dials 127.0.0.1.
    ctx.check_hostname = False
    if not cafile:
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def data_bytes(raw):
    """The DATA payload with CRLF line ends, dot-stuffed, ending in CRLF.CRLF."""
    raw = re.sub(rb"\r?\n", b"\r\n", raw)
    raw = re.sub(rb"(?m)^\.", b"..", raw)
    if not raw.endswith(b"\r\n"):
        raw += b"\r\n"
    return raw + b".\r\n"


def text_of(reply):
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)


def connect(args, user, password):
    if args.tls == "implicit":
        smtp = smtplib.SMTP_SSL(args.host, args.port, context=context(args.cafile), timeout=120)
    else:
        smtp = smtplib.SMTP(args.host, args.port, timeout=120)
    # Without it the kernel holds back the tail of a mail larger than one TLS record until
    # the server acknowledges the rest (Nagle against delayed ACK: ~40 ms on loopback),
    # and that wait would count as the server's latency.
    smtp.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    smtp.ehlo("load.test")
    if args.tls == "starttls":
        smtp.starttls(context=context(args.cafile))
        smtp.ehlo("load.test")
    if user:
        smtp.user, smtp.password = user, password
        mechanism = getattr(smtp, "auth_" + args.auth.lower())
        smtp.auth(args.auth, mechanism, initial_response_ok=True)
    return smtp


def session(index, spec, args, barrier, results):
    out = {"sent": 0, "accepted": 0, "refused": 0, "latencies": [], "sent_at": [],
           "refusals": [], "error": None}
    try:
        run_session(spec, args, barrier, out)
    except Exception as e:  # reported in the JSON, never a hang of the parent
        out["error"] = f"session {index}: {type(e).__name__}: {e}"
    out.setdefault("start", time.monotonic())
    out.setdefault("started_at", time.time())
    out["end"] = time.monotonic()
    results.put((index, out))


def run_session(spec, args, barrier, out):
    mails = []
    try:
        for m in spec["mails"]:
            with open(m["file"], "rb") as f:
                mails.append((m["from"], m["to"], data_bytes(f.read())))
    finally:
        barrier.wait()
    user = args.user if args.user is not None else spec.get("user", "")
    password = os.environ.get("SMTP_LOAD_PASSWORD", "")

    def refused(code, text):
        out["refused"] += 1
        if len(out["refusals"]) < 5:
            out["refusals"].append(f"{code} {text_of(text)}")

    out["start"] = time.monotonic()
    out["started_at"] = time.time()
    cpu = time.process_time()
    smtp = connect(args, user, password)
    out["setup"] = time.monotonic() - out["start"]
    for mail_from, rcpts, data in mails:
        out["sent"] += 1
        code, text = smtp.mail(mail_from)
        if code != 250:
            refused(code, text)
            smtp.rset()
            continue
        accepted_rcpts = 0
        for r in rcpts:
            code, text = smtp.rcpt(r)
            if code in (250, 251):
                accepted_rcpts += 1
        if not accepted_rcpts:
            refused(code, text)
            smtp.rset()
            continue
        code, text = smtp.docmd("DATA")
        if code != 354:
            refused(code, text)
            continue
        smtp.sock.sendall(data)
        sent_at = time.monotonic()
        code, text = smtp.getreply()
        out["latencies"].append(time.monotonic() - sent_at)
        out["sent_at"].append(sent_at)
        if code == 250:
            out["accepted"] += 1
        else:
            refused(code, text)
    smtp.quit()
    out["cpu"] = time.process_time() - cpu


def percentile(sorted_values, p):
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--tls", default="starttls", choices=["starttls", "implicit", "none"])
    p.add_argument("--cafile")
    p.add_argument("--user", help="login for every session instead of the plan's")
    p.add_argument("--auth", default="PLAIN", choices=["PLAIN", "LOGIN"])
    p.add_argument("--latencies", help="also write every mail's latency here, as CSV lines "
                   "session,seconds after the start,latency in seconds")
    p.add_argument("plan")
    args = p.parse_args()
    with open(args.plan) as f:
        sessions = json.load(f)["sessions"]

    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(len(sessions))
    results = ctx.Queue()
    procs = [ctx.Process(target=session, args=(i, s, args, barrier, results))
             for i, s in enumerate(sessions)]
    for proc in procs:
        proc.start()
    outs = [out for _, out in sorted(results.get() for _ in procs)]
    for proc in procs:
        proc.join()

    latencies = sorted(x for o in outs for x in o["latencies"])
    if args.latencies:
        t0 = min(o["start"] for o in outs)
        with open(args.latencies, "w") as f:
            for i, o in enumerate(outs):
                for at, lat in zip(o["sent_at"], o["latencies"]):
                    f.write(f"{i},{at - t0:.6f},{lat:.6f}\n")
    ms = lambda v: None if v is None else round(v * 1000, 3)
    report = {
        "sessions": len(sessions),
        "sent": sum(o["sent"] for o in outs),
        "accepted": sum(o["accepted"] for o in outs),
        "refused": sum(o["refused"] for o in outs),
        "seconds": max(o["end"] for o in outs) - min(o["start"] for o in outs),
        "setup_seconds": max((o.get("setup", 0.0) for o in outs), default=0.0),
        "started_at": min(o["started_at"] for o in outs),
        "cpu_seconds": sum(o.get("cpu", 0.0) for o in outs),
        "latency_ms": {
            "p50": ms(percentile(latencies, 50)),
            "p90": ms(percentile(latencies, 90)),
            "p99": ms(percentile(latencies, 99)),
            "max": ms(latencies[-1] if latencies else None),
        },
        "refusals": [r for o in outs for r in o["refusals"]][:5],
        "errors": [o["error"] for o in outs if o["error"]],
    }
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    sys.exit(main())
