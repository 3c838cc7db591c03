#!/usr/bin/python3
"""Writes a client+server config pair over a transport for ../shared/bench (the harness the
targets are judged with: `bench.py SYSTEM.toml ...`, split pinning), for luaray and v2ray 4.34.

  tp_config.py --system luaray|v2ray --transport ws|ws+tls|grpc|grpc+tls \
      --server-port P --client-port Q [--socks-port S] --out DIR

client: SOCKS5 on 127.0.0.1:Q (v2ray: its socks inbound) -> VMess aes-128-gcm over the transport
server: VMess inbound on 127.0.0.1:P over the transport -> direct / freedom
With TLS both servers present a self-signed P-256 certificate for bench.luaray.test made here
(DIR/cert.pem), and both clients verify it as their CA, as scripts/bench/bench.py's transport
phase does. v2ray 4.34 has no gRPC transport. luaray's binary: $LUARAY_BIN, else ./build/luaray
(the harness run from a checkout's top directory), written to DIR/luaray.path.
"""
import argparse
import json
import os
import subprocess
import sys

UUID = "b831381d-6324-4d53-ad4f-8cda48b30811"
NAME = "bench.luaray.test"
LAYERS = {"ws": ("ws", None), "ws+tls": ("ws", "http/1.1"), "grpc": ("grpc", None),
          "grpc+tls": ("grpc", "h2")}


def lua_str(s):
    return '"' + str(s).replace("\\", "\\\\").replace('"', '\\"') + '"'


def cert(out):
    c, k = os.path.join(out, "cert.pem"), os.path.join(out, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "7", "-subj", "/CN=" + NAME, "-addext", "subjectAltName=DNS:" + NAME,
                    "-keyout", k, "-out", c], check=True, capture_output=True, timeout=30)
    return c, k


def luaray(a, layer, alpn, out):
    exe = os.path.abspath(os.environ.get("LUARAY_BIN") or "build/luaray")
    if not os.access(exe, os.X_OK):
        sys.exit("tp_config.py: no executable luaray at %s (run from a checkout, or set LUARAY_BIN)" % exe)
    with open(os.path.join(out, "luaray.path"), "w") as f:
        f.write(exe + "\n")
    tp = ('transport = { type = "ws", path = "/ray" }' if layer == "ws"
          else 'transport = { type = "grpc", service_name = "bench" }')
    stls = ctls = ""
    if alpn:
        c, k = cert(out)
        stls = ", tls = { cert = %s, key = %s, alpn = { %s } }" % (lua_str(c), lua_str(k), lua_str(alpn))
        ctls = ", tls = { server_name = %s, ca = %s, alpn = { %s } }" % (lua_str(NAME), lua_str(c), lua_str(alpn))
    log = 'luaray.log { level = "error", access = false }\n'
    server = (log + 'luaray.user { id = %s, email = "bench@luaray.test" }\n' % lua_str(UUID) +
              'luaray.inbound "vmess-in" { type = "vmess", listen = "127.0.0.1:%d", allow_private = true%s, %s }\n'
              % (a.server_port, stls, tp) +
              'luaray.outbound "direct" { type = "direct" }\nluaray.route { default = "direct" }\n')
    client = (log + 'luaray.inbound "socks-in" { type = "socks", listen = "127.0.0.1:%d" }\n' % a.client_port +
              'luaray.outbound "upstream" { type = "vmess", server = "127.0.0.1:%d", id = %s, '
              'security = "aes-128-gcm"%s, %s }\n' % (a.server_port, lua_str(UUID), ctls, tp) +
              'luaray.route { default = "upstream" }\n')
    return {"server.lua": server, "client.lua": client}


def v2ray(a, layer, alpn, out):
    if layer != "ws":
        sys.exit("tp_config.py: v2ray 4.34 has no %s transport" % layer)
    sst = {"network": "ws", "wsSettings": {"path": "/ray"}}
    cst = dict(sst)
    if alpn:
        c, k = cert(out)
        sst = dict(sst, security="tls", tlsSettings={"alpn": [alpn], "certificates": [
            {"certificateFile": c, "keyFile": k}]})
        cst = dict(cst, security="tls", tlsSettings={"serverName": NAME, "alpn": [alpn], "disableSystemRoot": True,
                                                     "certificates": [{"usage": "verify", "certificateFile": c}]})
    log = {"loglevel": "none", "access": "none"}
    server = {"log": log,
              "inbounds": [{"listen": "127.0.0.1", "port": a.server_port, "protocol": "vmess",
                            "settings": {"clients": [{"id": UUID, "alterId": 0}]}, "streamSettings": sst}],
              "outbounds": [{"protocol": "freedom", "settings": {}}]}
    client = {"log": log,
              "inbounds": [{"listen": "127.0.0.1", "port": a.client_port, "protocol": "socks",
                            "settings": {"auth": "noauth", "udp": False}}],
              "outbounds": [{"protocol": "vmess", "settings": {"vnext": [{
                  "address": "127.0.0.1", "port": a.server_port,
                  "users": [{"id": UUID, "alterId": 0, "security": "aes-128-gcm"}]}]},
                  "streamSettings": cst}]}
    return {"server.json": json.dumps(server, indent=1), "client.json": json.dumps(client, indent=1)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--system", required=True, choices=("luaray", "v2ray"))
    ap.add_argument("--transport", required=True, choices=sorted(LAYERS))
    ap.add_argument("--server-port", type=int, required=True)
    ap.add_argument("--client-port", type=int, required=True)
    ap.add_argument("--socks-port", type=int, default=0, help="unused")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    layer, alpn = LAYERS[a.transport]
    files = (luaray if a.system == "luaray" else v2ray)(a, layer, alpn, a.out)
    for name, text in files.items():
        with open(os.path.join(a.out, name), "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
