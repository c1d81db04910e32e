#!/usr/bin/env python3
"""Open-loop HTTPS load at a fixed rate through berth's edge, for scripts/bench-density.sh.

Requests go out on a fixed schedule (RATE a second, round-robin over HOSTs), each on a new
TLS connection to 127.0.0.1:PORT with the host's SNI, whatever the earlier ones are doing;
latency is measured from the scheduled send time (so a stall counts against every request
it delays, not only the one that hit it). Runs until SIGTERM or SIGINT, then prints one line:
requests, errors (non-200 or failed), p50, p99 and max in ms.

Usage: rate-load.py CA_PEM PORT RATE HOST...
"""
import http.client
import signal
import socket
import ssl
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

ca, port, rate = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
hosts = sys.argv[4:]
ctx = ssl.create_default_context(cafile=ca)
lock = threading.Lock()
lat, errors = [], [0]
stop = threading.Event()


class Conn(http.client.HTTPSConnection):
    """Connects to the edge on loopback, with the tenant's name as SNI."""

    def connect(self):
        raw = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock = ctx.wrap_socket(raw, server_hostname=self.host)


def one(host, due):
    ok = False
    try:
        c = Conn(host, port, timeout=30, context=ctx)
        c.request("GET", "/", headers={"Host": host})
        r = c.getresponse()
        r.read()
        ok = r.status == 200
        c.close()
    except OSError:
        pass
    took = (time.monotonic() - due) * 1000
    with lock:
        lat.append(took)
        if not ok:
            errors[0] += 1


for s in (signal.SIGTERM, signal.SIGINT):
    signal.signal(s, lambda *_: stop.set())
start = time.monotonic()
n = 0
with ThreadPoolExecutor(max_workers=64) as pool:
    while not stop.is_set():
        due = start + n / rate
        wait = due - time.monotonic()
        if wait > 0:
            stop.wait(wait)
            if stop.is_set():
                break
        pool.submit(one, hosts[n % len(hosts)], due)
        n += 1
lat.sort()


def pct(p):
    return lat[min(len(lat) - 1, max(0, int(len(lat) * p / 100 + 0.999) - 1))] if lat else 0


print(
    f"{len(lat)} requests at {rate:g}/s, {errors[0]} errors, "
    f"p50 {pct(50):.0f} ms, p99 {pct(99):.0f} ms, max {lat[-1] if lat else 0:.0f} ms"
)
