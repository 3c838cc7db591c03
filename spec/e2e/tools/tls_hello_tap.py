#!/usr/bin/env python3
"""A TCP relay that reads each client's TLS ClientHello on the way through
and writes, per connection, the PSK identities it offers (RFC 8446 4.2.11:
the pre_shared_key extension, type 41) -- the session tickets a client
resumes with. Written from RFC 8446 (record layer 5.1, ClientHello 4.1.2,
extensions 4.2, OfferedPsks 4.2.11), not from luaray's code.

  tls_hello_tap.py LISTEN_PORT TARGET_HOST TARGET_PORT LOG

Each connection appends one line to LOG once its ClientHello is read:
  "hello psk=<n> ids=<sha256/16 of each identity, comma-separated or ->"
or "hello unparsed <reason>" when the first bytes are not a ClientHello.
Bytes are relayed unchanged both ways; a connection ends when either side
ends. Runs until killed.
"""
import hashlib
import socket
import sys
import threading


def u16(b, i):
    return (b[i] << 8) | b[i + 1]


def parse_hello(msg):
    """msg: the handshake message (type, length, body) -> list of PSK
    identities (bytes), or raises ValueError."""
    if len(msg) < 4 or msg[0] != 1:
        raise ValueError("not a ClientHello")
    body = msg[4:4 + ((msg[1] << 16) | (msg[2] << 8) | msg[3])]
    i = 2 + 32                                   # legacy_version, random
    i += 1 + body[i]                             # legacy_session_id
    i += 2 + u16(body, i)                        # cipher_suites
    i += 1 + body[i]                             # legacy_compression_methods
    if i == len(body):
        return []
    end = i + 2 + u16(body, i)
    i += 2
    ids = []
    while i + 4 <= end:
        etype, elen = u16(body, i), u16(body, i + 2)
        data = body[i + 4:i + 4 + elen]
        if etype == 41:                          # pre_shared_key: OfferedPsks
            j, idend = 2, 2 + u16(data, 0)
            while j < idend:
                n = u16(data, j)
                ids.append(bytes(data[j + 2:j + 2 + n]))
                j += 2 + n + 4                   # identity, obfuscated_ticket_age
        i += 4 + elen
    return ids


def read_hello(sock, log, lock):
    """Reads records until the ClientHello is whole; -> the bytes read."""
    buf = b""
    msg = b""
    need = None
    while need is None or len(msg) < need:
        while len(buf) < 5 or len(buf) < 5 + u16(buf, 3):
            d = sock.recv(65536)
            if not d:
                return buf, "eof"
            buf += d
        off, rec = 0, b""
        # take the records read so far (handshake type 22)
        while off + 5 <= len(buf) and off + 5 + u16(buf, off + 3) <= len(buf):
            if buf[off] != 22:
                return buf, "record type %d" % buf[off]
            rec += buf[off + 5:off + 5 + u16(buf, off + 3)]
            off += 5 + u16(buf, off + 3)
        msg = rec
        if len(msg) >= 4:
            need = 4 + ((msg[1] << 16) | (msg[2] << 8) | msg[3])
        if need is None or len(msg) < need:
            d = sock.recv(65536)
            if not d:
                return buf, "eof"
            buf += d
    try:
        ids = parse_hello(msg)
        line = "hello psk=%d ids=%s" % (len(ids), ",".join(
            hashlib.sha256(x).hexdigest()[:16] for x in ids) or "-")
    except (ValueError, IndexError) as e:
        line = "hello unparsed %s" % e
    with lock:
        with open(log, "a") as f:
            f.write(line + "\n")
    return buf, None


def pipe(a, b):
    try:
        while True:
            d = a.recv(65536)
            if not d:
                break
            b.sendall(d)
    except OSError:
        pass
    for s in (b,):
        try:
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def serve(c, target, log, lock):
    try:
        first, err = read_hello(c, log, lock)
        if err:
            with lock:
                with open(log, "a") as f:
                    f.write("hello unparsed %s\n" % err)
            if not first:
                c.close()
                return
        u = socket.create_connection(target)
        u.sendall(first)
        t = threading.Thread(target=pipe, args=(u, c), daemon=True)
        t.start()
        pipe(c, u)
        t.join()
        u.close()
    except OSError:
        pass
    finally:
        c.close()


def main():
    port, host, tport, log = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
    lock = threading.Lock()
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port))
    ls.listen(256)
    while True:
        c, _ = ls.accept()
        threading.Thread(target=serve, args=(c, (host, tport), log, lock), daemon=True).start()


if __name__ == "__main__":
    main()
