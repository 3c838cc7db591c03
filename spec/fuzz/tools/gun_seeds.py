#!/usr/bin/python3
"""Seeds for fuzz_gun and fuzz_h2s (spec/fuzz/corpus/<target>/), made with
python3-h2 and the gun format as the test peer writes it (not with our C
code).  Run from the repository root: /usr/bin/python3 spec/fuzz/tools/gun_seeds.py
Input formats: the comments at the top of spec/fuzz/targets/fuzz_gun.c and
fuzz_h2s.c (ctrl(1) seed(2) then the body)."""
import os
import struct

import h2.config
import h2.connection


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def hunk(data, fields=1):
    if fields == 2 and len(data) > 1:
        h = len(data) // 2
        body = b"\x0a" + varint(h) + data[:h] + b"\x0a" + varint(len(data) - h) + data[h:]
    else:
        body = b"\x0a" + varint(len(data)) + data
    return b"\x00" + struct.pack(">I", len(body)) + body


def write(target, name, ctrl, seed, body):
    d = "spec/fuzz/corpus/" + target
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(bytes([ctrl]) + struct.pack(">H", seed) + body)


# fuzz_gun: raw streams (ctrl 1) and chunk lists to encode (ctrl 0 / 2)
data = bytes(range(256)) * 3
write("fuzz_gun", "raw-hunks", 1, 7, hunk(b"hello") + hunk(data) + hunk(b""))
write("fuzz_gun", "raw-multihunk", 1, 9, hunk(data, 2) + hunk(b"ab", 2))
write("fuzz_gun", "raw-unknown-fields", 1, 11,
      b"\x00" + struct.pack(">I", 2 + 6 + 9 + 5) + b"\x10\x05" + b"\x1a\x04abcd" +
      b"\x21" + b"12345678" + b"\x0a\x03xyz")
write("fuzz_gun", "raw-compressed", 1, 3, b"\x01\x00\x00\x00\x02\x0a\x00")
write("fuzz_gun", "raw-field-too-long", 1, 5, b"\x00\x00\x00\x00\x03\x0a\x09ab")
write("fuzz_gun", "encode-chunks", 0, 13,
      struct.pack(">H", 5) + b"hello" + struct.pack(">H", 300) + data[:300] + struct.pack(">H", 0))
write("fuzz_gun", "encode-multi", 2, 17, struct.pack(">H", 700) + data[:700])


# fuzz_h2s: what a client sends (ctrl 0: the preface is in the bytes)
def client():
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    c.initiate_connection()
    return c


def req(c, path="/gun.Tunnel/Tun", ctype="application/grpc", method="POST", end=False):
    sid = c.get_next_available_stream_id()
    c.send_headers(sid, [(":method", method), (":scheme", "http"), (":authority", "x"),
                         (":path", path), ("content-type", ctype), ("te", "trailers")],
                   end_stream=end)
    return sid


c = client()
a = req(c)
b = req(c, "/gun.Tunnel/TunMulti")
c.send_data(a, hunk(b"\x01" * 100) + hunk(data))
c.send_data(b, hunk(data, 2))
c.end_stream(a)
c.send_data(b, hunk(b"more"))
c.reset_stream(b, 8)
write("fuzz_h2s", "two-tunnels", 0, 21, c.data_to_send())

c = client()
req(c, "/other.Service/Tun", end=True)
req(c, "/", "text/html", "GET", end=True)
s = req(c)
c.ping(b"12345678")
c.increment_flow_control_window(1000)
c.send_data(s, hunk(b"x" * 5000), pad_length=20)
write("fuzz_h2s", "refusals-ping-padding", 0, 23, c.data_to_send())

c = client()
s = req(c)
for i in range(10):
    c.send_data(s, hunk(bytes([i]) * 1500))
c.end_stream(s)
write("fuzz_h2s", "window-full", 0, 25, c.data_to_send())

c = client()
s = req(c)
c.send_data(s, b"\x00\x00\x00\x00\x05\x0a\x09ab")  # a field past its message
t = req(c)
c.send_data(t, hunk(b"fine"))
write("fuzz_h2s", "bad-gun", 0, 27, c.data_to_send())

write("fuzz_h2s", "not-http2", 0, 29, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")


# fuzz_gunc: what a server sends to our client (its stream is 1)
def server_bytes(build):
    cl = client()
    req(cl)
    sv = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    sv.initiate_connection()
    sv.receive_data(cl.data_to_send())
    build(sv)
    return sv.data_to_send()


def ok_stream(sv):
    sv.send_headers(1, [(":status", "200"), ("content-type", "application/grpc")])
    sv.send_data(1, hunk(b"response" * 10) + hunk(data))
    sv.send_data(1, hunk(data, 2))
    sv.send_headers(1, [("grpc-status", "0")], end_stream=True)
    sv.reset_stream(1, 0)


def refused(sv):
    sv.send_headers(1, [(":status", "200"), ("content-type", "application/grpc"),
                        ("grpc-status", "12")], end_stream=True)


def not_found(sv):
    sv.send_headers(1, [(":status", "404")], end_stream=True)


def window_and_ping(sv):
    sv.send_headers(1, [(":status", "200"), ("content-type", "application/grpc")])
    sv.increment_flow_control_window(100000)
    sv.increment_flow_control_window(100000, stream_id=1)
    sv.ping(b"abcdefgh")
    for i in range(8):
        sv.send_data(1, hunk(bytes([i]) * 1000))
    sv.send_headers(1, [("grpc-status", "14")], end_stream=True)


def goaway(sv):
    sv.close_connection(error_code=0, last_stream_id=0)


write("fuzz_gunc", "ok-stream", 0, 31, server_bytes(ok_stream))
write("fuzz_gunc", "ok-stream-multi", 1, 33, server_bytes(ok_stream))
write("fuzz_gunc", "refused-12", 0, 35, server_bytes(refused))
write("fuzz_gunc", "not-found", 2, 37, server_bytes(not_found))
write("fuzz_gunc", "window-ping-status-14", 0, 39, server_bytes(window_and_ping))
write("fuzz_gunc", "goaway", 0, 41, server_bytes(goaway))


# fuzz_h2c: a server answering several tunnels of one connection (1, 3, 5)
def server_many(build, n=3):
    cl = client()
    for _ in range(n):
        req(cl)
    sv = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    sv.initiate_connection()
    sv.receive_data(cl.data_to_send())
    build(sv)
    return sv.data_to_send()


def many_ok(sv):
    for sid in (1, 3, 5):
        sv.send_headers(sid, [(":status", "200"), ("content-type", "application/grpc")])
    sv.send_data(3, hunk(data))
    sv.send_data(1, hunk(b"one" * 50, 2))
    sv.send_headers(1, [("grpc-status", "0")], end_stream=True)
    sv.reset_stream(5, 8)
    sv.send_data(3, hunk(b"more"))
    sv.send_headers(3, [("grpc-status", "14")], end_stream=True)


def many_goaway(sv):
    sv.send_headers(1, [(":status", "200"), ("content-type", "application/grpc")])
    sv.send_data(1, hunk(b"x" * 3000))
    sv.close_connection(error_code=0, last_stream_id=1)


write("fuzz_h2c", "three-tunnels", 4, 43, server_many(many_ok))
write("fuzz_h2c", "three-tunnels-multi", 5, 45, server_many(many_ok))
write("fuzz_h2c", "goaway-after-one", 4, 47, server_many(many_goaway))
write("fuzz_h2c", "refused-all", 2, 49, server_bytes(refused))
print("seeds written")
