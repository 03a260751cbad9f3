#!/usr/bin/env python3
"""Recording upstream SMTP sink for mticket's tests (aiosmtpd).

Writes each accepted message as DIR/NNNNNN.eml (raw bytes as received) plus
DIR/NNNNNN.json ({"mail_from", "rcpt_tos"}), atomically (tmp + rename; the .json
lands last, so a reader that sees it sees a complete .eml). Each file is fsynced before the
250 unless --no-fsync (a sink for throughput runs: only receiving costs time).

Faults come from --control FILE, re-read for every command that consults it:
  {"rcpt": "tempfail"|"reject"|null, "data": "tempfail"|"reject"|null, "delay": 0.0,
   "only": ["addr", ...]|null}
With "only", faults hit just those recipients (RCPT) and transactions to any of them (DATA).
Prints READY once every port listens.
"""
import argparse
import asyncio
import itertools
import json
import os
import ssl
import sys

try:
    from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword
except ImportError:  # pragma: no cover - reported to the Rust harness
    print("aiosmtpd missing: pip install aiosmtpd", file=sys.stderr, flush=True)
    sys.exit(3)


def load_control(path):
    if not path:
        return {}
    try:
        with open(path, "rb") as f:
            return json.loads(f.read() or b"{}") or {}
    except FileNotFoundError:
        return {}
    except ValueError as e:
        print(f"bad control file: {e}", file=sys.stderr, flush=True)
        return {}


FAULTS = {
    "rcpt": {"tempfail": "451 4.3.0 injected temporary failure",
             "reject": "550 5.1.1 injected rejection"},
    "data": {"tempfail": "451 4.3.0 injected temporary failure",
             "reject": "554 5.6.0 injected rejection"},
}


class Recorder:
    def __init__(self, directory, control, fsync):
        self.dir = directory
        self.control = control
        self.fsync = fsync
        existing = [int(n[:6]) for n in os.listdir(directory) if n.endswith(".json")]
        self.counter = itertools.count(max(existing, default=0) + 1)

    async def _fault(self, stage, addresses):
        ctl = load_control(self.control)
        delay = float(ctl.get("delay") or 0)
        if delay > 0:
            await asyncio.sleep(delay)
        only = ctl.get("only")
        if only is not None:
            only = {a.lower() for a in only}
            if not any(a.lower() in only for a in addresses):
                return None
        return FAULTS[stage].get(ctl.get(stage))

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        fault = await self._fault("rcpt", [address])
        if fault:
            return fault
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        fault = await self._fault("data", envelope.rcpt_tos)
        if fault:
            return fault
        n = next(self.counter)
        base = os.path.join(self.dir, f"{n:06d}")
        meta = {"mail_from": envelope.mail_from, "rcpt_tos": list(envelope.rcpt_tos)}
        write_atomic(base + ".eml", envelope.original_content or b"", self.fsync)
        write_atomic(base + ".json", json.dumps(meta).encode(), self.fsync)
        return "250 2.0.0 stored"


def write_atomic(path, data, fsync):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        if fsync:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)


def make_authenticator(userpasses):
    accounts = dict(up.partition(":")[::2] for up in userpasses.split(","))

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (isinstance(auth_data, LoginPassword)
              and accounts.get(auth_data.login.decode()) == auth_data.password.decode())
        return AuthResult(success=ok, handled=False)

    return authenticator


async def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--smtps-port", type=int)
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--dir", required=True)
    p.add_argument("--auth", help="USER:PASS[,USER:PASS...]; AUTH PLAIN/LOGIN after TLS")
    p.add_argument("--control")
    p.add_argument("--no-fsync", action="store_true", help="do not fsync stored messages")
    args = p.parse_args()
    os.makedirs(args.dir, exist_ok=True)

    handler = Recorder(args.dir, args.control, not args.no_fsync)
    tls = None
    if args.cert and args.key:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(args.cert, args.key)

    def factory(implicit_tls):
        kwargs = dict(hostname="sink.test", enable_SMTPUTF8=True,
                      data_size_limit=64 * 1024 * 1024, decode_data=False)
        if tls is not None and not implicit_tls:
            kwargs["tls_context"] = tls
        if args.auth:
            kwargs["authenticator"] = make_authenticator(args.auth)
            kwargs["auth_required"] = True
            # On the implicit-TLS port aiosmtpd does not know the socket is encrypted.
            kwargs["auth_require_tls"] = not implicit_tls
        return lambda: SMTP(handler, **kwargs)

    loop = asyncio.get_running_loop()
    servers = [await loop.create_server(factory(False), args.host, args.port)]
    if args.smtps_port:
        if tls is None:
            p.error("--smtps-port needs --cert and --key")
        servers.append(await loop.create_server(
            factory(True), args.host, args.smtps_port, ssl=tls))
    print("READY", flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
