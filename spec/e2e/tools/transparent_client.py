#!/usr/bin/env python3
"""The client side of spec/e2e/transparent_spec.lua, run inside the client
network namespace: it talks to "outside" addresses as any LAN host would,
knowing nothing of the proxy on its router.

  transparent_client.py check LABEL tcp HOST PORT NBYTES CONNS
      CONNS connections at once to HOST:PORT, each sending NBYTES of
      pseudo-random data while reading the echo, then a half-close: the
      echo must be byte-identical and end with EOF.
  transparent_client.py check LABEL udp HOST PORT CLIENTS ROUNDS
      CLIENTS UDP sockets, ROUNDS rounds: each sends one datagram per round
      to HOST:PORT and must get its own datagram back FROM HOST:PORT (the
      address it asked for, not the router's); a lost datagram is sent
      again (at most 4 tries), a reply for another client fails.
  transparent_client.py unreachable LABEL tcp|udp HOST PORT
      the destination must NOT answer within 1.5 s (before the proxy runs).

Prints "ok LABEL" or "FAIL LABEL: why"; exits 0 only when it printed ok.
TCP connects are retried for up to 10 s (the echo server and the proxy
start in parallel with us).
"""
import os
import socket
import sys
import threading
import time


def family(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def connect(host, port, deadline):
    last = None
    while time.time() < deadline:
        try:
            return socket.create_connection((host, port), timeout=5)
        except OSError as e:
            last = e
            time.sleep(0.1)
    raise RuntimeError("connect %s:%d: %s" % (host, port, last))


def tcp_one(host, port, n, deadline, out, i):
    try:
        s = connect(host, port, deadline)
        data = os.urandom(n)
        err = []

        def send():
            try:
                s.sendall(data)
                s.shutdown(socket.SHUT_WR)
            except OSError as e:
                err.append(e)

        t = threading.Thread(target=send)
        t.start()
        got = bytearray()
        s.settimeout(20)
        while True:
            d = s.recv(65536)
            if not d:
                break
            got += d
            if len(got) > n:
                break
        t.join()
        s.close()
        if err:
            out[i] = "send: %s" % err[0]
        elif bytes(got) != data:
            k = next((j for j in range(min(len(got), n)) if got[j] != data[j]), min(len(got), n))
            out[i] = "echo differs at byte %d (got %d of %d bytes)" % (k, len(got), n)
        else:
            out[i] = None
    except Exception as e:  # noqa: BLE001 - reported, not hidden
        out[i] = str(e)


def check_tcp(host, port, n, conns):
    deadline = time.time() + 10
    out = ["not run"] * conns
    ts = [threading.Thread(target=tcp_one, args=(host, port, n, deadline, out, i))
          for i in range(conns)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    bad = [("conn %d: %s" % (i, e)) for i, e in enumerate(out) if e]
    return "; ".join(bad) or None


def check_udp(host, port, clients, rounds):
    socks = []
    for _ in range(clients):
        u = socket.socket(family(host), socket.SOCK_DGRAM)
        u.settimeout(1.5)
        socks.append(u)
    want_from = socket.getaddrinfo(host, port, family(host), socket.SOCK_DGRAM)[0][4][:2]
    try:
        for r in range(rounds):
            msgs = []
            for i, u in enumerate(socks):
                m = b"client %d round %d|" % (i, r) + os.urandom(1 + (i * 97 + r * 31) % 1200)
                msgs.append(m)
                u.sendto(m, (host, port))
            for i, u in enumerate(socks):
                got = False
                for _ in range(4):
                    try:
                        while True:
                            d, src = u.recvfrom(65536)
                            if src[:2] != want_from:
                                return "client %d: reply from %s, wanted %s" % (i, src[:2], want_from)
                            if not d.startswith(b"client %d " % i):
                                return "client %d got another client's reply: %r" % (i, d[:20])
                            if d == msgs[i]:
                                got = True
                                break
                    except socket.timeout:
                        pass
                    if got:
                        break
                    u.sendto(msgs[i], (host, port))
                if not got:
                    return "client %d round %d: no reply" % (i, r)
        return None
    finally:
        for u in socks:
            u.close()


def unreachable(proto, host, port):
    if proto == "tcp":
        s = socket.socket(family(host), socket.SOCK_STREAM)
        s.settimeout(1.5)
        try:
            s.connect((host, port))
            return "connected without the proxy"
        except OSError:
            return None
        finally:
            s.close()
    u = socket.socket(family(host), socket.SOCK_DGRAM)
    u.settimeout(1.5)
    try:
        u.sendto(b"anyone?", (host, port))
        u.recvfrom(100)
        return "a UDP reply without the proxy"
    except OSError:
        return None
    finally:
        u.close()


def main(argv):
    mode, label, proto, host, port = argv[1], argv[2], argv[3], argv[4], int(argv[5])
    if mode == "unreachable":
        why = unreachable(proto, host, port)
    elif proto == "tcp":
        why = check_tcp(host, port, int(argv[6]), int(argv[7]))
    else:
        why = check_udp(host, port, int(argv[6]), int(argv[7]))
    if why:
        print("FAIL %s: %s" % (label, why))
        return 1
    print("ok %s" % label)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
