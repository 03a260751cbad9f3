#!/usr/bin/env python3
"""An agent's mail client as the tests drive it: Python's smtplib against the gateway's
submission ports. Sends each given .eml file (raw bytes as they are) and prints one JSON
line per mail: {"file", "code", "text"} (code 250 when accepted). The password comes from
the SUBMIT_PASSWORD environment variable, never from the command line.

  submit.py --port N [--tls starttls|implicit|none] --user LOGIN --from ADDR
            --to ADDR[,ADDR] [--auth PLAIN|LOGIN] [--cafile PEM] [--parallel K] FILE...

An empty --to sends each mail to the addresses in its own To and Cc headers.
"""
import argparse
import concurrent.futures
import email
import email.utils
import json
import os
import smtplib
import ssl
import sys


def context(cafile):
    ctx = ssl.create_default_context(cafile=cafile) if cafile else ssl.create_default_context()
    # The gateway's self-signed certificate names localhost; the tests dial 127.0.0.1.
    ctx.check_hostname = False
    if not cafile:
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def send(args, path):
    with open(path, "rb") as f:
        raw = f.read()
    password = os.environ.get("SUBMIT_PASSWORD", "")
    try:
        if args.tls == "implicit":
            smtp = smtplib.SMTP_SSL("127.0.0.1", args.port, context=context(args.cafile), timeout=60)
        else:
            smtp = smtplib.SMTP("127.0.0.1", args.port, timeout=60)
        with smtp:
            smtp.ehlo("agent.test")
            if args.tls == "starttls":
                smtp.starttls(context=context(args.cafile))
                smtp.ehlo("agent.test")
            if args.user:
                # One AUTH exchange per mail (smtplib.login would try the next mechanism
                # after a refusal, and every try counts as a failed login).
                smtp.user, smtp.password = args.user, password
                mechanism = getattr(smtp, "auth_" + args.auth.lower())
                smtp.auth(args.auth, mechanism, initial_response_ok=True)
            if args.to:
                to = args.to.split(",")
            else:
                head = email.message_from_bytes(raw)
                to = [a for _, a in email.utils.getaddresses(head.get_all("To", []) + head.get_all("Cc", []))]
            refused = smtp.sendmail(args.mail_from, to, raw)
            if refused:
                return {"file": path, "code": 550, "text": repr(refused)}
            return {"file": path, "code": 250, "text": "accepted"}
    except smtplib.SMTPResponseException as e:
        text = e.smtp_error.decode("utf-8", "replace") if isinstance(e.smtp_error, bytes) else str(e.smtp_error)
        return {"file": path, "code": e.smtp_code, "text": text}
    except smtplib.SMTPRecipientsRefused as e:
        code, text = next(iter(e.recipients.values()))
        return {"file": path, "code": code, "text": text.decode("utf-8", "replace")}
    except (OSError, smtplib.SMTPException) as e:
        return {"file": path, "code": 0, "text": f"{type(e).__name__}: {e}"}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--tls", default="starttls", choices=["starttls", "implicit", "none"])
    p.add_argument("--user", default="")
    p.add_argument("--auth", default="PLAIN", choices=["PLAIN", "LOGIN"])
    p.add_argument("--from", dest="mail_from", required=True)
    p.add_argument("--to", required=True)
    p.add_argument("--cafile")
    p.add_argument("--parallel", type=int, default=1)
    p.add_argument("files", nargs="+")
    args = p.parse_args()
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.parallel) as pool:
        for result in pool.map(lambda f: send(args, f), args.files):
            print(json.dumps(result), flush=True)


if __name__ == "__main__":
    sys.exit(main())
