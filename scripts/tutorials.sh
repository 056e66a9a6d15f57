#!/bin/bash
# Replays the usual Mosquitto tutorial steps with midge in place of mosquitto
# (issue 13's closing check): a password file with QoS 1 and a retained
# message, conf.d includes, TLS with a password file, Paho Python (pip
# install paho-mqtt) over TCP and WebSockets for 3.1.1 and 5, and dynamic
# security administered with mosquitto_ctrl and midge_ctrl. Needs
# mosquitto-clients, the mosquitto package (for its dynsec plugin path and
# mosquitto_ctrl), openssl and python3 with paho-mqtt; run after
# `cargo build --release`. Prints PASS/FAIL per step; not part of CI.
set -u
B=$(cd "$(dirname "$0")/.." && pwd)/target/release
TUT=$(mktemp -d)
trap 'rm -rf "$TUT"' EXIT
M=$B/midge
ok(){ echo "PASS $1"; }; bad(){ echo "FAIL $1"; }
port(){ python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
cd "$TUT"
# 1. password file + QoS + retained (the "secure your broker" tutorial)
P=$(port)
$B/midge_passwd -c -b passwd alice secret
printf "listener $P\nallow_anonymous false\npassword_file $TUT/passwd\n" > t1.conf
$M -c t1.conf > t1.log 2>&1 & PID=$!; sleep 0.5
mosquitto_pub -p $P -u alice -P secret -t home/temp -m 21 -r -q 1 && \
 [ "$(mosquitto_sub -p $P -u alice -P secret -t home/temp -C 1 -q 1 -W 3)" = 21 ] && ok "1 passwd+qos1+retained" || bad "1 passwd+qos1+retained"
mosquitto_pub -p $P -u alice -P wrong -t x -m y 2>/dev/null && bad "1b wrong password refused" || ok "1b wrong password refused"
mosquitto_pub -p $P -t x -m y 2>/dev/null && bad "1c anonymous refused" || ok "1c anonymous refused"
kill $PID; wait $PID 2>/dev/null
# 2. conf.d include
P=$(port); mkdir -p conf.d; printf "listener $P\nallow_anonymous true\n" > conf.d/l.conf
printf "include_dir $TUT/conf.d\n" > t2.conf
$M -c t2.conf > t2.log 2>&1 & PID=$!; sleep 0.5
mosquitto_pub -p $P -t a -m b -r && [ "$(mosquitto_sub -p $P -t a -C 1 -W 3)" = b ] && ok "2 include_dir" || bad "2 include_dir"
kill $PID; wait $PID 2>/dev/null
# 3. TLS with a password file
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 -subj /CN=tutca 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout srv.key -out srv.csr -subj /CN=localhost 2>/dev/null
printf "subjectAltName=DNS:localhost,IP:127.0.0.1\n" > ext
openssl x509 -req -in srv.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out srv.crt -days 2 -extfile ext 2>/dev/null
P=$(port); printf "listener $P\ncertfile $TUT/srv.crt\nkeyfile $TUT/srv.key\nallow_anonymous false\npassword_file $TUT/passwd\n" > t3.conf
$M -c t3.conf > t3.log 2>&1 & PID=$!; sleep 0.5
mosquitto_pub -h localhost -p $P --cafile ca.crt -u alice -P secret -t s -m tls -r && \
 [ "$(mosquitto_sub -h localhost -p $P --cafile ca.crt -u alice -P secret -t s -C 1 -W 3)" = tls ] && ok "3 TLS+passwd" || bad "3 TLS+passwd"
kill $PID; wait $PID 2>/dev/null
# 4. Paho Python over TCP and WebSockets
P=$(port); W=$(port); printf "listener $P\nallow_anonymous true\nlistener $W\nprotocol websockets\n" > t4.conf
$M -c t4.conf > t4.log 2>&1 & PID=$!; sleep 0.5
cat > tut_paho.py <<PY
import sys, time, paho.mqtt.client as mqtt
port, transport, ver = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
got = []
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="tut-"+transport+str(ver), transport=transport, protocol=ver)
c.on_message = lambda cl, u, m: got.append(m.payload)
c.connect("127.0.0.1", port); c.loop_start()
c.subscribe("p/t", qos=2); time.sleep(0.3)
for q in (0, 1, 2): c.publish("p/t", b"q%d" % q, qos=q).wait_for_publish(3)
t = time.time()
while len(got) < 3 and time.time() - t < 3: time.sleep(0.05)
c.loop_stop(); c.disconnect()
sys.exit(0 if sorted(got) == [b"q0", b"q1", b"q2"] else 1)
PY
for v in 4 5; do python3 tut_paho.py $P tcp $v && ok "4 paho tcp v$((v==4?311:5))" || bad "4 paho tcp v$v"; python3 tut_paho.py $W websockets $v && ok "4 paho websockets v$((v==4?311:5))" || bad "4 paho ws v$v"; done
kill $PID; wait $PID 2>/dev/null
# 6. dynsec with mosquitto_ctrl and midge_ctrl
P=$(port); rm -f dynsec.json
mosquitto_ctrl dynsec init $TUT/dynsec.json admin adminpw >/dev/null
printf "listener $P\nallow_anonymous false\nplugin /usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so\nplugin_opt_config_file $TUT/dynsec.json\n" > t6.conf
$M -c t6.conf > t6.log 2>&1 & PID=$!; sleep 0.5
for tool in mosquitto_ctrl $B/midge_ctrl; do
  u=u$RANDOM
  $tool -p $P -u admin -P adminpw dynsec createClient $u -p pw >/dev/null && \
  $tool -p $P -u admin -P adminpw dynsec createRole r$u >/dev/null && \
  $tool -p $P -u admin -P adminpw dynsec addRoleACL r$u publishClientSend d/# allow >/dev/null && \
  $tool -p $P -u admin -P adminpw dynsec addRoleACL r$u subscribePattern d/# allow >/dev/null && \
  $tool -p $P -u admin -P adminpw dynsec addRoleACL r$u publishClientReceive d/# allow >/dev/null && \
  $tool -p $P -u admin -P adminpw dynsec addClientRole $u r$u >/dev/null && \
  mosquitto_pub -p $P -u $u -P pw -t d/x -m dyn -r && [ "$(mosquitto_sub -p $P -u $u -P pw -t d/x -C 1 -W 3)" = dyn ] && ok "6 dynsec via $(basename $tool)" || bad "6 dynsec via $(basename $tool)"
  mosquitto_pub -p $P -u admin -t '$CONTROL/dynamic-security/v1' -m '{}' 2>/dev/null && bad "6b admin without password refused" || ok "6b admin without password refused"
done
kill $PID; wait $PID 2>/dev/null
