//! Tests for the dynamic security model, checked against Mosquitto 2.0.11 responses.

use super::*;

/// The `dynsec init` output of the installed mosquitto_ctrl 2.0.11 (password "adminpw").
const INIT_FILE: &str = r##"{
	"clients":	[{
			"username":	"admin",
			"textName":	"Dynsec admin user",
			"password":	"SRNqHpj6FOucJzC6VXv66pylEU00O9FKrKj0kfWBCtzVlNLzs0aT4dVVdheR370cLefu6jwZ/hkjlH1dK4bzfw==",
			"salt":	"kFzRbTisYJbHQNmD",
			"iterations":	101,
			"roles":	[{
					"rolename":	"admin"
				}]
		}],
	"roles":	[{
			"rolename":	"admin",
			"acls":	[{
					"acltype":	"publishClientSend",
					"topic":	"$CONTROL/dynamic-security/#",
					"allow":	true
				}, {
					"acltype":	"publishClientReceive",
					"topic":	"$CONTROL/dynamic-security/#",
					"allow":	true
				}, {
					"acltype":	"subscribePattern",
					"topic":	"$CONTROL/dynamic-security/#",
					"allow":	true
				}, {
					"acltype":	"publishClientReceive",
					"topic":	"$SYS/#",
					"allow":	true
				}, {
					"acltype":	"subscribePattern",
					"topic":	"$SYS/#",
					"allow":	true
				}, {
					"acltype":	"publishClientReceive",
					"topic":	"#",
					"allow":	true
				}, {
					"acltype":	"subscribePattern",
					"topic":	"#",
					"allow":	true
				}, {
					"acltype":	"unsubscribePattern",
					"topic":	"#",
					"allow":	true
				}]
		}],
	"defaultACLAccess":	{
		"publishClientSend":	false,
		"publishClientReceive":	true,
		"subscribe":	false,
		"unsubscribe":	true
	}
}"##;

fn run(ds: &mut DynSec, cmds: Value) -> Vec<Value> {
    let payload = json!({ "commands": cmds }).to_string();
    let (out, _, _) = ds.handle(payload.as_bytes());
    let v: Value = serde_json::from_str(&out).expect("response is JSON");
    v["responses"].as_array().cloned().unwrap_or_default()
}

fn one(ds: &mut DynSec, cmd: Value) -> Value {
    run(ds, json!([cmd]))
        .into_iter()
        .next()
        .unwrap_or(Value::Null)
}

fn ok(ds: &mut DynSec, cmd: Value) {
    let r = one(ds, cmd.clone());
    assert!(r.get("error").is_none(), "{cmd} -> {r}");
}

fn err(ds: &mut DynSec, cmd: Value) -> String {
    one(ds, cmd)["error"].as_str().unwrap_or("").to_owned()
}

#[test]
fn init_file_loads_authenticates_and_round_trips() {
    let ds = DynSec::from_json(INIT_FILE).unwrap();
    assert_eq!(ds.authenticate("admin", b"adminpw", "any"), Some(true));
    assert_eq!(ds.authenticate("admin", b"wrong", "any"), Some(false));
    assert_eq!(ds.authenticate("nobody", b"adminpw", "any"), None);
    let c = &ds.clients["admin"];
    assert_eq!(c.textname.as_deref(), Some("Dynsec admin user"));
    assert_eq!(ds.roles["admin"].acls.len(), 8);
    let again = DynSec::from_json(&ds.to_json()).unwrap();
    assert_eq!(again, ds);
    assert_eq!(again.authenticate("admin", b"adminpw", "x"), Some(true));
}

#[test]
fn init_matches_reference_shape() {
    let ds = DynSec::init("boss", "secret");
    assert_eq!(ds.authenticate("boss", b"secret", "c"), Some(true));
    let v: Value = serde_json::from_str(&ds.to_json()).unwrap();
    let c = &v["clients"][0];
    assert_eq!(c["iterations"], json!(101));
    assert_eq!(
        base64::decode(c["salt"].as_str().unwrap()).unwrap().len(),
        12
    );
    assert_eq!(
        base64::decode(c["password"].as_str().unwrap())
            .unwrap()
            .len(),
        64
    );
    let reference = DynSec::from_json(INIT_FILE).unwrap();
    assert_eq!(ds.roles, reference.roles);
    assert_eq!(ds.defaults, reference.defaults);
}

#[test]
fn save_and_load_via_rename() {
    let dir = std::env::temp_dir().join(format!("midge-dynsec-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("dynsec.json");
    let ds = DynSec::init("admin", "pw");
    ds.save(&path).unwrap();
    assert!(!dir.join("dynsec.json.new").exists());
    assert_eq!(DynSec::load(&path).unwrap(), ds);
    assert!(DynSec::load(&dir.join("missing.json")).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn top_level_errors_match_mosquitto() {
    let mut ds = DynSec::new();
    let (out, changed, kicks) = ds.handle(b"garbage");
    assert_eq!(
        out,
        r#"{"responses":[{"command":"Unknown command","error":"Payload not valid JSON"}]}"#
    );
    assert!(!changed && kicks.is_empty());
    for p in [&b"{}"[..], b"{\"commands\":5}"] {
        let (out, _, _) = ds.handle(p);
        assert!(out.contains("Invalid/missing commands"), "{out}");
    }
    let r = run(
        &mut ds,
        json!([5, {"x": 1}, {"command": 5}, {"command": "bogus", "correlationData": "abc"}]),
    );
    assert_eq!(r[0]["error"], "Command not an object");
    assert_eq!(r[1]["error"], "Missing command");
    assert_eq!(r[2]["error"], "Missing command");
    assert_eq!(
        r[3],
        json!({"command": "bogus", "error": "Unknown command", "correlationData": "abc"})
    );
}

#[test]
fn client_commands() {
    let mut ds = DynSec::from_json(INIT_FILE).unwrap();
    let r = one(
        &mut ds,
        json!({"command": "LISTCLIENTS", "correlationData": "abc"}),
    );
    assert_eq!(
        r,
        json!({"command":"listClients","data":{"totalCount":1,"clients":["admin"]},"correlationData":"abc"})
    );
    assert_eq!(
        err(&mut ds, json!({"command": "createClient"})),
        "Invalid/missing username"
    );
    let (out, changed, _) =
        ds.handle(br#"{"commands":[{"command":"createClient","username":"u1"}]}"#);
    assert_eq!(out, r#"{"responses":[{"command":"createClient"}]}"#);
    assert!(changed);
    assert_eq!(
        err(
            &mut ds,
            json!({"command": "createClient", "username": "u1", "password": "p"})
        ),
        "Client already exists"
    );
    assert_eq!(
        one(&mut ds, json!({"command": "getClient", "username": "u1"})),
        json!({"command":"getClient","data":{"client":{"username":"u1","roles":[],"groups":[]}}})
    );
    assert_eq!(
        err(&mut ds, json!({"command": "getClient", "username": "nope"})),
        "Client not found"
    );
    assert_eq!(
        err(&mut ds, json!({"command": "getClient"})),
        "Invalid/missing username"
    );
    let r = one(&mut ds, json!({"command": "listClients", "verbose": true}));
    assert_eq!(
        r["data"],
        json!({"totalCount":2,"clients":[{"username":"admin","textname":"Dynsec admin user","roles":[{"rolename":"admin"}],"groups":[]},{"username":"u1","roles":[],"groups":[]}]})
    );
    let r = one(
        &mut ds,
        json!({"command": "listClients", "count": 1, "offset": 1}),
    );
    assert_eq!(r["data"], json!({"totalCount": 2, "clients": ["u1"]}));

    // A client without a password is not dynsec-authenticated (defer).
    assert_eq!(ds.authenticate("u1", b"", "c"), None);
    assert_eq!(
        err(
            &mut ds,
            json!({"command": "setClientPassword", "username": "u1"})
        ),
        "Invalid/missing password"
    );
    assert_eq!(
        err(
            &mut ds,
            json!({"command": "setClientPassword", "username": "zz", "password": "x"})
        ),
        "Client not found"
    );
    let (_, changed, kicks) = ds.handle(
        br#"{"commands":[{"command":"setClientPassword","username":"u1","password":"pw1"}]}"#,
    );
    assert!(changed);
    assert_eq!(kicks, vec!["u1".to_owned()]);
    assert_eq!(ds.authenticate("u1", b"pw1", "c"), Some(true));

    ok(
        &mut ds,
        json!({"command": "setClientId", "username": "u1", "clientid": "c1"}),
    );
    assert_eq!(ds.authenticate("u1", b"pw1", "c1"), Some(true));
    assert_eq!(ds.authenticate("u1", b"pw1", "c2"), Some(false));
    ok(&mut ds, json!({"command": "setClientId", "username": "u1"}));
    assert_eq!(ds.authenticate("u1", b"pw1", "c2"), Some(true));

    let (_, _, kicks) = ds.handle(br#"{"commands":[{"command":"disableClient","username":"u1"}]}"#);
    assert_eq!(kicks, vec!["u1".to_owned()]);
    assert_eq!(ds.authenticate("u1", b"pw1", "c"), Some(false));
    assert_eq!(
        one(&mut ds, json!({"command": "getClient", "username": "u1"}))["data"]["client"]
            ["disabled"],
        json!(true)
    );
    assert_eq!(
        err(
            &mut ds,
            json!({"command": "enableClient", "username": "zz"})
        ),
        "Client not found"
    );
    let (_, _, kicks) = ds.handle(br#"{"commands":[{"command":"enableClient","username":"u1"}]}"#);
    assert!(kicks.is_empty());
    assert_eq!(ds.authenticate("u1", b"pw1", "c"), Some(true));

    ok(&mut ds, json!({"command": "createRole", "rolename": "r1"}));
    assert_eq!(
        err(
            &mut ds,
            json!({"command": "addClientRole", "username": "u1", "rolename": "zz"})
        ),
        "Role not found"
    );
    assert_eq!(
        err(
            &mut ds,
            json!({"command": "addClientRole", "username": "zz", "rolename": "r1"})
        ),
        "Client not found"
    );
    ok(
        &mut ds,
        json!({"command": "addClientRole", "username": "u1", "rolename": "r1", "priority": 2}),
    );
    assert_eq!(
        err(
            &mut ds,
            json!({"command": "addClientRole", "username": "u1", "rolename": "r1"})
        ),
        "Internal error"
    );
    assert_eq!(
        ds.clients["u1"].roles,
        vec![Link {
            name: "r1".into(),
            priority: 2
        }]
    );
    ok(
        &mut ds,
        json!({"command": "removeClientRole", "username": "u1", "rolename": "r1"}),
    );
    assert!(ds.clients["u1"].roles.is_empty());

    ok(
        &mut ds,
        json!({"command": "modifyClient", "username": "u1", "textname": "T", "roles": [{"rolename": "r1"}], "password": "pw2"}),
    );
    assert_eq!(ds.clients["u1"].textname.as_deref(), Some("T"));
    assert_eq!(ds.authenticate("u1", b"pw2", "c"), Some(true));
    assert_eq!(
        err(
            &mut ds,
            json!({"command": "modifyClient", "username": "zz"})
        ),
        "Client not found"
    );
    assert_eq!(
        err(
            &mut ds,
            json!({"command": "modifyClient", "username": "u1", "roles": [{"rolename": "zz"}]})
        ),
        "Role not found"
    );

    assert_eq!(
        err(
            &mut ds,
            json!({"command": "deleteClient", "username": "zz"})
        ),
        "Client not found"
    );
    let (_, _, kicks) = ds.handle(br#"{"commands":[{"command":"deleteClient","username":"u1"}]}"#);
    assert_eq!(kicks, vec!["u1".to_owned()]);
    assert_eq!(ds.authenticate("u1", b"pw2", "c"), None);
}

#[test]
fn role_and_group_commands() {
    let mut ds = DynSec::from_json(INIT_FILE).unwrap();
    ok(
        &mut ds,
        json!({"command": "createClient", "username": "u1", "password": "p"}),
    );
    ok(
        &mut ds,
        json!({"command": "createRole", "rolename": "r1", "acls": [{"acltype": "publishClientSend", "topic": "a/#", "priority": 5, "allow": true}]}),
    );
    assert_eq!(
        err(&mut ds, json!({"command": "createRole", "rolename": "r1"})),
        "Role already exists"
    );
    assert_eq!(
        err(&mut ds, json!({"command": "createRole"})),
        "Invalid/missing rolename"
    );
    ok(
        &mut ds,
        json!({"command": "addRoleACL", "rolename": "r1", "acltype": "subscribeLiteral", "topic": "x", "allow": false}),
    );
    assert_eq!(
        one(&mut ds, json!({"command": "getRole", "rolename": "r1"})),
        json!({"command":"getRole","data":{"role":{"rolename":"r1","acls":[{"acltype":"publishClientSend","topic":"a/#","priority":5,"allow":true},{"acltype":"subscribeLiteral","topic":"x","priority":0,"allow":false}]}}})
    );
    assert_eq!(
        err(&mut ds, json!({"command": "getRole", "rolename": "zz"})),
        "Role not found"
    );
    assert_eq!(
        err(
            &mut ds,
            json!({"command": "addRoleACL", "rolename": "r1", "acltype": "bad", "topic": "x"})
        ),
        "Unknown acltype"
    );
    assert_eq!(
        err(
            &mut ds,
            json!({"command": "addRoleACL", "rolename": "r1", "acltype": "subscribeLiteral", "topic": "x"})
        ),
        "ACL with this topic already exists"
    );
    assert_eq!(
        err(
            &mut ds,
            json!({"command": "removeRoleACL", "rolename": "r1", "acltype": "subscribeLiteral", "topic": "nope"})
        ),
        "ACL not found"
    );
    ok(
        &mut ds,
        json!({"command": "removeRoleACL", "rolename": "r1", "acltype": "subscribeLiteral", "topic": "x"}),
    );
    assert_eq!(ds.roles["r1"].acls.len(), 1);
    ok(
        &mut ds,
        json!({"command": "modifyRole", "rolename": "r1", "textname": "Role one"}),
    );
    assert_eq!(ds.roles["r1"].acls.len(), 1);
    assert_eq!(
        one(&mut ds, json!({"command": "listRoles"}))["data"],
        json!({"totalCount": 2, "roles": ["admin", "r1"]})
    );

    ok(
        &mut ds,
        json!({"command": "createGroup", "groupname": "g1"}),
    );
    assert_eq!(
        err(
            &mut ds,
            json!({"command": "createGroup", "groupname": "g1"})
        ),
        "Group already exists"
    );
    assert_eq!(
        err(
            &mut ds,
            json!({"command": "addGroupClient", "groupname": "g1", "username": "zz"})
        ),
        "Client not found"
    );
    assert_eq!(
        err(
            &mut ds,
            json!({"command": "addGroupClient", "groupname": "zz", "username": "u1"})
        ),
        "Group not found"
    );
    let (_, _, kicks) = ds.handle(br#"{"commands":[{"command":"addGroupClient","groupname":"g1","username":"u1","priority":3}]}"#);
    assert_eq!(kicks, vec!["u1".to_owned()]);
    assert_eq!(
        err(
            &mut ds,
            json!({"command": "addGroupClient", "groupname": "g1", "username": "u1"})
        ),
        "Client is already in this group"
    );
    assert_eq!(
        err(
            &mut ds,
            json!({"command": "addGroupRole", "groupname": "g1", "rolename": "zz"})
        ),
        "Role not found"
    );
    ok(
        &mut ds,
        json!({"command": "addGroupRole", "groupname": "g1", "rolename": "r1"}),
    );
    assert_eq!(
        one(&mut ds, json!({"command": "getGroup", "groupname": "g1"}))["data"],
        json!({"group": {"groupname": "g1", "roles": [{"rolename": "r1"}], "clients": [{"username": "u1", "priority": 3}]}})
    );
    assert_eq!(
        one(&mut ds, json!({"command": "getClient", "username": "u1"}))["data"]["client"]["groups"],
        json!([{"groupname": "g1", "priority": 3}])
    );
    assert_eq!(
        one(&mut ds, json!({"command": "listGroups"}))["data"],
        json!({"totalCount": 1, "groups": ["g1"]})
    );
    assert_eq!(
        err(
            &mut ds,
            json!({"command": "setAnonymousGroup", "groupname": "zz"})
        ),
        "Group not found"
    );
    ok(
        &mut ds,
        json!({"command": "setAnonymousGroup", "groupname": "g1"}),
    );
    assert_eq!(
        one(&mut ds, json!({"command": "getAnonymousGroup"}))["data"],
        json!({"group": {"groupname": "g1"}})
    );
    assert!(!err(
        &mut ds,
        json!({"command": "deleteGroup", "groupname": "g1"})
    )
    .is_empty());
    ok(
        &mut ds,
        json!({"command": "modifyGroup", "groupname": "g1", "textdescription": "d"}),
    );
    assert_eq!(ds.groups["g1"].textdescription.as_deref(), Some("d"));

    // Round trip keeps everything.
    assert_eq!(DynSec::from_json(&ds.to_json()).unwrap(), ds);

    // deleteRole kicks holders and unlinks.
    let (_, _, kicks) = ds.handle(br#"{"commands":[{"command":"deleteRole","rolename":"r1"}]}"#);
    assert_eq!(kicks, vec!["u1".to_owned()]);
    assert!(ds.groups["g1"].roles.is_empty());
    ok(
        &mut ds,
        json!({"command": "removeGroupClient", "groupname": "g1", "username": "u1"}),
    );
    assert!(ds.groups["g1"].clients.is_empty());
    ok(
        &mut ds,
        json!({"command": "createGroup", "groupname": "g2"}),
    );
    ok(
        &mut ds,
        json!({"command": "deleteGroup", "groupname": "g2"}),
    );
    assert_eq!(
        err(
            &mut ds,
            json!({"command": "deleteGroup", "groupname": "g2"})
        ),
        "Group not found"
    );
}

#[test]
fn default_acl_access() {
    let mut ds = DynSec::from_json(INIT_FILE).unwrap();
    assert_eq!(
        one(&mut ds, json!({"command": "getDefaultACLAccess"}))["data"],
        json!({"acls":[{"acltype":"publishClientSend","allow":false},{"acltype":"publishClientReceive","allow":true},{"acltype":"subscribe","allow":false},{"acltype":"unsubscribe","allow":true}]})
    );
    ok(
        &mut ds,
        json!({"command": "createClient", "username": "u", "password": "p"}),
    );
    assert!(!ds.check(Some("u"), "c", "t", Access::Write));
    assert!(ds.check(Some("u"), "c", "t", Access::Read));
    assert!(!ds.check(Some("u"), "c", "t", Access::Subscribe));
    assert!(ds.check(Some("u"), "c", "t", Access::Unsubscribe));
    // $CONTROL never falls through to an allowing default.
    assert!(!ds.check(
        Some("u"),
        "c",
        "$CONTROL/dynamic-security/v1/response",
        Access::Read
    ));
    // Unknown usernames defer (denied here).
    assert_eq!(ds.decide(Some("ghost"), "t", Access::Read), None);
    ok(
        &mut ds,
        json!({"command": "setDefaultACLAccess", "acls": [{"acltype": "publishClientSend", "allow": true}, {"acltype": "bogus", "allow": true}]}),
    );
    assert!(ds.check(Some("u"), "c", "t", Access::Write));
    assert!(!ds.check(Some("u"), "c", "t", Access::Subscribe));
    // The admin role from init.
    assert!(ds.check(
        Some("admin"),
        "c",
        "$CONTROL/dynamic-security/v1",
        Access::Write
    ));
    assert!(ds.check(Some("admin"), "c", "$SYS/broker/uptime", Access::Subscribe));
}

#[test]
fn acl_evaluation_order() {
    let mut ds = DynSec::new();
    ok(
        &mut ds,
        json!({"command": "createClient", "username": "u", "password": "p"}),
    );
    ok(
        &mut ds,
        json!({"command": "createRole", "rolename": "allow", "acls": [
        {"acltype": "publishClientSend", "topic": "a/#", "allow": true},
        {"acltype": "subscribePattern", "topic": "s/+/x", "allow": true}]}),
    );
    ok(
        &mut ds,
        json!({"command": "createRole", "rolename": "deny", "acls": [
        {"acltype": "publishClientSend", "topic": "a/b", "allow": false},
        {"acltype": "subscribeLiteral", "topic": "s/+/x", "allow": false}]}),
    );
    // Role priority: higher first.
    ok(
        &mut ds,
        json!({"command": "addClientRole", "username": "u", "rolename": "allow", "priority": 1}),
    );
    ok(
        &mut ds,
        json!({"command": "addClientRole", "username": "u", "rolename": "deny", "priority": 5}),
    );
    assert!(!ds.check(Some("u"), "c", "a/b", Access::Write));
    assert!(ds.check(Some("u"), "c", "a/c", Access::Write));
    // Literal subscribe matches exactly; pattern ACL grants narrower filters.
    assert!(!ds.check(Some("u"), "c", "s/+/x", Access::Subscribe));
    assert!(ds.check(Some("u"), "c", "s/q/x", Access::Subscribe));
    assert!(!ds.check(Some("u"), "c", "s/#", Access::Subscribe));
    ok(
        &mut ds,
        json!({"command": "modifyClient", "username": "u", "roles": [{"rolename": "allow", "priority": 9}, {"rolename": "deny", "priority": 5}]}),
    );
    assert!(ds.check(Some("u"), "c", "a/b", Access::Write));

    // Within a role, higher-priority ACLs first.
    ok(
        &mut ds,
        json!({"command": "createRole", "rolename": "mixed", "acls": [
        {"acltype": "publishClientSend", "topic": "m/#", "priority": 1, "allow": true},
        {"acltype": "publishClientSend", "topic": "m/secret", "priority": 2, "allow": false}]}),
    );
    ok(
        &mut ds,
        json!({"command": "createClient", "username": "v", "password": "p", "roles": [{"rolename": "mixed"}]}),
    );
    assert!(!ds.check(Some("v"), "c", "m/secret", Access::Write));
    assert!(ds.check(Some("v"), "c", "m/open", Access::Write));

    // Client roles before group roles; groups by priority.
    ok(
        &mut ds,
        json!({"command": "createClient", "username": "w", "password": "p"}),
    );
    ok(
        &mut ds,
        json!({"command": "createGroup", "groupname": "ga", "roles": [{"rolename": "deny"}]}),
    );
    ok(
        &mut ds,
        json!({"command": "createGroup", "groupname": "gb", "roles": [{"rolename": "allow"}]}),
    );
    ok(
        &mut ds,
        json!({"command": "addGroupClient", "groupname": "ga", "username": "w", "priority": 1}),
    );
    ok(
        &mut ds,
        json!({"command": "addGroupClient", "groupname": "gb", "username": "w", "priority": 2}),
    );
    assert!(ds.check(Some("w"), "c", "a/b", Access::Write));
    ok(
        &mut ds,
        json!({"command": "removeGroupClient", "groupname": "gb", "username": "w"}),
    );
    ok(
        &mut ds,
        json!({"command": "addGroupClient", "groupname": "gb", "username": "w", "priority": 0}),
    );
    assert!(!ds.check(Some("w"), "c", "a/b", Access::Write));
    ok(
        &mut ds,
        json!({"command": "addClientRole", "username": "w", "rolename": "allow"}),
    );
    assert!(ds.check(Some("w"), "c", "a/b", Access::Write));

    // Anonymous clients use the anonymous group.
    assert!(!ds.check(None, "c", "a/c", Access::Write));
    ok(
        &mut ds,
        json!({"command": "setAnonymousGroup", "groupname": "gb"}),
    );
    assert!(ds.check(None, "c", "a/c", Access::Write));
}

#[test]
fn sub_pattern_rules() {
    assert!(sub_pattern_matches("#", "a/b"));
    assert!(sub_pattern_matches("a/+", "a/+"));
    assert!(sub_pattern_matches("a/+", "a/b"));
    assert!(!sub_pattern_matches("a/+", "a/#"));
    assert!(!sub_pattern_matches("a/b", "a/+"));
    assert!(!sub_pattern_matches("a/b", "a/b/c"));
    assert!(sub_pattern_matches("a/#", "a/#"));
}

struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn garbage_never_panics() {
    let mut rng = XorShift(0x5eed_1234_abcd_9876);
    let mut ds = DynSec::init("admin", "pw");
    let pieces: [&[u8]; 16] = [
        b"{",
        b"}",
        b"[",
        b"]",
        b"\"commands\"",
        b":",
        b",",
        b"\"command\"",
        b"\"createClient\"",
        b"\"username\"",
        b"\"priority\"",
        b"1e999",
        b"-3",
        b"null",
        b"\"addRoleACL\"",
        b"\"acls\"",
    ];
    for _ in 0..2000 {
        let mut buf = Vec::new();
        let n = rng.next() % 40;
        for _ in 0..n {
            if rng.next() % 2 == 0 {
                buf.extend_from_slice(pieces[(rng.next() % 16) as usize]);
            } else {
                buf.push((rng.next() & 0xff) as u8);
            }
        }
        let (out, _, _) = ds.handle(&buf);
        assert!(serde_json::from_str::<Value>(&out).is_ok());
        let _ = DynSec::from_json(&String::from_utf8_lossy(&buf));
    }
    // Structurally valid commands with random field types.
    let names = [
        "createClient",
        "modifyClient",
        "createRole",
        "modifyRole",
        "addRoleACL",
        "createGroup",
        "modifyGroup",
        "addGroupClient",
        "setDefaultACLAccess",
        "listClients",
        "addClientRole",
        "deleteRole",
    ];
    let vals = [
        json!(null),
        json!(1),
        json!(-1e300),
        json!("x"),
        json!(""),
        json!([{"rolename": "admin"}]),
        json!({"a": 1}),
        json!(true),
        json!([{"acltype": "subscribePattern", "topic": "#"}]),
        json!([5]),
    ];
    for _ in 0..2000 {
        let mut cmd = Map::new();
        cmd.insert("command".into(), json!(names[(rng.next() % 12) as usize]));
        for key in [
            "username",
            "rolename",
            "groupname",
            "password",
            "roles",
            "groups",
            "clients",
            "acls",
            "acltype",
            "topic",
            "priority",
            "count",
            "offset",
            "clientid",
            "allow",
        ] {
            if rng.next() % 3 == 0 {
                cmd.insert(key.into(), vals[(rng.next() % 10) as usize].clone());
            }
        }
        let _ = run(&mut ds, json!([Value::Object(cmd)]));
    }
    assert!(DynSec::from_json(&ds.to_json()).is_ok());
}

/// Names that are valid JSON strings but not valid MQTT UTF-8 (U+FFFF, a
/// control character) are refused with Mosquitto's words, before any
/// lookup; deleteClient alone has no such check in 2.0.11.
#[test]
fn names_must_be_valid_mqtt_utf8() {
    assert!(valid_utf8("plain/ütf8 ✓"));
    for bad in [
        "\u{FFFF}LO",
        "a\u{0}b",
        "a\u{1}",
        "\u{7F}",
        "\u{9F}",
        "\u{FDD0}",
        "\u{1FFFE}",
    ] {
        assert!(!valid_utf8(bad), "{bad:?}");
    }
    let mut ds = DynSec::from_json(INIT_FILE).unwrap();
    ok(&mut ds, json!({"command": "createRole", "rolename": "r"}));
    ok(&mut ds, json!({"command": "createGroup", "groupname": "g"}));
    let bad = "\u{FFFF}LO";
    let cases = [
        (
            json!({"command": "createClient", "username": bad}),
            "Username not valid UTF-8",
        ),
        (
            json!({"command": "createClient", "username": "u", "clientid": bad}),
            "Client ID not valid UTF-8",
        ),
        (
            json!({"command": "setClientId", "username": "u", "clientid": bad}),
            "Client ID not valid UTF-8",
        ),
        (
            json!({"command": "setClientId", "username": "u", "clientid": 5}),
            "Invalid/missing client ID",
        ),
        (
            json!({"command": "getClient", "username": bad}),
            "Username not valid UTF-8",
        ),
        (
            json!({"command": "disableClient", "username": bad}),
            "Username not valid UTF-8",
        ),
        (
            json!({"command": "setClientPassword", "username": bad}),
            "Username not valid UTF-8",
        ),
        (
            json!({"command": "addClientRole", "username": "admin", "rolename": bad}),
            "Role name not valid UTF-8",
        ),
        (
            json!({"command": "createGroup", "groupname": bad}),
            "Group name not valid UTF-8",
        ),
        (
            json!({"command": "addGroupClient", "groupname": bad, "username": "x"}),
            "Group name not valid UTF-8",
        ),
        (
            json!({"command": "addGroupClient", "groupname": "g", "username": bad}),
            "Username not valid UTF-8",
        ),
        (
            json!({"command": "createRole", "rolename": bad}),
            "Role name not valid UTF-8",
        ),
        (
            json!({"command": "addRoleACL", "rolename": "r", "acltype": "subscribeLiteral", "topic": bad}),
            "Topic not valid UTF-8",
        ),
        (
            json!({"command": "removeRoleACL", "rolename": "r", "acltype": "subscribeLiteral", "topic": bad}),
            "Topic not valid UTF-8",
        ),
    ];
    for (cmd, want) in cases {
        assert_eq!(err(&mut ds, cmd.clone()), want, "{cmd}");
    }
    assert!(!ds.has_client(bad));
    assert_eq!(
        err(&mut ds, json!({"command": "deleteClient", "username": bad})),
        "Client not found"
    );
}

/// The order of Mosquitto's checks decides which error a doubly wrong
/// command gets.
#[test]
fn check_order_matches_mosquitto() {
    let mut ds = DynSec::from_json(INIT_FILE).unwrap();
    ok(&mut ds, json!({"command": "createGroup", "groupname": "g"}));
    // Client before role, client before group.
    let e = err(
        &mut ds,
        json!({"command": "removeClientRole", "username": "nobody", "rolename": "none"}),
    );
    assert_eq!(e, "Client not found");
    let e = err(
        &mut ds,
        json!({"command": "addGroupClient", "username": "nobody", "groupname": "none"}),
    );
    assert_eq!(e, "Client not found");
    // Role list: not an array / entry without a name / unknown role.
    let e = err(
        &mut ds,
        json!({"command": "createClient", "username": "u", "roles": "bad"}),
    );
    assert_eq!(e, "'roles' not an array or missing/invalid rolename");
    let e = err(
        &mut ds,
        json!({"command": "createClient", "username": "u", "roles": [{"rolename": "none"}]}),
    );
    assert_eq!(e, "Role not found");
    let e = err(
        &mut ds,
        json!({"command": "createClient", "username": "u", "groups": [{"groupname": "none"}]}),
    );
    assert_eq!(e, "Group not found");
    assert!(!ds.has_client("u"));
    let e = err(
        &mut ds,
        json!({"command": "createGroup", "groupname": "h", "roles": "bad"}),
    );
    assert_eq!(e, "Internal error");
    let e = err(
        &mut ds,
        json!({"command": "modifyGroup", "groupname": "g", "roles": [5]}),
    );
    assert_eq!(e, "'roles' not an array or missing/invalid rolename");
    let e = err(
        &mut ds,
        json!({"command": "modifyRole", "rolename": "none"}),
    );
    assert_eq!(e, "Role does not exist");
    let e = err(
        &mut ds,
        json!({"command": "setClientPassword", "username": "admin", "password": ""}),
    );
    assert_eq!(e, "Empty password is not allowed");
    // modifyClient applies the texts before it refuses the roles.
    let e = err(
        &mut ds,
        json!({"command": "modifyClient", "username": "admin", "textname": "T", "roles": "bad"}),
    );
    assert_eq!(e, "'roles' not an array or missing/invalid rolename");
    let c = one(
        &mut ds,
        json!({"command": "getClient", "username": "admin"}),
    );
    assert_eq!(c["data"]["client"]["textname"], "T", "{c}");
    // An empty password in modifyClient is ignored, not refused.
    ok(
        &mut ds,
        json!({"command": "modifyClient", "username": "admin", "password": ""}),
    );
    assert_eq!(ds.authenticate("admin", b"adminpw", "any"), Some(true));
}

/// Replies name the command as Mosquitto spells it; a correlationData that
/// is not a string is refused and ends the payload.
#[test]
fn command_names_and_correlation_data() {
    let mut ds = DynSec::from_json(INIT_FILE).unwrap();
    let r = run(
        &mut ds,
        json!([
            {"command": "getanonymousgroup", "correlationData": "1"},
            {"command": "command", "correlationData": 6},
            {"command": "listClients"}
        ]),
    );
    assert_eq!(r.len(), 2, "{r:?}");
    assert_eq!(r[0]["command"], "getAnonymousGroup");
    assert_eq!(
        r[1],
        json!({"command": "command", "error": "Invalid correlationData data type."})
    );
    let r = run(&mut ds, json!([{"command": "command"}]));
    assert_eq!(
        r[0],
        json!({"command": "command", "error": "Unknown command"})
    );
}

/// Changing what the anonymous group may do disconnects anonymous clients,
/// as Mosquitto's `mosquitto_kick_client_by_username(NULL)` does.
#[test]
fn anonymous_group_changes_kick_anonymous_clients() {
    let mut ds = DynSec::from_json(INIT_FILE).unwrap();
    let kicks = |ds: &mut DynSec, cmds: Value| {
        let payload = json!({ "commands": cmds }).to_string();
        ds.handle_control(payload.as_bytes()).kick_anonymous
    };
    assert!(!kicks(
        &mut ds,
        json!([{"command": "createGroup", "groupname": "anon"}])
    ));
    assert!(kicks(
        &mut ds,
        json!([{"command": "setAnonymousGroup", "groupname": "anon"}])
    ));
    assert!(!kicks(
        &mut ds,
        json!([{"command": "createRole", "rolename": "r"}])
    ));
    assert!(kicks(
        &mut ds,
        json!([{"command": "addGroupRole", "groupname": "anon", "rolename": "r"}])
    ));
    assert!(kicks(
        &mut ds,
        json!([{"command": "addRoleACL", "rolename": "r", "acltype": "subscribeLiteral", "topic": "a", "allow": true}])
    ));
    assert!(kicks(
        &mut ds,
        json!([{"command": "removeGroupRole", "groupname": "anon", "rolename": "r"}])
    ));
    assert!(!kicks(
        &mut ds,
        json!([{"command": "createGroup", "groupname": "other"}])
    ));
    assert_eq!(ds.decide(None, "a", Access::Subscribe), None);
}

/// modifyGroup / modifyRole ignore fields of the wrong type, as Mosquitto
/// does (`json_get_string` that fails is simply skipped).
#[test]
fn modify_ignores_wrong_types() {
    let mut ds = DynSec::from_json(INIT_FILE).unwrap();
    ok(
        &mut ds,
        json!({"command": "createGroup", "groupname": "g", "textname": "G"}),
    );
    ok(
        &mut ds,
        json!({"command": "addGroupClient", "groupname": "g", "username": "admin"}),
    );
    ok(
        &mut ds,
        json!({"command": "modifyGroup", "groupname": "g", "textname": 5, "clients": "x"}),
    );
    let g = one(&mut ds, json!({"command": "getGroup", "groupname": "g"}));
    assert_eq!(g["data"]["group"]["textname"], "G", "{g}");
    assert_eq!(g["data"]["group"]["clients"][0]["username"], "admin", "{g}");
    ok(
        &mut ds,
        json!({"command": "createRole", "rolename": "r", "textdescription": "D"}),
    );
    ok(
        &mut ds,
        json!({"command": "modifyRole", "rolename": "r", "textdescription": [], "acls": 7}),
    );
    let r = one(&mut ds, json!({"command": "getRole", "rolename": "r"}));
    assert_eq!(r["data"]["role"]["textdescription"], "D", "{r}");
}
