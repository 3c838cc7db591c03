#!/usr/bin/env python3
"""A WebSocket-over-TLS prober for the end-to-end specs (spec/e2e/wss_spec.lua).
TLS is Python's ssl module; the WebSocket client is written here from RFC
6455 (sections 1.3, 4.1, 4.2.2 and 5.2), not from luaray's code.

  python3 wss_probe.py HOST PORT MAX_WAIT PAYLOADS.json --path PATH
                       --host HOST_HEADER [--sni NAME] [--ca FILE]
                       [--alpn a,b]

PAYLOADS.json: a JSON list of probes, each a hex string (the payload) or
{"hex": payload, "answer_close": true}. For each probe, all at the same
time (one thread each): TCP connect, TLS handshake, a WebSocket upgrade
(GET PATH, a fresh Sec-WebSocket-Key), the 101 checked (status, Upgrade,
Connection, Sec-WebSocket-Accept), then the payload as ONE masked binary
frame (none for an empty payload), then read, never closing first, until
the peer closes or MAX_WAIT seconds from the connect. With answer_close, a
close frame from the server is answered with a close frame carrying the
same status code, as RFC 6455 5.5.1 asks of an endpoint (the prober then
keeps reading); without, the prober never answers (a silent prober).

  --sni NAME   the SNI sent and the name verified (with --ca)
  --ca FILE    verify the chain against FILE and the name against --sni;
               default: no verification
  --alpn a,b   the ALPN protocols offered (default: http/1.1)

stdout: a JSON list, one object per payload:
  handshake     true when the TLS handshake completed
  upgraded      true when a valid 101 came back
  error         what went wrong before the payload was sent ("" if nothing)
  alpn          the ALPN protocol chosen ("" for none)
  status        the reply's status line
  after         hex of every byte received after the 101's head
  frames        the frames those bytes parse to: [{"op", "fin", "len",
                "masked", "payload" (hex)}]; "junk" (hex) for what does
                not parse as frames
  how           "close_notify" (a close_notify, then the end), "eof" (the
                TCP end without close_notify), "reset", "alert: ...",
                "open" (still open at MAX_WAIT)
  closed_after  seconds from the TCP connect to the close (null if open)
  close_frame_after  seconds from the TCP connect to the first close
                frame's arrival (null if none came)
"""
import base64
import hashlib
import json
import os
import socket
import ssl
import sys
import threading
import time

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 1.3


def frame(opcode, payload):
    """One client frame: FIN set, masked (RFC 6455 5.2, 5.3)."""
    head = bytes([0x80 | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([0x80 | 127]) + n.to_bytes(8, "big")
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + body


def parse_frames(data):
    """Frames in data (RFC 6455 5.2) -> list of dicts, unparsed rest."""
    out, i = [], 0
    while True:
        if len(data) - i < 2:
            break
        b0, b1 = data[i], data[i + 1]
        n, j = b1 & 0x7F, i + 2
        if n == 126:
            if len(data) - j < 2:
                break
            n, j = int.from_bytes(data[j:j + 2], "big"), j + 2
        elif n == 127:
            if len(data) - j < 8:
                break
            n, j = int.from_bytes(data[j:j + 8], "big"), j + 8
        mask = None
        if b1 & 0x80:
            if len(data) - j < 4:
                break
            mask, j = data[j:j + 4], j + 4
        if len(data) - j < n:
            break
        p = data[j:j + n]
        if mask:
            p = bytes(b ^ mask[k % 4] for k, b in enumerate(p))
        out.append({"op": b0 & 0x0F, "fin": bool(b0 & 0x80), "rsv": (b0 >> 4) & 7,
                    "len": n, "masked": bool(mask), "payload": p.hex()})
        i = j + n
    return out, data[i:]


def probe(ctx, o, payload, answer_close, out):
    r = {"handshake": False, "upgraded": False, "error": "", "alpn": "", "status": "",
         "after": "", "frames": [], "junk": "", "how": "open", "closed_after": None,
         "close_frame_after": None}
    out.append(r)
    try:
        raw = socket.create_connection((o["host"], o["port"]), timeout=5)
    except OSError as e:
        r["error"] = "connect: %s" % e
        return None
    t0 = time.monotonic()
    deadline = t0 + o["max_wait"]
    s = ctx.wrap_socket(raw, server_hostname=o["sni"], do_handshake_on_connect=False,
                        suppress_ragged_eofs=False)
    after = b""
    try:
        s.settimeout(max(0.1, deadline - time.monotonic()))
        s.do_handshake()
        r["handshake"] = True
        r["alpn"] = s.selected_alpn_protocol() or ""
        key = base64.b64encode(os.urandom(16)).decode()
        req = ("GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n") % (
                   o["path"], o["host_header"], key)
        s.sendall(req.encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            s.settimeout(max(0.1, deadline - time.monotonic()))
            d = s.recv(4096)
            if not d:
                r["error"] = "closed before the 101: %r" % buf[:200]
                r["how"] = "close_notify"
                r["closed_after"] = time.monotonic() - t0
                return s
            buf += d
            if len(buf) > 16384:
                r["error"] = "no end of the reply head"
                return s
        head, _, after = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        r["status"] = lines[0]
        fields = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            fields[k.strip().lower()] = v.strip()
        accept = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
        ok = (lines[0].startswith("HTTP/1.1 101")
              and fields.get("upgrade", "").lower() == "websocket"
              and "upgrade" in fields.get("connection", "").lower()
              and fields.get("sec-websocket-accept") == accept)
        if not ok:
            r["error"] = "not a valid 101: %s" % head.decode("latin-1")[:300]
            return s
        r["upgraded"] = True
        if payload:
            s.sendall(frame(2, payload))
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
            after += d
            if r["close_frame_after"] is None:
                closes = [f for f in parse_frames(after)[0] if f["op"] == 8]
                if closes:
                    r["close_frame_after"] = time.monotonic() - t0
                    if answer_close:
                        s.sendall(frame(8, bytes.fromhex(closes[0]["payload"])[:2]))
    except ssl.SSLEOFError:
        r["how"] = "eof"
    except ConnectionResetError:
        r["how"] = "reset"
    except ssl.SSLError as e:
        r["how"] = "alert: %s" % (e.reason or e)
        if not r["handshake"]:
            r["error"] = str(e)
    except socket.timeout:
        r["error"] = r["error"] or "timeout before the upgrade"
        return s
    except OSError as e:
        r["how"] = "error: %s" % e
        if not r["upgraded"]:
            r["error"] = str(e)
    finally:
        r["after"] = after.hex()
        frames, junk = parse_frames(after)
        r["frames"], r["junk"] = frames, junk.hex()
    r["closed_after"] = time.monotonic() - t0
    return s


def main():
    o = {"host": sys.argv[1], "port": int(sys.argv[2]), "max_wait": float(sys.argv[3]),
         "sni": None, "path": "/", "host_header": "localhost"}
    pfile, ca, alpn = sys.argv[4], None, ["http/1.1"]
    i = 5
    while i < len(sys.argv):
        a, v = sys.argv[i], sys.argv[i + 1]
        if a == "--sni":
            o["sni"] = v
        elif a == "--ca":
            ca = v
        elif a == "--alpn":
            alpn = v.split(",")
        elif a == "--path":
            o["path"] = v
        elif a == "--host":
            o["host_header"] = v
        else:
            sys.exit("wss_probe: unknown option " + a)
        i += 2
    with open(pfile) as f:
        probes = [p if isinstance(p, dict) else {"hex": p} for p in json.load(f)]
    payloads = [(bytes.fromhex(p["hex"]), bool(p.get("answer_close"))) for p in probes]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if ca:
        ctx.load_verify_locations(ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.check_hostname = o["sni"] is not None
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(alpn)
    results = [[] for _ in payloads]
    socks = [None] * len(payloads)

    def run(k, p):
        socks[k] = probe(ctx, o, p[0], p[1], results[k])

    threads = [threading.Thread(target=run, args=(k, p)) for k, p in enumerate(payloads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(o["max_wait"] + 10)
    for s in socks:
        if s is not None:
            s.close()
    json.dump([r[0] if r else {"error": "no result"} for r in results], sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
