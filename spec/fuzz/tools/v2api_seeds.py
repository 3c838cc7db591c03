#!/usr/bin/python3
"""Seeds for fuzz_v2api (spec/fuzz/corpus/fuzz_v2api/), made with python3-h2
and protobuf encoded by hand from v2ray 4.34's wire description (the
encoders of spec/e2e/tools/api_client.py), not with our C code.
Run from the repository root: /usr/bin/python3 spec/fuzz/tools/v2api_seeds.py
Input format: the comment at the top of spec/fuzz/targets/fuzz_v2api.c."""
import importlib.util
import os
import struct

import h2.config
import h2.connection

spec = importlib.util.spec_from_file_location("api_client", "spec/e2e/tools/api_client.py")
pb = importlib.util.module_from_spec(spec)
spec.loader.exec_module(pb)

OUT = "spec/fuzz/corpus/fuzz_v2api"
STATS = "/v2ray.core.app.stats.command.StatsService/"
HANDLER = "/v2ray.core.app.proxyman.command.HandlerService/"
UUID = "de305d54-75b4-431b-adb2-eb6b9e546014"
# METHODS in fuzz_v2api.c
M_GET, M_QUERY, M_SYS, M_ALTER, M_ADDIB, M_NOPE = 0, 1, 2, 3, 4, 5


def write(name, ctrl, seed, body):
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(bytes([ctrl]) + struct.pack(">H", seed) + body)


def framed(msg, flag=0, length=None):
    return bytes([flag]) + struct.pack(">I", len(msg) if length is None else length) + msg


def get_req(name, reset=0):
    return pb.field_bytes(1, name) + pb.field_varint(2, reset)


ADD = pb.alter_inbound("vmess-in", pb.OPS + "AddUserOperation",
                       pb.add_user_op("bob@e2e", UUID, 1, 4, pb.VMESS))
REMOVE = pb.alter_inbound("", pb.OPS + "RemoveUserOperation", pb.field_bytes(1, "bob@e2e"))


def client():
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    c.initiate_connection()
    return c


def request(c, path, data, method="POST", ctype="application/grpc", end=True):
    sid = c.get_next_available_stream_id()
    c.send_headers(sid, [(":method", method), (":scheme", "http"), (":path", path),
                         (":authority", "127.0.0.1:10085"), ("content-type", ctype),
                         ("te", "trailers"), ("user-agent", "grpc-go/1.35.0")])
    if data is not None:
        c.send_data(sid, data, end_stream=end)
    elif end:
        c.end_stream(sid)
    return sid


# session (ctrl 0: the preface is in the bytes)
c = client()
request(c, STATS + "GetStats", framed(get_req("user>>>a@b>>>traffic>>>uplink")))
request(c, STATS + "QueryStats", framed(get_req("", 1)))
request(c, STATS + "GetSysStats", framed(b""))
write("session-stats", 0, 7, c.data_to_send())

c = client()
request(c, HANDLER + "AlterInbound", framed(ADD))
request(c, HANDLER + "AlterInbound", framed(REMOVE))
request(c, HANDLER + "AddInbound", framed(b""))
request(c, "/no.Such/Method", framed(b""))
write("session-alter", 0, 9, c.data_to_send())

c = client()
request(c, STATS + "GetStats", framed(get_req("x"), length=100))       # a lying prefix
request(c, STATS + "GetStats", framed(b"", length=2 << 20), end=False)  # over 1 MiB
request(c, STATS + "GetStats", framed(b"\x0a\x00", flag=1))           # compressed
request(c, STATS + "GetStats", framed(b"\x0a\x10abc"))                # truncated protobuf
request(c, STATS + "GetStats", framed(b"") + framed(b""))             # two messages
request(c, STATS + "GetStats", None, method="GET")
request(c, STATS + "GetStats", framed(b""), ctype="text/plain")
sid = request(c, STATS + "QueryStats", framed(b"")[:3], end=False)
c.reset_stream(sid)
c.ping(b"12345678")
write("session-bad", 0, 11, c.data_to_send())

# a request in small DATA frames, window updates, a GOAWAY
c = client()
msg = framed(get_req("user>>>a@b>>>traffic>>>downlink"))
sid = request(c, STATS + "GetStats", None, end=False)
for i in range(0, len(msg), 3):
    c.send_data(sid, msg[i:i + 3])
c.end_stream(sid)
c.increment_flow_control_window(65535)
c.close_connection()
write("session-split", 0, 13, c.data_to_send())

write("session-not-http2", 0, 3, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
write("session-preface-only", 4, 5, b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")

# one call, framed (ctrl 1)
write("call-get", 1, 1, bytes([M_GET]) + framed(get_req("user>>>a@b>>>traffic>>>uplink")))
write("call-query", 1, 2, bytes([M_QUERY]) + framed(get_req(">>>", 0)))
write("call-sys", 1, 3, bytes([M_SYS]) + framed(b""))
write("call-alter", 1, 4, bytes([M_ALTER]) + framed(ADD))
write("call-unknown", 1, 5, bytes([M_NOPE]) + framed(b""))
write("call-lying-prefix", 1, 6, bytes([M_GET]) + framed(b"\x0a\x01x", length=9))

# AlterInbound, structured (ctrl 2): op tag_len tag [level email_len email acct] rest
acct = pb.vmess_account(UUID, 2)
write("alter-add", 2, 1, bytes([0, 8]) + b"vmess-in" + bytes([3, 7]) + b"bob@e2e" + bytes([0]) + acct)
write("alter-add-bad-uuid", 2, 2, bytes([0, 0, 0, 3]) + b"x@y" + bytes([0]) +
      pb.vmess_account("de305d54-75b4-431b-adb2-eb6b9e54601", 0))
write("alter-add-vless", 2, 3, bytes([0, 0, 0, 3]) + b"x@y" + bytes([1]) + acct)
write("alter-remove", 2, 4, bytes([1, 8]) + b"vmess-in" + pb.field_bytes(1, "bob@e2e"))
write("alter-unknown-op", 2, 5, bytes([2, 0]) + b"\x0a\x00")

# one call, the message alone (ctrl 3)
write("msg-get", 3, 1, bytes([M_GET]) + get_req("inbound>>>vmess-in>>>traffic>>>uplink", 1))
write("msg-query-unknown-fields", 3, 2, bytes([M_QUERY]) + b"\xa8\x06\x01" + get_req("user"))
write("msg-alter", 3, 3, bytes([M_ALTER]) + REMOVE)
