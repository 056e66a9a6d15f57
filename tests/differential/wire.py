#!/usr/bin/env python3
"""Differential wire check: the same raw MQTT bytes to Mosquitto and to midge.

    wire.py MOSQUITTO MIDGE CASES_FILE [NAME_FILTER]

Each case in CASES_FILE is one line, `name | chunks [| config]` (or
`deliberate: name | ...` for a documented difference), where `chunks` is a
Python expression giving a list of packets built with the helpers below; a
`(n, bytes)` item is sent on connection n (opened on first use), `(n, None)`
closes connection n abruptly. `config` is extra mosquitto.conf lines for both
brokers, separated by `\n`. For each broker a fresh instance
is started on a free 127.0.0.1 port; after every chunk everything received on
every connection is recorded, so replies, their order and closes are compared
byte for byte. Exit status 1 when a case differs (or a deliberate one stops
differing). Written for midge's test suite; it shares nothing with
Mosquitto's own Python tests.
"""
import concurrent.futures
import os
import re
import socket
import struct
import subprocess
import sys
import tempfile
import time

WAIT = 0.4  # seconds of silence that end a chunk's replies


def vb(n):
    out = b""
    while True:
        d, n = n % 128, n // 128
        out += bytes([d | (0x80 if n else 0)])
        if not n:
            return out


def pkt(first, body):
    return bytes([first]) + vb(len(body)) + body


def s(x):
    x = x.encode() if isinstance(x, str) else x
    return struct.pack(">H", len(x)) + x


def u16(n):
    return struct.pack(">H", n)


def props(b=b""):
    return vb(len(b)) + b


def c31(cid, flags=2, extra=b""):
    return pkt(0x10, s("MQIsdp") + bytes([3, flags]) + u16(60) + s(cid) + extra)


def c311(cid, flags=2, extra=b""):
    return pkt(0x10, s("MQTT") + bytes([4, flags]) + u16(60) + s(cid) + extra)


def c5(cid, flags=2, pr=b"", extra=b""):
    return pkt(0x10, s("MQTT") + bytes([5, flags]) + u16(60) + props(pr) + s(cid) + extra)


def sub(pid, filt, opts=0, pr=None):
    p = props(pr) if pr is not None else b""
    return pkt(0x82, u16(pid) + p + s(filt) + bytes([opts]))


def pub(topic, payload=b"", qos=0, retain=0, pid=None, pr=None, dup=0):
    head = 0x30 | (dup << 3) | (qos << 1) | retain
    p = props(pr) if pr is not None else b""
    return pkt(head, s(topic) + (u16(pid) if qos else b"") + p + payload)


PING = pkt(0xC0, b"")
HELPERS = dict(vb=vb, pkt=pkt, s=s, u16=u16, props=props, c31=c31, c311=c311,
               c5=c5, sub=sub, pub=pub, PING=PING)


# A generated client id ends in an upper-case UUID (random in both brokers):
# compared as <uuid>, in the hex transcript.
HEXCH = "(?:3[0-9]|4[1-6])"
UUID = re.compile(f"{HEXCH}{{8}}2d{HEXCH}{{4}}2d{HEXCH}{{4}}2d{HEXCH}{{4}}2d{HEXCH}{{12}}")


def free_port():
    with socket.socket() as k:
        k.bind(("127.0.0.1", 0))
        return k.getsockname()[1]


def run(binary, chunks, extra=""):
    """Start `binary`, play `chunks`, return the transcript as text. A broker
    that exits before it listens (another test took the free port between
    our check and its bind) is started again on another port."""
    for attempt in range(5):
        port = free_port()
        with tempfile.TemporaryDirectory() as d:
            conf = os.path.join(d, "wire.conf")
            with open(conf, "w") as f:
                f.write(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
                f.write(extra.replace("\\n", "\n") + "\n")
            broker = subprocess.Popen([binary, "-c", conf], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL)
            try:
                if not listening(broker, port):
                    continue
                return play(port, chunks)
            finally:
                broker.terminate()
                try:
                    broker.wait(5)
                except subprocess.TimeoutExpired:
                    broker.kill()
                    broker.wait()
    raise RuntimeError(f"{binary} did not start in 5 attempts")


def listening(broker, port):
    """Wait until `broker` accepts on `port`; False if it exited first."""
    deadline = time.time() + 10
    while time.time() < deadline:
        if broker.poll() is not None:
            return False
        try:
            socket.create_connection(("127.0.0.1", port), timeout=WAIT).close()
            return True
        except OSError:
            time.sleep(0.02)
    return False


def connect(port):
    deadline = time.time() + 5
    while True:
        try:
            c = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
            c.settimeout(WAIT)
            return c
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.02)


def play(port, chunks):
    conns, closed, steps = {}, set(), []
    for chunk in chunks:
        n, data = chunk if isinstance(chunk, tuple) else (0, chunk)
        if n not in conns:
            conns[n] = connect(port)
        if data is None:
            if n not in closed:
                conns[n].close()
                closed.add(n)
        elif n not in closed:
            try:
                conns[n].sendall(data)
            except OSError:
                pass
        step = []
        for j, c in sorted(conns.items()):
            if j in closed:
                continue
            got = b""
            end = ""
            try:
                while True:
                    b = c.recv(65536)
                    if not b:
                        end = "[closed]"
                        break
                    got += b
            except socket.timeout:
                pass
            except OSError:
                end = "[closed]"
            if end:
                closed.add(j)
            if got or end:
                step.append(f"{j}:{got.hex()}{end}")
        steps.append(",".join(step) or "-")
    for c in conns.values():
        c.close()
    return UUID.sub("<uuid>", " / ".join(steps))


def load(path):
    cases = []
    for line in open(path, encoding="utf-8"):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = [x.strip() for x in line.split("|", 2)]
        name, expr = parts[0], parts[1]
        extra = parts[2] if len(parts) > 2 else ""
        deliberate = name.startswith("deliberate:")
        name = name.removeprefix("deliberate:").strip()
        cases.append((name, expr, deliberate, extra))
    return cases


def main():
    mosquitto, midge, path = sys.argv[1:4]
    only = sys.argv[4] if len(sys.argv) > 4 else ""
    cases = [c for c in load(path) if only in c[0]]

    def one(case):
        name, expr, deliberate, extra = case
        chunks = eval(expr, dict(HELPERS))  # the cases file is part of the test suite
        return case, run(mosquitto, chunks, extra), run(midge, chunks, extra)

    bad = 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        for (name, _, deliberate, _), a, b in pool.map(one, cases):
            same = a == b
            if same and not deliberate:
                print(f"SAME  {name}")
                continue
            if deliberate and not same:
                print(f"DELIBERATE  {name}\n   mosquitto: {a}\n   midge:     {b}")
                continue
            bad += 1
            what = "NOW SAME (deliberate difference gone: update the README)" if same else "DIFF"
            print(f"{what}  {name}\n   mosquitto: {a}\n   midge:     {b}")
    print(f"{len(cases)} cases, {bad} failing")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
