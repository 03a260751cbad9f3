#!/usr/bin/env python3
"""Many mail clients left idle, as Thunderbird leaves them: each connects over IMAPS, logs
in, selects INBOX and waits in IDLE. Prints one JSON line once all are idle (or failed),
then holds the connections until stdin closes, and ends them with DONE and LOGOUT.

  idle_clients.py --port P --cafile PEM --agents a1,a2,... --connections N

The agents share one password, from LOAD_PASSWORD, never from the command line.
Connections go to the agents in turn.
"""
import argparse
import imaplib
import json
import os
import ssl
import sys
import time
from concurrent.futures import ThreadPoolExecutor


def idle(port, ctx, agent, password):
    imap = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=ctx, timeout=120)
    imap.login(agent, password)
    typ, _ = imap.select("INBOX", readonly=False)
    if typ != "OK":
        raise RuntimeError(f"SELECT INBOX: {typ}")
    tag = imap._new_tag().decode()
    imap.send(f"{tag} IDLE\r\n".encode())
    line = imap.readline()
    if not line.startswith(b"+"):
        raise RuntimeError(f"IDLE: {line!r}")
    return imap


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--cafile", required=True)
    p.add_argument("--agents", required=True)
    p.add_argument("--connections", type=int, required=True)
    a = p.parse_args()
    password = os.environ["LOAD_PASSWORD"]
    agents = a.agents.split(",")
    ctx = ssl.create_default_context(cafile=a.cafile)
    ctx.check_hostname = False
    started = time.monotonic()
    clients, errors = [], []
    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = [pool.submit(idle, a.port, ctx, agents[i % len(agents)], password)
                   for i in range(a.connections)]
        for f in futures:
            try:
                clients.append(f.result())
            except Exception as e:  # noqa: BLE001 - every failure is counted and sampled
                errors.append(repr(e))
    print(json.dumps({"idle": len(clients), "errors": len(errors), "samples": errors[:5],
                      "seconds": round(time.monotonic() - started, 2)}), flush=True)
    sys.stdin.read()
    for imap in clients:
        try:
            imap.send(b"DONE\r\n")
            imap.logout()
        except Exception:  # noqa: BLE001 - the gateway may be gone already
            pass


if __name__ == "__main__":
    main()
