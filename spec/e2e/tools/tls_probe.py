#!/usr/bin/env python3
"""A TLS client for the end-to-end specs (Python's ssl module: a TLS client
that is not luaray's code), as a prober or to look at a handshake.

  python3 tls_probe.py HOST PORT MAX_WAIT PAYLOADS.json [--sni NAME]
                       [--alpn a,b] [--ca FILE] [--resume] [--before TEXT]

PAYLOADS.json: a JSON list of payloads, each a hex string. For each payload,
all at the same time (one thread each): connect, TLS handshake, send the
payload, then read, never closing first, until the peer closes or MAX_WAIT
seconds from the connect.

  --sni NAME   the SNI sent (default: none)
  --alpn a,b   the ALPN protocols offered (default: none)
  --ca FILE    verify the chain against FILE and report the certificate's
               names (the name is not checked: see "names"); default: no
               verification, as a prober takes whatever it is shown
  --before TEXT  bytes sent on the TCP connection before TLS (a PROXY
               protocol header: "PROXY TCP4 ...\r\n", escapes \r \n)
  --resume     first one connection of its own to get a session (it reads
               for 0.5 s, so that TLS 1.3 tickets arrive), then every probe
               offers that session

stdout: a JSON list, one object per payload:
  handshake     true when the handshake completed
  error         why it did not ("" when it did)
  version, alpn what the handshake gave ("" for none)
  names         the certificate's subjectAltName DNS names (with --ca)
  resumed       the session was resumed
  received      application bytes received (a count)
  how           "close_notify" (a close_notify, then the end), "eof" (the
                TCP end without close_notify), "reset", "alert: ..." (a TLS
                error), or "open"
  closed_after  seconds from the TCP connect to the close (null if open)
"""
import json
import socket
import ssl
import sys
import threading
import time


def make_ctx(alpn, ca):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    if ca:
        ctx.load_verify_locations(ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    else:
        ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


def probe(ctx, host, port, sni, payload, max_wait, session, out, before=b""):
    r = {"handshake": False, "error": "", "version": "", "alpn": "", "names": [],
         "resumed": False, "received": 0, "how": "open", "closed_after": None}
    out.append(r)
    try:
        raw = socket.create_connection((host, port), timeout=5)
    except OSError as e:
        r["error"] = "connect: %s" % e
        return None
    t0 = time.monotonic()
    deadline = t0 + max_wait
    if before:
        raw.sendall(before)
    s = ctx.wrap_socket(raw, server_hostname=sni, do_handshake_on_connect=False,
                        suppress_ragged_eofs=False, session=session)
    try:
        s.settimeout(max(0.1, deadline - time.monotonic()))
        s.do_handshake()
        r["handshake"] = True
        r["version"] = s.version() or ""
        r["alpn"] = s.selected_alpn_protocol() or ""
        r["resumed"] = bool(s.session_reused)
        cert = s.getpeercert()
        if cert:
            r["names"] = [v for k, v in cert.get("subjectAltName", ()) if k == "DNS"]
        if payload:
            s.sendall(payload)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return s
            s.settimeout(left)
            try:
                d = s.recv(65536)
            except socket.timeout:
                return s
            if not d:
                r["how"] = "close_notify"
                r["closed_after"] = time.monotonic() - t0
                return s
            r["received"] += len(d)
    except ssl.SSLEOFError:
        r["how"] = "eof"
    except ConnectionResetError:
        r["how"] = "reset"
    except ssl.SSLError as e:
        r["how"] = "alert: %s" % (e.reason or e)
        if not r["handshake"]:
            r["error"] = str(e)
    except OSError as e:
        r["how"] = "error: %s" % e
        if not r["handshake"]:
            r["error"] = str(e)
    r["closed_after"] = time.monotonic() - t0
    return s


def main():
    host, port, max_wait, pfile = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
    sni, alpn, ca, resume, before = None, None, None, False, b""
    i = 5
    while i < len(sys.argv):
        a = sys.argv[i]
        if a == "--resume":
            resume = True
            i += 1
            continue
        if a == "--sni":
            sni = sys.argv[i + 1]
        elif a == "--alpn":
            alpn = sys.argv[i + 1].split(",")
        elif a == "--ca":
            ca = sys.argv[i + 1]
        elif a == "--before":
            before = sys.argv[i + 1].replace("\\r", "\r").replace("\\n", "\n").encode()
        else:
            sys.exit("tls_probe: unknown option " + a)
        i += 2
    with open(pfile) as f:
        payloads = [bytes.fromhex(p) for p in json.load(f)]
    ctx = make_ctx(alpn, ca)
    session = None
    if resume:
        first = []
        s = probe(ctx, host, port, sni, b"", 0.5, None, first, before)
        session = s.session if s is not None else None
        if s is not None:
            s.close()
        if session is None:
            sys.exit("tls_probe: no session from the first connection: %s" % first)
    results = [[] for _ in payloads]
    socks = [None] * len(payloads)

    def run(k, p):
        socks[k] = probe(ctx, host, port, sni, p, max_wait, session, results[k], before)

    threads = [threading.Thread(target=run, args=(k, p)) for k, p in enumerate(payloads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max_wait + 10)
    for s in socks:
        if s is not None:
            s.close()
    json.dump([r[0] if r else {"error": "no result"} for r in results], sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
