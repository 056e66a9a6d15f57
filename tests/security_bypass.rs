//! Attempts to get around the ACL and dynamic security (issue 16, "Security checks"),
//! black box through the real broker binary: `$SYS` and `$CONTROL` without rights,
//! shared-subscription filters, retained messages after an ACL change (SIGHUP reload and a
//! dynamic-security role change), `mount_point` escapes, `%c`/`%u` patterns with `+`, `#`
//! and `/` in client ids and usernames, a dynamic-security client that is not an admin
//! editing roles, and secrets (passwords, payloads) in the log at `log_type all` and `-v`.
//!
//! Every expectation was checked against Mosquitto 2.0.11:
//! `MIDGE_TEST_BROKER=/usr/sbin/mosquitto cargo test --test security_bypass`.
//!
//! Owns: its ACL and dynamic-security fixtures (written to temp dirs) and the small
//! helpers below. Must not: depend on the midge crate, wait without a deadline, or signal
//! any process but the broker it started. Needs `mosquitto_ctrl` for the dynamic-security
//! tests (fails without it, as `tests/dynsec.rs` does).

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use common::{
    free_port, have, loopback, pair, pairs, temp_dir, testing_mosquitto, Connect, Pub, RawClient,
    TestBroker, PUBACK, WAIT,
};

const PASSWD_EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/conf/passwd.example");
const ACL_EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/conf/acl.example");
const DYNSEC_PLUGIN: &str = "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so";

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// An MQTT 3.1.1 CONNECT with a username and (optionally) a password.
fn with_user(client_id: &str, user: &str, pass: Option<&str>) -> Connect {
    let mut c = Connect::new(client_id);
    c.username = Some(user.to_string());
    c.password = pass.map(|p| p.as_bytes().to_vec());
    c
}

/// A logged-in 3.1.1 client; panics unless the broker accepts it.
fn login(port: u16, client_id: &str, user: &str, pass: Option<&str>) -> RawClient {
    let (c, _, rc) = RawClient::connect_with(port, &with_user(client_id, user, pass));
    assert_eq!(rc, 0, "CONNACK for {user:?} as {client_id:?}");
    c
}

/// Everything delivered to `c` up to now: a PINGREQ round trip is the barrier (the broker
/// queues whatever it routed to `c` before the PINGRESP), so nothing is left unseen
/// without sleeping. Used where the client may not read any marker topic.
fn delivered_so_far(c: &mut RawClient) -> Vec<Pub> {
    c.ping();
    let mut out = Vec::new();
    while let Some(p) = c.next_publish(Duration::from_millis(1)) {
        out.push(p);
    }
    out
}

/// Polls `check` every 50 ms until it is true or `WAIT` has passed.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        assert!(Instant::now() < deadline, "not within {WAIT:?}: {what}");
        thread::sleep(Duration::from_millis(50));
    }
}

/// Sends SIGHUP to the broker this test started (by its PID, nothing else).
fn hangup(b: &TestBroker) {
    let ok = Command::new("kill")
        .args(["-HUP", &b.pid().to_string()])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "kill -HUP {}", b.pid());
}

/// Opens a raw connection to a second listener started with the broker, retrying while it
/// comes up (the harness only waits for the first one).
fn connect_second(port: u16, c: &Connect) -> RawClient {
    let deadline = Instant::now() + WAIT;
    while std::net::TcpStream::connect_timeout(&loopback(port), Duration::from_millis(200)).is_err()
    {
        assert!(Instant::now() < deadline, "second listener {port} not up");
        thread::sleep(Duration::from_millis(20));
    }
    let (client, _, rc) = RawClient::connect_with(port, c);
    assert_eq!(rc, 0, "CONNACK on the second listener");
    client
}

// ---------------------------------------------------------------------------------------------
// $SYS and $CONTROL without rights
// ---------------------------------------------------------------------------------------------

/// `$SYS` is delivered only with read access to it: a client whose ACL allows `public/#`
/// gets nothing from `$SYS/#`, `#`, `+/broker/#` or a shared `$SYS` filter, while alice,
/// allowed `$SYS/#`, receives the periodic updates.
#[test]
fn sys_topics_need_read_access() {
    let dir = temp_dir("bypass-sys");
    let acl = dir.join("acl");
    fs::write(
        &acl,
        "topic read public/#\n\
         user alice\n\
         topic read $SYS/#\n\
         topic readwrite public/#\n",
    )
    .expect("write acl");
    let b = TestBroker::start(&format!(
        "user root\nsys_interval 1\npassword_file {PASSWD_EXAMPLE}\nacl_file {}\n",
        acl.display()
    ));
    let mut anon = RawClient::connected(b.port, "anon-sys");
    let codes = anon.subscribe(&[
        ("$SYS/#", 0),
        ("#", 0),
        ("+/broker/#", 0),
        ("$share/g/$SYS/#", 0),
        ("$SYS/broker/uptime", 0),
    ]);
    // Subscribing is allowed with an ACL file (it filters at delivery), Mosquitto alike.
    assert_eq!(codes, vec![0, 0, 0, 0, 0]);

    let mut alice = login(b.port, "alice-sys", "alice", Some("alicepw"));
    alice.subscribe(&[("$SYS/broker/uptime", 0)]);
    // The retained value, then at least one periodic update: that update went to every
    // $SYS subscriber at once, so anon's copy (if any) is queued before the marker.
    let first = alice.expect_publish(Duration::from_secs(5));
    assert_eq!(first.topic, "$SYS/broker/uptime");
    let second = alice.expect_publish(Duration::from_secs(5));
    assert_eq!(second.topic, "$SYS/broker/uptime");
    alice.publish("public/marker", b"m", 1, false);
    let leaked = anon.publishes_until("public/marker", WAIT);
    assert_eq!(
        pairs(&leaked),
        vec![],
        "an anonymous client without $SYS rights got $SYS messages"
    );
    let _ = fs::remove_dir_all(dir);
}

/// `$CONTROL/...` with an ACL file but no rights to it: what one client publishes there is
/// not delivered to another that subscribes to `$CONTROL/#`, plainly or shared.
#[test]
fn control_topics_need_rights_with_an_acl_file() {
    let dir = temp_dir("bypass-control");
    let acl = dir.join("acl");
    fs::write(
        &acl,
        "topic readwrite public/#\npattern readwrite clients/%c/#\n",
    )
    .expect("write acl");
    let b = TestBroker::start(&format!("user root\nacl_file {}\n", acl.display()));
    let mut spy = RawClient::connected(b.port, "spy");
    spy.subscribe(&[
        ("$CONTROL/#", 1),
        ("$share/g/$CONTROL/#", 1),
        ("#", 1),
        ("public/#", 1),
    ]);
    let mut sender = RawClient::connected(b.port, "sender");
    sender.publish(
        "$CONTROL/dynamic-security/v1",
        br#"{"commands":[{"command":"listClients"}]}"#,
        1,
        false,
    );
    sender.publish("$CONTROL/anything", b"x", 1, false);
    sender.publish("public/marker", b"m", 1, false);
    assert_eq!(pairs(&spy.publishes_until("public/marker", WAIT)), vec![]);
    let _ = fs::remove_dir_all(dir);
}

// ---------------------------------------------------------------------------------------------
// Shared subscriptions
// ---------------------------------------------------------------------------------------------

/// `$share/<group>/<filter>` is filtered by the same read rules as `<filter>`: the
/// anonymous client of `conf/acl.example` (read `public/#`) gets no sensor readings through
/// shared filters, and bob's `deny sensors/private` holds in a shared group.
#[test]
fn shared_subscriptions_do_not_get_around_read_rules() {
    let b = TestBroker::start(&format!(
        "user root\npassword_file {PASSWD_EXAMPLE}\nacl_file {ACL_EXAMPLE}\n"
    ));
    let port = b.port;
    let mut anon = RawClient::connected(port, "anon-share");
    assert_eq!(
        anon.subscribe(&[
            ("$share/g/sensors/#", 1),
            ("$share/g/#", 1),
            ("$share/h/+/temp", 1),
            ("$share/g/public/#", 1),
        ]),
        vec![1, 1, 1, 1]
    );
    let mut bob = login(port, "bob-share", "bob", Some("bobpw"));
    bob.subscribe(&[("$share/b/sensors/#", 1), ("$share/b/commands/#", 1)]);
    let mut alice = login(port, "alice-share", "alice", Some("alicepw"));
    alice.publish("sensors/temp", b"21", 1, false);
    alice.publish("sensors/private", b"p", 1, false);
    alice.publish("commands/marker", b"c", 1, false);
    alice.publish("public/marker", b"m", 1, false);

    assert_eq!(
        pairs(&anon.publishes_until("public/marker", WAIT)),
        vec![],
        "anonymous: shared filters delivered topics outside public/#"
    );
    assert_eq!(
        pairs(&bob.publishes_until("commands/marker", WAIT)),
        vec![pair("sensors/temp", "21")],
        "bob: sensors/private reached him through a shared group"
    );
}

// ---------------------------------------------------------------------------------------------
// Retained messages after an ACL change
// ---------------------------------------------------------------------------------------------

/// A retained message stored while bob could read it is not delivered to him once a
/// SIGHUP-reloaded ACL file takes the right away.
#[test]
fn retained_message_not_delivered_after_acl_reload_takes_read_away() {
    let dir = temp_dir("bypass-retain-hup");
    let acl = dir.join("acl");
    let before = "user alice\ntopic readwrite sensors/#\ntopic readwrite public/#\n\
                  user bob\ntopic read sensors/#\ntopic read public/#\n";
    fs::write(&acl, before).expect("write acl");
    let b = TestBroker::start(&format!(
        "user root\npassword_file {PASSWD_EXAMPLE}\nacl_file {}\n",
        acl.display()
    ));
    let port = b.port;
    let mut alice = login(port, "alice-rh", "alice", Some("alicepw"));
    alice.publish("sensors/secret", b"s3", 1, true);
    alice.publish("public/marker", b"m", 1, true);

    // With the right, bob gets it: the test can tell.
    let mut bob = login(port, "bob-rh0", "bob", Some("bobpw"));
    bob.subscribe(&[("sensors/#", 1)]);
    bob.subscribe(&[("public/#", 1)]);
    assert_eq!(
        pairs(&bob.publishes_until("public/marker", WAIT)),
        vec![pair("sensors/secret", "s3")]
    );
    drop(bob);

    fs::write(&acl, before.replace("topic read sensors/#\n", "")).expect("rewrite acl");
    hangup(&b);
    let mut n = 0;
    eventually(
        "bob no longer gets the retained sensors/secret after SIGHUP",
        || {
            n += 1;
            let mut bob = login(port, &format!("bob-rh{n}"), "bob", Some("bobpw"));
            bob.subscribe(&[("sensors/#", 1)]);
            bob.subscribe(&[("public/#", 1)]);
            bob.publishes_until("public/marker", WAIT).is_empty()
        },
    );
    let _ = fs::remove_dir_all(dir);
}

// ---------------------------------------------------------------------------------------------
// mount_point
// ---------------------------------------------------------------------------------------------

/// A client on a `mount_point tenant1/` listener stays inside `tenant1/`: `../`, a leading
/// `/`, wildcards and `$`-filters do not reach topics outside it, and what it publishes
/// always lands under the prefix.
#[test]
fn mount_point_cannot_be_escaped() {
    let mounted = free_port();
    let b = TestBroker::start(&format!(
        "listener {mounted} 127.0.0.1\nmount_point tenant1/\n"
    ));
    let mut outside = RawClient::connected(b.port, "outside");
    outside.subscribe(&[("#", 1)]);
    let mut tenant = connect_second(mounted, &Connect::new("tenant"));
    let filters = [
        ("#", 1),
        ("../#", 1),
        ("+/#", 1),
        ("/#", 1),
        ("$SYS/#", 1),
        ("..", 1),
    ];
    for (f, q) in filters {
        // Each filter on its own: a refusal of one must not hide the others.
        let codes = tenant.subscribe(&[(f, q)]);
        assert_eq!(codes.len(), 1);
    }
    outside.publish("secret", b"outside-1", 1, false);
    outside.publish("other/secret", b"outside-2", 1, false);
    outside.publish("tenant1/inside", b"in", 1, false);
    outside.publish("tenant1/marker", b"m", 1, false);
    // Mosquitto 2.0.11 delivers the topic with the mount point still on it (midge strips
    // it, as Mosquitto's documentation says); either way nothing from outside may arrive.
    let (local_in, marker) = if testing_mosquitto() {
        ("tenant1/inside", "tenant1/marker")
    } else {
        ("inside", "marker")
    };
    let got = tenant.publishes_until(marker, WAIT);
    assert!(
        got.iter()
            .all(|p| p.payload == b"in" && p.topic == local_in),
        "the mounted client saw topics outside its mount point: {:?}",
        pairs(&got)
    );
    assert!(!got.is_empty(), "the mounted client got nothing at all");

    // Its publishes all land under the prefix, literally.
    tenant.publish("../escape", b"e1", 1, false);
    tenant.publish("/abs", b"e2", 1, false);
    tenant.publish("x/../../y", b"e3", 1, false);
    tenant.publish("end", b"e4", 1, false);
    let seen = outside.publishes_until("tenant1/end", WAIT);
    let seen: Vec<_> = pairs(&seen)
        .into_iter()
        .filter(|(_, p)| p.starts_with('e'))
        .collect();
    assert_eq!(
        seen,
        vec![
            pair("tenant1/../escape", "e1"),
            pair("tenant1//abs", "e2"),
            pair("tenant1/x/../../y", "e3"),
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// %c / %u with wildcards and separators in names
// ---------------------------------------------------------------------------------------------

/// The ACL of the pattern tests: each client its own `clients/<id>/#`, each user
/// `users/<name>/#`, everybody reads and writes `public/#`.
const PATTERN_ACL: &str = "topic readwrite public/#\n\
                           pattern readwrite clients/%c/#\n\
                           pattern readwrite users/%u/#\n";

/// A client id or username containing `+` or `#` would turn `clients/%c/#` into a filter
/// over everyone's tree. Mosquitto refuses such clients every pattern-governed access; so
/// must midge: they read nothing of others' trees and cannot write into them.
#[test]
fn wildcards_in_client_ids_and_usernames_grant_nothing() {
    let dir = temp_dir("bypass-pattern");
    let acl = dir.join("acl");
    fs::write(&acl, PATTERN_ACL).expect("write acl");
    let b = TestBroker::start(&format!("user root\nacl_file {}\n", acl.display()));
    let port = b.port;
    let mut victim = login(port, "dev1", "alice", None);
    victim.subscribe(&[("clients/dev1/#", 1), ("users/alice/#", 1)]);
    victim.publish("clients/dev1/state", b"victim-c", 1, true);
    victim.publish("users/alice/state", b"victim-u", 1, true);
    assert_eq!(
        delivered_so_far(&mut victim).len(),
        2,
        "dev1 reads its own tree"
    );

    let attackers: [(&str, Option<&str>); 6] = [
        ("+", None),
        ("#", None),
        ("a+b", None),
        ("x#", None),
        ("att-u1", Some("+")),
        ("att-u2", Some("#")),
    ];
    for (id, user) in attackers {
        let mut att = match user {
            Some(u) => login(port, id, u, None),
            None => RawClient::connected(port, id),
        };
        att.subscribe(&[("clients/#", 1), ("users/#", 1)]);
        att.publish("clients/dev1/state", b"forged-c", 1, false);
        att.publish("users/alice/state", b"forged-u", 1, false);
        victim.publish("clients/dev1/live", b"live", 1, false);
        assert_eq!(
            pairs(&delivered_so_far(&mut att)),
            vec![],
            "client id {id:?} user {user:?} read another client's tree"
        );
        assert_eq!(
            pairs(&delivered_so_far(&mut victim)),
            vec![pair("clients/dev1/live", "live")],
            "client id {id:?} user {user:?} wrote into dev1's tree"
        );
    }
    let _ = fs::remove_dir_all(dir);
}

/// A `/` in a client id or username is substituted as it is (Mosquitto does not refuse it):
/// the client gets exactly its literal topic tree, `clients/dev1/x/#` for id `dev1/x`, and
/// nothing of `clients/dev1/...` outside it. The same for `..` levels.
#[test]
fn slashes_in_client_ids_and_usernames_stay_literal() {
    let dir = temp_dir("bypass-slash");
    let acl = dir.join("acl");
    fs::write(&acl, PATTERN_ACL).expect("write acl");
    let b = TestBroker::start(&format!("user root\nacl_file {}\n", acl.display()));
    let port = b.port;
    let mut victim = login(port, "dev1", "alice", None);
    victim.publish("clients/dev1/state", b"victim-c", 1, true);
    victim.publish("users/alice/state", b"victim-u", 1, true);

    for (id, user) in [("dev1/x", "alice/x"), ("dev1/..", "alice/.."), ("/", "/")] {
        let mut att = login(port, id, user, None);
        att.subscribe(&[("clients/#", 1), ("users/#", 1)]);
        // Its own literal trees work (the grant is the literal substitution)...
        att.publish(&format!("clients/{id}/own"), b"own-c", 1, false);
        att.publish(&format!("users/{user}/own"), b"own-u", 1, false);
        // ...and nothing else: not dev1's retained state, not alice's.
        victim.publish("clients/dev1/live", b"live", 1, false);
        assert_eq!(
            pairs(&delivered_so_far(&mut att)),
            vec![
                pair(&format!("clients/{id}/own"), "own-c"),
                pair(&format!("users/{user}/own"), "own-u")
            ],
            "client id {id:?} user {user:?}: wrong view of the trees"
        );
    }
    let _ = fs::remove_dir_all(dir);
}

// ---------------------------------------------------------------------------------------------
// Dynamic security: a client that is not an admin
// ---------------------------------------------------------------------------------------------

fn ctrl(port: u16, args: &[&str]) -> String {
    let out = Command::new("mosquitto_ctrl")
        .args(["-p", &port.to_string(), "-u", "admin", "-P", "adminpw"])
        .arg("dynsec")
        .args(args)
        .output()
        .expect("run mosquitto_ctrl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "mosquitto_ctrl {args:?}: {text}");
    text
}

/// A broker with the dynamic-security plugin on a fresh `mosquitto_ctrl dynsec init` file
/// (admin/adminpw).
fn dynsec_broker(dir: &Path) -> (TestBroker, PathBuf) {
    assert!(have("mosquitto_ctrl"), "mosquitto_ctrl is not installed");
    let file = dir.join("dynsec.json");
    common::dynsec_init_admin(&file);
    let conf = format!(
        "plugin {DYNSEC_PLUGIN}\nplugin_opt_config_file {}\nuser root\n",
        file.display()
    );
    (TestBroker::start(&conf), file)
}

/// mallory may publish and subscribe `#` (every ordinary topic) but is no admin: her
/// commands on `$CONTROL/dynamic-security/v1` change nothing, and she neither sees the
/// admin's responses nor gets them by subscribing with `#`, shared or plain.
#[test]
fn dynsec_client_that_is_not_admin_cannot_edit_roles() {
    let dir = temp_dir("bypass-dynsec");
    let (b, _file) = dynsec_broker(&dir);
    let port = b.port;
    ctrl(port, &["createClient", "mallory", "-p", "mallorypw"]);
    ctrl(port, &["createRole", "everything"]);
    for (kind, filter) in [
        ("publishClientSend", "#"),
        ("publishClientReceive", "#"),
        ("subscribePattern", "#"),
    ] {
        ctrl(port, &["addRoleACL", "everything", kind, filter, "allow"]);
    }
    ctrl(port, &["addClientRole", "mallory", "everything"]);

    let mut mallory = login(port, "mallory-1", "mallory", Some("mallorypw"));
    // Mosquitto 2.0.11 grants these (its subscribePattern `#` matches `$CONTROL/#` as a
    // filter) and filters at delivery, where `#` does not match a `$` topic: the codes are
    // not the point, what arrives is.
    let codes = mallory.subscribe(&[
        ("$CONTROL/dynamic-security/v1/response", 1),
        ("$CONTROL/#", 1),
        ("$share/g/$CONTROL/#", 1),
        ("#", 1),
    ]);
    assert_eq!(codes.len(), 4);
    for cmd in [
        r#"{"commands":[{"command":"addClientRole","username":"mallory","rolename":"admin"}]}"#,
        r#"{"commands":[{"command":"createClient","username":"evil","password":"evilpw"}]}"#,
        r#"{"commands":[{"command":"addRoleACL","rolename":"everything","acltype":"publishClientSend","topic":"$CONTROL/#","allow":true}]}"#,
        r#"{"commands":[{"command":"setDefaultACLAccess","acls":[{"acltype":"subscribe","allow":true}]}]}"#,
    ] {
        // Acknowledged (3.1.1 has no way to say no), then dropped.
        let pid = mallory.pid();
        mallory.send(&common::publish_packet(
            "$CONTROL/dynamic-security/v1",
            cmd.as_bytes(),
            1,
            false,
            false,
            pid,
        ));
        let ack = mallory.expect_kind(PUBACK, WAIT);
        assert_eq!(ack.pid(), Some(pid));
    }
    // The admin's own traffic on $CONTROL does not reach her either.
    let listing = ctrl(port, &["listClients"]);
    mallory.publish("m/marker", b"m", 1, false);
    assert_eq!(
        pairs(&mallory.publishes_until("m/marker", WAIT)),
        vec![],
        "mallory saw $CONTROL traffic"
    );

    assert!(
        !listing.contains("evil"),
        "createClient by mallory: {listing}"
    );
    let roles = ctrl(port, &["getClient", "mallory"]);
    assert!(
        !roles.contains("admin"),
        "mallory gave herself the admin role: {roles}"
    );
    let role = ctrl(port, &["getRole", "everything"]);
    assert!(
        !role.contains("$CONTROL"),
        "mallory edited her own role: {role}"
    );
    // "evil" cannot log in.
    let (_, _, rc) = RawClient::connect_with(port, &with_user("evil-1", "evil", Some("evilpw")));
    assert_ne!(rc, 0, "a client created by mallory logged in");
    let _ = fs::remove_dir_all(dir);
}

/// A retained message bob could read is not delivered after the admin denies him
/// `publishClientReceive` on it through dynamic security.
#[test]
fn retained_message_not_delivered_after_dynsec_role_change() {
    let dir = temp_dir("bypass-dynsec-retain");
    let (b, _file) = dynsec_broker(&dir);
    let port = b.port;
    ctrl(port, &["createClient", "writer", "-p", "writerpw"]);
    ctrl(port, &["createClient", "bob", "-p", "bobpw"]);
    ctrl(port, &["createRole", "w"]);
    ctrl(
        port,
        &["addRoleACL", "w", "publishClientSend", "sensors/#", "allow"],
    );
    ctrl(port, &["addClientRole", "writer", "w"]);
    ctrl(port, &["createRole", "reader"]);
    ctrl(
        port,
        &[
            "addRoleACL",
            "reader",
            "subscribePattern",
            "sensors/#",
            "allow",
        ],
    );
    ctrl(port, &["addClientRole", "bob", "reader"]);

    let mut writer = login(port, "writer-1", "writer", Some("writerpw"));
    writer.publish("sensors/secret", b"s3", 1, true);
    writer.publish("sensors/open", b"o", 1, true);

    let read_retained = |n: u32| {
        let mut bob = login(port, &format!("bob-{n}"), "bob", Some("bobpw"));
        bob.subscribe(&[("sensors/secret", 1)]);
        bob.subscribe(&[("sensors/open", 1)]);
        pairs(&bob.publishes_until("sensors/open", WAIT))
    };
    assert_eq!(read_retained(0), vec![pair("sensors/secret", "s3")]);

    ctrl(
        port,
        &[
            "addRoleACL",
            "reader",
            "publishClientReceive",
            "sensors/secret",
            "deny",
        ],
    );
    assert_eq!(
        read_retained(1),
        vec![],
        "the retained message leaked after the role change"
    );
    let _ = fs::remove_dir_all(dir);
}

// ---------------------------------------------------------------------------------------------
// Secrets in the log
// ---------------------------------------------------------------------------------------------

/// At `log_type all` and `-v`, the log names clients and topics but never a password (right
/// or wrong, in CONNECT or in a will) nor a payload (PUBLISH, retained, will).
#[test]
fn passwords_and_payloads_never_reach_the_log() {
    let dir = temp_dir("bypass-log");
    let acl = dir.join("acl");
    fs::write(&acl, "user alice\ntopic readwrite #\n").expect("write acl");
    let b = TestBroker::start_with_args(
        &["-v"],
        &format!(
            "user root\nlog_type all\nconnection_messages true\n\
             password_file {PASSWD_EXAMPLE}\nacl_file {}\n",
            acl.display()
        ),
    );
    let port = b.port;
    let payload = "PAYLOAD-CANARY-7f3a";
    let retained = "RETAINED-CANARY-91c2";
    let will = "WILL-CANARY-44d1";
    let wrong = "WRONG-PW-CANARY-5e6b";

    // A refused login with a wrong password, and one with an unknown user.
    let (_, _, rc) = RawClient::connect_with(port, &with_user("w1", "alice", Some(wrong)));
    assert_ne!(rc, 0);
    let (_, _, rc) = RawClient::connect_with(port, &with_user("w2", "nobody", Some(wrong)));
    assert_ne!(rc, 0);

    let mut alice = login(port, "alice-log", "alice", Some("alicepw"));
    alice.subscribe(&[("t/#", 2)]);
    for q in 0..=2 {
        alice.publish("t/x", payload.as_bytes(), q, false);
    }
    alice.publish("t/r", retained.as_bytes(), 1, true);
    let mut c = with_user("alice-will", "alice", Some("alicepw"));
    c = c.will("t/will", will.as_bytes(), 1, false);
    let (mut dying, _, rc) = RawClient::connect_with(port, &c);
    assert_eq!(rc, 0);
    dying.ping();
    drop(dying); // no DISCONNECT: the will is published
    let mut got = Vec::new();
    let deadline = Instant::now() + WAIT;
    while got.len() < 5 && Instant::now() < deadline {
        if let Some(p) = alice.next_publish(Duration::from_millis(200)) {
            got.push(String::from_utf8_lossy(&p.payload).into_owned());
        }
    }
    assert_eq!(got.len(), 5, "deliveries: {got:?}");
    assert!(got.iter().any(|p| p == will), "the will arrived: {got:?}");
    alice.ping();

    let log = b.log();
    assert!(
        log.contains("alice-log") && log.contains("t/#"),
        "the log is too quiet to judge (log_type all):\n{log}"
    );
    for secret in [payload, retained, will, wrong, "alicepw"] {
        assert!(!log.contains(secret), "the log contains {secret:?}:\n{log}");
    }
    // Nor the payload bytes in hex.
    let hex: String = payload.bytes().map(|b| format!("{b:02x}")).collect();
    assert!(
        !log.to_ascii_lowercase().contains(&hex),
        "hex payload in log"
    );
    let _ = fs::remove_dir_all(dir);
}

// ---------------------------------------------------------------------------------------------
// Wills
// ---------------------------------------------------------------------------------------------

/// A will is a publish like any other: bob, who may only read `sensors/#`, cannot get a
/// message onto it by setting a will and dropping the connection (Mosquitto refuses such
/// a CONNECT; a broker may also accept it and drop the will, but never deliver it).
#[test]
fn will_on_a_topic_without_write_access_is_not_delivered() {
    let b = TestBroker::start(&format!(
        "user root\npassword_file {PASSWD_EXAMPLE}\nacl_file {ACL_EXAMPLE}\n"
    ));
    let port = b.port;
    let mut alice = login(port, "alice-will", "alice", Some("alicepw"));
    alice.subscribe(&[("sensors/#", 1)]);
    let c = with_user("bob-will", "bob", Some("bobpw")).will("sensors/temp", b"forged", 1, true);
    let (mut bob, _, rc) = RawClient::connect_with(port, &c);
    if rc == 0 {
        bob.ping();
        drop(bob); // no DISCONNECT: the will would be published now
        eventually("the broker notices bob is gone", || {
            b.log().contains("Client bob-will closed its connection")
        });
    }
    // A later subscriber finds no retained will either.
    let mut late = login(port, "alice-late", "alice", Some("alicepw"));
    late.subscribe(&[("sensors/#", 1)]);
    late.publish("sensors/marker", b"m", 1, false);
    alice.publish("sensors/marker", b"m", 1, false);
    assert_eq!(
        pairs(&alice.publishes_until("sensors/marker", WAIT)),
        vec![]
    );
    assert_eq!(pairs(&late.publishes_until("sensors/marker", WAIT)), vec![]);
}
