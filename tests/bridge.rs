//! Bridges, black-box: the broker under test bridges to a real Eclipse
//! Mosquitto (`/usr/sbin/mosquitto`, started here on a free port) or to
//! another instance of itself, and clients on both sides check what
//! crosses the link. Like every suite here, a missing tool (Mosquitto,
//! openssl) is a failure, not a skip.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

const MOSQUITTO: &str = "/usr/sbin/mosquitto";
/// Link set-up includes a reconnect delay; allow for a loaded machine.
const LINK_WAIT: Duration = Duration::from_secs(20);

fn mosquitto() -> PathBuf {
    let p = PathBuf::from(MOSQUITTO);
    assert!(
        p.exists(),
        "{MOSQUITTO} is not installed (.ci/run installs it)"
    );
    p
}

/// A database directory for a Mosquitto remote: Mosquitto started as root
/// runs as user `mosquitto`, so it must be writable by anyone.
fn remote_db_dir(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let rdir = dir.join("remote-db");
    fs::create_dir_all(&rdir).unwrap();
    let _ = fs::set_permissions(&rdir, fs::Permissions::from_mode(0o777));
    rdir
}

/// A broker process on a port we chose, with a config and a directory we
/// keep across restarts. Killed on drop (only this child).
struct Proc {
    child: Option<Child>,
    bin: PathBuf,
    conf: PathBuf,
    log: PathBuf,
    port: u16,
    runs: u32,
}

impl Proc {
    fn start(bin: &Path, dir: &Path, name: &str, port: u16, config: &str) -> Proc {
        let conf = dir.join(format!("{name}.conf"));
        fs::write(&conf, config).expect("write config");
        let mut p = Proc {
            child: None,
            bin: bin.to_path_buf(),
            conf,
            log: dir.join(format!("{name}.log")),
            port,
            runs: 0,
        };
        p.restart();
        p
    }

    fn restart(&mut self) {
        self.runs += 1;
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let log2 = log.try_clone().expect("log file");
        let child = Command::new(&self.bin)
            .arg("-c")
            .arg(&self.conf)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", self.bin.display()));
        self.child = Some(child);
        let t = Instant::now();
        while std::net::TcpStream::connect_timeout(&loopback(self.port), Duration::from_millis(200))
            .is_err()
        {
            if let Some(Ok(Some(st))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("{} exited with {st}:\n{}", self.bin.display(), self.log());
            }
            assert!(
                t.elapsed() < START_TIMEOUT,
                "{} does not listen on {}:\n{}",
                self.bin.display(),
                self.port,
                self.log()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: no goodbye, no save.
    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait (Mosquitto saves its persistence on the way out).
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY-free: kill(1) on our own child's pid.
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(10) {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
        if thread::panicking() {
            eprintln!(
                "---- {} log ----\n{}\n---- end ----",
                self.conf.display(),
                self.log()
            );
        }
    }
}

fn remote_conf(port: u16, extra: &str) -> String {
    format!("listener {port} 127.0.0.1\nallow_anonymous true\n{extra}\n")
}

/// The bridging broker's config: a listener plus one `connection`.
fn bridge_conf(port: u16, remote: u16, id: &str, extra: &str) -> String {
    format!(
        "listener {port} 127.0.0.1\nallow_anonymous true\n\
         connection {id}\naddress 127.0.0.1:{remote}\nremote_clientid {id}\n\
         restart_timeout 1\n{extra}\n"
    )
}

/// Read packets, acknowledging QoS 1/2 like a real client, until a
/// PUBLISH arrives (None after `timeout`).
fn recv(c: &mut RawClient, timeout: Duration) -> Option<Pub> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let p = match c.read_packet(left) {
            Ok(p) => p,
            Err(ReadError::Timeout) => return None,
            Err(e) => panic!("reading: {e:?}"),
        };
        match p.kind() {
            PUBLISH => {
                let m = p.publish().expect("PUBLISH");
                match m.qos {
                    1 => c.send(&ack_packet(PUBACK, m.pid)),
                    2 => c.send(&ack_packet(PUBREC, m.pid)),
                    _ => {}
                }
                return Some(m);
            }
            PUBREL => {
                let pid = p.pid().unwrap_or(0);
                c.send(&ack_packet(PUBCOMP, pid));
            }
            _ => {}
        }
    }
}

fn expect(c: &mut RawClient, what: &str) -> Pub {
    recv(c, LINK_WAIT).unwrap_or_else(|| panic!("nothing received: expected {what}"))
}

/// Wait until the link `id` is up, seen from the remote: its notification
/// `1` arrives after its subscriptions there, and it makes the local ones
/// before sending it.
fn wait_up(remote_port: u16, id: &str) {
    let mut c = RawClient::connected(remote_port, &format!("watch-{id}-{}", free_port()));
    let topic = format!("$SYS/broker/connection/{id}/state");
    c.subscribe(&[(&topic, 1)]);
    let deadline = Instant::now() + LINK_WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match recv(&mut c, left) {
            Some(p) if p.topic == topic && p.payload == b"1" => return,
            Some(_) => {}
            None => panic!("bridge {id} did not come up within {LINK_WAIT:?}"),
        }
    }
}

fn sub(port: u16, id: &str, filters: &[(&str, u8)]) -> RawClient {
    let mut c = RawClient::connected(port, id);
    c.subscribe(filters);
    c
}

/// out / in / both with prefixes, at QoS 0, 1 and 2, on `protocol`.
fn directions_and_qos(protocol: &str) {
    let mosq = mosquitto();
    let dir = temp_dir("bridge-dirs");
    let (rp, lp) = (free_port(), free_port());
    let _remote = Proc::start(&mosq, &dir, "remote", rp, &remote_conf(rp, ""));
    let _local = Proc::start(
        &broker_binary(),
        &dir,
        "local",
        lp,
        &bridge_conf(
            lp,
            rp,
            "edge",
            &format!(
                "bridge_protocol_version {protocol}\n\
                 topic up/# out 2\ntopic down/# in 2\n\
                 topic # both 2 site/a/ cloud/a/\n\
                 topic q1/# out 1\n"
            ),
        ),
    );
    wait_up(rp, "edge");
    let mut rs = sub(rp, "r-sub", &[("up/#", 2), ("cloud/a/o/#", 2), ("q1/#", 2)]);
    let mut ls = sub(lp, "l-sub", &[("down/#", 2), ("site/a/i/#", 2)]);
    // Everything under the both-ways prefixes, on each side.
    let mut rall = sub(rp, "r-all", &[("cloud/#", 2)]);
    let mut lall = sub(lp, "l-all", &[("site/#", 2)]);
    for qos in 0..=2u8 {
        let topic = format!("up/q{qos}");
        publish_once(lp, &topic, format!("out {qos}").as_bytes(), qos, false);
        let m = expect(&mut rs, "out");
        assert_eq!((m.topic.as_str(), m.qos), (topic.as_str(), qos));
        assert_eq!(m.payload, format!("out {qos}").as_bytes());

        let topic = format!("down/q{qos}");
        publish_once(rp, &topic, format!("in {qos}").as_bytes(), qos, false);
        let m = expect(&mut ls, "in");
        assert_eq!((m.topic.as_str(), m.qos), (topic.as_str(), qos));

        // both, with the prefixes swapped on the way.
        publish_once(lp, &format!("site/a/o/{qos}"), b"L", qos, false);
        let m = expect(&mut rs, "both out");
        assert_eq!(
            (m.topic.as_str(), m.qos),
            (format!("cloud/a/o/{qos}").as_str(), qos)
        );
        publish_once(rp, &format!("cloud/a/i/{qos}"), b"R", qos, false);
        let m = expect(&mut ls, "both in");
        assert_eq!(
            (m.topic.as_str(), m.qos),
            (format!("site/a/i/{qos}").as_str(), qos)
        );
    }
    // The topic line's QoS caps the message's.
    publish_once(lp, "q1/x", b"capped", 2, false);
    let m = expect(&mut rs, "capped");
    assert_eq!((m.topic.as_str(), m.qos), ("q1/x", 1));
    // Each both-ways message was seen once on each side: nothing came back
    // over the link it left by.
    let drain = |c: &mut RawClient| {
        let mut v = Vec::new();
        while let Some(m) = recv(c, Duration::from_secs(1)) {
            v.push(m.topic);
        }
        v.sort();
        v
    };
    let want = |pre: &str| {
        let mut v: Vec<String> = (0..3)
            .flat_map(|q| [format!("{pre}/i/{q}"), format!("{pre}/o/{q}")])
            .collect();
        v.sort();
        v
    };
    assert_eq!(drain(&mut lall), want("site/a"));
    assert_eq!(drain(&mut rall), want("cloud/a"));
}

#[test]
fn out_in_both_with_prefixes_at_every_qos_mqtt311() {
    directions_and_qos("mqttv311");
}

#[test]
fn out_in_both_with_prefixes_at_every_qos_mqtt5() {
    directions_and_qos("mqttv50");
}

#[test]
fn retained_messages_and_their_deletion_cross_the_link() {
    let mosq = mosquitto();
    let dir = temp_dir("bridge-retain");
    let (rp, lp) = (free_port(), free_port());
    let _remote = Proc::start(&mosq, &dir, "remote", rp, &remote_conf(rp, ""));
    let _local = Proc::start(
        &broker_binary(),
        &dir,
        "local",
        lp,
        &bridge_conf(lp, rp, "ret", "topic r/# both 1\n"),
    );
    wait_up(rp, "ret");
    publish_once(lp, "r/kept", b"v1", 1, true);
    // A late subscriber on the remote gets it as retained.
    let deadline = Instant::now() + LINK_WAIT;
    loop {
        let mut c = sub(rp, "late", &[("r/kept", 1)]);
        if let Some(m) = recv(&mut c, Duration::from_millis(500)) {
            assert_eq!(m.payload, b"v1");
            assert!(m.retain);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "retained message not on the remote"
        );
    }
    // Deleted locally: deleted remotely.
    publish_once(lp, "r/kept", b"", 1, true);
    let deadline = Instant::now() + LINK_WAIT;
    loop {
        let mut c = sub(rp, "late2", &[("r/#", 1)]);
        publish_once(rp, "r/marker", b"m", 1, false);
        let first = expect(&mut c, "marker");
        if first.topic == "r/marker" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "retained message not deleted remotely"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_link_comes_back_after_the_remote_restarts_and_notifies_its_state() {
    let mosq = mosquitto();
    let dir = temp_dir("bridge-restart");
    let (rp, lp) = (free_port(), free_port());
    let mut remote = Proc::start(&mosq, &dir, "remote", rp, &remote_conf(rp, ""));
    let mut local = Proc::start(
        &broker_binary(),
        &dir,
        "local",
        lp,
        &bridge_conf(lp, rp, "nt", "topic t/# out 1\n"),
    );
    wait_up(rp, "nt");
    let state = "$SYS/broker/connection/nt/state";
    let mut watch = sub(lp, "watch", &[(state, 1)]);
    assert_eq!(expect(&mut watch, "state").payload, b"1");
    remote.kill9();
    let m = expect(&mut watch, "state 0");
    assert_eq!((m.topic.as_str(), m.payload.as_slice()), (state, &b"0"[..]));
    remote.restart();
    let m = expect(&mut watch, "state 1 again");
    assert_eq!(m.payload, b"1");
    let mut rs = sub(rp, "r", &[("t/#", 1)]);
    publish_once(lp, "t/after", b"ok", 1, false);
    assert_eq!(expect(&mut rs, "after restart").payload, b"ok");
    assert!(local.running());
    let log = local.log();
    assert!(log.contains("Connecting bridge nt (127.0.0.1:"), "{log}");
}

/// The outage test of issue 15: the remote is down, 10 000 acknowledged
/// QoS 1 messages, the bridging broker is killed with SIGKILL and started
/// again while the remote is still down; then the remote comes up, and a
/// subscriber there gets every message, in order.
#[test]
fn outage_with_kill_9_loses_no_acknowledged_message() {
    let mosq = mosquitto();
    if testing_mosquitto() {
        eprintln!("skipped: persistence_mode journal is midge's");
        return;
    }
    const N: usize = 10_000;
    let dir = temp_dir("bridge-outage");
    let (rp, lp) = (free_port(), free_port());
    let rdir = remote_db_dir(&dir);
    // The remote keeps the subscriber's session (and its queue) itself.
    let mut remote = Proc::start(
        &mosq,
        &dir,
        "remote",
        rp,
        &remote_conf(
            rp,
            &format!(
                "persistence true\npersistence_location {}/\nmax_queued_messages 0\n\
                 max_inflight_messages 0",
                rdir.display()
            ),
        ),
    );
    {
        let (mut c, _, rc) = RawClient::connect_with(rp, &Connect::new("cloud-sub").clean(false));
        assert_eq!(rc, 0);
        c.subscribe(&[("m/#", 1)]);
        c.send(&DISCONNECT_BYTES);
    }
    remote.stop();
    let ldir = dir.join("local-db");
    fs::create_dir_all(&ldir).unwrap();
    let conf = bridge_conf(lp, rp, "out", "topic m/# out 1\n").replace(
        "allow_anonymous true\n",
        &format!(
            "allow_anonymous true\npersistence true\npersistence_location {}/\n\
             persistence_mode journal\nmax_queued_messages 0\n",
            ldir.display()
        ),
    );
    let mut local = Proc::start(&broker_binary(), &dir, "local", lp, &conf);
    // 10 000 QoS 1 publishes on two topics, pipelined 500 at a time; every
    // one is acknowledged before the kill.
    let mut p = RawClient::connected(lp, "sensor");
    for batch in 0..N / 500 {
        let mut bytes = Vec::new();
        for k in 0..500 {
            let i = batch * 500 + k;
            let topic = if i % 2 == 0 { "m/a" } else { "m/b" };
            bytes.extend(publish_packet(
                topic,
                i.to_string().as_bytes(),
                1,
                false,
                false,
                (k + 1) as u16,
            ));
        }
        p.send(&bytes);
        for _ in 0..500 {
            p.expect_kind(PUBACK, WAIT);
        }
    }
    local.kill9();
    local.restart();
    assert!(local.running());
    remote.restart();
    let (mut c, sp, rc) = RawClient::connect_with(rp, &Connect::new("cloud-sub").clean(false));
    assert_eq!((sp, rc), (true, 0));
    let mut seen = vec![false; N];
    let mut last: [Option<usize>; 2] = [None, None];
    let mut got = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while seen.iter().any(|s| !s) {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(m) = recv(&mut c, left.min(Duration::from_secs(30))) else {
            let missing = seen.iter().filter(|s| !**s).count();
            panic!("{missing} of {N} messages never arrived ({got} received)");
        };
        got += 1;
        let i: usize = String::from_utf8_lossy(&m.payload)
            .parse()
            .expect("payload");
        let t = usize::from(m.topic == "m/b");
        assert_eq!(i % 2, t, "message {i} on the wrong topic");
        if let Some(prev) = last[t] {
            // Duplicates may repeat older ones; new ones come in order.
            if !seen[i] {
                assert!(i > prev, "order per topic: {i} after {prev}");
            }
        }
        if !seen[i] {
            last[t] = Some(i);
        }
        seen[i] = true;
    }
    eprintln!("outage: {N} messages delivered ({got} with duplicates)");
}

#[test]
fn failover_to_the_second_address() {
    let mosq = mosquitto();
    let dir = temp_dir("bridge-failover");
    let (rp, lp, dead) = (free_port(), free_port(), free_port());
    let _remote = Proc::start(&mosq, &dir, "remote", rp, &remote_conf(rp, ""));
    let conf = bridge_conf(lp, rp, "fo", "topic f/# out 0\n").replace(
        &format!("address 127.0.0.1:{rp}"),
        &format!("addresses 127.0.0.1:{dead} 127.0.0.1:{rp}"),
    );
    let local = Proc::start(&broker_binary(), &dir, "local", lp, &conf);
    wait_up(rp, "fo");
    let log = local.log();
    assert!(
        log.contains(&format!("Connecting bridge fo (127.0.0.1:{dead})")),
        "{log}"
    );
    assert!(
        log.contains(&format!("Connecting bridge fo (127.0.0.1:{rp})")),
        "{log}"
    );
}

/// Two brokers bridged both ways on `#`: one publish reaches each
/// subscriber once, and nothing loops.
#[test]
fn two_brokers_bridged_both_ways_deliver_exactly_once() {
    let dir = temp_dir("bridge-loop");
    let (a, b) = (free_port(), free_port());
    let _b = Proc::start(&broker_binary(), &dir, "b", b, &remote_conf(b, ""));
    let _a = Proc::start(
        &broker_binary(),
        &dir,
        "a",
        a,
        &bridge_conf(a, b, "ab", "topic # both 1\n"),
    );
    wait_up(b, "ab");
    let mut sa = sub(a, "sa", &[("loop/#", 1)]);
    let mut sb = sub(b, "sb", &[("loop/#", 1)]);
    publish_once(a, "loop/from-a", b"1", 1, false);
    publish_once(b, "loop/from-b", b"2", 1, false);
    let mut got_a = Vec::new();
    let mut got_b = Vec::new();
    while let Some(m) = recv(&mut sa, Duration::from_secs(2)) {
        got_a.push(m.topic);
    }
    while let Some(m) = recv(&mut sb, Duration::from_millis(500)) {
        got_b.push(m.topic);
    }
    got_a.sort();
    got_b.sort();
    assert_eq!(got_a, ["loop/from-a", "loop/from-b"]);
    assert_eq!(got_b, ["loop/from-a", "loop/from-b"]);
}

/// A fake remote on a free port: accepts connections and answers each
/// with `reply` (nothing at all when empty), counting the connections.
fn fake_remote(reply: &'static [u8]) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let n = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let n2 = n.clone();
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            n2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            thread::spawn(move || {
                let mut buf = [0u8; 1024];
                let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
                if s.read(&mut buf).unwrap_or(0) > 0 && !reply.is_empty() {
                    let _ = s.write_all(reply);
                }
                // Hold the connection until the peer gives up.
                while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
            });
        }
    });
    (port, n)
}

/// Bad remotes are logged and retried; the broker keeps serving.
#[test]
fn bad_remotes_are_retried_and_local_clients_are_unaffected() {
    let mosq = mosquitto();
    let dir = temp_dir("bridge-bad");
    let (garbage, garbage_n) = fake_remote(b"\xff\xff\xff\xff\xffnot mqtt at all");
    let (silent, silent_n) = fake_remote(b"");
    let refused = free_port();
    let auth = free_port();
    let _remote = Proc::start(
        &mosq,
        &dir,
        "auth",
        auth,
        &format!("listener {auth} 127.0.0.1\nallow_anonymous false\n"),
    );
    let lp = free_port();
    let conf = format!(
        "listener {lp} 127.0.0.1\nallow_anonymous true\n\
         connection garbage\naddress 127.0.0.1:{garbage}\ntopic g/# out 1\nrestart_timeout 1\n\
         connection silent\naddress 127.0.0.1:{silent}\ntopic s/# out 1\nrestart_timeout 1\n\
         keepalive_interval 5\n\
         connection refused\naddress 127.0.0.1:{refused}\ntopic r/# out 1\nrestart_timeout 1\n\
         connection creds\naddress 127.0.0.1:{auth}\ntopic c/# out 1\nrestart_timeout 1\n\
         remote_username nobody\nremote_password wrong\n"
    );
    let mut local = Proc::start(&broker_binary(), &dir, "local", lp, &conf);
    let deadline = Instant::now() + Duration::from_secs(30);
    let count = |log: &str, name: &str| log.matches(&format!("Connecting bridge {name} (")).count();
    loop {
        let log = local.log();
        let done = ["garbage", "refused", "creds"]
            .iter()
            .all(|n| count(&log, n) >= 3)
            && count(&log, "silent") >= 2;
        if done {
            break;
        }
        assert!(Instant::now() < deadline, "links not retried:\n{log}");
        // Local clients are served meanwhile.
        let mut s = sub(lp, "local-sub", &[("ok", 1)]);
        publish_once(lp, "ok", b"fine", 1, false);
        assert_eq!(expect(&mut s, "local traffic").payload, b"fine");
        thread::sleep(Duration::from_millis(300));
    }
    assert!(local.running(), "still running");
    assert!(garbage_n.load(std::sync::atomic::Ordering::SeqCst) >= 3);
    assert!(silent_n.load(std::sync::atomic::Ordering::SeqCst) >= 2);
    let log = local.log();
    assert!(log.contains("Connection refused"), "{log}");
    assert!(
        log.contains("not authorised") || log.contains("bad user name"),
        "{log}"
    );
}

/// Runs `script` with sh in `dir`; it must succeed.
fn sh(dir: &Path, script: &str) {
    let st = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("sh");
    assert!(st.success(), "{script}");
}

/// A test CA (`ca.crt`) and a server and a client certificate it signed
/// (`server.crt`/`.key`, `client.crt`/`.key`, for 127.0.0.1), made in `dir`.
fn make_certs(dir: &Path) {
    assert!(
        have("openssl"),
        "openssl is needed to make the certificates"
    );
    sh(dir, "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 -subj /CN=test-ca");
    for who in ["server", "client"] {
        sh(
            dir,
            &format!(
                "openssl req -newkey rsa:2048 -nodes -keyout {who}.key -out {who}.csr -subj /CN={who} && \
                 printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > {who}.ext && \
                 openssl x509 -req -in {who}.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
                 -out {who}.crt -days 2 -extfile {who}.ext && chmod 644 {who}.key"
            ),
        );
    }
}

#[test]
fn tls_to_mosquitto_with_a_ca_and_a_client_certificate() {
    let mosq = mosquitto();
    let dir = temp_dir("bridge-tls");
    make_certs(&dir);
    let d = dir.display();
    let (rp, plain, lp) = (free_port(), free_port(), free_port());
    let _remote = Proc::start(
        &mosq,
        &dir,
        "remote",
        plain,
        &format!(
            "listener {plain} 127.0.0.1\nallow_anonymous true\n\
             listener {rp} 127.0.0.1\ncafile {d}/ca.crt\ncertfile {d}/server.crt\n\
             keyfile {d}/server.key\nrequire_certificate true\n"
        ),
    );
    let _local = Proc::start(
        &broker_binary(),
        &dir,
        "local",
        lp,
        &bridge_conf(
            lp,
            rp,
            "tls",
            &format!(
                "topic s/# both 1\nbridge_cafile {d}/ca.crt\n\
                 bridge_certfile {d}/client.crt\nbridge_keyfile {d}/client.key\n"
            ),
        ),
    );
    wait_up(plain, "tls");
    let mut rs = sub(plain, "r", &[("s/#", 1)]);
    publish_once(lp, "s/secure", b"over tls", 1, false);
    assert_eq!(expect(&mut rs, "over TLS").payload, b"over tls");
    let mut ls = sub(lp, "l", &[("s/#", 1)]);
    publish_once(plain, "s/back", b"back", 1, false);
    let m = expect(&mut ls, "back over TLS");
    assert_eq!(m.topic, "s/back");
}

/// Retained messages set while the link is down (any QoS), and retained
/// deletions published at QoS 1, reach the remote when it is back.
#[test]
fn retained_changes_made_during_an_outage_reach_the_remote() {
    let mosq = mosquitto();
    let dir = temp_dir("bridge-retain-outage");
    let (rp, lp) = (free_port(), free_port());
    let rdir = remote_db_dir(&dir);
    let mut remote = Proc::start(
        &mosq,
        &dir,
        "remote",
        rp,
        &remote_conf(
            rp,
            &format!("persistence true\npersistence_location {}/", rdir.display()),
        ),
    );
    let _local = Proc::start(
        &broker_binary(),
        &dir,
        "local",
        lp,
        &bridge_conf(lp, rp, "ro", "topic r/# out 1\n"),
    );
    wait_up(rp, "ro");
    publish_once(lp, "r/changed", b"old", 1, true);
    publish_once(lp, "r/deleted", b"gone soon", 1, true);
    // Both are on the remote before it goes down.
    let deadline = Instant::now() + LINK_WAIT;
    loop {
        let mut c = sub(rp, "check", &[("r/#", 1)]);
        let mut got = Vec::new();
        while let Some(m) = recv(&mut c, Duration::from_millis(300)) {
            got.push(m.topic);
        }
        if got.len() == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "retained not on the remote: {got:?}"
        );
    }
    remote.stop();
    publish_once(lp, "r/changed", b"new", 0, true);
    publish_once(lp, "r/deleted", b"", 1, true);
    publish_once(lp, "r/added", b"added", 0, true);
    remote.restart();
    wait_up(rp, "ro");
    let deadline = Instant::now() + LINK_WAIT;
    loop {
        let mut c = sub(rp, "check2", &[("r/#", 1)]);
        let mut got = Vec::new();
        while let Some(m) = recv(&mut c, Duration::from_millis(300)) {
            got.push((m.topic, String::from_utf8_lossy(&m.payload).to_string()));
        }
        got.sort();
        let want = vec![
            ("r/added".to_string(), "added".to_string()),
            ("r/changed".to_string(), "new".to_string()),
        ];
        if got == want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "remote retained after the outage: {got:?}"
        );
    }
}

/// `start_type lazy`: no connection until `threshold` messages wait; then
/// they all cross, and the link is dropped after `idle_timeout`.
#[test]
fn lazy_link_starts_at_the_threshold_and_stops_when_idle() {
    let mosq = mosquitto();
    let dir = temp_dir("bridge-lazy");
    let (rp, lp) = (free_port(), free_port());
    let _remote = Proc::start(&mosq, &dir, "remote", rp, &remote_conf(rp, ""));
    let local = Proc::start(
        &broker_binary(),
        &dir,
        "local",
        lp,
        &bridge_conf(
            lp,
            rp,
            "lz",
            "topic l/# out 1\nstart_type lazy\nthreshold 3\nidle_timeout 2\n",
        ),
    );
    let mut rs = sub(rp, "r", &[("l/#", 1)]);
    publish_once(lp, "l/1", b"1", 1, false);
    publish_once(lp, "l/2", b"2", 1, false);
    assert!(
        recv(&mut rs, Duration::from_millis(1500)).is_none(),
        "2 < threshold"
    );
    assert!(
        !local.log().contains("Connecting bridge lz"),
        "{}",
        local.log()
    );
    publish_once(lp, "l/3", b"3", 1, false);
    let mut got: Vec<Vec<u8>> = (0..3).map(|_| expect(&mut rs, "lazy").payload).collect();
    got.sort();
    assert_eq!(got, [b"1".to_vec(), b"2".to_vec(), b"3".to_vec()]);
    let deadline = Instant::now() + LINK_WAIT;
    while !local.log().contains("Bridge lz idle") {
        assert!(
            Instant::now() < deadline,
            "not dropped when idle:\n{}",
            local.log()
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// `--test-config` checks a bridge's TLS files like start-up does.
#[test]
fn test_config_refuses_a_missing_bridge_certificate() {
    let dir = temp_dir("bridge-testconfig");
    let conf = dir.join("m.conf");
    fs::write(
        &conf,
        "listener 1883 127.0.0.1\nconnection c\naddress 127.0.0.1:1\ntopic # out\n\
         bridge_cafile /nonexistent/ca.crt\n",
    )
    .unwrap();
    let out = run(
        &broker_binary(),
        &["-c", conf.to_str().unwrap(), "--test-config"],
        WAIT,
    );
    assert_ne!(
        out.status.and_then(|s| s.code()),
        Some(0),
        "{}",
        out.output()
    );
    assert!(out.output().contains("bridge c"), "{}", out.output());
}

/// The annotated example `conf/bridge.conf` is valid as shipped, and works:
/// with only its listener port, remote address and persistence directory
/// rewritten, a reading crosses out and a command crosses in, with the
/// file's prefixes.
#[test]
fn the_example_bridge_conf_works() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/bridge.conf");
    let out = run(
        &broker_binary(),
        &["-c", example.to_str().unwrap(), "--test-config"],
        WAIT,
    );
    assert_eq!(
        out.status.and_then(|s| s.code()),
        Some(0),
        "{}",
        out.output()
    );

    let mosq = mosquitto();
    let dir = temp_dir("bridge-example");
    let (rp, lp) = (free_port(), free_port());
    let db = remote_db_dir(&dir);
    let text = fs::read_to_string(&example).unwrap();
    let mut rewritten = 0;
    let conf: String = text
        .lines()
        .map(|l| {
            let new = if l.starts_with("listener ") {
                format!("listener {lp} 127.0.0.1")
            } else if l.starts_with("address ") {
                format!("address 127.0.0.1:{rp}")
            } else if l.starts_with("persistence_location ") {
                format!("persistence_location {}/", db.display())
            } else {
                return format!("{l}\n");
            };
            rewritten += 1;
            format!("{new}\n")
        })
        .collect();
    assert_eq!(rewritten, 3, "conf/bridge.conf changed shape:\n{text}");

    let _remote = Proc::start(&mosq, &dir, "remote", rp, &remote_conf(rp, ""));
    let _local = Proc::start(&broker_binary(), &dir, "local", lp, &conf);
    wait_up(rp, "pi-kitchen");
    let mut rs = sub(rp, "centre", &[("site/kitchen/sensors/#", 1)]);
    let mut ls = sub(lp, "actuator", &[("commands/#", 1)]);
    publish_once(lp, "sensors/temp", b"21.5", 1, false);
    let m = expect(&mut rs, "a reading at the centre");
    assert_eq!(
        (m.topic.as_str(), m.payload.as_slice()),
        ("site/kitchen/sensors/temp", &b"21.5"[..])
    );
    publish_once(rp, "site/kitchen/commands/led", b"on", 1, false);
    let m = expect(&mut ls, "a command on the Pi");
    assert_eq!(
        (m.topic.as_str(), m.payload.as_slice()),
        ("commands/led", &b"on"[..])
    );
}

/// `round_robin false` (the default): up on the second address, the link
/// tests the first one every 5 s (as Mosquitto 2.0) and goes back to it once
/// it answers; with `round_robin true` it stays where it is.
fn back_to_the_primary(round_robin: bool) {
    let mosq = mosquitto();
    let dir = temp_dir("bridge-failback");
    let (pa, pb, lp) = (free_port(), free_port(), free_port());
    let _secondary = Proc::start(&mosq, &dir, "secondary", pb, &remote_conf(pb, ""));
    let conf = bridge_conf(
        lp,
        pb,
        "fb",
        &format!("topic f/# out 1\nround_robin {round_robin}\n"),
    )
    .replace(
        &format!("address 127.0.0.1:{pb}"),
        &format!("addresses 127.0.0.1:{pa} 127.0.0.1:{pb}"),
    );
    let local = Proc::start(&broker_binary(), &dir, "local", lp, &conf);
    wait_up(pb, "fb");
    let _primary = Proc::start(&mosq, &dir, "primary", pa, &remote_conf(pa, ""));
    let to_primary = format!("Connecting bridge fb (127.0.0.1:{pa})");
    if round_robin {
        // Two primary checks' worth of time: still only the first attempt.
        thread::sleep(Duration::from_secs(11));
        let log = local.log();
        assert_eq!(log.matches(&to_primary).count(), 1, "{log}");
        return;
    }
    wait_up(pa, "fb");
    let mut rs = sub(pa, "on-primary", &[("f/#", 1)]);
    publish_once(lp, "f/x", b"back", 1, false);
    let m = expect(&mut rs, "a message through the primary");
    assert_eq!(m.payload, b"back");
    let log = local.log();
    assert!(log.contains("is reachable again"), "{log}");
    assert_eq!(log.matches(&to_primary).count(), 2, "{log}");
}

#[test]
fn back_to_the_primary_address_when_it_answers_again() {
    back_to_the_primary(false);
}

#[test]
fn round_robin_stays_on_the_second_address() {
    back_to_the_primary(true);
}

/// `bridge_bind_address`: the remote sees the link come from that address
/// (127.0.0.2; all of 127/8 is loopback on Linux), not from 127.0.0.1.
#[test]
fn bridge_bind_address_is_the_source_of_the_link() {
    let mosq = mosquitto();
    let dir = temp_dir("bridge-bind");
    let (rp, lp) = (free_port(), free_port());
    let remote = Proc::start(
        &mosq,
        &dir,
        "remote",
        rp,
        &remote_conf(
            rp,
            "log_dest stderr\nlog_type all\nconnection_messages true",
        ),
    );
    let _local = Proc::start(
        &broker_binary(),
        &dir,
        "local",
        lp,
        &bridge_conf(
            lp,
            rp,
            "bound",
            "topic b/# out 1\nbridge_bind_address 127.0.0.2\n",
        ),
    );
    wait_up(rp, "bound");
    let log = remote.log();
    let line = log
        .lines()
        .find(|l| l.contains("as bound "))
        .unwrap_or_else(|| panic!("the remote logged no connection of the link:\n{log}"));
    assert!(line.contains("from 127.0.0.2:"), "{line}\n{log}");
}

/// `bridge_capath`: the remote's certificate is checked against a directory
/// of hash-named CA certificates (`openssl rehash`), with no `bridge_cafile`.
/// Without the directive the link would speak plain MQTT to a TLS listener
/// and never come up.
#[test]
fn bridge_capath_with_hashed_ca_certificates() {
    let mosq = mosquitto();
    let dir = temp_dir("bridge-capath");
    make_certs(&dir);
    sh(
        &dir,
        "mkdir capath && cp ca.crt capath/test-ca.pem && openssl rehash capath",
    );
    let hashed = fs::read_dir(dir.join("capath"))
        .unwrap()
        .filter_map(|e| e.ok())
        .any(|e| e.file_name().to_string_lossy().ends_with(".0"));
    assert!(hashed, "openssl rehash made no hash-named link");
    let d = dir.display();
    let (rp, plain, lp) = (free_port(), free_port(), free_port());
    let _remote = Proc::start(
        &mosq,
        &dir,
        "remote",
        plain,
        &format!(
            "listener {plain} 127.0.0.1\nallow_anonymous true\n\
             listener {rp} 127.0.0.1\ncertfile {d}/server.crt\nkeyfile {d}/server.key\n"
        ),
    );
    let _local = Proc::start(
        &broker_binary(),
        &dir,
        "local",
        lp,
        &bridge_conf(
            lp,
            rp,
            "capath",
            &format!("topic c/# out 1\nbridge_capath {d}/capath\n"),
        ),
    );
    wait_up(plain, "capath");
    let mut rs = sub(plain, "r", &[("c/#", 1)]);
    publish_once(lp, "c/x", b"checked by capath", 1, false);
    assert_eq!(expect(&mut rs, "over TLS").payload, b"checked by capath");
}

/// `bridge_alpn`: the link offers the configured ALPN protocol in its TLS
/// ClientHello. `openssl s_server` plays the remote and prints the
/// protocols the client advertised. It serves one connection (`-naccept
/// 1`, which the link gives up 5 s after without a CONNACK) and then exits
/// by itself; it is killed by its handle at the end in any case.
#[test]
fn bridge_alpn_is_offered_in_the_tls_handshake() {
    let dir = temp_dir("bridge-alpn");
    make_certs(&dir);
    let d = dir.display();
    let (rp, lp) = (free_port(), free_port());
    let out = dir.join("s_server.out");
    let mut server = KillOnDrop(
        Command::new("openssl")
            .args(["s_server", "-naccept", "1", "-accept"])
            .arg(format!("127.0.0.1:{rp}"))
            .args([
                "-cert",
                "server.crt",
                "-key",
                "server.key",
                "-alpn",
                "x-amzn-mqtt-ca",
            ])
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::from(fs::File::create(&out).unwrap()))
            .stderr(Stdio::from(
                fs::File::create(dir.join("s_server.err")).unwrap(),
            ))
            .spawn()
            .expect("openssl s_server"),
    );
    // No test connection to see it listening: s_server would take it as
    // its client. The link retries every second until s_server is up.
    assert!(
        !matches!(server.0.try_wait(), Ok(Some(_))),
        "openssl s_server exited"
    );
    let _local = Proc::start(
        &broker_binary(),
        &dir,
        "local",
        lp,
        &bridge_conf(
            lp,
            rp,
            "alpn",
            &format!(
                "topic a/# out 1\nbridge_cafile {d}/ca.crt\nbridge_alpn x-amzn-mqtt-ca\n\
                 keepalive_interval 5\n"
            ),
        ),
    );
    let want = "ALPN protocols advertised by the client: x-amzn-mqtt-ca";
    let t = Instant::now();
    loop {
        // Lossy: s_server also echoes the CONNECT it received, in binary.
        let text = String::from_utf8_lossy(&fs::read(&out).unwrap_or_default()).into_owned();
        if text.contains(want) {
            break;
        }
        assert!(
            t.elapsed() < LINK_WAIT,
            "no ClientHello offering x-amzn-mqtt-ca within {LINK_WAIT:?}; s_server said:\n{text}\n{}",
            fs::read_to_string(dir.join("s_server.err")).unwrap_or_default()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// A child process killed (SIGKILL, by its own handle) and reaped on drop.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
