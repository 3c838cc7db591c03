#!/usr/bin/python3
"""An independent client of v2ray's gRPC API (spec/e2e/api_spec.lua).

Its messages are encoded and decoded here by hand from the wire description
of v2ray 4.34's .proto files (app/stats/command, app/proxyman/command,
common/serial TypedMessage, common/protocol User, proxy/vmess Account),
never from luaray's C; the calls go through python3-grpcio's generic
unary_unary (bytes in, bytes out), or, for what grpcio will not send (bad
framing), through python3-h2 on a raw socket.

  api_client.py ADDR add TAG UUID EMAIL [LEVEL [ALTER_ID [ACCOUNT_TYPE]]]
  api_client.py ADDR remove TAG EMAIL
  api_client.py ADDR op TAG TYPE HEX          AlterInbound with any TypedMessage
  api_client.py ADDR get NAME [reset]
  api_client.py ADDR query PATTERN [reset]
  api_client.py ADDR sys
  api_client.py ADDR many N                   N QueryStats at once on one channel
  api_client.py ADDR call PATH HEX            any method, any request bytes
  api_client.py ADDR raw PATH HEX [PAD]       HEX (and PAD zero bytes) is the
                                              whole DATA of the stream (prefix
                                              included), sent over HTTP/2 by hand

Prints one line "OK ..." (get: the value; query: name=value pairs; sys:
Field=value pairs; add/remove/op/call: the response bytes in hex), or
"ERR <grpc status code> <message>", or for raw "STATUS <code> <message>",
"HTTP <status>", "RESET <error code>" or "CLOSED".  Exit status 0 either
way, 2 on bad usage.
"""
import socket
import sys

# --- protobuf wire format, by hand ----------------------------------------


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


def field_varint(num, v):
    return varint(num << 3 | 0) + varint(v) if v else b""


def field_bytes(num, b):
    if isinstance(b, str):
        b = b.encode()
    return varint(num << 3 | 2) + varint(len(b)) + b if b else b""


def field_msg(num, b):
    # an embedded message is sent even when empty
    return varint(num << 3 | 2) + varint(len(b)) + b


def read_varint(b, i):
    v = shift = 0
    while True:
        c = b[i]
        i += 1
        v |= (c & 0x7F) << shift
        shift += 7
        if not c & 0x80:
            return v, i


def fields(b):
    """[(number, wire type, value)] of a message (value: int or bytes)."""
    out, i = [], 0
    while i < len(b):
        key, i = read_varint(b, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = read_varint(b, i)
        elif wt == 2:
            n, i = read_varint(b, i)
            v = bytes(b[i:i + n])
            i += n
        elif wt == 1:
            v = int.from_bytes(b[i:i + 8], "little")
            i += 8
        elif wt == 5:
            v = int.from_bytes(b[i:i + 4], "little")
            i += 4
        else:
            raise ValueError("wire type %d" % wt)
        out.append((num, wt, v))
    return out


def int64(v):
    return v - (1 << 64) if v >= 1 << 63 else v


def typed_message(type_name, value):
    # v2ray.core.common.serial.TypedMessage { string type = 1; bytes value = 2; }
    return field_bytes(1, type_name) + field_bytes(2, value)


def vmess_account(uuid, alter_id):
    # v2ray.core.proxy.vmess.Account { string id = 1; uint32 alter_id = 2;
    #   SecurityConfig security_settings = 3 { SecurityType type = 1 }; ... }
    return field_bytes(1, uuid) + field_varint(2, alter_id) + field_msg(3, field_varint(1, 2))


def add_user_op(email, uuid, level, alter_id, account_type):
    # AddUserOperation { User user = 1; }
    # User { uint32 level = 1; string email = 2; TypedMessage account = 3; }
    user = (field_varint(1, level) + field_bytes(2, email) +
            field_msg(3, typed_message(account_type, vmess_account(uuid, alter_id))))
    return field_msg(1, user)


def alter_inbound(tag, op_type, op_value):
    # AlterInboundRequest { string tag = 1; TypedMessage operation = 2; }
    return field_bytes(1, tag) + field_msg(2, typed_message(op_type, op_value))


STATS = "/v2ray.core.app.stats.command.StatsService/"
HANDLER = "/v2ray.core.app.proxyman.command.HandlerService/"
OPS = "v2ray.core.app.proxyman.command."
VMESS = "v2ray.core.proxy.vmess.Account"
SYS_FIELDS = {1: "NumGoroutine", 2: "NumGC", 3: "Alloc", 4: "TotalAlloc", 5: "Sys",
              6: "Mallocs", 7: "Frees", 8: "LiveObjects", 9: "PauseTotalNs", 10: "Uptime"}

# --- calls ----------------------------------------------------------------


def call(addr, path, req):
    import grpc
    with grpc.insecure_channel(addr) as ch:
        fn = ch.unary_unary(path, request_serializer=None, response_deserializer=None)
        try:
            return 0, fn(req, timeout=5), ""
        except grpc.RpcError as e:
            return e.code().value[0], None, e.details() or ""


def stat_of(b):
    name, value = "", 0
    for num, wt, v in fields(b):
        if num == 1 and wt == 2:
            name = v.decode()
        elif num == 2 and wt == 0:
            value = int64(v)
    return name, value


def raw(addr, path, data):
    """One stream by hand (python3-h2): what the server answers."""
    import h2.config
    import h2.connection
    import h2.events
    host, port = addr.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=5)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, [(":method", "POST"), (":scheme", "http"), (":path", path),
                            (":authority", addr), ("content-type", "application/grpc"),
                            ("te", "trailers")])
    # as much DATA as the windows let through, the rest as they open
    pending = data
    ended = False
    s.sendall(conn.data_to_send())
    status, http, got = None, None, []
    while True:
        while pending and conn.local_flow_control_window(sid) > 0:
            n = min(len(pending), conn.local_flow_control_window(sid),
                    conn.max_outbound_frame_size)
            conn.send_data(sid, pending[:n])
            pending = pending[n:]
        if not pending and not ended:
            conn.end_stream(sid)
            ended = True
        out = conn.data_to_send()
        if out:
            try:
                s.sendall(out)
            except OSError:
                pass
        try:
            b = s.recv(65536)
        except socket.timeout:
            return "TIMEOUT"
        except OSError:
            b = b""
        if not b:
            return "CLOSED"
        for ev in conn.receive_data(b):
            if isinstance(ev, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
                hd = {k.decode() if isinstance(k, bytes) else k:
                      v.decode() if isinstance(v, bytes) else v for k, v in ev.headers}
                if ":status" in hd:
                    http = hd[":status"]
                if "grpc-status" in hd:
                    status = "STATUS %s %s" % (hd["grpc-status"], hd.get("grpc-message", ""))
            elif isinstance(ev, h2.events.DataReceived):
                got.append(ev.data)
                conn.acknowledge_received_data(ev.flow_controlled_length, sid)
            elif isinstance(ev, h2.events.StreamEnded):
                s.close()
                return status or ("HTTP %s" % http)
            elif isinstance(ev, h2.events.StreamReset):
                s.close()
                return status or ("RESET %d" % ev.error_code)
            elif isinstance(ev, h2.events.ConnectionTerminated):
                s.close()
                return status or ("CLOSED GOAWAY %d" % ev.error_code)


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    addr, cmd, args = argv[1], argv[2], argv[3:]
    if cmd == "raw":
        pad = bytes(int(args[2])) if len(args) > 2 else b""
        print(raw(addr, args[0], bytes.fromhex(args[1]) + pad))
        return 0
    if cmd == "many":
        import grpc
        n, ok = int(args[0]), 0
        with grpc.insecure_channel(addr) as ch:
            fn = ch.unary_unary(STATS + "QueryStats", request_serializer=None,
                                response_deserializer=None)
            futs = [fn.future(field_bytes(1, "traffic"), timeout=10) for _ in range(n)]
            for f in futs:
                try:
                    if any(num == 1 for num, _, _ in fields(f.result())):
                        ok += 1
                except grpc.RpcError as e:
                    print("ERR %d %s" % (e.code().value[0], e.details()))
                    return 0
        print("OK %d" % ok)
        return 0
    if cmd == "add":
        tag, uuid, email = args[0], args[1], args[2]
        level = int(args[3]) if len(args) > 3 else 0
        alter = int(args[4]) if len(args) > 4 else 0
        acct = args[5] if len(args) > 5 else VMESS
        path, req = HANDLER + "AlterInbound", alter_inbound(
            tag, OPS + "AddUserOperation", add_user_op(email, uuid, level, alter, acct))
    elif cmd == "remove":
        path, req = HANDLER + "AlterInbound", alter_inbound(
            args[0], OPS + "RemoveUserOperation", field_bytes(1, args[1]))
    elif cmd == "op":
        path, req = HANDLER + "AlterInbound", alter_inbound(args[0], args[1],
                                                           bytes.fromhex(args[2]))
    elif cmd == "get":
        path = STATS + "GetStats"
        req = field_bytes(1, args[0]) + field_varint(2, 1 if args[1:] == ["reset"] else 0)
    elif cmd == "query":
        path = STATS + "QueryStats"
        req = field_bytes(1, args[0]) + field_varint(2, 1 if args[1:] == ["reset"] else 0)
    elif cmd == "sys":
        path, req = STATS + "GetSysStats", b""
    elif cmd == "call":
        path, req = args[0], bytes.fromhex(args[1])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    code, resp, msg = call(addr, path, req)
    if code != 0:
        print("ERR %d %s" % (code, msg))
    elif cmd == "get":
        st = [v for n, wt, v in fields(resp) if n == 1 and wt == 2]
        print("OK %d %s" % (stat_of(st[0])[1] if st else 0, stat_of(st[0])[0] if st else ""))
    elif cmd == "query":
        pairs = [stat_of(v) for n, wt, v in fields(resp) if n == 1 and wt == 2]
        print("OK " + " ".join("%s=%d" % p for p in pairs))
    elif cmd == "sys":
        print("OK " + " ".join("%s=%d" % (SYS_FIELDS.get(n, str(n)), v)
                               for n, wt, v in fields(resp) if wt == 0))
    else:
        print("OK " + resp.hex())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
