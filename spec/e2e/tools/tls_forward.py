#!/usr/bin/env python3
"""A TLS client as a plain TCP forwarder for the end-to-end specs (Python's
ssl module and asyncio: a TLS client that is not luaray's code).

  python3 tls_forward.py --listen PORT --to HOST:PORT --sni NAME --ca FILE
                         [--alpn a,b] [--lifetime SECONDS]

Accepts plain TCP on 127.0.0.1:PORT and, per connection, opens TLS to
HOST:PORT (SNI NAME, the chain verified against FILE and the certificate's
name checked against NAME, ALPN offered when given), then relays bytes both
ways unchanged. So a plain-TCP client (spec/e2e/tools/ws_peer.lua as a
WebSocket client, with headers of its own) can talk to a TLS server
(nginx) through it.

Ends: when the plain client closes, the TLS connection is closed
(close_notify); when the TLS server closes, the plain side gets a FIN and
is read until it closes. One line per connection on stdout:
  "tls connected version=TLSv1.3 alpn=http/1.1 cert_cn=example.test"
  "tls failed: <why>"
  "done up=<bytes to TLS> down=<bytes from TLS>"
Exits after --lifetime seconds (default 600).
"""
import argparse
import asyncio
import ssl
import sys


def log(*parts):
    print(*parts, flush=True)


async def pump(reader, writer, on_eof, counter, key):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            counter[key] += len(data)
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError, OSError):
        pass
    await on_eof()


async def handle(args, ctx, plain_r, plain_w):
    host, port = args.to.rsplit(":", 1)
    try:
        tls_r, tls_w = await asyncio.wait_for(
            asyncio.open_connection(host, int(port), ssl=ctx, server_hostname=args.sni), 30)
    except (OSError, ssl.SSLError, asyncio.TimeoutError) as e:
        log("tls failed:", repr(e))
        plain_w.close()
        return
    sslobj = tls_w.get_extra_info("ssl_object")
    cert = tls_w.get_extra_info("peercert") or {}
    cn = ""
    for rdn in cert.get("subject", ()):
        for k, v in rdn:
            if k == "commonName":
                cn = v
    log("tls connected version=%s alpn=%s cert_cn=%s" % (
        sslobj.version(), sslobj.selected_alpn_protocol() or "", cn))
    counter = {"up": 0, "down": 0}

    async def plain_eof():
        # the client is done: the whole TLS connection goes (TLS has no
        # half close that every server takes)
        try:
            tls_w.close()
        except Exception:
            pass

    async def tls_eof():
        try:
            if plain_w.can_write_eof():
                plain_w.write_eof()
        except (OSError, RuntimeError):
            pass

    up = asyncio.ensure_future(pump(plain_r, tls_w, plain_eof, counter, "up"))
    down = asyncio.ensure_future(pump(tls_r, plain_w, tls_eof, counter, "down"))
    await asyncio.wait({up, down}, return_when=asyncio.ALL_COMPLETED, timeout=args.lifetime)
    for t in (up, down):
        t.cancel()
    for w in (plain_w, tls_w):
        try:
            w.close()
        except Exception:
            pass
    log("done up=%d down=%d" % (counter["up"], counter["down"]))


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", type=int, required=True)
    ap.add_argument("--to", required=True)
    ap.add_argument("--sni", required=True)
    ap.add_argument("--ca", required=True)
    ap.add_argument("--alpn", default="")
    ap.add_argument("--lifetime", type=float, default=600)
    args = ap.parse_args()
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=args.ca)
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    if args.alpn:
        ctx.set_alpn_protocols(args.alpn.split(","))
    server = await asyncio.start_server(lambda r, w: handle(args, ctx, r, w),
                                        "127.0.0.1", args.listen)
    log("listening on 127.0.0.1:%d" % args.listen)
    async with server:
        try:
            await asyncio.wait_for(server.serve_forever(), args.lifetime)
        except asyncio.TimeoutError:
            pass


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
