#!/usr/bin/env python3
"""A mock V2board / Xboard panel: the "UniProxy" node API, written from its
description (what XrayR and V2bX speak), for spec/e2e/panel_spec.lua.

  uniproxy_panel.py --port P --dir DIR --token T --node-id N
                    [--server-port S] [--pull-interval 1] [--push-interval 1]

Every request needs ?node_type=vmess&node_id=N&token=T (else 403).

  GET  /api/v1/server/UniProxy/config  {server_port, network, networkSettings, tls,
                                        base_config {push_interval, pull_interval}}
  GET  /api/v1/server/UniProxy/user    {"users": [{id, uuid, speed_limit, device_limit}]}
                                       read from DIR/users.json at each request
  POST /api/v1/server/UniProxy/push    {"<id>": [upload, download], ...}
  POST /api/v1/server/UniProxy/alive   {"<id>": ["ip", ...], ...}

config and user carry an ETag (the SHA-1 of the body, quoted, as Xboard
makes it); a request whose If-None-Match holds it gets 304 and no body.
push and alive answer {"data": true} and append their body, one JSON line
each, to DIR/push.jsonl and DIR/alive.jsonl; every request appends
"METHOD PATH STATUS" to DIR/requests.log.
"""
import argparse
import hashlib
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs, urlsplit

PREFIX = "/api/v1/server/UniProxy/"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--node-id", required=True)
    ap.add_argument("--server-port", type=int, default=10086)
    ap.add_argument("--pull-interval", type=int, default=1)
    ap.add_argument("--push-interval", type=int, default=1)
    o = ap.parse_args()

    def append(name, line):
        with open(os.path.join(o.dir, name), "a") as f:
            f.write(line + "\n")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):
            pass

        def reply(self, status, body=None, etag=None):
            data = b"" if body is None else json.dumps(body).encode()
            self.send_response(status)
            if etag:
                self.send_header("ETag", etag)
            if body is not None:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Connection", "close")
            self.end_headers()
            if data:
                self.wfile.write(data)
            self.close_connection = True
            append("requests.log", "%s %s %d" % (self.command, urlsplit(self.path).path, status))

        def node_ok(self):
            q = parse_qs(urlsplit(self.path).query)
            return (q.get("token") == [o.token] and q.get("node_id") == [o.node_id]
                    and q.get("node_type") == ["vmess"])

        def with_etag(self, body):
            tag = '"%s"' % hashlib.sha1(json.dumps(body).encode()).hexdigest()
            if tag in (self.headers.get("If-None-Match") or ""):
                return self.reply(304)
            return self.reply(200, body, tag)

        def do_GET(self):
            path = urlsplit(self.path).path
            if not path.startswith(PREFIX):
                return self.reply(404, {"message": "not found"})
            if not self.node_ok():
                return self.reply(403, {"message": "token or node is wrong"})
            what = path[len(PREFIX):]
            if what == "config":
                return self.with_etag({
                    "server_port": o.server_port, "network": "tcp", "networkSettings": None,
                    "tls": 0,
                    "base_config": {"push_interval": o.push_interval,
                                    "pull_interval": o.pull_interval}})
            if what == "user":
                try:
                    with open(os.path.join(o.dir, "users.json")) as f:
                        users = json.load(f)
                except (OSError, ValueError):
                    users = []
                return self.with_etag({"users": users})
            return self.reply(404, {"message": "not found"})

        def do_POST(self):
            path = urlsplit(self.path).path
            n = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(n) if n else b""
            if not path.startswith(PREFIX):
                return self.reply(404, {"message": "not found"})
            if not self.node_ok():
                return self.reply(403, {"message": "token or node is wrong"})
            what = path[len(PREFIX):]
            if what not in ("push", "alive"):
                return self.reply(404, {"message": "not found"})
            try:
                body = json.loads(raw.decode() or "null")
            except ValueError:
                return self.reply(400, {"message": "bad JSON"})
            if not isinstance(body, dict):
                return self.reply(400, {"message": "an object expected"})
            append(what + ".jsonl", json.dumps(body, sort_keys=True))
            return self.reply(200, {"data": True})

    HTTPServer.allow_reuse_address = True
    srv = HTTPServer(("127.0.0.1", o.port), Handler)
    print("uniproxy_panel: pid %d, port %d" % (os.getpid(), o.port), flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    sys.exit(0)


if __name__ == "__main__":
    main()
