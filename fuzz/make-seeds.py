#!/usr/bin/env python3
"""Writes the hand-made seed inputs of every fuzz target into fuzz/seeds/<target>/.

The seeds are small real inputs (packets of every type on 3.1, 3.1.1 and 5.0,
broker sessions, the example config, password, ACL and dynamic-security files,
WebSocket handshakes and frames, tool command lines, -F formats) that the
fuzzer mutates; `cargo +nightly fuzz cmin` then keeps what adds coverage in
fuzz/corpus/<target>/. Input layouts are documented in src/fuzzing.rs.
Persistence seeds are real midge.db snapshot/journal files, kept in
fuzz/seeds/persist/ as they are (this script does not make them).
"""
import os
import struct
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "fuzz", "seeds")


def write(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def read(rel):
    with open(os.path.join(ROOT, rel), "rb") as f:
        return f.read()


# ---- MQTT encoding -------------------------------------------------------------

def varint(n):
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        if n:
            b |= 0x80
        out.append(b)
        if not n:
            return bytes(out)


def s(x):
    x = x.encode() if isinstance(x, str) else x
    return struct.pack(">H", len(x)) + x


def frame(header, body):
    return bytes([header]) + varint(len(body)) + body


def props(*items):
    body = b"".join(items)
    return varint(len(body)) + body


def connect(cid, level=4, will=None, user=None, pw=None, clean=True, keepalive=60, p5=b""):
    name = b"MQIsdp" if level == 3 else b"MQTT"
    flags = 0x02 if clean else 0
    payload = s(cid)
    if will:
        topic, msg, qos, retain = will
        flags |= 0x04 | (qos << 3) | (0x20 if retain else 0)
        if level == 5:
            payload += props(b"\x18" + struct.pack(">I", 5))
        payload += s(topic) + s(msg)
    if user is not None:
        flags |= 0x80
        payload += s(user)
    if pw is not None:
        flags |= 0x40
        payload += s(pw)
    vh = s(name) + bytes([level, flags]) + struct.pack(">H", keepalive)
    if level == 5:
        vh += props(p5) if p5 else b"\x00"
    return frame(0x10, vh + payload)


def publish(topic, msg, qos=0, retain=False, pid=1, v5=False, p5=b"", dup=False):
    h = 0x30 | (qos << 1) | (1 if retain else 0) | (8 if dup else 0)
    body = s(topic)
    if qos:
        body += struct.pack(">H", pid)
    if v5:
        body += props(p5) if p5 else b"\x00"
    return frame(h, body + msg)


def subscribe(pid, filters, v5=False, p5=b""):
    body = struct.pack(">H", pid)
    if v5:
        body += props(p5) if p5 else b"\x00"
    for f, o in filters:
        body += s(f) + bytes([o])
    return frame(0x82, body)


def unsubscribe(pid, filters, v5=False):
    body = struct.pack(">H", pid) + (b"\x00" if v5 else b"")
    for f in filters:
        body += s(f)
    return frame(0xA2, body)


def ack(kind, pid, v5_reason=None):
    h = (kind << 4) | (2 if kind == 6 else 0)
    body = struct.pack(">H", pid)
    if v5_reason is not None:
        body += bytes([v5_reason]) + b"\x00"
    return frame(h, body)


PINGREQ = b"\xc0\x00"
DISCONNECT = b"\xe0\x00"
USER_PROP = b"\x26" + s("k") + s("v")
V5_PUB_PROPS = (b"\x01\x01" + b"\x02" + struct.pack(">I", 60) + b"\x03" + s("text/plain")
                + b"\x08" + s("reply/to") + b"\x09" + s(b"\x01\x02") + USER_PROP)

# ---- packet ----------------------------------------------------------------------

V31, V311, V5 = 0, 1, 2
packets = {
    "connect31": (V31, connect("c31", level=3, user="u", pw="p")),
    "connect311-will": (V311, connect("c1", will=("w/t", b"bye", 1, True), user="u", pw="p")),
    "connect5-props": (V5, connect("c5", level=5, will=("w/t", b"bye", 2, False), user="u",
                                   p5=b"\x11" + struct.pack(">I", 30) + b"\x21\x00\x0a"
                                   + b"\x22\x00\x05" + b"\x27" + struct.pack(">I", 1000)
                                   + USER_PROP)),
    "publish311": (V311, publish("a/b", b"hello", 1, True, 3) + publish("a", b"", 0)
                   + publish("x/y/z", b"q2", 2, pid=9, dup=True)),
    "publish5": (V5, publish("a/b", b"hi", 1, pid=2, v5=True, p5=V5_PUB_PROPS)
                 + publish("", b"alias", 0, v5=True, p5=b"\x23\x00\x01")),
    "subscribe311": (V311, subscribe(1, [("a/#", 0), ("+/b", 1), ("$share/g/x", 2)])
                     + unsubscribe(2, ["a/#", "+/b"])),
    "subscribe5": (V5, subscribe(1, [("a/#", 0x2d), ("c", 0x06)], True, b"\x0b\x05" + USER_PROP)
                   + unsubscribe(2, ["a/#"], True)),
    "acks311": (V311, ack(4, 1) + ack(5, 2) + ack(6, 2) + ack(7, 2) + PINGREQ + b"\xd0\x00"
                + DISCONNECT),
    "acks5": (V5, ack(4, 1, 0x10) + ack(5, 2, 0x80) + ack(6, 2, 0x92) + ack(7, 3, 0)
              + frame(0xE0, b"\x04" + props(b"\x11" + struct.pack(">I", 0)))
              + frame(0xF0, b"\x18" + props(b"\x15" + s("SCRAM") + b"\x16" + s(b"data")))),
    "server311": (V311, frame(0x20, b"\x00\x00") + frame(0x90, b"\x00\x01\x00\x01\x80")
                  + frame(0xB0, b"\x00\x02")),
    "server5": (V5, frame(0x20, b"\x01\x00" + props(b"\x24\x01\x25\x00\x21\x00\x10"
                                                   + b"\x12" + s("auto-1") + b"\x13\x00\x3c"))
                + frame(0x90, b"\x00\x01\x00\x00\x01\x87") + frame(0xB0, b"\x00\x02\x00\x00\x11")),
}
for name, (version, data) in packets.items():
    write("packet", name, bytes([version]) + data)
    write("packet", name + "-max", bytes([version | (40 << 2)]) + data)

# ---- broker ---------------------------------------------------------------------
# ops: 0 open (bit 7: mounted listener), 1 bytes(len<256), 2 bytes(len*16),
# 3 clock, 4 lost, 5 toggle reading.


def feed(slot, data):
    out = b""
    while data:
        chunk, data = data[:255], data[255:]
        out += bytes([1, slot, len(chunk)]) + chunk
    return out


def open_(slot, mounted=False):
    return bytes([0x80 if mounted else 0, slot])


sessions = {
    "pubsub311": open_(0) + feed(0, connect("sub")) + feed(0, subscribe(1, [("a/#", 2), ("$SYS/#", 0)]))
    + open_(1) + feed(1, connect("pub")) + feed(1, publish("a/b", b"m0", 0))
    + feed(1, publish("a/b", b"m1", 1, pid=1)) + feed(1, publish("a/c", b"m2", 2, True, pid=2))
    + feed(1, ack(6, 2)) + feed(0, ack(4, 1)) + bytes([3, 0, 200]) + feed(1, DISCONNECT),
    "v5-session": open_(0) + feed(0, connect("s5", level=5, clean=False, p5=b"\x11\x00\x00\x00\x3c\x21\x00\x02"))
    + feed(0, subscribe(1, [("t/+", 0x2e)], True, b"\x0b\x07")) + open_(2)
    + feed(2, connect("p5", level=5, will=("t/w", b"will", 1, False)))
    + feed(2, publish("t/x", b"v5", 1, pid=5, v5=True, p5=V5_PUB_PROPS))
    + feed(2, publish("t/y", b"alias", 2, pid=6, v5=True, p5=b"\x23\x00\x01"))
    + bytes([5, 0]) + feed(2, publish("t/z", b"queued", 1, pid=7, v5=True))
    + bytes([4, 0, 3, 0, 255]) + open_(0) + feed(0, connect("s5", level=5, clean=False))
    + bytes([4, 2, 3, 0, 250]),
    "shared-mounted": open_(0, True) + feed(0, connect("m1", user="u")) + feed(0, subscribe(1, [("$share/g/a/#", 1)]))
    + open_(1, True) + feed(1, connect("m2")) + feed(1, subscribe(1, [("$share/g/a/#", 1), ("public/#", 0)]))
    + open_(2) + feed(2, connect("p")) + feed(2, publish("m/a/1", b"x", 1, pid=1))
    + feed(2, publish("m/public/z", b"y", 0)) + bytes([4, 0]) + feed(2, publish("m/a/2", b"z", 1, pid=2)),
    "bad-input": open_(0) + feed(0, b"\x10\xff\xff\xff\xff\x01") + open_(1) + feed(1, connect("x"))
    + feed(1, b"\x30\x03\x00\x01#") + open_(2) + feed(2, PINGREQ) + open_(3)
    + feed(3, connect("k", keepalive=1)) + bytes([3, 3, 20]),
    "takeover-retained": open_(0) + feed(0, connect("same", clean=False)) + feed(0, subscribe(1, [("r/#", 1)]))
    + open_(1) + feed(1, connect("same", clean=False)) + feed(1, publish("r/1", b"keep", 1, True, 1))
    + feed(1, publish("r/2", b"", 0, True)) + feed(1, subscribe(2, [("r/#", 2)])) + feed(1, unsubscribe(3, ["r/#"])),
}
for name, data in sessions.items():
    for sel in (0x00, 0x05, 0x3a, 0xd6):
        write("broker", f"{name}-{sel:02x}", bytes([sel]) + data)

# ---- config ---------------------------------------------------------------------
write("config", "midge.conf", read("conf/midge.conf"))
write("config", "compose.conf", read("conf/compose.conf"))
write("config", "include", "per_listener_settings false\ninclude_dir @INC@\n\0"
      "listener 1884\nprotocol websockets\nhttp_dir /tmp\n\0"
      "listener 8883\ncafile a\ncertfile b\nkeyfile c\nrequire_certificate true\n\0"
      "allow_anonymous false\npassword_file /x\n")
write("config", "many", "persistence true\npersistence_location /tmp/\nautosave_interval 60\n"
      "max_queued_messages 100\nmax_inflight_messages 10\nmessage_size_limit 100000\n"
      "log_type all\nlog_dest stdout\nconnection_messages true\nsys_interval 5\n"
      "listener 1883 127.0.0.1\nmount_point site/\nmax_connections 10\n"
      "bridge_protocol_version mqttv311\nconnection b1\naddress 10.0.0.1:1883\n"
      "topic # both 0 local/ remote/\nplugin /usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so\n"
      "plugin_opt_config_file /tmp/d.json\n")

# ---- password / acl -------------------------------------------------------------
write("password_file", "example", read("conf/passwd.example"))
write("password_file", "kinds", "a:$6$MTIzNDU2Nzg5MDEy$" + "A" * 86 + "==\n"
      "b:$7$101$MTIzNDU2Nzg5MDEy$" + "B" * 86 + "==\n# comment\nc\n:\nd:$7$0$$\n")
write("acl_file", "example", read("conf/acl.example") + b"\0dev1\nalice\nsensors/temp\n"
      b"+\n\nclients/+/x\nx\n#\nusers/#/y\n")
write("acl_file", "patterns", "topic read $SYS/#\npattern readwrite c/%c/%u/#\n"
      "user bob\ntopic deny #\ntopic write a/+\n\0a/b\nbob\nc/a/b/bob/q\n")

# ---- dynsec -----------------------------------------------------------------------
dynsec_json = open(os.path.join(OUT, "dynsec.json"), "rb").read() if os.path.exists(
    os.path.join(OUT, "dynsec.json")) else b"{}"
cmds = [
    b'{"commands":[{"command":"createClient","username":"bob","password":"pw","clientid":"c","roles":[{"rolename":"r"}]}]}',
    b'{"commands":[{"command":"createRole","rolename":"r","acls":[{"acltype":"publishClientSend","topic":"a/#","allow":true,"priority":3}]},{"command":"addClientRole","username":"bob","rolename":"r","priority":1}]}',
    b'{"commands":[{"command":"createGroup","groupname":"g"},{"command":"addGroupClient","groupname":"g","username":"bob"},{"command":"setAnonymousGroup","groupname":"g"}]}',
    b'{"commands":[{"command":"listClients","verbose":true},{"command":"getRole","rolename":"r"},{"command":"setDefaultACLAccess","acls":[{"acltype":"subscribe","allow":true}]},{"command":"getDefaultACLAccess"}]}',
    b'{"commands":[{"command":"removeRoleACL","rolename":"r","acltype":"publishClientSend","topic":"a/#"},{"command":"deleteClient","username":"bob"},{"command":"bogus","correlationData":"x"}]}',
]
write("dynsec", "init-and-commands", dynsec_json + b"\0" + b"\0".join(cmds))
write("dynsec", "empty-commands", b"\0" + b"\0".join(cmds[:2]))
write("dynsec", "bad", b'{"clients":[{"username":"a","password":"x","salt":"y","iterations":1}]}\0{"commands":7}')

# ---- websocket --------------------------------------------------------------------
req = (b"GET /mqtt HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
       b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
       b"Sec-WebSocket-Protocol: mqtt\r\nX-Forwarded-For: 10.0.0.1, 10.0.0.2\r\n\r\n")
write("websocket", "upgrade", b"\x00" + req)
write("websocket", "response", b"\x00HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
      b"Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
      b"Sec-WebSocket-Protocol: mqtt\r\n\r\n")
write("websocket", "http-get", b"\x00GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n")


def ws_frame(opcode, payload, mask=None, fin=True):
    h = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    m = 0x80 if mask else 0
    if n < 126:
        h += bytes([m | n])
    elif n < 65536:
        h += bytes([m | 126]) + struct.pack(">H", n)
    else:
        h += bytes([m | 127]) + struct.pack(">Q", n)
    if mask:
        h += bytes(mask)
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return h + payload


mk = [1, 2, 3, 4]
client_frames = (ws_frame(2, connect("ws"), mk) + ws_frame(9, b"ping", mk)
                 + ws_frame(2, b"\x30\x05\x00\x01a", mk, fin=False) + ws_frame(0, b"hi", mk)
                 + ws_frame(2, b"x" * 300, mk) + ws_frame(8, b"\x03\xe8bye", mk))
write("websocket", "server-frames", bytes([1 | (3 << 3)]) + client_frames)
write("websocket", "server-frames-small", bytes([1 | 4]) + client_frames)
write("websocket", "client-frames", bytes([1 | 2]) + ws_frame(2, b"\x20\x02\x00\x00")
      + ws_frame(10, b"") + ws_frame(1, b"text") + ws_frame(8, b""))

# ---- client options --------------------------------------------------------------
cmdlines = {
    0: ["-h", "localhost", "-p", "1883", "-t", "a/b", "-m", "hello", "-q", "1", "-r", "-V", "5",
        "-D", "publish", "user-property", "k", "v", "-u", "user", "-P", "pw", "-i", "id", "-k", "30"],
    1: ["-t", "a/#", "-T", "a/b", "-v", "-C", "3", "-W", "5", "-F", "%t %p", "-N", "--retained-only",
        "-L", "mqtt://user:pw@host:1883/topic", "--will-topic", "w", "--will-payload", "x"],
    2: ["-t", "req", "-e", "resp", "-m", "q", "-V", "mqttv5", "--cafile", "ca.crt", "--insecure",
        "--proxy", "socks5h://u:p@localhost:1080"],
    3: ["-h", "localhost", "-u", "admin", "-P", "pw", "dynsec", "createClient", "bob", "-p", "x"],
}
for tool, args in cmdlines.items():
    write("client_options", f"tool{tool}", bytes([tool]) + b"\0".join(a.encode() for a in args))
write("client_options", "optfile", b"\x01-t a\n-v\n# comment\n  -C    2\n")

# ---- format -----------------------------------------------------------------------
formats = [
    (b"%t %p", b"hello", b""),
    (b"%-10t|%05l|%.3p|%x|%X|%08p|%m|%q|%r\\n\\t@Y-@m-@d @H:@M:@S.@N", b"\x00\xffpayload", b""),
    (b"%j", b'{"a":[1,2.5,"x"],"b":null}', b""),
    (b"%J", b"\x01not json", b""),
    (b"%I %U %C %D %E %F %P %R %S %A", b"p", V5_PUB_PROPS + b"\x0b\x05"),
    (b"%99999999999p%70000l", b"abc", b""),
]
for i, (fmt, payload, raw) in enumerate(formats):
    write("format", f"f{i}", bytes([0x07 if i % 2 else 0x02]) + fmt + b"\0" + payload + b"\0" + raw)

print("seeds written to", OUT, file=sys.stderr)
