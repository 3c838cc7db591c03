#!/usr/bin/python3
"""An independent gRPC "gun" peer for the end-to-end specs (python3-h2).

Written from the wire description (design.md 6 and the gun format: HTTP/2
POST /<service>/Tun or /TunMulti, content-type application/grpc; each
direction a sequence of gRPC messages, a 5-byte prefix (flag 0, BE32
length) and a protobuf Hunk {bytes data = 1} / MultiHunk {repeated bytes
data = 1}; the server ends a stream with trailers grpc-status), not from
luaray's C code.

  gun_peer.py client --listen HOST:PORT --connect HOST:PORT --service NAME [--multi]
      One HTTP/2 connection (h2c, prior knowledge) to --connect; every TCP
      connection accepted on --listen becomes a new stream on it, its bytes
      relayed both ways as gun messages. With --multi the streams are
      /TunMulti and every message carries its bytes in two data fields.
      --xff V puts `x-forwarded-for: V` on every request.
  gun_peer.py server --listen HOST:PORT --connect HOST:PORT --service NAME
      Accepts HTTP/2 (h2c) connections on --listen; every stream for
      /NAME/Tun or /NAME/TunMulti is relayed to a new TCP connection to
      --connect; other requests get 404 (not gRPC) or grpc-status 12.
  gun_peer.py probe --connect HOST:PORT --path PATH [--content-type T] [--method M]
      One request with an empty body; prints the response headers and
      trailers, one "name: value" a line, then exits.

Flow control keeps backpressure: received DATA is acknowledged only once
its bytes were written to the TCP side, and a TCP side is read only while
its stream's queue is short. The connection window is opened wide, so one
stream that stalls never holds the others' (as gRPC clients do).
Log lines (stdout, flushed): "listening", "h2 connection N", "stream SID
open", "stream SID end status=S", "stream SID reset CODE".
Every socket is on the addresses given (loopback in the specs); the process
exits when its parent dies (the harness sets PDEATHSIG) or on SIGTERM.
"""
import errno
import os
import selectors
import socket
import struct
import sys

import h2.config
import h2.connection
import h2.events
import h2.exceptions

SEL = selectors.DefaultSelector()
DEBUG = bool(os.environ.get("GUN_PEER_DEBUG"))
WIDE = 16 * 1024 * 1024      # the connection window we give the peer
QUEUE_MAX = 256 * 1024       # a stream's unsent bytes before its TCP side pauses


def log(*a):
    print(*a, flush=True)


def hostport(s):
    h, p = s.rsplit(":", 1)
    return h.strip("[]"), int(p)


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def gun_encode(data, multi):
    """One gRPC message carrying data (split in two fields with multi)."""
    if multi and len(data) > 1:
        h = len(data) // 2
        body = b"\x0a" + varint(h) + data[:h] + b"\x0a" + varint(len(data) - h) + data[h:]
    else:
        body = b"\x0a" + varint(len(data)) + data
    return b"\x00" + struct.pack(">I", len(body)) + body


class GunDecoder:
    """Collects whole messages, then reads their protobuf fields."""

    def __init__(self):
        self.buf = bytearray()

    def feed(self, data):
        self.buf += data
        out = bytearray()
        while len(self.buf) >= 5:
            flag = self.buf[0]
            (n,) = struct.unpack(">I", bytes(self.buf[1:5]))
            if flag != 0:
                raise ValueError("compressed gRPC message")
            if len(self.buf) < 5 + n:
                break
            msg = bytes(self.buf[5:5 + n])
            del self.buf[:5 + n]
            out += self.fields(msg)
        return bytes(out)

    @staticmethod
    def read_varint(msg, i):
        v = shift = 0
        while True:
            if i >= len(msg) or shift > 63:
                raise ValueError("bad varint")
            b = msg[i]
            i += 1
            v |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return v, i

    def fields(self, msg):
        out = bytearray()
        i = 0
        while i < len(msg):
            tag, i = self.read_varint(msg, i)
            field, wire = tag >> 3, tag & 7
            if wire == 2:
                n, i = self.read_varint(msg, i)
                if i + n > len(msg):
                    raise ValueError("field past the message")
                if field == 1:
                    out += msg[i:i + n]
                i += n
            elif wire == 0:
                _, i = self.read_varint(msg, i)
            elif wire == 1:
                i += 8
            elif wire == 5:
                i += 4
            else:
                raise ValueError("bad wire type")
        return out


class Tunnel:
    """One stream and its TCP side."""

    def __init__(self, h2c, sid, sock):
        self.h2c, self.sid, self.sock = h2c, sid, sock
        self.dec = GunDecoder()
        self.to_tcp = bytearray()     # payload from the stream, not written yet
        self.unacked = 0              # flow-controlled bytes behind to_tcp
        self.to_h2 = bytearray()      # gun bytes waiting for the window
        self.tcp_eof = False          # the TCP side ended: end the stream after to_h2
        self.h2_end = False           # the stream ended: FIN the TCP side after to_tcp
        self.ended_h2 = False
        self.fin_sent = False
        self.closed = False
        self.reg = False
        if sock is not None:
            sock.setblocking(False)
            self.want()

    def want(self):
        """Watches the TCP side for what can move now."""
        if self.closed or self.sock is None:
            return
        ev = 0
        if not self.tcp_eof and len(self.to_h2) < QUEUE_MAX:
            ev |= selectors.EVENT_READ
        if self.to_tcp:
            ev |= selectors.EVENT_WRITE
        if ev and self.reg:
            SEL.modify(self.sock, ev, self)
        elif ev:
            SEL.register(self.sock, ev, self)
        elif self.reg:
            SEL.unregister(self.sock)
        self.reg = bool(ev)

    def close(self):
        if self.closed:
            return
        self.closed = True
        if self.sock is not None:
            if self.reg:
                SEL.unregister(self.sock)
                self.reg = False
            self.sock.close()

    def on_tcp(self, mask):
        if mask & selectors.EVENT_WRITE and self.to_tcp:
            try:
                n = self.sock.send(self.to_tcp)
                del self.to_tcp[:n]
            except BlockingIOError:
                pass
            except OSError:
                self.h2c.reset(self)
                return
            if not self.to_tcp:
                if self.unacked:
                    self.h2c.conn.acknowledge_received_data(self.unacked, self.sid)
                    self.unacked = 0
                if self.h2_end and not self.fin_sent:
                    self.fin_sent = True
                    try:
                        self.sock.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
        if mask & selectors.EVENT_READ and not self.tcp_eof and len(self.to_h2) < QUEUE_MAX:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                data = None
            except OSError:
                self.h2c.reset(self)
                return
            if data and self.sid is None and not self.h2c.start(self):
                return  # refused before it opened
            if data == b"":
                self.tcp_eof = True
                if self.sid is None:
                    self.close()  # a connect and close (a port probe): no stream
                    return
            elif data:
                self.to_h2 += gun_encode(data, self.h2c.multi)
        self.h2c.pump()
        self.maybe_done()

    def on_data(self, data, fc_len):
        try:
            payload = self.dec.feed(data)
        except ValueError as e:
            log("stream %d bad gun framing: %s" % (self.sid, e))
            self.h2c.reset(self)
            return
        self.to_tcp += payload
        self.unacked += fc_len
        if not self.to_tcp and self.unacked:
            self.h2c.conn.acknowledge_received_data(self.unacked, self.sid)
            self.unacked = 0
        self.want()

    def on_end(self):
        self.h2_end = True
        if not self.to_tcp and not self.fin_sent and self.sock is not None:
            self.fin_sent = True
            try:
                self.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        self.maybe_done()

    def maybe_done(self):
        if self.fin_sent and self.ended_h2 and not self.to_tcp:
            self.close()
        else:
            self.want()


class H2Side:
    """One HTTP/2 connection and its tunnels (client or server role)."""
    count = 0

    def __init__(self, sock, client, args):
        H2Side.count += 1
        self.n = H2Side.count
        self.sock, self.client, self.args = sock, client, args
        self.multi = bool(getattr(args, "multi", False))
        self.tunnels = {}
        self.out = bytearray()
        self.dead = False
        cfg = h2.config.H2Configuration(client_side=client, header_encoding="utf-8")
        self.conn = h2.connection.H2Connection(config=cfg)
        self.conn.initiate_connection()
        self.conn.increment_flow_control_window(WIDE)
        sock.setblocking(False)
        SEL.register(sock, selectors.EVENT_READ, self)
        log("h2 connection %d" % self.n)
        self.flush()

    def open_stream(self, tcp):
        """A TCP connection; its stream opens with its first bytes (start)."""
        Tunnel(self, None, tcp)

    def start(self, t):
        tcp = t.sock
        sid = self.conn.get_next_available_stream_id()
        path = "/%s/%s" % (self.args.service, "TunMulti" if self.multi else "Tun")
        try:
            self.conn.send_headers(sid, [(":method", "POST"), (":scheme", "http"),
                                         (":authority", self.args.connect), (":path", path),
                                         ("content-type", "application/grpc"), ("te", "trailers")]
                                   + ([("x-forwarded-for", self.args.xff)] if self.args.xff else []))
        except h2.exceptions.TooManyStreamsError:
            log("refused: max concurrent streams %d" % self.conn.remote_settings.max_concurrent_streams)
            t.close()
            return False
        t.sid = sid
        self.tunnels[sid] = t
        log("stream %d open" % sid)
        self.flush()
        return True

    def reset(self, t):
        if t.sid is None:
            t.close()  # no stream yet (a port probe that reset its connection)
            return
        if not t.ended_h2:
            t.ended_h2 = True
            try:
                self.conn.reset_stream(t.sid, 8)  # CANCEL
            except h2.exceptions.H2Error:
                pass
        t.close()
        self.tunnels.pop(t.sid, None)
        self.flush()

    def pump(self):
        """Moves queued gun bytes into DATA frames as the windows allow."""
        for t in list(self.tunnels.values()):
            while t.to_h2 and not t.ended_h2:
                try:
                    room = min(self.conn.local_flow_control_window(t.sid),
                               self.conn.max_outbound_frame_size, len(t.to_h2))
                except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
                    t.to_h2.clear()
                    break
                if room <= 0:
                    break
                self.conn.send_data(t.sid, bytes(t.to_h2[:room]))
                del t.to_h2[:room]
            if t.tcp_eof and not t.to_h2 and not t.ended_h2:
                t.ended_h2 = True
                try:
                    if self.client:
                        self.conn.end_stream(t.sid)
                    else:
                        self.conn.send_headers(t.sid, [("grpc-status", "0")], end_stream=True)
                except h2.exceptions.H2Error:
                    pass
            t.maybe_done() if not t.closed else None
        self.flush()

    def flush(self):
        self.out += self.conn.data_to_send()
        if self.out and not self.dead:
            try:
                n = self.sock.send(self.out)
                del self.out[:n]
            except BlockingIOError:
                pass
            except OSError:
                self.die()
                return
        if not self.dead:
            SEL.modify(self.sock, selectors.EVENT_READ | (selectors.EVENT_WRITE if self.out else 0), self)

    def die(self):
        if self.dead:
            return
        self.dead = True
        log("h2 connection %d closed" % self.n)
        for t in list(self.tunnels.values()):
            t.close()
        self.tunnels.clear()
        try:
            SEL.unregister(self.sock)
        except (KeyError, ValueError):
            pass
        self.sock.close()

    def on_io(self, mask):
        if mask & selectors.EVENT_WRITE:
            self.flush()
        if not mask & selectors.EVENT_READ or self.dead:
            return
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            self.die()
            return
        if not data:
            self.die()
            return
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.H2Error as e:
            log("h2 error: %r" % (e,))
            self.die()
            return
        for ev in events:
            self.on_event(ev)
        self.pump()

    def on_event(self, ev):
        if DEBUG:
            log("event %r" % (ev,))
        t = self.tunnels.get(getattr(ev, "stream_id", None))
        if isinstance(ev, h2.events.RequestReceived):
            self.on_request(ev)
        elif isinstance(ev, h2.events.ResponseReceived):
            hd = dict(ev.headers)
            log("stream %d response status=%s" % (ev.stream_id, hd.get(":status")))
        elif isinstance(ev, h2.events.TrailersReceived):
            hd = dict(ev.headers)
            log("stream %d end status=%s" % (ev.stream_id, hd.get("grpc-status")))
        elif isinstance(ev, h2.events.DataReceived):
            if t is None or t.closed:
                self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            else:
                t.on_data(ev.data, ev.flow_controlled_length)
        elif isinstance(ev, h2.events.StreamEnded):
            if t is not None:
                t.on_end()
        elif isinstance(ev, h2.events.StreamReset):
            log("stream %d reset %d" % (ev.stream_id, ev.error_code))
            if t is not None and ev.error_code == 0 and t.h2_end:
                # after the server's trailers: it reads no more of ours, but
                # what it sent is still delivered (then the FIN)
                t.ended_h2 = True
                t.to_h2.clear()
                t.maybe_done()
            elif t is not None:
                t.ended_h2 = True
                t.close()
                self.tunnels.pop(ev.stream_id, None)
        elif isinstance(ev, h2.events.ConnectionTerminated):
            log("h2 goaway %s" % ev.error_code)

    def on_request(self, ev):
        hd = dict(ev.headers)
        sid = ev.stream_id
        ours = hd.get(":path") in ("/%s/Tun" % self.args.service, "/%s/TunMulti" % self.args.service)
        grpc = hd.get(":method") == "POST" and hd.get("content-type", "").startswith("application/grpc")
        if not grpc:
            self.conn.send_headers(sid, [(":status", "404")], end_stream=True)
            return
        if not ours:
            self.conn.send_headers(sid, [(":status", "200"), ("content-type", "application/grpc"),
                                         ("grpc-status", "12")], end_stream=True)
            return
        self.multi = hd.get(":path").endswith("TunMulti")
        tcp = socket.create_connection(hostport(self.args.connect), timeout=5)
        self.conn.send_headers(sid, [(":status", "200"), ("content-type", "application/grpc")])
        self.tunnels[sid] = Tunnel(self, sid, tcp)
        log("stream %d open %s" % (sid, hd.get(":path")))


def listen(addr):
    h, p = hostport(addr)
    s = socket.socket(socket.AF_INET6 if ":" in h else socket.AF_INET)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((h, p))
    s.listen(128)
    s.setblocking(False)
    return s


def run(args):
    lsock = listen(args.listen)
    SEL.register(lsock, selectors.EVENT_READ, "accept")
    h2side = None
    if args.mode == "client":
        h2side = H2Side(socket.create_connection(hostport(args.connect), timeout=5), True, args)
    log("listening")
    while True:
        for key, mask in SEL.select(timeout=1.0):
            obj = key.data
            if obj == "accept":
                try:
                    c, _ = lsock.accept()
                except BlockingIOError:
                    continue
                if args.mode == "client":
                    if h2side.dead:
                        c.close()
                    else:
                        h2side.open_stream(c)
                else:
                    H2Side(c, False, args)
            elif isinstance(obj, H2Side):
                obj.on_io(mask)
            elif isinstance(obj, Tunnel):
                if not obj.closed:
                    obj.on_tcp(mask)
        if h2side is not None and h2side.dead:
            log("client connection gone")
            return 1


def probe(args):
    s = socket.create_connection(hostport(args.connect), timeout=5)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True,
                                                               header_encoding="utf-8"))
    conn.initiate_connection()
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, [(":method", args.method), (":scheme", "http"),
                            (":authority", args.connect), (":path", args.path),
                            ("content-type", args.content_type), ("te", "trailers")],
                      end_stream=True)
    s.sendall(conn.data_to_send())
    s.settimeout(5)
    done = False
    while not done:
        data = s.recv(65536)
        if not data:
            print("eof")
            break
        for ev in conn.receive_data(data):
            if isinstance(ev, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
                for k, v in ev.headers:
                    print("%s: %s" % (k, v))
            elif isinstance(ev, h2.events.StreamReset):
                print("reset: %d" % ev.error_code)
                done = True
            elif isinstance(ev, h2.events.StreamEnded):
                done = True
        s.sendall(conn.data_to_send())
    sys.stdout.flush()
    return 0


def main():
    import argparse
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["client", "server", "probe"])
    ap.add_argument("--listen")
    ap.add_argument("--connect", required=True)
    ap.add_argument("--service", default="")
    ap.add_argument("--multi", action="store_true")
    ap.add_argument("--xff", help="client: an X-Forwarded-For header on every stream")
    ap.add_argument("--path", default="/")
    ap.add_argument("--method", default="POST")
    ap.add_argument("--content-type", default="application/grpc")
    args = ap.parse_args()
    if args.mode == "probe":
        return probe(args)
    return run(args)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(0)
    except OSError as e:
        if e.errno == errno.EPIPE:
            sys.exit(0)
        raise
