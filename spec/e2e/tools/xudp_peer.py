#!/usr/bin/env python3
"""An Xray-style XUDP client for the tests, written from the wire description
(../shared/docs/vmess-wire.md sections 3-13 and Xray-core's XUDP layout), not
from luaray's code: it makes the VMessAEAD request header itself (command 3,
Mux.Cool, aes-128-gcm body, chunk stream only) and speaks Mux.Cool over it.

  xudp_peer.py selftest VECTORS_DIR
      checks this file's KDF and AEAD header sealing against spec/vectors
  xudp_peer.py xudp --server H:P --id UUID --echo H:P --echo2 H:P
      one XUDP session (GlobalID set) sends datagrams to both UDP echo servers
      and to a reflector of its own; every reply must come back with the
      address it came from; then a third socket the session never sent to
      reaches it (full cone)
  xudp_peer.py reattach --server H:P --id UUID [--id2 UUID]
      a second connection with the same GlobalID (same user) takes the
      mapping over, also after the first connection was lost; another
      GlobalID or another user gets its own
  xudp_peer.py bad --server H:P --id UUID --echo H:P --max-sessions N
      bad frames end only their stream, or only their connection

Mux.Cool frame: BE16(metaLen) || BE16(id) || status(1 New, 2 Keep, 3 End,
4 KeepAlive) || opt(1 data, 2 error) || [New: network(1 TCP, 2 UDP) ||
BE16(port) || atyp(1 v4, 2 name, 3 v6) || addr || XUDP: GlobalID(8)]
|| [Keep of XUDP: network(2) || BE16(port) || atyp || addr] then, with
opt & 1, BE16(len) || data.  Replies of an XUDP session are Keep frames with
the source address the same way.

Prints one line "PASS <scenario> ..." and exits 0, or "FAIL ..." and exits 1.
"""
import hashlib
import hmac
import json
import os
import select
import socket
import struct
import sys
import time
import uuid
import zlib

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM


class Fail(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Fail(what)


# ---------------------------------------------------------------- VMessAEAD

def _kdf_fn(path):
    """The nested HMAC: level 0 is HMAC-SHA256 keyed "VMess AEAD KDF"; each
    path element keys an HMAC whose hash is the level below."""
    if not path:
        return lambda m: hmac.new(b"VMess AEAD KDF", m, hashlib.sha256).digest()
    inner = _kdf_fn(path[:-1])
    key = path[-1]

    def h(m):
        k = key
        if len(k) > 64:
            k = inner(k)
        k = k.ljust(64, b"\0")
        return inner(bytes(x ^ 0x5C for x in k) + inner(bytes(x ^ 0x36 for x in k) + m))
    return h


def kdf(key, *path):
    return _kdf_fn([p if isinstance(p, bytes) else p.encode() for p in path])(key)


def kdf16(key, *path):
    return kdf(key, *path)[:16]


def fnv1a32(b):
    h = 0x811C9DC5
    for x in b:
        h = ((h ^ x) * 0x01000193) & 0xFFFFFFFF
    return h


def cmd_key(uid):
    return hashlib.md5(uuid.UUID(uid).bytes + b"c48619fe-8f02-49e0-b9e9-edf763e17e21").digest()


def seal_header(ck, header, ts, rand4, nonce8):
    plain = struct.pack(">Q", ts) + rand4
    plain += struct.pack(">I", zlib.crc32(plain) & 0xFFFFFFFF)
    enc = Cipher(algorithms.AES(kdf16(ck, "AES Auth ID Encryption")), modes.ECB()).encryptor()
    authid = enc.update(plain) + enc.finalize()
    lkey = kdf16(ck, "VMess Header AEAD Key_Length", authid, nonce8)
    lnonce = kdf(ck, "VMess Header AEAD Nonce_Length", authid, nonce8)[:12]
    hkey = kdf16(ck, "VMess Header AEAD Key", authid, nonce8)
    hnonce = kdf(ck, "VMess Header AEAD Nonce", authid, nonce8)[:12]
    elen = AESGCM(lkey).encrypt(lnonce, struct.pack(">H", len(header)), authid)
    ehdr = AESGCM(hkey).encrypt(hnonce, header, authid)
    return authid + elen + nonce8 + ehdr


def request_header(body_iv, body_key, resp_v, opt, sec, cmd, addr=b"", padding=b""):
    h = bytes([1]) + body_iv + body_key + bytes([resp_v, opt, (len(padding) << 4) | sec, 0, cmd])
    h += addr + padding
    return h + struct.pack(">I", fnv1a32(h))


class VMess:
    """One VMess connection, command 3 (Mux.Cool), aes-128-gcm, option 0x01."""

    def __init__(self, server, uid, timeout=10.0):
        host, port = server.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.key = os.urandom(16)
        self.iv = os.urandom(16)
        self.resp_v = os.urandom(1)[0]
        hdr = request_header(self.iv, self.key, self.resp_v, 0x01, 3, 3)
        wire = seal_header(cmd_key(uid), hdr, int(time.time()), os.urandom(4), os.urandom(8))
        self.sock.sendall(wire)
        self.up = AESGCM(self.key)
        self.up_n = 0
        self.rkey = hashlib.sha256(self.key).digest()[:16]
        self.riv = hashlib.sha256(self.iv).digest()[:16]
        self.down = AESGCM(self.rkey)
        self.down_n = 0
        self.rbuf = b""
        self.got_header = False
        self.plain = b""
        self.eof = False

    def send(self, payload):
        out = b""
        for i in range(0, len(payload), 2048):
            piece = payload[i:i + 2048]
            nonce = struct.pack(">H", self.up_n & 0xFFFF) + self.iv[2:12]
            self.up_n += 1
            sealed = self.up.encrypt(nonce, piece, None)
            out += struct.pack(">H", len(sealed)) + sealed
        self.sock.sendall(out)

    def send_end(self):
        """The end chunk: an empty sealed chunk."""
        nonce = struct.pack(">H", self.up_n & 0xFFFF) + self.iv[2:12]
        self.up_n += 1
        sealed = self.up.encrypt(nonce, b"", None)
        self.sock.sendall(struct.pack(">H", len(sealed)) + sealed)

    def _take(self, n):
        if len(self.rbuf) < n:
            return None
        b, self.rbuf = self.rbuf[:n], self.rbuf[n:]
        return b

    def _decode(self):
        if not self.got_header:
            if len(self.rbuf) < 18:
                return
            lk = kdf16(self.rkey, "AEAD Resp Header Len Key")
            ln = kdf(self.riv, "AEAD Resp Header Len IV")[:12]
            n = struct.unpack(">H", AESGCM(lk).decrypt(ln, self.rbuf[:18], None))[0]
            if len(self.rbuf) < 18 + n + 16:
                return
            hk = kdf16(self.rkey, "AEAD Resp Header Key")
            hn = kdf(self.riv, "AEAD Resp Header IV")[:12]
            h = AESGCM(hk).decrypt(hn, self.rbuf[18:18 + n + 16], None)
            check(h[0] == self.resp_v, "response header: wrong V")
            self.rbuf = self.rbuf[18 + n + 16:]
            self.got_header = True
        while len(self.rbuf) >= 2:
            n = struct.unpack(">H", self.rbuf[:2])[0]
            if len(self.rbuf) < 2 + n:
                return
            nonce = struct.pack(">H", self.down_n & 0xFFFF) + self.riv[2:12]
            self.down_n += 1
            data = self.down.decrypt(nonce, self.rbuf[2:2 + n], None)
            self.rbuf = self.rbuf[2 + n:]
            if not data:
                self.eof = True
            self.plain += data

    def poll(self, timeout):
        """Reads what is there within timeout; False once the server closed."""
        r, _, _ = select.select([self.sock], [], [], timeout)
        if not r:
            return True
        try:
            b = self.sock.recv(65536)
        except (ConnectionResetError, OSError):
            self.eof = True
            return False
        if not b:
            self.eof = True
            return False
        self.rbuf += b
        self._decode()
        return True

    def close(self):
        self.sock.close()


# ---------------------------------------------------------------- Mux.Cool

def addr_bytes(host, port):
    try:
        return struct.pack(">HB", port, 1) + socket.inet_pton(socket.AF_INET, host)
    except OSError:
        pass
    try:
        return struct.pack(">HB", port, 3) + socket.inet_pton(socket.AF_INET6, host)
    except OSError:
        pass
    return struct.pack(">HBB", port, 2, len(host)) + host.encode()


def frame(sid, status, opt, meta_extra=b"", data=None):
    meta = struct.pack(">HBB", sid, status, opt) + meta_extra
    out = struct.pack(">H", len(meta)) + meta
    if data is not None:
        out += struct.pack(">H", len(data)) + data
    return out


def new_udp(sid, host, port, gid, data):
    return frame(sid, 1, 1, bytes([2]) + addr_bytes(host, port) + gid, data)


def keep_udp(sid, host, port, data):
    return frame(sid, 2, 1, bytes([2]) + addr_bytes(host, port), data)


def parse_addr(b):
    port, atyp = struct.unpack(">HB", b[:3])
    if atyp == 1:
        return socket.inet_ntop(socket.AF_INET, b[3:7]), port
    if atyp == 3:
        return socket.inet_ntop(socket.AF_INET6, b[3:19]), port
    return b[4:4 + b[3]].decode(), port


class Mux:
    def __init__(self, vm):
        self.vm = vm
        self.frames = []  # (id, status, opt, src or None, data or None)

    def _parse(self):
        p = self.vm.plain
        while len(p) >= 2:
            ml = struct.unpack(">H", p[:2])[0]
            if len(p) < 2 + ml:
                break
            meta = p[2:2 + ml]
            sid, status, opt = struct.unpack(">HBB", meta[:4])
            o = 2 + ml
            data = None
            if opt & 1:
                if len(p) < o + 2:
                    break
                dl = struct.unpack(">H", p[o:o + 2])[0]
                if len(p) < o + 2 + dl:
                    break
                data = p[o + 2:o + 2 + dl]
                o += 2 + dl
            src = None
            if status == 2 and ml > 4:
                check(meta[4] == 2, "reply address: network %d, not UDP" % meta[4])
                src = parse_addr(meta[5:])
            self.frames.append((sid, status, opt, src, data))
            p = p[o:]
        self.vm.plain = p

    def wait(self, pred, timeout):
        """Reads until pred(frames) is true or timeout; returns pred's value."""
        end = time.monotonic() + timeout
        while True:
            self._parse()
            v = pred(self.frames)
            if v or time.monotonic() >= end:
                return v
            if not self.vm.poll(min(0.2, max(0.0, end - time.monotonic()))) and not self.vm.rbuf:
                self._parse()
                return pred(self.frames)


def hp(s):
    h, p = s.rsplit(":", 1)
    return h.strip("[]"), int(p)


# ---------------------------------------------------------------- scenarios

def scenario_selftest(vdir):
    with open(os.path.join(vdir, "kdf.json")) as f:
        for c in json.load(f)["cases"]:
            key = bytes.fromhex(c["key"]) if "key" in c else c["key_ascii"].encode()
            out = kdf(key, *c["path_ascii"])
            check(out.hex() == c.get("kdf", out.hex()), "kdf: " + c["description"])
            check(out[:16].hex() == c.get("kdf16", out[:16].hex()), "kdf16: " + c["description"])
    with open(os.path.join(vdir, "request_header_aead.json")) as f:
        n = 0
        for c in json.load(f)["cases"]:
            if c.get("header_mode") != "aead" or "header_wire" not in c:
                continue
            wire = seal_header(cmd_key(c["uuid"]), bytes.fromhex(c["header_plain"]),
                               c["timestamp"], bytes.fromhex(c["auth_rand"]),
                               bytes.fromhex(c["connection_nonce"]))
            check(wire.hex() == c["header_wire"], "header: " + c["description"])
            plain = bytes.fromhex(c["header_plain"])
            check(struct.pack(">I", fnv1a32(plain[:-4])) == plain[-4:], "fnv: " + c["description"])
            n += 1
    check(n > 0, "no AEAD header vector")
    return "kdf and %d AEAD header vector(s)" % n


def collect_echo(mux, sid, want, timeout):
    """want: {(payload): (host, port)}; returns the payloads still missing."""
    def pred(frames):
        for (fid, st, _o, src, data) in frames:
            if fid == sid and st == 2 and data in want:
                check(src == want[data], "reply %r came from %r, expected %r"
                      % (data[:12], src, want[data]))
        got = {d for (fid, st, _o, _s, d) in frames if fid == sid and st == 2}
        return all(k in got for k in want)
    mux.wait(pred, timeout)
    got = {d for (fid, st, _o, _s, d) in mux.frames if fid == sid and st == 2}
    return [k for k in want if k not in got]


def scenario_xudp(a):
    e1, e2 = hp(a.echo), hp(a.echo2)
    vm = VMess(a.server, a.id)
    mux = Mux(vm)
    gid = os.urandom(8)
    sid = 0  # as Xray's XUDP writer
    # the reflector: a UDP socket of ours the session sends to; it answers,
    # and a third socket it never sent to writes to the session's port
    refl = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    refl.bind(("127.0.0.1", 0))
    third = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    third.bind(("127.0.0.1", 0))
    r_addr = refl.getsockname()
    first = b"xudp-first-" + os.urandom(6).hex().encode()
    vm.send(new_udp(sid, e1[0], e1[1], gid, first))
    want = {first: e1}
    for i in range(a.rounds):
        p1 = b"to-echo1-%d-" % i + os.urandom(4).hex().encode() * (1 + i % 50)
        p2 = b"to-echo2-%d-" % i + os.urandom(4).hex().encode() * (1 + (i * 7) % 50)
        want[p1], want[p2] = e1, e2
    pending = dict(want)
    for attempt in range(a.tries):
        out = b""
        for k, (h, p) in pending.items():
            if k != first or attempt:
                out += keep_udp(sid, h, p, k)
        vm.send(out)
        missing = collect_echo(mux, sid, pending, 3.0 + 2 * attempt)
        pending = {k: want[k] for k in missing}
        if not pending:
            break
    check(not pending, "%d of %d echoes never came back" % (len(pending), len(want)))
    retries = attempt
    # the reflector sees the session's port, answers from its own
    probe = b"reflect-me"
    seen = None
    for attempt in range(4):
        vm.send(keep_udp(sid, r_addr[0], r_addr[1], probe))
        r, _, _ = select.select([refl], [], [], 3.0)
        if r:
            data, seen = refl.recvfrom(2048)
            check(data == probe, "reflector got %r" % data)
            break
    check(seen is not None, "the reflector never heard from the session")
    refl.sendto(b"reflector-answer", seen)
    missing = collect_echo(mux, sid, {b"reflector-answer": r_addr}, 5.0)
    check(not missing, "the reflector's answer never came back")
    # full cone: a socket the session never sent to reaches the same port
    unsolicited = b"unsolicited-" + os.urandom(4).hex().encode()
    t_addr = third.getsockname()
    for attempt in range(3):
        third.sendto(unsolicited, seen)
        if not collect_echo(mux, sid, {unsolicited: t_addr}, 3.0):
            break
    else:
        raise Fail("a datagram from a third address did not reach the session (not full cone)")
    # a destination by name: resolved by the server, the reply from its address
    named = ""
    if a.echo_name:
        name, nport = hp(a.echo_name)
        payload = b"by-name-" + os.urandom(4).hex().encode()
        got = None
        for attempt in range(4):
            vm.send(keep_udp(sid, name, nport, payload))
            mux.wait(lambda f: any(d == payload for (_i, _s, _o, _a, d) in f), 3.0)
            got = [src for (_i, st, _o, src, d) in mux.frames if st == 2 and d == payload]
            if got:
                break
        check(got, "no reply from %s:%d" % (name, nport))
        check(got[0] in (("127.0.0.1", nport), ("::1", nport)),
              "the reply from %s came from %r" % (name, got[0]))
        named = ", %s resolved to %s" % (name, got[0][0])
    ends = [f for f in mux.frames if f[1] == 3]
    check(not ends, "the session was ended: %r" % ends)
    n = len([f for f in mux.frames if f[1] == 2])
    vm.close()
    return "%d replies, each from its own source (2 echo servers, a reflector, a third " \
           "address at mapped port %d%s); resends %d" % (n, seen[1], named, retries)


def reflect(vm, mux, sid, refl, gid, payload, new=True):
    """Sends payload to the reflector through stream sid (a New frame with
    gid, or a Keep); returns the source address the reflector saw."""
    r_addr = refl.getsockname()
    for attempt in range(4):
        if new and attempt == 0:
            vm.send(new_udp(sid, r_addr[0], r_addr[1], gid, payload))
        else:
            vm.send(keep_udp(sid, r_addr[0], r_addr[1], payload))
        r, _, _ = select.select([refl], [], [], 3.0)
        if r:
            data, seen = refl.recvfrom(2048)
            check(data == payload, "reflector got %r, expected %r" % (data, payload))
            return seen
    raise Fail("the reflector never heard %r" % payload)


def scenario_reattach(a):
    """GlobalID: a new connection with the same GlobalID takes the mapping
    over (the old stream gets an End), also after the old connection was
    lost; another GlobalID or another user gets a mapping of its own."""
    refl = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    refl.bind(("127.0.0.1", 0))
    r_addr = refl.getsockname()
    gid = os.urandom(8)
    notes = []
    va = VMess(a.server, a.id)
    ma = Mux(va)
    s1 = reflect(va, ma, 0, refl, gid, b"from-a")
    vb = VMess(a.server, a.id)
    mb = Mux(vb)
    s2 = reflect(vb, mb, 0, refl, gid, b"from-b")
    check(s2 == s1, "same GlobalID on a second connection: mapping %r, first was %r" % (s2, s1))
    check(ma.wait(lambda f: end_of(ma, 0) is not None, 5.0), "the first connection's stream got no End")
    notes.append("second connection took mapping %d over, first stream ended" % s1[1])
    # the mapping answers on the new connection
    refl.sendto(b"to-b", s1)
    check(not collect_echo(mb, 0, {b"to-b": r_addr}, 5.0), "reply after the re-attach lost")
    # another GlobalID: a mapping of its own
    vc = VMess(a.server, a.id)
    mc = Mux(vc)
    s3 = reflect(vc, mc, 0, refl, os.urandom(8), b"from-c")
    check(s3 != s1, "another GlobalID got the same mapping")
    vc.close()
    # another user with the same GlobalID: a mapping of its own
    if a.id2:
        vd = VMess(a.server, a.id2)
        md = Mux(vd)
        s4 = reflect(vd, md, 0, refl, gid, b"from-d")
        check(s4 != s1, "another user took the mapping over")
        vd.close()
        notes.append("other GlobalID / other user: own mappings")
    # the connection is lost (no end chunk): the mapping waits for its client
    vb.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    vb.close()
    time.sleep(0.5)
    ve = VMess(a.server, a.id)
    me = Mux(ve)
    s5 = reflect(ve, me, 7, refl, gid, b"from-e")
    check(s5 == s1, "after the connection was lost: mapping %r, expected %r" % (s5, s1))
    refl.sendto(b"to-e", s1)
    check(not collect_echo(me, 7, {b"to-e": r_addr}, 5.0), "reply after the orphan re-attach lost")
    notes.append("after a lost connection, re-attached as stream 7")
    ve.close()
    va.close()
    return "; ".join(notes)


def end_of(mux, sid):
    for (fid, st, opt, _s, _d) in mux.frames:
        if fid == sid and st == 3:
            return opt
    return None


def scenario_bad(a):
    e1 = hp(a.echo)
    notes = []
    # a healthy neighbour connection with a live session all along
    nb = VMess(a.server, a.id)
    nbm = Mux(nb)
    nb.send(new_udp(1, e1[0], e1[1], os.urandom(8), b"neighbour-0"))
    check(not collect_echo(nbm, 1, {b"neighbour-0": e1}, 8.0), "neighbour: no echo")

    vm = VMess(a.server, a.id)
    mux = Mux(vm)
    vm.send(new_udp(20, e1[0], e1[1], os.urandom(8), b"ok-20"))
    check(not collect_echo(mux, 20, {b"ok-20": e1}, 8.0), "session 20: no echo")
    # wrong network (3): that stream refused with an error End
    vm.send(frame(5, 1, 1, bytes([3]) + addr_bytes(e1[0], e1[1]), b"x"))
    check(mux.wait(lambda f: end_of(mux, 5) is not None, 5.0), "wrong network: no End")
    check(end_of(mux, 5) & 2, "wrong network: End without the error flag")
    notes.append("wrong network: End(error)")
    # a New frame whose address is cut short (IPv4 with 2 bytes)
    vm.send(frame(7, 1, 1, bytes([2]) + struct.pack(">HB", e1[1], 1) + b"\x7f\x00", b"y"))
    check(mux.wait(lambda f: end_of(mux, 7) is not None, 5.0), "truncated address: no End")
    check(end_of(mux, 7) & 2, "truncated address: End without the error flag")
    notes.append("truncated New: End(error)")
    # a Keep with an address that does not parse ends that session only
    vm.send(frame(20, 2, 1, bytes([2]) + struct.pack(">HB", 9, 9) + b"\x01\x02", b"z"))
    check(mux.wait(lambda f: end_of(mux, 20) is not None, 5.0), "bad Keep address: no End")
    check(end_of(mux, 20) & 2, "bad Keep address: End without the error flag")
    notes.append("bad Keep address: that session ended")
    # the connection still works
    vm.send(new_udp(21, e1[0], e1[1], os.urandom(8), b"ok-21"))
    check(not collect_echo(mux, 21, {b"ok-21": e1}, 8.0), "after the bad frames: no echo")
    # too many sessions: beyond max_sessions, End(error) for the extra ones
    ms = a.max_sessions
    out = b""
    for i in range(ms + 2):
        out += new_udp(100 + i, e1[0], e1[1], os.urandom(8), b"many-%d" % i)
    vm.send(out)
    refused = mux.wait(lambda f: sum(1 for i in range(ms + 2)
                                     if end_of(mux, 100 + i) is not None) >= 3, 8.0)
    check(refused, "too many sessions: no End for the extra ones")
    refused_ids = [100 + i for i in range(ms + 2) if end_of(mux, 100 + i) is not None]
    check(all(end_of(mux, i) & 2 for i in refused_ids), "too many: End without error")
    # the one open before still echoes
    vm.send(keep_udp(21, e1[0], e1[1], b"ok-21-again"))
    check(not collect_echo(mux, 21, {b"ok-21-again": e1}, 8.0), "session 21 lost after refusals")
    notes.append("%d sessions over max_sessions %d refused" % (len(refused_ids), ms))
    # a frame cut in the middle of its meta, then the end of the body:
    # the connection closes, the neighbour does not notice
    vm.send(struct.pack(">H", 40) + b"\x00\x01\x01")
    vm.send_end()
    mux.wait(lambda f: vm.eof, 8.0)
    check(vm.eof, "truncated frame at the end: the connection stayed open")
    notes.append("cut frame: connection closed")
    vm.close()
    # a bad metaLen (> 512) closes that connection at once
    vm2 = VMess(a.server, a.id)
    m2 = Mux(vm2)
    vm2.send(struct.pack(">H", 600) + b"\x00" * 600)
    m2.wait(lambda f: vm2.eof, 8.0)
    check(vm2.eof, "metaLen 600: the connection stayed open")
    vm2.close()
    notes.append("metaLen 600: connection closed")
    nb.send(keep_udp(1, e1[0], e1[1], b"neighbour-1"))
    check(not collect_echo(nbm, 1, {b"neighbour-1": e1}, 8.0), "neighbour hurt by the bad connections")
    check(end_of(nbm, 1) is None, "neighbour session ended")
    nb.close()
    notes.append("neighbour connection unaffected")
    return "; ".join(notes)


def main():
    import argparse
    ap = argparse.ArgumentParser()
    ap.add_argument("scenario")
    ap.add_argument("vectors", nargs="?")
    ap.add_argument("--server")
    ap.add_argument("--id")
    ap.add_argument("--id2")
    ap.add_argument("--echo")
    ap.add_argument("--echo2")
    ap.add_argument("--echo-name")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--tries", type=int, default=4)
    ap.add_argument("--max-sessions", type=int, default=4)
    a = ap.parse_args()
    try:
        if a.scenario == "selftest":
            msg = scenario_selftest(a.vectors)
        elif a.scenario == "xudp":
            msg = scenario_xudp(a)
        elif a.scenario == "reattach":
            msg = scenario_reattach(a)
        elif a.scenario == "bad":
            msg = scenario_bad(a)
        else:
            raise Fail("unknown scenario " + a.scenario)
    except Fail as e:
        print("FAIL %s: %s" % (a.scenario, e))
        sys.exit(1)
    print("PASS %s: %s" % (a.scenario, msg))


if __name__ == "__main__":
    main()
