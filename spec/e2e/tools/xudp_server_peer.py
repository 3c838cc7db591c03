#!/usr/bin/env python3
"""An XUDP *server* test peer, and a SOCKS5 UDP client, for luaray's XUDP
client (a VMess outbound with xudp = true).  Written from the wire
description (../shared/docs/vmess-wire.md 3-13 and Xray-core's XUDP layout:
common/xudp/xudp.go, common/mux/frame.go), never from luaray's code; the
VMessAEAD KDF comes from xudp_peer.py (checked against spec/vectors there).

  xudp_server_peer.py wire --listen P --id UUID --socks H:P
      listens as the VMess server; through luaray's SOCKS5 UDP association
      sends datagrams to an IPv4, a name and an IPv6 destination and checks
      the frames luaray makes byte by byte: ONE VMess connection, command 3,
      a New frame (session 0, UDP, the first destination, an 8-byte
      GlobalID, the datagram), then Keep frames each with its destination;
      answers with Keep frames carrying sources (IPv4, IPv6, a name, none)
      plus a KeepAlive and another session's frame that must not reach the
      client; after the server's End the next datagram opens a new stream
      with the same GlobalID; port 53 must go on a connection of its own (command 2);
      a new association from the same UDP source port has the same GlobalID,
      another source port another one
  xudp_server_peer.py socks --socks H:P --echo H:P --echo2 H:P
      one SOCKS5 UDP association to two UDP echo servers and a reflector of
      its own; every reply must carry the address it was sent to; then a
      third socket that was never sent to reaches the mapping the reflector
      saw (full cone); with --again 1, a new association from the same UDP
      source port gets the same mapping (the same GlobalID)

Prints "PASS <scenario>" and exits 0, or "FAIL ..." and exits 1.
"""
import hashlib
import os
import select
import socket
import struct
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# the KDF and the Mux.Cool frame and address encoders come from the client
# peer (written from the wire description, not from luaray's code)
from xudp_peer import (Fail, check, kdf, kdf16, cmd_key, fnv1a32, hp,  # noqa: E402
                       addr_bytes as mux_addr, frame as mframe)

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes  # noqa: E402
from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: E402


# ------------------------------------------------------------ SOCKS5 UDP

def socks_addr(host, port):
    for fam, at in ((socket.AF_INET, 1), (socket.AF_INET6, 4)):
        try:
            return bytes([at]) + socket.inet_pton(fam, host) + struct.pack(">H", port)
        except OSError:
            pass
    return bytes([3, len(host)]) + host.encode() + struct.pack(">H", port)


class Assoc:
    def __init__(self, socks, bind_port=0):
        self.ctl = socket.create_connection(hp(socks), timeout=10)
        self.ctl.sendall(b"\x05\x01\x00")
        check(self.ctl.recv(2) == b"\x05\x00", "socks greeting")
        self.ctl.sendall(b"\x05\x03\x00\x01\x00\x00\x00\x00\x00\x00")
        r = self.ctl.recv(64)
        check(r[:2] == b"\x05\x00" and r[3] == 1, "socks udp associate: %r" % r)
        self.relay = (socket.inet_ntoa(r[4:8]), struct.unpack(">H", r[8:10])[0])
        self.u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.u.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.u.bind(("127.0.0.1", bind_port))

    def send(self, host, port, data):
        self.u.sendto(b"\x00\x00\x00" + socks_addr(host, port) + data, self.relay)

    def recv_raw(self, timeout):
        r, _, _ = select.select([self.u], [], [], timeout)
        if not r:
            return None
        return self.u.recv(70000)

    def close(self):
        self.u.close()
        self.ctl.close()


def parse_socks_reply(b):
    check(b[:3] == b"\x00\x00\x00", "socks reply header")
    at = b[3]
    if at == 1:
        return socket.inet_ntoa(b[4:8]), struct.unpack(">H", b[8:10])[0], b[10:]
    if at == 4:
        return (socket.inet_ntop(socket.AF_INET6, b[4:20]),
                struct.unpack(">H", b[20:22])[0], b[22:])
    n = b[4]
    return b[5:5 + n].decode(), struct.unpack(">H", b[5 + n:7 + n])[0], b[7 + n:]


# ------------------------------------------------------------ VMess server

class Conn:
    """One accepted VMess AEAD connection: decrypts the request header and
    the body (aes-128-gcm, option 0x01 only), encrypts the response."""

    def __init__(self, sock, uid):
        self.s = sock
        self.s.settimeout(10)
        self.buf = b""
        ck = cmd_key(uid)
        authid = self._need(16)
        dec = Cipher(algorithms.AES(kdf16(ck, "AES Auth ID Encryption")), modes.ECB()).decryptor()
        plain = dec.update(authid) + dec.finalize()
        check(abs(struct.unpack(">Q", plain[:8])[0] - time.time()) < 120, "auth id timestamp")
        elen = self._need(18)
        nonce8 = self._need(8)
        lkey = kdf16(ck, "VMess Header AEAD Key_Length", authid, nonce8)
        lnonce = kdf(ck, "VMess Header AEAD Nonce_Length", authid, nonce8)[:12]
        n = struct.unpack(">H", AESGCM(lkey).decrypt(lnonce, elen, authid))[0]
        hkey = kdf16(ck, "VMess Header AEAD Key", authid, nonce8)
        hnonce = kdf(ck, "VMess Header AEAD Nonce", authid, nonce8)[:12]
        h = AESGCM(hkey).decrypt(hnonce, self._need(n + 16), authid)
        check(h[0] == 1, "request version")
        check(struct.unpack(">I", h[-4:])[0] == fnv1a32(h[:-4]), "request FNV")
        self.iv, self.key, self.resp_v, self.opt = h[1:17], h[17:33], h[33], h[34]
        self.sec, self.cmd = h[35] & 0x0F, h[37]
        pad = h[35] >> 4
        self.addr = h[38:len(h) - 4 - pad]  # port, atyp, address (none for command 3)
        check(self.sec == 3, "security %d, want aes-128-gcm (3)" % self.sec)
        check(self.opt == 0x01, "option 0x%02x, want 0x01 (chunk stream)" % self.opt)
        self.up = AESGCM(self.key)
        self.up_n = 0
        self.rkey = hashlib.sha256(self.key).digest()[:16]
        self.riv = hashlib.sha256(self.iv).digest()[:16]
        self.down_n = 0
        self.plain = b""
        self.sent_header = False

    def _need(self, n):
        while len(self.buf) < n:
            b = self.s.recv(65536)
            check(b, "connection closed early")
            self.buf += b
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _chunks(self):
        while len(self.buf) >= 2:
            n = struct.unpack(">H", self.buf[:2])[0]
            if len(self.buf) < 2 + n:
                return
            nonce = struct.pack(">H", self.up_n & 0xFFFF) + self.iv[2:12]
            self.up_n += 1
            self.plain += self.up.decrypt(nonce, self.buf[2:2 + n], None)
            self.buf = self.buf[2 + n:]

    def frame(self, timeout=10):
        """The next Mux.Cool frame: (raw bytes, id, status, opt, meta, data)."""
        end = time.time() + timeout
        while True:
            self._chunks()
            p = self.plain
            if len(p) >= 2:
                ml = struct.unpack(">H", p[:2])[0]
                if len(p) >= 2 + ml:
                    meta = p[2:2 + ml]
                    o = 2 + ml
                    data = None
                    ok = True
                    if meta[3] & 1:
                        if len(p) >= o + 2:
                            dl = struct.unpack(">H", p[o:o + 2])[0]
                            if len(p) >= o + 2 + dl:
                                data = p[o + 2:o + 2 + dl]
                                o += 2 + dl
                            else:
                                ok = False
                        else:
                            ok = False
                    if ok:
                        self.plain = p[o:]
                        sid, st, opt = struct.unpack(">HBB", meta[:4])
                        return p[:o], sid, st, opt, meta, data
            left = end - time.time()
            check(left > 0, "no frame within %ss" % timeout)
            r, _, _ = select.select([self.s], [], [], left)
            if r:
                b = self.s.recv(65536)
                check(b, "the client closed the connection")
                self.buf += b

    def send(self, payload):
        out = b""
        if not self.sent_header:
            lk = kdf16(self.rkey, "AEAD Resp Header Len Key")
            ln = kdf(self.riv, "AEAD Resp Header Len IV")[:12]
            hk = kdf16(self.rkey, "AEAD Resp Header Key")
            hn = kdf(self.riv, "AEAD Resp Header IV")[:12]
            hdr = bytes([self.resp_v, 0, 0, 0])
            out += AESGCM(lk).encrypt(ln, struct.pack(">H", len(hdr)), None)
            out += AESGCM(hk).encrypt(hn, hdr, None)
            self.sent_header = True
        down = AESGCM(self.rkey)
        for i in range(0, len(payload), 1000):  # frames cut across chunks
            nonce = struct.pack(">H", self.down_n & 0xFFFF) + self.riv[2:12]
            self.down_n += 1
            sealed = down.encrypt(nonce, payload[i:i + 1000], None)
            out += struct.pack(">H", len(sealed)) + sealed
        self.s.sendall(out)


def accept(lsock, uid, timeout=10):
    r, _, _ = select.select([lsock], [], [], timeout)
    check(r, "no VMess connection within %ss" % timeout)
    s, _ = lsock.accept()
    return Conn(s, uid)


def new_stream(a, lsock, uid, host, port, data):
    """Sends data to host:port; the New frame of a fresh connection: (conn, gid)."""
    a.send(host, port, data)
    c = accept(lsock, uid)
    check(c.cmd == 3, "command %d, want 3 (Mux.Cool)" % c.cmd)
    check(c.addr == b"", "command 3 carries no address, got %r" % c.addr)
    raw, sid, st, opt, meta, got = c.frame()
    want_meta = b"\x00\x00\x01\x01\x02" + mux_addr(host, port)
    check(len(meta) == len(want_meta) + 8, "New frame metaLen %d, want %d" %
          (len(meta), len(want_meta) + 8))
    check(meta[:-8] == want_meta, "New frame: %s, want %s + GlobalID" %
          (meta.hex(), want_meta.hex()))
    gid = meta[-8:]
    check(gid != b"\x00" * 8, "GlobalID is zero")
    check(raw == struct.pack(">H", len(meta)) + meta + struct.pack(">H", len(data)) + data,
          "New frame bytes: %s" % raw.hex())
    return c, gid


def expect_keep(c, host, port, data):
    raw, sid, st, opt, meta, got = c.frame()
    want = mframe(0, 2, 1, b"\x02" + mux_addr(host, port), data)
    check(raw == want, "Keep frame to %s:%d: %s, want %s" % (host, port, raw.hex(), want.hex()))


def expect_reply(a, host, port, data):
    b = a.recv_raw(10)
    check(b is not None, "no reply %r from %s:%d" % (data, host, port))
    want = b"\x00\x00\x00" + socks_addr(host, port) + data
    check(b == want, "reply %s, want %s" % (b.hex(), want.hex()))


def scenario_wire(o):
    uid = o["--id"]
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", int(o["--listen"])))
    lsock.listen(8)
    a = Assoc(o["--socks"])
    src_port = a.u.getsockname()[1]
    c, gid = new_stream(a, lsock, uid, "192.0.2.1", 7000, b"first")
    print("New frame ok, GlobalID %s" % gid.hex())
    for host, port, data in (("xudp.example", 7001, b"to a name"),
                             ("2001:db8::1", 7002, b"to ipv6"),
                             ("192.0.2.1", 7000, b"first again"),
                             ("192.0.2.9", 9999, b"x" * 3000)):
        a.send(host, port, data)
        expect_keep(c, host, port, data)
    print("Keep frames ok")
    # port 53: a connection of its own, VMess UDP (command 2), as Xray
    a.send("192.0.2.1", 53, b"dns")
    d = accept(lsock, uid)
    check(d.cmd == 2, "port 53: command %d, want 2" % d.cmd)
    check(d.addr == struct.pack(">HB", 53, 1) + socket.inet_aton("192.0.2.1"),
          "port 53: address %s" % d.addr.hex())
    a.send("192.0.2.5", 7005, b"after dns")
    expect_keep(c, "192.0.2.5", 7005, b"after dns")
    d.s.close()
    print("port 53 on its own connection ok")
    # replies: addressed Keep frames; one without an address comes from the
    # stream's destination; a KeepAlive and another session's frame do not
    # reach the client
    out = mframe(0, 2, 1, b"\x02" + mux_addr("198.51.100.7", 5353), b"r1")
    out += mframe(0, 2, 1, b"\x02" + mux_addr("2001:db8::9", 9), b"r2")
    out += mframe(0, 4, 1, b"", b"keepalive junk")
    out += mframe(7, 2, 1, b"\x02" + mux_addr("198.51.100.8", 1), b"other session")
    out += mframe(0, 2, 1, b"", b"r3")
    out += mframe(0, 2, 1, b"\x02" + mux_addr("src.example", 4000), b"r4")
    out += mframe(0, 2, 1, b"\x02" + mux_addr("203.0.113.3", 3478), b"y" * 2500)
    c.send(out)
    expect_reply(a, "198.51.100.7", 5353, b"r1")
    expect_reply(a, "2001:db8::9", 9, b"r2")
    expect_reply(a, "192.0.2.1", 7000, b"r3")
    expect_reply(a, "src.example", 4000, b"r4")
    expect_reply(a, "203.0.113.3", 3478, b"y" * 2500)
    check(a.recv_raw(0.5) is None, "a datagram that should have been dropped arrived")
    print("addressed replies ok")
    # the server ends the stream: the next datagram opens another (the
    # same GlobalID: the same association)
    c.send(mframe(0, 3, 0, b"", None))
    deadline = time.time() + 10
    while True:  # the client closes the ended stream's connection
        r, _, _ = select.select([c.s], [], [], 1)
        if r and not c.s.recv(65536):
            break
        check(time.time() < deadline, "the client kept the ended stream's connection")
    c.s.close()
    c, gid_again = new_stream(a, lsock, uid, "192.0.2.7", 7007, b"after the end")
    check(gid_again == gid, "the same association, GlobalID %s then %s" %
          (gid.hex(), gid_again.hex()))
    a.send("192.0.2.8", 7008, b"keep on the new stream")
    expect_keep(c, "192.0.2.8", 7008, b"keep on the new stream")
    print("server End, then a new stream ok")
    # the GlobalID: the same for a new association from the same source
    # port, another for another source port
    a.close()
    c.s.close()
    time.sleep(0.3)
    a2 = Assoc(o["--socks"], src_port)
    c2, gid2 = new_stream(a2, lsock, uid, "192.0.2.1", 7000, b"again")
    check(gid2 == gid, "same source, GlobalID %s then %s" % (gid.hex(), gid2.hex()))
    a3 = Assoc(o["--socks"])
    c3, gid3 = new_stream(a3, lsock, uid, "192.0.2.1", 7000, b"other source")
    check(gid3 != gid, "another source port, the same GlobalID")
    print("GlobalID stable per source ok")
    print("PASS wire")


def scenario_socks(o):
    a = Assoc(o["--socks"])
    refl = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    refl.bind(("127.0.0.1", 0))
    third = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    third.bind(("127.0.0.1", 0))
    rport = refl.getsockname()[1]
    e1, e2 = hp(o["--echo"]), hp(o["--echo2"])
    want = {}
    for i in range(5):
        for tag, (h, p) in (("e1", e1), ("e2", e2), ("rf", ("127.0.0.1", rport))):
            want[("%s-%d" % (tag, i)).encode()] = (h, p)
    mapped = None
    for attempt in range(3):
        for data, (h, p) in want.items():
            a.send(h, p, data)
        end = time.time() + 5
        while want and time.time() < end:
            r, _, _ = select.select([a.u, refl], [], [], 0.5)
            if refl in r:
                data, src = refl.recvfrom(65536)
                mapped = src
                refl.sendto(data, src)  # the reflector echoes too
            if a.u in r:
                h, p, data = parse_socks_reply(a.u.recv(70000))
                if data in want:
                    check(want[data] == (h, p), "reply %r from %s:%d, sent to %s:%d" %
                          ((data, h, p) + want[data]))
                    del want[data]
        if not want:
            break
    check(not want, "%d replies never came back: %r" % (len(want), sorted(want)))
    check(mapped is not None, "the reflector never heard from the server")
    print("15 replies with their sources ok; the server's mapping is %s:%d" % mapped)
    tport = third.getsockname()[1]
    for attempt in range(3):
        third.sendto(b"from a stranger", mapped)
        b = a.recv_raw(3)
        if b is not None:
            h, p, data = parse_socks_reply(b)
            check((h, p, data) == ("127.0.0.1", tport, b"from a stranger"),
                  "full cone: got %r from %s:%d" % (data, h, p))
            break
    else:
        raise Fail("full cone: the third address never reached the client")
    print("full cone ok")
    if o.get("--again") == "1":
        # a new association from the same UDP source port: the same
        # GlobalID, so the server hands the same mapping over
        src_port = a.u.getsockname()[1]
        a.close()
        time.sleep(0.5)
        a = Assoc(o["--socks"], src_port)
        seen = None
        for attempt in range(3):
            a.send("127.0.0.1", rport, b"again")
            r, _, _ = select.select([refl], [], [], 3)
            if r:
                _, seen = refl.recvfrom(65536)
                break
        check(seen is not None, "the reflector never heard from the new association")
        check(seen == mapped, "a new association from the same source: mapping %s:%d, was %s:%d" %
              (seen + mapped))
        print("the same mapping %s:%d after a new association ok" % seen)
    print("PASS socks")


def main():
    args = sys.argv[1:]
    o = {args[i]: args[i + 1] for i in range(1, len(args) - 1, 2)}
    try:
        if args[0] == "wire":
            scenario_wire(o)
        elif args[0] == "socks":
            scenario_socks(o)
        else:
            raise Fail("unknown scenario " + args[0])
    except Fail as e:
        print("FAIL %s: %s" % (args[0], e))
        sys.exit(1)


if __name__ == "__main__":
    main()
