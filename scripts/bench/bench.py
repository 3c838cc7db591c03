#!/usr/bin/env python3
"""luaray side-by-side bench (design.md section 4); started by scripts/bench/run.

Chain, everything on 127.0.0.1:
    build/bench/load -> client proxy (SOCKS5 in -> VMess out | ss-local)
                     -> server proxy (VMess in -> direct/freedom | ss-server)
                     -> build/bench/sink (bulk sink that checks every byte, echo)

Systems, one after another: luaray, v2ray 4.34 (/usr/bin/v2ray), shadowsocks-libev
(ss-local/ss-server). Results: build/bench/results.md, results.json, chart.png;
process logs and generated configs under build/bench/logs/.

Every process started here is recorded by PID, in its own process group, with
PR_SET_PDEATHSIG=SIGKILL, and stopped by that PID (SIGTERM to its group, SIGKILL
after a grace) when its measurement ends, and again at exit, whatever happened.
Python standard library only.
"""
import argparse
import ctypes
import datetime
import json
import re
import os
import platform
import resource
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("LURAY_BUILD") or os.path.join(ROOT, "build")
OUT = os.path.join(BUILD, "bench")
LOGS = os.path.join(OUT, "logs")
LOAD = os.path.join(OUT, "load")
SINK = os.path.join(OUT, "sink")
LURAY = os.path.join(BUILD, "luaray")
V2RAY = os.environ.get("LURAY_V2RAY") or "/usr/bin/v2ray"
SS_SERVER = shutil.which("ss-server") or "/usr/bin/ss-server"
SS_LOCAL = shutil.which("ss-local") or "/usr/bin/ss-local"
PIDFILE = os.path.join(OUT, "pids")

GiB = 1 << 30
MiB = 1 << 20
CLK_TCK = os.sysconf("SC_CLK_TCK")
HOST = "127.0.0.1"

SYSTEMS = ["luaray", "v2ray", "ss-libev"]
VMESS_SECURITIES = ["aes-128-gcm", "chacha20-poly1305", "none", "aes-128-cfb"]
SS_METHODS = {"aes-128-gcm": "aes-128-gcm", "chacha20-poly1305": "chacha20-ietf-poly1305"}

PROFILES = {
    # reps: repetitions of every measurement; seconds: window of one
    # connection-rate run; idle: connection counts held for the RSS figure
    "full": dict(reps=3, bulk_bytes=GiB, seq_secs=3.0, conc_secs=3.0, idle=[1000, 5000],
                 users=10000, warm_bulk=64 * MiB, tp_idle=1000),
    "quick": dict(reps=1, bulk_bytes=256 * MiB, seq_secs=1.0, conc_secs=1.0, idle=[1000],
                  users=10000, warm_bulk=16 * MiB, tp_idle=1000),
}
CONCURRENCY = 50
PAYLOAD = 64
CLUSTER_REDIS_PORT = 0   # run_cluster's redis-server
# The transport chains (issue "Transports"): name -> (layer, ALPN inside TLS; None: no TLS, as
# a server behind nginx or a CDN sees it).  v2ray 4.34 has ws and tls but no gRPC, so the grpc
# chains are luaray's alone.
TRANSPORTS = {"ws": ("ws", None), "ws+tls": ("ws", "http/1.1"), "grpc": ("grpc", None),
              "grpc+tls": ("grpc", "h2")}
TRANSPORT_SYSTEMS = {"ws": ["luaray", "v2ray"], "ws+tls": ["luaray", "v2ray"], "grpc": ["luaray"],
                     "grpc+tls": ["luaray"]}
CERT_NAME = "bench.luaray.test"
_CERT = []


def bench_cert():
    """A self-signed P-256 certificate for CERT_NAME (made once per run, in the logs folder):
    both systems' servers present it and both clients verify it as their CA."""
    if not _CERT:
        cert, key = os.path.join(LOGS, "bench-cert.pem"), os.path.join(LOGS, "bench-key.pem")
        r = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                            "ec_paramgen_curve:prime256v1", "-nodes", "-days", "7", "-subj",
                            "/CN=" + CERT_NAME, "-addext", "subjectAltName=DNS:" + CERT_NAME,
                            "-keyout", key, "-out", cert], capture_output=True, timeout=30)
        if r.returncode != 0:
            raise BenchError("openssl req: %s" % r.stderr.decode(errors="replace").strip())
        _CERT.extend([cert, key])
    return _CERT[0], _CERT[1]
# A connection that has not completed by then counts as failed (and its slot starts a new one).
# v2ray 4.34's server now and then takes a fresh AEAD request for a replay and never answers it
# (see the note in the report), so this bounds what one such stall costs a rate run.
CONN_TIMEOUT = 2.0
USERS_CONN_TIMEOUT = 5.0      # 10,000 users: v2ray's p99 alone is over 0.5 s


class BenchError(Exception):
    pass


class Stop(BaseException):
    """Raised from a signal handler: unwinds to the cleanup."""


def log(msg):
    sys.stderr.write("bench: %s\n" % msg)
    sys.stderr.flush()


# ---------------------------------------------------------------------------
# Processes

_libc = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1


def _child_setup():
    # runs in the child between fork and exec: die with the bench
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() == 1:
        os._exit(126)


class Proc:
    def __init__(self, name, popen, logpath):
        self.name, self.p, self.pid, self.log = name, popen, popen.pid, logpath

    def alive(self):
        return self.p.poll() is None

    def tail(self, n=15):
        try:
            with open(self.log, "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(["---- %s (pid %d) %s" % (self.name, self.pid, self.log)] + lines[-n:])


class Procs:
    def __init__(self):
        self.live = []
        self.counter = {}

    def _record(self):
        try:
            with open(PIDFILE, "w") as f:
                for p in self.live:
                    f.write("%d %s\n" % (p.pid, p.name))
        except OSError:
            pass

    def logpath(self, name):
        n = self.counter.get(name, 0) + 1
        self.counter[name] = n
        return os.path.join(LOGS, "%s%s.log" % (name, "" if n == 1 else "-%d" % n))

    def spawn(self, name, argv, stdout=None, stdin=subprocess.DEVNULL, env=None):
        path = self.logpath(name)
        logf = open(path, "wb")
        e = dict(os.environ)
        e.pop("LD_PRELOAD", None)
        if env:
            e.update(env)
        p = subprocess.Popen(argv, stdin=stdin, stdout=stdout if stdout else logf,
                             stderr=logf, env=e, start_new_session=True,
                             preexec_fn=_child_setup, close_fds=True)
        logf.close()
        proc = Proc(name, p, path)
        self.live.append(proc)
        self._record()
        return proc

    def stop(self, proc, grace=2.0):
        if proc not in self.live:
            return
        if proc.alive():
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.p.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                try:
                    proc.p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    log("%s (pid %d) survived SIGKILL" % (proc.name, proc.pid))
        # anything left in its group (the leader is reaped, the group id is not reused
        # while members remain)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        for stream in (proc.p.stdin, proc.p.stdout):
            if stream:
                try:
                    stream.close()
                except OSError:
                    pass
        self.live.remove(proc)
        self._record()

    def stop_all(self):
        for proc in list(reversed(self.live)):
            self.stop(proc, grace=1.0)


PROCS = Procs()


# ---------------------------------------------------------------------------
# /proc

def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        st = f.read()
    fields = st[st.rindex(")") + 2:].split()
    # fields[0] is field 3 (state): utime is field 14, stime 15
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise BenchError("no VmRSS for pid %d" % pid)


def busy_seconds():
    """CPU seconds the whole machine spent in user and system mode (irq/softirq/steal excluded)."""
    with open("/proc/stat") as f:
        parts = f.readline().split()
    return (int(parts[1]) + int(parts[2]) + int(parts[3])) / CLK_TCK


class Foreign:
    """Measures the CPU that processes other than the bench's used meanwhile: the machine may be
    shared (a build, a test run), and that makes figures noisy. `cores` = such CPU seconds per
    second of wall time."""

    def __init__(self, pids):
        self.pids = pids

    def _ours(self):
        ru_self = resource.getrusage(resource.RUSAGE_SELF)
        ru_ch = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = ru_self.ru_utime + ru_self.ru_stime + ru_ch.ru_utime + ru_ch.ru_stime
        for p in self.pids:
            try:
                t += cpu_seconds(p)
            except (OSError, ValueError):
                pass
        return t

    def __enter__(self):
        self.t0, self.busy0, self.ours0 = time.monotonic(), busy_seconds(), self._ours()
        return self

    def __exit__(self, *exc):
        dt = time.monotonic() - self.t0
        other = (busy_seconds() - self.busy0) - (self._ours() - self.ours0)
        self.other, self.dt = other, dt
        self.cores = max(0.0, other / dt) if dt > 0 else 0.0
        return False


def listening(port):
    hexport = ":%04X" % port
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if parts[1].endswith(hexport) and parts[3] == "0A":
                        return True
        except OSError:
            pass
    return False


_given = set()


def free_port():
    for _ in range(100):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind((HOST, 0))
        port = s.getsockname()[1]
        s.close()
        if port not in _given:
            _given.add(port)
            return port
    raise BenchError("no free port")


def wait_listen(proc, ports, timeout=10.0):
    """Waits until every port is in LISTEN state (read from /proc/net/tcp, so no probe
    connection reaches the proxy), failing early if the process exits."""
    deadline = time.monotonic() + timeout
    for port in ports:
        while not listening(port):
            if not proc.alive():
                raise BenchError("%s exited (code %s) before port %d listened\n%s"
                                 % (proc.name, proc.p.returncode, port, proc.tail()))
            if time.monotonic() > deadline:
                raise BenchError("%s: port %d not listening after %.0fs\n%s"
                                 % (proc.name, port, timeout, proc.tail()))
            time.sleep(0.02)


# ---------------------------------------------------------------------------
# The sink and the load generator

class Sink:
    def __init__(self):
        self.proc = PROCS.spawn("sink", [SINK, "--host", HOST, "--lifetime", "3600"],
                                stdout=subprocess.PIPE)
        r, _, _ = select.select([self.proc.p.stdout], [], [], 5)
        line = self.proc.p.stdout.readline().decode() if r else ""
        parts = line.split()
        if len(parts) != 3 or parts[0] != "ports":
            raise BenchError("sink did not start: %r\n%s" % (line, self.proc.tail()))
        self.bulk_port, self.echo_port = int(parts[1]), int(parts[2])


def run_load(args, timeout, name="load"):
    proc = PROCS.spawn(name, [LOAD] + args, stdout=subprocess.PIPE)
    try:
        out, _ = proc.p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        PROCS.stop(proc, grace=0.5)
        raise BenchError("load %s: still running after %.0fs" % (" ".join(args[:1]), timeout))
    PROCS.stop(proc)
    lines = [l for l in out.decode().splitlines() if l.startswith("{")]
    if not lines:
        raise BenchError("load %s: no result (exit %s)\n%s" % (args[0], proc.p.returncode, proc.tail()))
    return json.loads(lines[-1])


# ---------------------------------------------------------------------------
# Chains

def lua_str(s):
    return '"%s"' % s.replace("\\", "\\\\").replace('"', '\\"')


def make_uuids(n, seed):
    # deterministic, distinct, valid v4-shaped UUIDs (the same users every run)
    return [str(uuid.UUID(int=((seed << 64) | (i * 0x9E3779B97F4A7C15 % (1 << 64))) & ((1 << 128) - 1),
                          version=4)) for i in range(1, n + 1)]


# ---------------------------------------------------------------------------
# Routing data at size (the "100k rules" row): a geosite.dat with 100,000
# names and a geoip.dat with 20,000 blocks, written from the protobuf wire
# format (v2ray 4.34 app/router/config.proto: GeoSiteList / GeoIPList).
RULES_DOMAINS, RULES_CIDRS = 100000, 20000


def _pb_varint(n):
    out = bytearray()
    while True:
        b = n & 0x7f
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _pb_len(field, data):
    return _pb_varint(field << 3 | 2) + _pb_varint(len(data)) + data


def write_rules_data(d):
    """geosite.dat list "big" (Domain entries, every 10th Full) and geoip.dat
    "big" (/24s in 20.0.0.0/8 and up) under d; none matches the bench's
    destination (localhost, 127.0.0.1)."""
    os.makedirs(d, exist_ok=True)
    doms = bytearray(_pb_len(1, b"big"))
    for i in range(1, RULES_DOMAINS + 1):
        typ = 3 if i % 10 == 0 else 2
        name = b"n%d.s%d.example" % (i, i % 97)
        doms += _pb_len(2, _pb_varint(1 << 3) + _pb_varint(typ) + _pb_len(2, name))
    with open(os.path.join(d, "geosite.dat"), "wb") as f:
        f.write(_pb_len(1, bytes(doms)))
    ips = bytearray(_pb_len(1, b"big"))
    for i in range(1, RULES_CIDRS + 1):
        ip = bytes([20 + i // 65536, (i // 256) % 256, i % 256, 0])
        ips += _pb_len(2, _pb_len(1, ip) + _pb_varint(2 << 3) + _pb_varint(24))
    with open(os.path.join(d, "geoip.dat"), "wb") as f:
        f.write(_pb_len(1, bytes(ips)))


def rules_lines():
    return ['luaray.geodata { dir = %s }' % lua_str(os.path.join(LOGS, "rules-data")),
            'luaray.route { domain_strategy = "ip_if_non_match" }',
            'luaray.route { geosite = "big", to = "block" }',
            'luaray.route { geoip = "big", to = "block" }']


class Chain:
    """A client proxy and a server proxy for one system and one security."""

    def __init__(self, system, security, users=1, hook=None, probe=None, legacy=False,
                 transport="tcp"):
        self.system, self.security, self.transport = system, security, transport
        self.allow_legacy = legacy or security == "aes-128-cfb"
        self.client = self.server = None
        tag = "%s-%s%s%s%s" % (system, security, "-u%d" % users if users > 1 else "",
                               "-" + hook if hook else "",
                               "-" + transport.replace("+", "-") if transport != "tcp" else "")
        self.tag = tag + ("-legacy" if legacy else "")
        try:
            getattr(self, "_start_" + system.replace("-", "_"))(users, hook)
        except BaseException:
            self.stop()
            raise

    def _write(self, name, text):
        path = os.path.join(LOGS, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    # -- luaray
    def _start_luaray(self, users, hook):
        legacy = self.security == "aes-128-cfb"
        alter_id = 1 if legacy else 0
        ids = make_uuids(users, 1)
        sp, cp = free_port(), free_port()
        hook_srv = hook_cli = ""
        if hook in ("nil", "nil-srv"):
            hook_srv = 'luaray.on("route", function(ctx) return nil end)\n'
        if hook == "nil":
            hook_cli = 'luaray.on("route", function(ctx) return nil end)\n'
        if hook == "block-srv":
            hook_srv = 'luaray.on("route", function(ctx) return "block" end)\n'
        if hook == "block-cli":
            hook_cli = 'luaray.on("route", function(ctx) return "block" end)\n'
        if hook == "cluster":
            # the fleet (luaray.cluster) on the server, with the bench's redis-server
            hook_srv = ('luaray.cluster { redis = "%s:%d", node = "bench", timeout_ms = 50 }\n'
                        % (HOST, CLUSTER_REDIS_PORT))
        # info: the reload lines ("generation N serving") are what the
        # reload probe waits for; no access log
        srv = ['-- generated by scripts/bench/bench.py',
               'luaray.log { level = "info", access = false }']
        for i, u in enumerate(ids):
            srv.append('luaray.user { id = %s, alter_id = %d, email = "u%d@bench" }'
                       % (lua_str(u), alter_id, i + 1))
        srv.append('luaray.inbound "vmess-in" { type = "vmess", listen = "%s:%d", '
                   'allow_private = true, allow_legacy = %s%s }'
                   % (HOST, sp, "true" if self.allow_legacy else "false",
                      self._luaray_transport("server")))
        srv.append('luaray.outbound "direct" { type = "direct" }')
        srv.append('luaray.outbound "block" { type = "blackhole" }')
        if hook == "rules100k":
            srv.extend(rules_lines())
        srv.append('luaray.route { default = "direct" }')
        cli = ['-- generated by scripts/bench/bench.py',
               'luaray.log { level = "warn", access = false }',
               'luaray.inbound "socks-in" { type = "socks", listen = "%s:%d" }' % (HOST, cp),
               'luaray.outbound "upstream" { type = "vmess", server = "%s:%d", id = %s, '
               'alter_id = %d, security = %s%s }' % (HOST, sp, lua_str(ids[-1]), alter_id,
                                                     lua_str(self.security),
                                                     self._luaray_transport("client")),
               'luaray.outbound "block" { type = "blackhole" }',
               'luaray.route { default = "upstream" }']
        sfile = self._write(self.tag + "-server.lua", "\n".join(srv) + "\n" + hook_srv)
        self.server_file = sfile
        cfile = self._write(self.tag + "-client.lua", "\n".join(cli) + "\n" + hook_cli)
        t0 = time.monotonic()
        self.server = PROCS.spawn(self.tag + "-server", [LURAY, "-c", sfile])
        wait_listen(self.server, [sp], timeout=60)
        self.server_start_s = time.monotonic() - t0
        self.client = PROCS.spawn(self.tag + "-client", [LURAY, "-c", cfile])
        wait_listen(self.client, [cp])
        self.socks_port = cp

    def _luaray_transport(self, side):
        """The tls and transport keys (design.md 6) of the chain's transport, for a luaray
        inbound (server) or VMess outbound (client); "" for bare TCP."""
        if self.transport == "tcp":
            return ""
        layer, alpn = TRANSPORTS[self.transport]
        if layer == "ws":
            tp = 'transport = { type = "ws", path = "/ray" }'
        else:
            tp = 'transport = { type = "grpc", service_name = "bench" }'
        if alpn is None:
            return ", " + tp
        cert, key = bench_cert()
        if side == "server":
            tls = 'tls = { cert = %s, key = %s, alpn = { %s } }' % (lua_str(cert), lua_str(key),
                                                                   lua_str(alpn))
        else:
            tls = 'tls = { server_name = %s, ca = %s, alpn = { %s } }' % (
                lua_str(CERT_NAME), lua_str(cert), lua_str(alpn))
        return ", %s, %s" % (tls, tp)

    def _v2ray_stream(self, side):
        """v2ray 4.34's streamSettings for the chain's transport (it has ws and tls, not gRPC)."""
        if self.transport == "tcp":
            return None
        layer, alpn = TRANSPORTS[self.transport]
        if layer != "ws":
            raise BenchError("v2ray 4.34 has no %s transport" % layer)
        if alpn is None:
            return {"network": "ws", "wsSettings": {"path": "/ray"}}
        cert, key = bench_cert()
        if side == "server":
            tls = {"alpn": [alpn], "certificates": [{"certificateFile": cert, "keyFile": key}]}
        else:
            # the client verifies the bench CA, as luaray's does
            tls = {"serverName": CERT_NAME, "alpn": [alpn], "disableSystemRoot": True,
                   "certificates": [{"usage": "verify", "certificateFile": cert}]}
        return {"network": "ws", "security": "tls", "tlsSettings": tls,
                "wsSettings": {"path": "/ray"}}

    # -- v2ray
    def _start_v2ray(self, users, hook):
        if self.security not in ("aes-128-gcm", "chacha20-poly1305", "none"):
            raise BenchError("v2ray 4.34's JSON config cannot select %s" % self.security)
        ids = make_uuids(users, 1)
        sp, cp = free_port(), free_port()
        logcfg = {"loglevel": "warning", "access": "none"}
        server = {
            "log": logcfg,
            "inbounds": [{"tag": "vmess-in", "listen": HOST, "port": sp, "protocol": "vmess",
                          "settings": {"clients": [
                              {"id": u, "alterId": 0, "level": 0, "email": "u%d@bench" % (i + 1)}
                              for i, u in enumerate(ids)]}}],
            "outbounds": [{"tag": "direct", "protocol": "freedom", "settings": {}}],
        }
        client = {
            "log": logcfg,
            "inbounds": [{"tag": "socks-in", "listen": HOST, "port": cp, "protocol": "socks",
                          "settings": {"auth": "noauth", "udp": False, "ip": HOST}}],
            "outbounds": [{"tag": "vmess-out", "protocol": "vmess", "settings": {"vnext": [{
                "address": HOST, "port": sp,
                "users": [{"id": ids[-1], "alterId": 0, "security": self.security, "level": 0}]}]}}],
        }
        if self.transport != "tcp":
            server["inbounds"][0]["streamSettings"] = self._v2ray_stream("server")
            client["outbounds"][0]["streamSettings"] = self._v2ray_stream("client")
        sfile = self._write(self.tag + "-server.json", json.dumps(server))
        cfile = self._write(self.tag + "-client.json", json.dumps(client))
        self.server = PROCS.spawn(self.tag + "-server", [V2RAY, "-config", sfile])
        wait_listen(self.server, [sp], timeout=120)
        self.client = PROCS.spawn(self.tag + "-client", [V2RAY, "-config", cfile])
        wait_listen(self.client, [cp])
        self.socks_port = cp

    # -- shadowsocks-libev
    def _start_ss_libev(self, users, hook):
        if self.transport != "tcp":
            raise BenchError("no %s chain for ss-libev" % self.transport)
        method = SS_METHODS.get(self.security)
        if not method:
            raise BenchError("ss-libev has no %s" % self.security)
        sp, cp = free_port(), free_port()
        pw = "luaray-bench-password"
        common = ["-k", pw, "-m", method, "-t", "300", "--no-delay"]
        self.server = PROCS.spawn(self.tag + "-server",
                                  [SS_SERVER, "-s", HOST, "-p", str(sp)] + common)
        wait_listen(self.server, [sp])
        self.client = PROCS.spawn(self.tag + "-client",
                                  [SS_LOCAL, "-s", HOST, "-p", str(sp), "-b", HOST,
                                   "-l", str(cp)] + common)
        wait_listen(self.client, [cp])
        self.socks_port = cp

    def check_alive(self):
        for p in (self.server, self.client):
            if p and not p.alive():
                raise BenchError("%s died (exit %s) during the measurement\n%s"
                                 % (p.name, p.p.returncode, p.tail()))

    def stop(self):
        for p in (self.client, self.server):
            if p:
                PROCS.stop(p)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False


# ---------------------------------------------------------------------------
# Measurements

def summarize(samples):
    vals = [s for s in samples if s is not None]
    if not vals:
        return None
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals),
            "n": len(vals), "samples": vals}


class Bench:
    def __init__(self, prof, systems, quick):
        self.prof, self.systems, self.quick = prof, systems, quick
        self.sink = None
        self.res = {"meta": {}, "direct": {}, "bulk": {}, "cpu": {}, "conn": {}, "idle": {},
                    "hook": {}, "users": {}, "cluster": {}, "errors": []}
        self.notes = []
        self.foreign = []
        self.quiet_budget = 30.0 if quick else 90.0   # seconds of waiting for a quiet machine, in all
        self.quiet_waited = 0.0

    def err(self, where, e):
        text = "%s: %s" % (where, e)
        log("ERROR " + text)
        self.res["errors"].append(text)

    def target(self, port):
        return "%s:%d" % (HOST, port)

    # -- one bulk transfer through a chain (or direct)
    def bulk_once(self, chain, nbytes):
        socks = "none" if chain is None else "%s:%d" % (HOST, chain.socks_port)
        pids = [] if chain is None else [chain.client.pid, chain.server.pid]
        before = [cpu_seconds(p) for p in pids]
        sink_before = cpu_seconds(self.sink.proc.pid)
        self.wait_quiet()
        with Foreign(pids + [self.sink.proc.pid]) as fg:
            r = run_load(["bulk", "--socks", socks, "--target", self.target(self.sink.bulk_port),
                          "--bytes", str(nbytes), "--timeout", "15"],
                         timeout=max(60, nbytes / (20 * MiB)))
        self.foreign.append((fg.other, fg.dt))
        if chain is not None:
            chain.check_alive()
        if not r.get("ok"):
            raise BenchError("bulk transfer failed: %s" % json.dumps(r))
        after = [cpu_seconds(p) for p in pids]
        gib = nbytes / GiB
        out = {"MBps": r["MBps"], "seconds": r["seconds"], "foreign_cores": fg.cores,
               "sink_cpu_s_per_gib": (cpu_seconds(self.sink.proc.pid) - sink_before) / gib}
        if chain is not None:
            out["client_cpu_s_per_gib"] = (after[0] - before[0]) / gib
            out["server_cpu_s_per_gib"] = (after[1] - before[1]) / gib
        return out

    def conn_once(self, chain, conc, secs, port=None, timeout=CONN_TIMEOUT, name=None):
        socks = "none" if chain is None else "%s:%d" % (HOST, chain.socks_port)
        pids = [] if chain is None else [chain.client.pid, chain.server.pid]
        if secs >= 1:
            self.wait_quiet()
        before = [cpu_seconds(p) for p in pids]
        with Foreign(pids + [self.sink.proc.pid]) as fg:
            r = run_load(["conn", "--socks", socks, "--target", self.target(port or self.sink.echo_port),
                          "--concurrency", str(conc), "--duration", str(secs), "--size", str(PAYLOAD),
                          "--timeout", str(timeout)] + (["--name", name] if name else []),
                         timeout=secs + timeout + 15)
        r["foreign_cores"] = fg.cores
        if chain is not None and r.get("ok"):
            after = [cpu_seconds(p) for p in pids]
            # CPU per completed connection; 1000 / that = what one core could do
            r["client_cpu_ms_per_conn"] = (after[0] - before[0]) * 1e3 / r["ok"]
            r["server_cpu_ms_per_conn"] = (after[1] - before[1]) * 1e3 / r["ok"]
        self.foreign.append((fg.other, fg.dt))
        if chain is not None:
            chain.check_alive()
        return r

    def settle(self, secs=0.7):
        time.sleep(secs)

    def wait_quiet(self):
        """Before a timed run: waits (bounded, per run and in total) while other processes keep
        the CPUs busy, so a build or a test run elsewhere on the machine disturbs less."""
        t_end = time.monotonic() + 10
        while self.quiet_budget > 0:
            with Foreign([p.pid for p in PROCS.live]) as fg:
                time.sleep(0.3)
            if fg.cores < 0.2:
                return
            if time.monotonic() > t_end:
                return
            self.quiet_waited += 0.3
            self.quiet_budget -= 0.3

    # -- direct: the tools' own ceiling
    def run_direct(self):
        log("direct (no proxy): the load generator's and sink's own ceiling")
        try:
            b = [self.bulk_once(None, self.prof["bulk_bytes"])["MBps"] for _ in range(self.prof["reps"])]
            self.res["direct"]["bulk_MBps"] = summarize(b)
            c = [self.conn_once(None, CONCURRENCY, self.prof["conc_secs"])["rate"]
                 for _ in range(self.prof["reps"])]
            self.res["direct"]["conc_rate"] = summarize(c)
        except BenchError as e:
            self.err("direct", e)

    # -- bulk throughput and CPU per GiB, per security
    def run_bulk(self, system):
        secs = VMESS_SECURITIES if system != "ss-libev" else list(SS_METHODS)
        self.res["bulk"].setdefault(system, {})
        self.res["cpu"].setdefault(system, {})
        for sec in secs:
            if system == "v2ray" and sec == "aes-128-cfb":
                self.res["bulk"][system][sec] = {"na": "v2ray 4.34's JSON config cannot select "
                                                       "aes-128-cfb"}
                continue
            label = sec if system != "ss-libev" else SS_METHODS[sec]
            log("%s bulk %s: %d x %d MiB" % (system, label, self.prof["reps"],
                                             self.prof["bulk_bytes"] // MiB))
            try:
                with Chain(system, sec) as ch:
                    self.bulk_once(ch, self.prof["warm_bulk"])
                    runs = [self.bulk_once(ch, self.prof["bulk_bytes"]) for _ in range(self.prof["reps"])]
                self.res["bulk"][system][sec] = summarize([r["MBps"] for r in runs])
                self.res["bulk"][system][sec]["method"] = label
                self.res["cpu"][system][sec] = {
                    "server": summarize([r["server_cpu_s_per_gib"] for r in runs]),
                    "client": summarize([r["client_cpu_s_per_gib"] for r in runs]),
                    "sink": summarize([r["sink_cpu_s_per_gib"] for r in runs]),
                }
                m = self.res["bulk"][system][sec]["median"]
                log("  %.0f MB/s, server %.2f / client %.2f CPU s per GiB" % (
                    m, self.res["cpu"][system][sec]["server"]["median"],
                    self.res["cpu"][system][sec]["client"]["median"]))
            except BenchError as e:
                self.res["bulk"][system][sec] = {"error": str(e).splitlines()[0]}
                self.err("%s bulk %s" % (system, sec), e)

    # -- connection rate and latency
    def run_conn(self, system):
        log("%s connections: sequential and %d concurrent, %d x %.0fs each" % (
            system, CONCURRENCY, self.prof["reps"], self.prof["conc_secs"]))
        out = self.res["conn"].setdefault(system, {})
        try:
            with Chain(system, "aes-128-gcm") as ch:
                self.conn_once(ch, 10, 0.5)       # warm-up
                self.settle()
                seq, conc = [], []
                for _ in range(self.prof["reps"]):
                    seq.append(self.conn_once(ch, 1, self.prof["seq_secs"]))
                    self.settle()
                    conc.append(self.conn_once(ch, CONCURRENCY, self.prof["conc_secs"]))
                    self.settle()
            self._conn_store(out, seq, conc)
            log("  sequential %.0f/s, %d-concurrent %.0f/s, p50 %.2f ms, p99 %.2f ms" % (
                out["seq_rate"]["median"], CONCURRENCY, out["conc_rate"]["median"],
                out["conc_p50_ms"]["median"], out["conc_p99_ms"]["median"]))
        except BenchError as e:
            out["error"] = str(e).splitlines()[0]
            self.err("%s conn" % system, e)

    def _conn_store(self, out, seq, conc):
        out["seq_rate"] = summarize([r["rate"] for r in seq])
        out["seq_p50_ms"] = summarize([r["p50_ms"] for r in seq])
        out["conc_rate"] = summarize([r["rate"] for r in conc])
        out["conc_p50_ms"] = summarize([r["p50_ms"] for r in conc])
        out["conc_p99_ms"] = summarize([r["p99_ms"] for r in conc])
        out["server_cpu_ms_per_conn"] = summarize([r.get("server_cpu_ms_per_conn") for r in conc])
        out["client_cpu_ms_per_conn"] = summarize([r.get("client_cpu_ms_per_conn") for r in conc])
        out["errors"] = sum(r["errors"] for r in seq + conc)
        out["started"] = sum(r["started"] for r in seq + conc)
        out["err_kinds"] = {}
        for r in seq + conc:
            for k, v in r.get("err_kinds", {}).items():
                out["err_kinds"][k] = out["err_kinds"].get(k, 0) + v
        out["raw"] = {"seq": seq, "conc": conc}
        if out["errors"]:
            self.notes.append("%s: %d failed connections in the connection-rate runs (%s)" % (
                self.current, out["errors"], out["err_kinds"]))

    # -- RSS per idle connection
    def run_idle(self, system):
        out = self.res["idle"].setdefault(system, {})
        for count in self.prof["idle"]:
            log("%s idle RSS: %d x %d connections (a fresh chain each time)" % (
                system, self.prof["reps"], count))
            srv, cli, info = [], [], []
            try:
                for _ in range(self.prof["reps"]):
                    with Chain(system, "aes-128-gcm") as ch:
                        s, c, i = self.idle_once(ch, count)
                    srv.append(s), cli.append(c), info.append(i)
                out[str(count)] = {"server_kib": summarize(srv), "client_kib": summarize(cli),
                                   "raw": info}
                log("  server %.2f KiB, client %.2f KiB per connection" % (
                    out[str(count)]["server_kib"]["median"], out[str(count)]["client_kib"]["median"]))
            except BenchError as e:
                out[str(count)] = {"error": str(e).splitlines()[0]}
                self.err("%s idle %d" % (system, count), e)

    def idle_once(self, ch, count):
        self.conn_once(ch, 1, 0.2)                # the first connections: lazily built state
        time.sleep(0.5)
        base = (rss_kib(ch.server.pid), rss_kib(ch.client.pid))
        proc = PROCS.spawn("load-idle", [LOAD, "idle", "--socks", "%s:%d" % (HOST, ch.socks_port),
                                         "--target", self.target(self.sink.echo_port),
                                         "--count", str(count), "--concurrency", "100",
                                         "--hold", "120", "--timeout", "10"],
                           stdout=subprocess.PIPE, stdin=subprocess.PIPE)
        try:
            r, _, _ = select.select([proc.p.stdout], [], [], 150)
            line = proc.p.stdout.readline().decode() if r else ""
            if not line.startswith("{"):
                raise BenchError("idle load: no result\n%s" % proc.tail())
            opened = json.loads(line)
            if opened["opened"] < count * 0.99:
                raise BenchError("only %d of %d idle connections opened: %s" % (
                    opened["opened"], count, json.dumps(opened)))
            if opened["opened"] < count:
                self.notes.append("%s: %d of %d idle connections failed to open (%s); RSS divided by "
                                  "the %d that did" % (ch.system, count - opened["opened"], count,
                                                       opened.get("err_kinds"), opened["opened"]))
            time.sleep(1.0)                       # let both proxies settle (Go's GC, lazy frees)
            held = (rss_kib(ch.server.pid), rss_kib(ch.client.pid))
            ch.check_alive()
            proc.p.stdin.close()
            r, _, _ = select.select([proc.p.stdout], [], [], 10)
            end = json.loads(proc.p.stdout.readline().decode() or "{}") if r else {}
        finally:
            PROCS.stop(proc)
        if end.get("still_open", opened["opened"]) < opened["opened"]:
            self.notes.append("%s: %d of %d idle connections were closed by the chain while held"
                              % (ch.system, opened["opened"] - end["still_open"], opened["opened"]))
        n = opened["opened"]
        s = (held[0] - base[0]) / n
        c = (held[1] - base[1]) / n
        return s, c, {"base_kib": base, "held_kib": held, "open": opened, "end": end}

    # -- VMess inside TLS + WebSocket / gRPC (aes-128-gcm inside)
    def run_transport(self, system):
        tp_all = self.res.setdefault("tp", {})
        for tp in TRANSPORTS:
            if system not in TRANSPORT_SYSTEMS[tp]:
                continue
            out = tp_all.setdefault(tp, {}).setdefault(system, {})
            log("%s over %s: bulk %d x %d MiB, connections %d x %.0fs at %d concurrent, "
                "idle RSS %d x %d" % (system, tp, self.prof["reps"], self.prof["bulk_bytes"] // MiB,
                                      self.prof["reps"], self.prof["conc_secs"], CONCURRENCY,
                                      self.prof["reps"], self.prof["tp_idle"]))
            try:
                with Chain(system, "aes-128-gcm", transport=tp) as ch:
                    self.bulk_once(ch, self.prof["warm_bulk"])
                    runs = [self.bulk_once(ch, self.prof["bulk_bytes"]) for _ in range(self.prof["reps"])]
                    out["bulk"] = summarize([r["MBps"] for r in runs])
                    out["cpu_server"] = summarize([r["server_cpu_s_per_gib"] for r in runs])
                    out["cpu_client"] = summarize([r["client_cpu_s_per_gib"] for r in runs])
                    self.conn_once(ch, 10, 0.5)       # warm-up
                    self.settle()
                    conc = []
                    for _ in range(self.prof["reps"]):
                        conc.append(self.conn_once(ch, CONCURRENCY, self.prof["conc_secs"]))
                        self.settle()
                out["conc_rate"] = summarize([r["rate"] for r in conc])
                out["conc_p99_ms"] = summarize([r["p99_ms"] for r in conc])
                out["server_cpu_ms_per_conn"] = summarize([r.get("server_cpu_ms_per_conn") for r in conc])
                out["errors"] = sum(r["errors"] for r in conc)
                out["started"] = sum(r["started"] for r in conc)
                if out["errors"]:
                    self.notes.append("%s over %s: %d of %d connections failed in the rate runs" % (
                        system, tp, out["errors"], out["started"]))
                srv, cli = [], []
                for _ in range(self.prof["reps"]):
                    with Chain(system, "aes-128-gcm", transport=tp) as ch:
                        sk, ck, _ = self.idle_once(ch, self.prof["tp_idle"])
                    srv.append(sk), cli.append(ck)
                out["idle_server_kib"], out["idle_client_kib"] = summarize(srv), summarize(cli)
                log("  %.0f MB/s, server %.2f CPU s per GiB; %.0f conn/s (server %.3f ms each); "
                    "idle server %.2f / client %.2f KiB" % (
                        med(out["bulk"]), med(out["cpu_server"]), med(out["conc_rate"]),
                        med(out["server_cpu_ms_per_conn"]) or 0, med(out["idle_server_kib"]),
                        med(out["idle_client_kib"])))
            except BenchError as e:
                out["error"] = str(e).splitlines()[0]
                self.err("%s %s" % (system, tp), e)

    # -- the cost of a Lua route hook (luaray only)
    def run_hook(self):
        out = self.res["hook"]
        log("luaray route hook: probing whether the daemon runs route hooks")
        sides = {}
        for side, hook in (("server", "block-srv"), ("client", "block-cli")):
            try:
                with Chain("luaray", "aes-128-gcm", hook=hook) as ch:
                    r = self.conn_once(ch, 1, 1.0, timeout=2)
                sides[side] = {"ok": r["ok"], "errors": r["errors"]}
            except BenchError as e:
                sides[side] = {"refused": str(e).splitlines()[0]}
        out["probe"] = sides
        refused = [s for s, v in sides.items() if "refused" in v]
        ignored = [s for s, v in sides.items() if v.get("ok", 0) > 0 and v.get("errors", 1) == 0]
        blocked = [s for s, v in sides.items() if v.get("ok", 1) == 0 and v.get("errors", 0) > 0]
        if refused:
            out["status"] = "config refused"
            out["detail"] = "a config with a route hook did not start (%s): %s" % (
                ", ".join(refused), sides[refused[0]]["refused"])
        elif ignored:
            out["status"] = "hooks not run"
            out["detail"] = ("a config with luaray.on(\"route\", ...) is accepted, but the daemon "
                             "does not run route hooks: with a hook returning a blackhole outbound "
                             "on the %s, %s connections still went through (probe)"
                             % (" and the ".join(ignored),
                                " / ".join("%s %d ok, %d failed" % (s, sides[s]["ok"], sides[s]["errors"])
                                           for s in ignored)))
        elif len(blocked) == len(sides):
            out["status"] = "hooks run"
        else:
            out["status"] = "probe inconclusive"
            out["detail"] = "a route hook returning a blackhole outbound let some connections " \
                            "through and failed others: %s" % json.dumps(sides)
        log("  " + out.get("detail", out["status"]))
        if out["status"] != "hooks run":
            return
        reps = self.prof["reps"] if self.quick else max(self.prof["reps"], 5)
        log("luaray route hook: %d x (without, with) %d-concurrent" % (reps, CONCURRENCY))
        plain, hooked, cpu_plain, cpu_hooked = [], [], [], []
        try:
            for _ in range(reps):
                for hook, acc, cacc in ((None, plain, cpu_plain), ("nil", hooked, cpu_hooked)):
                    with Chain("luaray", "aes-128-gcm", hook=hook) as ch:
                        self.conn_once(ch, 10, 0.3)
                        self.settle(0.3)
                        r = self.conn_once(ch, CONCURRENCY, self.prof["conc_secs"])
                        acc.append(r["rate"])
                        if "server_cpu_ms_per_conn" in r:
                            cacc.append(r["server_cpu_ms_per_conn"] + r["client_cpu_ms_per_conn"])
                    self.settle(0.3)
            out["without"] = summarize(plain)
            out["with"] = summarize(hooked)
            out["ratio"] = out["with"]["median"] / out["without"]["median"]
            # the same cost seen as CPU per connection (client + server): steadier than the rate
            # on a shared machine
            out["cpu_ms_without"] = summarize(cpu_plain)
            out["cpu_ms_with"] = summarize(cpu_hooked)
            if cpu_plain and cpu_hooked:
                out["cpu_ratio"] = out["cpu_ms_with"]["median"] / out["cpu_ms_without"]["median"]
            log("  with/without = %.3f (conn/s), %.3f (CPU per connection)" % (
                out["ratio"], out.get("cpu_ratio", float("nan"))))
        except BenchError as e:
            out["error"] = str(e).splitlines()[0]
            self.err("luaray hook", e)

    # -- 100,000 domains + 20,000 CIDRs in the server's rules (luaray only)
    def run_rules(self):
        out = self.res.setdefault("rules", {})
        write_rules_data(os.path.join(LOGS, "rules-data"))
        reps = self.prof["reps"] if self.quick else max(self.prof["reps"], 3)
        log("luaray 100k rules: %d x (without, with) %d-concurrent to \"localhost\"" % (reps, CONCURRENCY))
        acc = {k: {"start": [], "rss": [], "rate": [], "p50": [], "p99": [], "cpu": []}
               for k in ("without", "with")}
        try:
            for _ in range(reps):
                for hook, key in ((None, "without"), ("rules100k", "with")):
                    with Chain("luaray", "aes-128-gcm", hook=hook) as ch:
                        a = acc[key]
                        a["start"].append(ch.server_start_s)
                        self.conn_once(ch, 10, 0.3, name="localhost")
                        self.settle(0.3)
                        r = self.conn_once(ch, CONCURRENCY, self.prof["conc_secs"], name="localhost")
                        if not r.get("ok"):
                            raise BenchError("no connection completed: %s" % json.dumps(r))
                        a["rate"].append(r["rate"])
                        a["p50"].append(r["p50_ms"])
                        a["p99"].append(r["p99_ms"])
                        if "server_cpu_ms_per_conn" in r:
                            a["cpu"].append(r["server_cpu_ms_per_conn"])
                        a["rss"].append(rss_kib(ch.server.pid))
                    self.settle(0.3)
            for key, a in acc.items():
                out[key] = {k: summarize(v) for k, v in a.items() if v}
            w, wo = out["with"], out["without"]
            out["p50_ratio"] = w["p50"]["median"] / wo["p50"]["median"]
            out["rate_ratio"] = w["rate"]["median"] / wo["rate"]["median"]
            out["load_s"] = w["start"]["median"] - wo["start"]["median"]
            out["rss_mib"] = (w["rss"]["median"] - wo["rss"]["median"]) / 1024.0
            log("  rules: +%.2f s start, +%.1f MiB RSS, p50 latency x%.3f, conn/s x%.3f" % (
                out["load_s"], out["rss_mib"], out["p50_ratio"], out["rate_ratio"]))
        except BenchError as e:
            out["error"] = str(e).splitlines()[0]
            self.err("luaray rules", e)
    # -- the fleet: luaray.cluster on (a local redis-server) against off
    def run_cluster(self):
        global CLUSTER_REDIS_PORT
        out = self.res["cluster"]
        if not shutil.which("redis-server"):
            out["error"] = "redis-server not installed (scripts/deps.sh installs it)"
            log("luaray cluster: " + out["error"])
            return
        CLUSTER_REDIS_PORT = free_port()
        rdir = os.path.join(LOGS, "redis")
        os.makedirs(rdir, exist_ok=True)
        redis = PROCS.spawn("redis-server", ["redis-server", "--bind", HOST, "--port",
                                             str(CLUSTER_REDIS_PORT), "--save", "",
                                             "--appendonly", "no", "--dir", rdir])

        def commands():
            r = subprocess.run(["redis-cli", "-h", HOST, "-p", str(CLUSTER_REDIS_PORT), "INFO",
                                "stats"], capture_output=True, text=True, timeout=10)
            m = re.search(r"total_commands_processed:(\d+)", r.stdout)
            return int(m.group(1)) if m else None

        reps = self.prof["reps"] if self.quick else max(self.prof["reps"], 3)
        log("luaray cluster: %d x (off, on) %d-concurrent conn/s and bulk" % (reps, CONCURRENCY))
        rate = {None: [], "cluster": []}
        bulk = {None: [], "cluster": []}
        per_conn = []
        try:
            wait_listen(redis, [CLUSTER_REDIS_PORT])
            for _ in range(reps):
                for hook in (None, "cluster"):
                    with Chain("luaray", "aes-128-gcm", hook=hook) as ch:
                        self.conn_once(ch, 10, 0.3)
                        self.settle(1.2)   # connected to redis, first sync done
                        c0 = commands() if hook else None
                        r = self.conn_once(ch, CONCURRENCY, self.prof["conc_secs"])
                        c1 = commands() if hook else None
                        rate[hook].append(r["rate"])
                        if hook and c0 is not None and c1 is not None and r.get("ok"):
                            # the once-a-second sync is in it too (a few commands)
                            per_conn.append((c1 - c0) / r["ok"])
                        bulk[hook].append(self.bulk_once(ch, self.prof["bulk_bytes"])["MBps"])
                    self.settle(0.3)
            out["off"] = summarize(rate[None])
            out["on"] = summarize(rate["cluster"])
            out["ratio"] = out["on"]["median"] / out["off"]["median"]
            out["bulk_off"] = summarize(bulk[None])
            out["bulk_on"] = summarize(bulk["cluster"])
            out["bulk_ratio"] = out["bulk_on"]["median"] / out["bulk_off"]["median"]
            if per_conn:
                out["redis_commands_per_conn"] = summarize(per_conn)
            log("  conn/s on/off = %.3f, bulk on/off = %.3f, redis commands per connection %s" % (
                out["ratio"], out["bulk_ratio"],
                "%.2f" % out["redis_commands_per_conn"]["median"] if per_conn else "?"))
        except BenchError as e:
            out["error"] = str(e).splitlines()[0]
            self.err("luaray cluster", e)
        finally:
            PROCS.stop(redis)

    # -- SIGHUP with many users: the loop must never stall
    def reload_probe(self, ch, secs_after=1.0, reloads=2):
        """Through the chain to the sink's echo: 32-byte round trips on one open
        stream (the longest is the server loop's longest stall while it was in
        flight) and a new connection with one echo every 4 round trips (the
        longest is how long a new client waited), from each SIGHUP of the server
        until its log says the new generation serves, and secs_after more. The
        second reload adds a user (a new table, built aside); the first keeps
        them (the table is taken over)."""
        def socks(timeout=10):
            s = socket.create_connection((HOST, ch.socks_port), timeout=timeout)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.sendall(b"\x05\x01\x00")
            if s.recv(2) != b"\x05\x00":
                raise BenchError("reload probe: SOCKS5 greeting refused")
            s.sendall(b"\x05\x01\x00\x01" + socket.inet_aton(HOST) + self.sink.echo_port.to_bytes(2, "big"))
            r = b""
            while len(r) < 10:
                d = s.recv(10 - len(r))
                if not d:
                    raise BenchError("reload probe: SOCKS5 reply cut short")
                r += d
            if r[1] != 0:
                raise BenchError("reload probe: SOCKS5 reply %d" % r[1])
            return s

        def rt(s):
            t = time.monotonic()
            s.sendall(b"x" * 32)
            got = 0
            while got < 32:
                d = s.recv(32 - got)
                if not d:
                    raise BenchError("reload probe: echo closed")
                got += len(d)
            return time.monotonic() - t

        def log_text():
            try:
                with open(ch.server.log, "rb") as f:
                    return f.read().decode(errors="replace")
            except OSError:
                return ""

        a = socks()
        for _ in range(20):
            rt(a)
        gap = new = 0.0
        took = []
        n = 0
        for k in range(reloads):
            if k == 1:
                with open(ch.server_file, "a") as f:
                    f.write('luaray.user { id = %s, email = "extra@bench" }\n'
                            % lua_str(make_uuids(1, 99)[0]))
            mark = "reload: generation %d serving" % (k + 2)
            os.kill(ch.server.pid, signal.SIGHUP)
            t0 = time.monotonic()
            served = None
            while time.monotonic() - t0 < 60:
                n += 1
                gap = max(gap, rt(a))
                if n % 4 == 0:
                    t = time.monotonic()
                    s = socks()
                    rt(s)
                    s.close()
                    new = max(new, time.monotonic() - t)
                if served is None and mark in log_text():
                    served = time.monotonic()
                if served is not None and time.monotonic() > served + secs_after:
                    break
                time.sleep(0.002)
            if served is None:
                raise BenchError("reload probe: the server never said %r\n%s" % (mark, ch.server.tail()))
            took.append(served - t0)
        a.close()
        return {"reload_seconds": took, "max_echo_gap_ms": gap * 1e3,
                "max_new_conn_ms": new * 1e3, "round_trips": n,
                "rss_after_kib": rss_kib(ch.server.pid)}

    def run_reload(self):
        n = self.prof["users"]
        out = self.res.setdefault("reload", {})
        for legacy in (False, True):
            key = "legacy" if legacy else "aead"
            log("luaray with %d users (%s): start-up, RSS, two SIGHUPs under an echo probe" % (
                n, "allow_legacy" if legacy else "AEAD only"))
            try:
                t = time.monotonic()
                with Chain("luaray", "aes-128-gcm", users=n, legacy=legacy) as ch:
                    r = {"start_seconds": time.monotonic() - t,
                         "server_rss_kib": rss_kib(ch.server.pid)}
                    r.update(self.reload_probe(ch))
                out[key] = r
                log("  ready in %.2f s, RSS %.0f MiB; reloads %s s; longest echo gap %.1f ms, "
                    "longest new connection %.1f ms; RSS after %.0f MiB" % (
                        r["start_seconds"], r["server_rss_kib"] / 1024,
                        "/".join("%.2f" % x for x in r["reload_seconds"]), r["max_echo_gap_ms"],
                        r["max_new_conn_ms"], r["rss_after_kib"] / 1024))
            except BenchError as e:
                out[key] = {"error": str(e).splitlines()[0]}
                self.err("luaray reload %s" % key, e)

    # -- AEAD auth against many users
    def run_users(self, system):
        n = self.prof["users"]
        log("%s with %d users, client on the last one: %d x %.0fs at %d concurrent" % (
            system, n, self.prof["reps"], self.prof["conc_secs"], CONCURRENCY))
        out = self.res["users"].setdefault(system, {"users": n})
        try:
            t = time.monotonic()
            with Chain(system, "aes-128-gcm", users=n) as ch:
                out["start_seconds"] = time.monotonic() - t
                out["server_rss_kib"] = rss_kib(ch.server.pid)
                self.conn_once(ch, 10, 0.5, timeout=USERS_CONN_TIMEOUT)
                self.settle()
                runs = []
                for _ in range(self.prof["reps"]):
                    runs.append(self.conn_once(ch, CONCURRENCY, self.prof["conc_secs"],
                                               timeout=USERS_CONN_TIMEOUT))
                    self.settle()
            out["conc_rate"] = summarize([r["rate"] for r in runs])
            out["conc_p99_ms"] = summarize([r["p99_ms"] for r in runs])
            out["server_cpu_ms_per_conn"] = summarize([r.get("server_cpu_ms_per_conn") for r in runs])
            sc = med(out["server_cpu_ms_per_conn"])
            out["server_conn_per_core_s"] = 1e3 / sc if sc else None
            out["errors"] = sum(r["errors"] for r in runs)
            out["started"] = sum(r["started"] for r in runs)
            out["err_kinds"] = {}
            for r in runs:
                for k, v in r.get("err_kinds", {}).items():
                    out["err_kinds"][k] = out["err_kinds"].get(k, 0) + v
            if out["errors"]:
                self.notes.append("%s: %d failed connections in the %d-user runs (%s)" % (
                    system, out["errors"], n, out["err_kinds"]))
            log("  %.0f conn/s, p99 %.2f ms (server started in %.1fs)" % (
                out["conc_rate"]["median"], out["conc_p99_ms"]["median"], out["start_seconds"]))
        except BenchError as e:
            out["error"] = str(e).splitlines()[0]
            self.err("%s users" % system, e)

    def run(self, phases):
        self.sink = Sink()
        if "direct" in phases:
            self.run_direct()
        for system in self.systems:
            self.current = system
            if "bulk" in phases:
                self.run_bulk(system)
            if "conn" in phases:
                self.run_conn(system)
            if "idle" in phases:
                self.run_idle(system)
            if "transport" in phases and system in ("luaray", "v2ray"):
                self.run_transport(system)
            if "users" in phases and system in ("luaray", "v2ray"):
                self.run_users(system)
            if "reload" in phases and system == "luaray":
                self.run_reload()
            if "hook" in phases and system == "luaray":
                self.run_hook()
            if "rules" in phases and system == "luaray":
                self.run_rules()
            if "cluster" in phases and system == "luaray":
                self.run_cluster()
        PROCS.stop(self.sink.proc)


# ---------------------------------------------------------------------------
# Report

def med(d):
    return d["median"] if isinstance(d, dict) and "median" in d else None


def cell(d, fmt="%.0f", unit=""):
    if d is None:
        return "—"
    if isinstance(d, dict):
        if "na" in d:
            return "n/a"
        if "error" in d:
            return "error"
        if "median" not in d:
            return "—"
        if d["n"] > 1:
            return (fmt + " [" + fmt + "–" + fmt + "]") % (d["median"], d["min"], d["max"]) + unit
        return (fmt % d["median"]) + unit
    return (fmt % d) + unit


def ratio(a, b, fmt="%.2fx"):
    a, b = med(a) if isinstance(a, dict) else a, med(b) if isinstance(b, dict) else b
    if a is None or b is None or b == 0:
        return "n/a"
    return fmt % (a / b)


def verdict(ok):
    if ok is None:
        return "n/a"
    return "yes" if ok else "**no**"


def report(res, prof_name, prof):
    L = []
    m = res["meta"]
    L.append("# luaray bench (%s profile)" % prof_name)
    L.append("")
    L.append("%s; %s; %d CPUs (%s); kernel %s." % (m["date"], m["commit"], m["cpus"], m["cpu_model"],
                                                  m["kernel"]))
    L.append("%s; %s; %s." % (m["luaray"], m["v2ray"], m["ss"]))
    fc = m.get("foreign_cores")
    if fc:
        L.append("CPU used by other processes during the timed runs: %.2f cores on average, up to %.2f "
                 "in one run%s." % (fc["overall"], fc["max"],
                                    " (**the machine was busy: figures are noisy**)"
                                    if fc["overall"] > 0.1 or fc["max"] > 0.3 else ""))
        if fc.get("waited_for_quiet_s"):
            L.append("The bench waited %.0f s in all for other processes to leave the CPUs before timed runs."
                     % fc["waited_for_quiet_s"])
    L.append("")
    L.append("Chain on 127.0.0.1: load (C, SOCKS5) -> client proxy -> server proxy -> sink/echo (C). "
             "Every figure is the median of %d run(s), [min–max] when there are several. "
             "ss-libev runs with --no-delay (TCP_NODELAY, as luaray and Go's sockets do)."
             % prof["reps"])
    L.append("Ratios are luaray's figure divided by the peer's: above 1 is better for throughput and "
             "connection rates, below 1 is better for CPU, latency and memory.")
    L.append("")
    d = res["direct"]
    if d:
        L.append("Reference, load -> sink with no proxy: %s MB/s bulk, %s conn/s at %d concurrent "
                 "(the measuring tools' own ceiling)." % (cell(d.get("bulk_MBps")),
                                                           cell(d.get("conc_rate")), CONCURRENCY))
        L.append("")

    bulk, cpu = res["bulk"], res["cpu"]
    L.append("## Bulk throughput, one stream, upload (MB/s, %d MiB per run)" % (prof["bulk_bytes"] // MiB))
    L.append("")
    L.append("| security | luaray | v2ray | ss-libev | luaray/v2ray | luaray/ss-libev |")
    L.append("|---|---|---|---|---|---|")
    for sec in VMESS_SECURITIES:
        lr = bulk.get("luaray", {}).get(sec)
        v2 = bulk.get("v2ray", {}).get(sec)
        ss = bulk.get("ss-libev", {}).get(sec)
        ss_cell = ("%s (%s)" % (cell(ss), SS_METHODS[sec])) if ss else "n/a"
        L.append("| %s | %s | %s | %s | %s | %s |" % (sec, cell(lr), cell(v2), ss_cell,
                                                      ratio(lr, v2), ratio(lr, ss)))
    L.append("")
    L.append("## CPU seconds per GiB relayed (server / client process)")
    L.append("")
    L.append("| security | luaray server | luaray client | v2ray server | v2ray client | "
             "ss-libev server | ss-libev client | server luaray/v2ray | server luaray/ss-libev |")
    L.append("|---|---|---|---|---|---|---|---|---|")
    for sec in VMESS_SECURITIES:
        def g(sys_, side):
            c = cpu.get(sys_, {}).get(sec)
            if c is None:
                b = bulk.get(sys_, {}).get(sec)
                return {"na": 1} if (b is None or "na" in b) else {"error": 1}
            return c[side]
        L.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            sec, cell(g("luaray", "server"), "%.2f"), cell(g("luaray", "client"), "%.2f"),
            cell(g("v2ray", "server"), "%.2f"), cell(g("v2ray", "client"), "%.2f"),
            cell(g("ss-libev", "server"), "%.2f"), cell(g("ss-libev", "client"), "%.2f"),
            ratio(g("luaray", "server"), g("v2ray", "server")),
            ratio(g("luaray", "server"), g("ss-libev", "server"))))
    L.append("")
    conn, users = res["conn"], res["users"]
    L.append("## Connections (aes-128-gcm; ss-libev aes-128-gcm), %d B up and %d B down each"
             % (PAYLOAD, PAYLOAD))
    L.append("")
    L.append("| what | luaray | v2ray | ss-libev | luaray/v2ray | luaray/ss-libev |")
    L.append("|---|---|---|---|---|---|")

    def crow(label, key, fmt, src=conn):
        lr, v2, ss = (src.get(s, {}).get(key) for s in SYSTEMS)
        L.append("| %s | %s | %s | %s | %s | %s |" % (label, cell(lr, fmt), cell(v2, fmt),
                                                      cell(ss, fmt), ratio(lr, v2), ratio(lr, ss)))
    crow("new conn/s, sequential", "seq_rate", "%.0f")
    crow("new conn/s, %d concurrent" % CONCURRENCY, "conc_rate", "%.0f")
    crow("p50 latency ms, %d concurrent" % CONCURRENCY, "conc_p50_ms", "%.2f")
    crow("p99 latency ms, %d concurrent" % CONCURRENCY, "conc_p99_ms", "%.2f")
    crow("new conn/s, %d concurrent, %d users (client = last)" % (CONCURRENCY, prof["users"]),
         "conc_rate", "%.0f", src=users)
    crow("p99 latency ms, %d users" % prof["users"], "conc_p99_ms", "%.2f", src=users)
    crow("server CPU ms per connection, %d concurrent" % CONCURRENCY, "server_cpu_ms_per_conn", "%.3f")
    crow("client CPU ms per connection, %d concurrent" % CONCURRENCY, "client_cpu_ms_per_conn", "%.3f")
    crow("server CPU ms per connection, %d users" % prof["users"], "server_cpu_ms_per_conn", "%.3f",
         src=users)

    def frow(label, src):
        cells = []
        for s_ in SYSTEMS:
            e = src.get(s_, {})
            cells.append("%d / %d" % (e["errors"], e["started"]) if "started" in e else "—")
        L.append("| %s | %s | %s | %s | | |" % (label, *cells))
    frow("failed / started connections, rate runs above", conn)
    frow("failed / started connections, %d-user runs" % prof["users"], users)
    L.append("")
    L.append("A connection fails when its echo has not come back %.0f s (%d-user runs: %.0f s) after "
             "connect(); the slot then starts a new one, so failures cost rate." % (
                 CONN_TIMEOUT, prof["users"], USERS_CONN_TIMEOUT))
    v2k = dict(conn.get("v2ray", {}).get("err_kinds", {}))
    for k, v in users.get("v2ray", {}).get("err_kinds", {}).items():
        v2k[k] = v2k.get(k, 0) + v
    if v2k.get("timeout-echo"):
        L.append("v2ray's failures are echoes that never came back: its VMess server rejects a small "
                 "share of fresh AEAD requests as \"invalid user > replayed request\" (logged at loglevel "
                 "info; apparently false positives of its probabilistic anti-replay filter: the "
                 "requests are fresh, and a luaray server given the same clients refuses none) and "
                 "drains them without an answer. A real client waits for its own timeout there too.")
    L.append("")
    for s in SYSTEMS:
        if s in users and "start_seconds" in users[s]:
            L.append("- %s server with %d users: ready in %.1f s, RSS %.0f MiB." % (
                s, prof["users"], users[s]["start_seconds"], users[s]["server_rss_kib"] / 1024))
    L.append("")
    rl = res.get("reload", {})
    if rl:
        L.append("## luaray with %d users: start-up and SIGHUP" % prof["users"])
        L.append("")
        L.append("Two SIGHUPs (the same users, then one more) while one stream echoes 32 bytes "
                 "again and again and a new connection echoes every 4 round trips.")
        L.append("")
        L.append("| | start-up s (<= 2) | RSS MiB (<= 64 AEAD only) | reloads s | longest echo gap ms "
                 "(<= 50) | longest new connection ms (<= 250) | RSS after MiB |")
        L.append("|---|---|---|---|---|---|---|")
        for key, label in (("aead", "AEAD only (default)"), ("legacy", "allow_legacy")):
            r = rl.get(key)
            if not r:
                continue
            if "error" in r:
                L.append("| %s | error: %s | | | | | |" % (label, r["error"]))
                continue
            L.append("| %s | %.2f | %.0f | %s | %.1f | %.1f | %.0f |" % (
                label, r["start_seconds"], r["server_rss_kib"] / 1024,
                " / ".join("%.2f" % x for x in r["reload_seconds"]), r["max_echo_gap_ms"],
                r["max_new_conn_ms"], r["rss_after_kib"] / 1024))
        L.append("")
    idle = res["idle"]
    L.append("## RSS per idle connection (KiB; VmRSS held minus baseline, / count)")
    L.append("")
    L.append("| connections held | side | luaray | v2ray | ss-libev | luaray/v2ray | luaray/ss-libev |")
    L.append("|---|---|---|---|---|---|---|")
    for count in prof["idle"]:
        for side in ("server", "client"):
            vals = []
            for s in SYSTEMS:
                e = idle.get(s, {}).get(str(count))
                vals.append(None if e is None else (e if "error" in e else e[side + "_kib"]))
            L.append("| %d | %s | %s | %s | %s | %s | %s |" % (
                count, side, cell(vals[0], "%.2f"), cell(vals[1], "%.2f"), cell(vals[2], "%.2f"),
                ratio(vals[0], vals[1]), ratio(vals[0], vals[2])))
    L.append("")
    tp = res.get("tp", {})
    if tp:
        L.append("## Transports: VMess (aes-128-gcm) inside WebSocket / gRPC, with and without TLS")
        L.append("")
        L.append("With TLS, both servers present one self-signed P-256 certificate; both clients "
                 "verify it against it as their CA. Without TLS (ws, grpc: h2c) is what a server "
                 "behind nginx or a CDN sees. v2ray 4.34 has no gRPC transport: the grpc chains are "
                 "luaray's alone. The tcp rows repeat the bare-TCP figures above.")
        L.append("")
        L.append("| transport | what | luaray | v2ray | luaray/v2ray |")
        L.append("|---|---|---|---|---|")
        for name in ["tcp"] + list(TRANSPORTS):
            if name == "tcp":
                e = {s_: {"bulk": bulk.get(s_, {}).get("aes-128-gcm"),
                          "cpu_server": (cpu.get(s_, {}).get("aes-128-gcm") or {}).get("server"),
                          "conc_rate": conn.get(s_, {}).get("conc_rate"),
                          "server_cpu_ms_per_conn": conn.get(s_, {}).get("server_cpu_ms_per_conn")}
                     for s_ in ("luaray", "v2ray")}
            else:
                e = tp.get(name)
                if not e:
                    continue
            rows = [("bulk MB/s", "bulk", "%.0f"), ("server CPU s per GiB", "cpu_server", "%.2f"),
                    ("new conn/s, %d concurrent" % CONCURRENCY, "conc_rate", "%.0f"),
                    ("server CPU ms per connection", "server_cpu_ms_per_conn", "%.3f")]
            if name != "tcp":
                rows += [("RSS KiB per idle connection, server (%d held)" % prof.get("tp_idle", 0),
                          "idle_server_kib", "%.2f"),
                         ("RSS KiB per idle connection, client", "idle_client_kib", "%.2f")]
            for label, key, fmt in rows:
                def val(s_):
                    x = e.get(s_)
                    if x is None:
                        return {"na": 1} if name.startswith("grpc") and s_ == "v2ray" else None
                    return {"error": 1} if "error" in x else x.get(key)
                lr, v2 = val("luaray"), val("v2ray")
                L.append("| %s | %s | %s | %s | %s |" % (name, label, cell(lr, fmt), cell(v2, fmt),
                                                         ratio(lr, v2)))
        L.append("")
    hook = res["hook"]
    L.append("## Lua route hook on every connection (luaray)")
    L.append("")
    if not hook:
        L.append("not measured")
    elif hook.get("status") != "hooks run":
        L.append("**n/a**: %s. No figure is reported." % hook.get("detail", hook.get("status")))
    elif "ratio" in hook:
        L.append("%d-concurrent conn/s without a hook %s, with `luaray.on(\"route\", function(ctx) "
                 "return nil end)` on client and server %s: ratio %.3f (cost %.1f%%)." % (
                     CONCURRENCY, cell(hook["without"]), cell(hook["with"]), hook["ratio"],
                     (1 - hook["ratio"]) * 100))
        if "cpu_ratio" in hook:
            L.append("")
            L.append("CPU per connection (client + server) without the hook %s ms, with it %s ms: "
                     "%+.1f%% (steadier than the rate when the machine is shared)." % (
                         cell(hook["cpu_ms_without"], "%.3f"), cell(hook["cpu_ms_with"], "%.3f"),
                         (hook["cpu_ratio"] - 1) * 100))
    else:
        L.append("error: %s" % hook.get("error"))
    L.append("")

    rules = res.get("rules") or {}
    L.append("## 100k rules (luaray): 100,000 domains + 20,000 CIDRs on the server")
    L.append("")
    if not rules:
        L.append("not measured")
    elif "error" in rules:
        L.append("error: %s" % rules["error"])
    else:
        L.append("geosite list of 100,000 names and geoip list of 20,000 blocks, domain_strategy "
                 "ip_if_non_match, %d-concurrent connections to \"localhost\" (matched by no rule: "
                 "every list is looked up)." % CONCURRENCY)
        L.append("")
        L.append("| | no rules | 100k rules | change |")
        L.append("|---|---|---|---|")
        w, wo = rules["with"], rules["without"]
        L.append("| server start to listening | %s s | %s s | %+.2f s |" % (
            cell(wo["start"], "%.2f"), cell(w["start"], "%.2f"), rules["load_s"]))
        L.append("| server RSS | %s KiB | %s KiB | %+.1f MiB |" % (
            cell(wo["rss"]), cell(w["rss"]), rules["rss_mib"]))
        L.append("| connection latency p50 | %s ms | %s ms | x%.3f |" % (
            cell(wo["p50"], "%.3f"), cell(w["p50"], "%.3f"), rules["p50_ratio"]))
        L.append("| connection latency p99 | %s ms | %s ms | |" % (
            cell(wo["p99"], "%.3f"), cell(w["p99"], "%.3f")))
        L.append("| conn/s | %s | %s | x%.3f |" % (cell(wo["rate"]), cell(w["rate"]), rules["rate_ratio"]))
        if "cpu" in w and "cpu" in wo:
            L.append("| server CPU per connection | %s ms | %s ms | |" % (
                cell(wo["cpu"], "%.3f"), cell(w["cpu"], "%.3f")))
        L.append("")
        L.append("Targets: load <= 2 s: %s; <= 64 MB: %s; <= 25%% added latency: %s." % (
            verdict(rules["load_s"] <= 2.0), verdict(rules["rss_mib"] <= 64.0),
            verdict(rules["p50_ratio"] <= 1.25)))
    cl = res.get("cluster") or {}
    L.append("## The fleet: luaray.cluster on against off (luaray server, local redis-server)")
    L.append("")
    if not cl:
        L.append("not measured")
    elif "ratio" in cl:
        L.append("%d-concurrent conn/s off %s, on %s: ratio %.3f (issue 15: >= 0.8). Bulk MB/s "
                 "off %s, on %s: ratio %.3f (issue 15: within 2%%). Redis commands per "
                 "connection: %s." % (
                     CONCURRENCY, cell(cl["off"]), cell(cl["on"]), cl["ratio"], cell(cl["bulk_off"]),
                     cell(cl["bulk_on"]), cl["bulk_ratio"],
                     cell(cl["redis_commands_per_conn"], "%.2f") if "redis_commands_per_conn" in cl
                     else "?"))
    else:
        L.append("error: %s" % cl.get("error"))
    L.append("")

    # targets (design.md section 4)
    L.append("## Targets (design.md section 4)")
    L.append("")
    L.append("| what | target | measured | met |")
    L.append("|---|---|---|---|")
    rs = []
    for sec in ("aes-128-gcm", "chacha20-poly1305", "none"):
        a, b = med(bulk.get("luaray", {}).get(sec)), med(bulk.get("v2ray", {}).get(sec))
        rs.append(None if a is None or b is None else a / b)
    ok = None if None in rs else all(r >= 1.6 for r in rs)
    L.append("| bulk, every security v2ray has | >= 1.6x v2ray | %s | %s |" % (
        ", ".join("n/a" if r is None else "%.2fx" % r for r in rs), verdict(ok)))
    rs = []
    for sec in ("aes-128-gcm", "chacha20-poly1305", "none"):
        a = med((cpu.get("luaray", {}).get(sec) or {}).get("server"))
        b = med((cpu.get("v2ray", {}).get(sec) or {}).get("server"))
        rs.append(None if a is None or b is None or b == 0 else a / b)
    ok = None if None in rs else all(r <= 0.4 for r in rs)
    L.append("| server CPU s per GiB | <= 0.4x v2ray | %s | %s |" % (
        ", ".join("n/a" if r is None else "%.2fx" % r for r in rs), verdict(ok)))
    a, b = med(conn.get("luaray", {}).get("conc_rate")), med(conn.get("ss-libev", {}).get("conc_rate"))
    L.append("| conn/s, %d concurrent | >= 1.0x ss-libev | %s | %s |" % (
        CONCURRENCY, ratio(a, b), verdict(None if a is None or b is None else a >= b)))
    a, b = med(conn.get("luaray", {}).get("conc_p99_ms")), med(conn.get("ss-libev", {}).get("conc_p99_ms"))
    L.append("| p99 latency, %d concurrent | <= ss-libev | %s vs %s ms | %s |" % (
        CONCURRENCY, cell(a, "%.2f"), cell(b, "%.2f"), verdict(None if a is None or b is None else a <= b)))
    big = str(max(prof["idle"]))
    e = idle.get("luaray", {}).get(big, {})
    a, c = med(e.get("server_kib")), med(e.get("client_kib"))
    L.append("| RSS per idle connection (%s held) | <= 8 KiB | server %s, client %s KiB | %s |" % (
        big, cell(a, "%.2f"), cell(c, "%.2f"),
        verdict(None if a is None or c is None else (a <= 8 and c <= 8))))
    if hook.get("status") == "hooks run" and "ratio" in hook:
        L.append("| Lua route hook | costs <= 10%% of conn/s | %.1f%% | %s |" % (
            (1 - hook["ratio"]) * 100, verdict(hook["ratio"] >= 0.9)))
    else:
        L.append("| Lua route hook | costs <= 10%% of conn/s | n/a (%s) | n/a |" % hook.get("status", "not run"))
    ws_lr, ws_v2 = tp.get("ws+tls", {}).get("luaray", {}), tp.get("ws+tls", {}).get("v2ray", {})
    for label, key, want, cmp_ in (("bulk over ws+tls", "bulk", ">= 1.5x v2ray ws+tls", lambda r: r >= 1.5),
                                   ("server CPU s per GiB over ws+tls", "cpu_server",
                                    "<= 0.6x v2ray ws+tls", lambda r: r <= 0.6),
                                   ("new conn/s over ws+tls", "conc_rate", ">= 2x v2ray ws+tls",
                                    lambda r: r >= 2.0)):
        a, b = med(ws_lr.get(key)), med(ws_v2.get(key))
        r = None if a is None or b is None or b == 0 else a / b
        L.append("| %s | %s | %s | %s |" % (label, want, "n/a" if r is None else "%.2fx" % r,
                                           verdict(None if r is None else cmp_(r))))
    a, c = med(ws_lr.get("idle_server_kib")), med(ws_lr.get("idle_client_kib"))
    L.append("| RSS per idle ws+tls connection (%d held) | <= 16 KiB | server %s, client %s KiB | %s |" % (
        prof.get("tp_idle", 0), cell(a, "%.2f"), cell(c, "%.2f"),
        verdict(None if a is None or c is None else (a <= 16 and c <= 16))))
    # the idle figure of bare TCP (<= 8 KiB) through the layers other than TLS
    for name in ("ws", "grpc"):
        e = tp.get(name, {}).get("luaray", {})
        a, c = med(e.get("idle_server_kib")), med(e.get("idle_client_kib"))
        L.append("| RSS per idle %s connection, no TLS (%d held) | <= 8 KiB | server %s, client %s KiB | %s |" % (
            name, prof.get("tp_idle", 0), cell(a, "%.2f"), cell(c, "%.2f"),
            verdict(None if a is None or c is None else (a <= 8 and c <= 8))))
    a = med(users.get("luaray", {}).get("conc_rate"))
    sc = med(users.get("luaray", {}).get("server_cpu_ms_per_conn"))
    core = 1e3 / sc if sc else None
    L.append("| AEAD auth, %d users | >= 2,000 conn/s on one core | %s conn/s through the chain; "
             "server CPU %s ms per connection = %s conn/s per server core | %s |" % (
                 prof["users"], cell(a), cell(sc, "%.3f"), cell(core), verdict(
                     None if core is None else core >= 2000)))
    L.append("")
    if res["errors"] or res.get("notes"):
        L.append("## Problems met during the run")
        L.append("")
        for e in res["errors"]:
            L.append("- error: " + e.replace("\n", " / "))
        for n in res.get("notes", []):
            L.append("- " + n)
        L.append("")
    return "\n".join(L) + "\n"


def chart(res, prof, path):
    gp = shutil.which("gnuplot")
    if not gp:
        log("gnuplot not found (scripts/bench-deps.sh installs gnuplot-nox): no chart")
        return False
    d = os.path.join(LOGS, "chart")
    os.makedirs(d, exist_ok=True)

    def v(x):
        m = med(x)
        return "NaN" if m is None else "%.6g" % m

    short = {"aes-128-gcm": "aes-gcm", "chacha20-poly1305": "chacha20", "none": "none",
             "aes-128-cfb": "aes-cfb"}
    with open(os.path.join(d, "bulk.dat"), "w") as f:
        f.write("security luaray v2ray ss-libev\n")
        for sec in VMESS_SECURITIES:
            f.write("%s %s %s %s\n" % (short[sec], *(v(res["bulk"].get(s, {}).get(sec)) for s in SYSTEMS)))
    for side in ("server", "client"):
        with open(os.path.join(d, "cpu-%s.dat" % side), "w") as f:
            f.write("security luaray v2ray ss-libev\n")
            for sec in VMESS_SECURITIES:
                f.write("%s %s %s %s\n" % (short[sec], *(v((res["cpu"].get(s, {}).get(sec) or {}).get(side))
                                                       for s in SYSTEMS)))
    with open(os.path.join(d, "conn.dat"), "w") as f:
        f.write("what luaray v2ray ss-libev\n")
        f.write("sequential %s %s %s\n" % tuple(v(res["conn"].get(s, {}).get("seq_rate")) for s in SYSTEMS))
        f.write("%d-concurrent %s %s %s\n" % ((CONCURRENCY,) + tuple(
            v(res["conn"].get(s, {}).get("conc_rate")) for s in SYSTEMS)))
        f.write("%dk-users %s %s %s\n" % ((prof["users"] // 1000,) + tuple(
            v(res["users"].get(s, {}).get("conc_rate")) for s in SYSTEMS)))
    with open(os.path.join(d, "lat.dat"), "w") as f:
        f.write("what luaray v2ray ss-libev\n")
        f.write("p50 %s %s %s\n" % tuple(v(res["conn"].get(s, {}).get("conc_p50_ms")) for s in SYSTEMS))
        f.write("p99 %s %s %s\n" % tuple(v(res["conn"].get(s, {}).get("conc_p99_ms")) for s in SYSTEMS))
    with open(os.path.join(d, "rss.dat"), "w") as f:
        f.write("what luaray v2ray ss-libev\n")
        for count in prof["idle"]:
            for side in ("server", "client"):
                f.write("%s-%d %s %s %s\n" % ((side, count) + tuple(
                    v(res["idle"].get(s, {}).get(str(count), {}).get(side + "_kib")) for s in SYSTEMS)))
    panels = [("bulk", "bulk, one stream (MB/s, higher is better)"),
              ("cpu-server", "server CPU s per GiB (lower is better)"),
              ("cpu-client", "client CPU s per GiB (lower is better)"),
              ("conn", "new connections/s (higher is better)"),
              ("lat", "latency at %d concurrent (ms, lower is better)" % CONCURRENCY),
              ("rss", "RSS per idle connection (KiB, lower is better)")]
    script = [
        'set terminal pngcairo size 1800,900 font "sans,10"',
        "set output '%s'" % path,
        'set datafile missing "NaN"',
        "set style data histograms",
        "set style histogram clustered gap 1",
        "set style fill solid 0.85 border -1",
        "set boxwidth 0.9", "set key top right", "set grid ytics", "set xtics nomirror",
        "set offsets 0, 0, graph 0.2, 0",   # headroom above the bars for the key
        'set multiplot layout 2,3 title "luaray vs v2ray 4.34 vs shadowsocks-libev 3.3.5 '
        '(loopback, %d CPUs; median of %d)"' % (os.cpu_count(), prof["reps"]),
    ]
    for name, title in panels:
        dat = os.path.join(d, name + ".dat")
        with open(dat) as f:
            has_data = any(x not in ("NaN",) for line in list(f)[1:] for x in line.split()[1:])
        script.append('set title "%s"' % title)
        if has_data:
            script += ["set autoscale x", "set yrange [0:*]",
                       "plot for [i=2:4] '%s' using i:xtic(1) title columnheader(i)" % dat]
        else:
            script += ['set label 1 "not measured" at graph 0.5,0.5 center',
                       "set xrange [0:1]", "set yrange [0:1]", "plot 2 notitle", "unset label 1"]
    script.append("unset multiplot")
    script = "\n".join(script) + "\n"
    sp = os.path.join(d, "chart.gp")
    with open(sp, "w") as f:
        f.write(script)
    r = subprocess.run([gp, sp], capture_output=True, timeout=60)
    if r.returncode != 0:
        log("gnuplot failed: %s" % r.stderr.decode()[-500:])
        return False
    return True


def meta():
    def out(argv):
        try:
            return subprocess.run(argv, capture_output=True, timeout=10, cwd=ROOT).stdout.decode().strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    commit = out(["git", "rev-parse", "--short", "HEAD"]) or "unknown commit"
    # --no-optional-locks: never refresh (write) the index
    if out(["git", "--no-optional-locks", "status", "--porcelain", "--untracked-files=no", "--", "core", "lua"]):
        commit += " + uncommitted changes in core/ or lua/"
    ss = out([SS_SERVER, "-h"]).splitlines()
    return {"date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), "commit": "commit " + commit,
            "cpus": os.cpu_count(), "cpu_model": model, "kernel": platform.release(),
            "luaray": out([LURAY, "version"]), "v2ray": " ".join(out([V2RAY, "-version"]).split()[:2]),
            "ss": next((l.strip() for l in ss if "shadowsocks" in l), "shadowsocks-libev")}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1 repetition, smaller sizes")
    ap.add_argument("--systems", default=",".join(SYSTEMS))
    ap.add_argument("--phases", default="direct,bulk,conn,idle,transport,users,reload,hook,rules,cluster")
    ap.add_argument("--reps", type=int, help="override the profile's repetitions")
    ap.add_argument("--idle", help="override the idle connection counts, e.g. 1000,5000")
    ap.add_argument("--bulk-mib", type=int, help="override the bulk transfer size (MiB)")
    ap.add_argument("--report-only", action="store_true",
                    help="rebuild results.md and chart.png from build/bench/results.json")
    args = ap.parse_args()
    prof_name = "quick" if args.quick else "full"
    prof = dict(PROFILES[prof_name])
    if args.reps:
        prof["reps"] = max(1, min(args.reps, 10))
    if args.idle:
        prof["idle"] = [max(1, min(int(x), 20000)) for x in args.idle.split(",") if x]
    if args.bulk_mib:
        prof["bulk_bytes"] = max(1, min(args.bulk_mib, 8192)) * MiB
    if args.reps or args.idle or args.bulk_mib:
        prof_name += " (overridden)"
    systems = [s for s in args.systems.split(",") if s]
    for s in systems:
        if s not in SYSTEMS:
            ap.error("unknown system %s" % s)
    phases = set(args.phases.split(","))
    if args.report_only:
        with open(os.path.join(OUT, "results.json")) as f:
            res = json.load(f)
        prof = res["meta"]["profile_settings"]
        os.makedirs(LOGS, exist_ok=True)
        text = report(res, res["meta"]["profile"], prof)
        text += "Whole run: %.0f s. Logs and generated configs: build/bench/logs/.\n" % res["meta"]["seconds"]
        with open(os.path.join(OUT, "results.md"), "w") as f:
            f.write(text)
        sys.stdout.write(text)
        chart(res, prof, os.path.join(OUT, "chart.png"))
        return 0

    for path, what in ((LOAD, "make bench builds it"), (SINK, "make bench builds it"),
                       (LURAY, "run make"), (V2RAY, "run scripts/deps.sh"),
                       (SS_SERVER, "run scripts/bench-deps.sh"), (SS_LOCAL, "run scripts/bench-deps.sh")):
        if not os.access(path, os.X_OK):
            log("%s not found: %s" % (path, what))
            return 2
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except ValueError:
        pass
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    need = 2 * max(prof["idle"]) + 200
    if nofile < need:
        log("fd limit %d < %d: idle counts above %d skipped" % (nofile, need, (nofile - 200) // 2))
        prof["idle"] = [c for c in prof["idle"] if 2 * c + 200 <= nofile] or [max(1, (nofile - 200) // 2)]

    os.makedirs(LOGS, exist_ok=True)
    for f in os.listdir(LOGS):
        p = os.path.join(LOGS, f)
        if os.path.isfile(p):
            os.remove(p)

    def on_signal(sig, frame):
        raise Stop("signal %d" % sig)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)

    t0 = time.monotonic()
    b = Bench(prof, systems, args.quick)
    b.res["meta"] = meta()
    b.res["meta"].update({"profile": prof_name, "profile_settings": prof, "concurrency": CONCURRENCY,
                          "payload": PAYLOAD, "fd_limit": nofile})
    try:
        b.run(phases)
    except Stop as e:
        log("stopped by %s" % e)
        PROCS.stop_all()
        return 130
    except BenchError as e:
        b.err("bench", e)
    finally:
        PROCS.stop_all()
    if b.foreign:
        # /proc counts in clock ticks: short runs are too coarse for a per-run figure
        per_run = [max(0.0, o / t) for o, t in b.foreign if t >= 1.0]
        overall = max(0.0, sum(o for o, _ in b.foreign) / sum(t for _, t in b.foreign))
        b.res["meta"]["foreign_cores"] = {"overall": overall, "max": max(per_run or [overall]),
                                          "runs": len(b.foreign), "waited_for_quiet_s": b.quiet_waited}
        if overall > 0.1 or max(per_run or [0]) > 0.3:
            b.notes.append("the machine was not quiet: other processes used %.2f cores on average "
                           "(up to %.2f in one run) during the timed runs, so these figures are noisier "
                           "than they should be" % (overall, max(per_run or [overall])))
    b.res["notes"] = b.notes
    b.res["meta"]["seconds"] = round(time.monotonic() - t0, 1)
    with open(os.path.join(OUT, "results.json"), "w") as f:
        json.dump(b.res, f, indent=1, sort_keys=True)
    text = report(b.res, prof_name, prof)
    text += "Whole run: %.0f s. Logs and generated configs: build/bench/logs/.\n" % b.res["meta"]["seconds"]
    with open(os.path.join(OUT, "results.md"), "w") as f:
        f.write(text)
    sys.stdout.write("\n" + text)
    if chart(b.res, prof, os.path.join(OUT, "chart.png")):
        sys.stdout.write("Chart: %s\n" % os.path.relpath(os.path.join(OUT, "chart.png"), ROOT))
    sys.stdout.write("Results: build/bench/results.md, build/bench/results.json\n")
    return 1 if b.res["errors"] else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        PROCS.stop_all()
        try:
            os.remove(PIDFILE)
        except OSError:
            pass
