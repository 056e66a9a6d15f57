//! ctrl::dynsec: the `dynsec` module of midge_ctrl: its help, `init`, and
//! every command turned into the JSON request mosquitto_ctrl 2.0.11 sends
//! to `$CONTROL/dynamic-security/v1`.
//!
//! Owns: the command names (matched ignoring case), their argument checks
//! and messages, the password prompts of `createClient`,
//! `setClientPassword` and `init`, and the request payload, byte for byte
//! (`cJSON_PrintUnformatted` member order; the command name as typed where
//! mosquitto_ctrl echoes it).
//!
//! Must not: connect, or print replies (see `request`, `response`).
//!
//! Difference from mosquitto_ctrl 2.0.11, on purpose: `setDefaultACLAccess`
//! sends `"allow": true|false`, which the plugin reads; 2.0.11 sent
//! `"access": "allow"`, which every broker ignores (fixed in 2.0.12).

use super::super::json::Json;
use super::super::props::atoi;
use super::console::{self, Console, PasswordError};
use super::init::{self, InitResult};

/// The request topic.
pub const REQUEST_TOPIC: &str = "$CONTROL/dynamic-security/v1";
/// The topic replies arrive on.
pub const RESPONSE_TOPIC: &str = "$CONTROL/dynamic-security/v1/response";

/// How a dynsec command ended before any connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Send this payload and print the reply.
    Request(Vec<u8>),
    /// Finished without a request (help, init, an abandoned prompt):
    /// exit code 0.
    Done,
    /// Bad arguments: print libmosquitto's text for `MOSQ_ERR_INVAL`.
    Invalid,
    /// Not a dynsec command (message printed): `MOSQ_ERR_UNKNOWN`.
    Unknown,
}

pub const HELP: &str = "
Dynamic Security module
=======================

Initialisation
--------------
Create a new configuration file with an admin user:
    midge_ctrl dynsec init <new-config-file> <admin-username> [admin-password]

General
-------
Get ACL default access:          getDefaultACLAccess
Set ACL default access:          setDefaultACLAccess <acltype> allow|deny
Get group for anonymous clients: getAnonymousGroup
Set group for anonymous clients: setAnonymousGroup   <groupname>

Clients
-------
Create a new client:         createClient      <username> [-c clientid] [-p password]
Delete a client:             deleteClient      <username>
Set a client password:       setClientPassword <username> [password]
Set a client id:             setClientId       <username> [clientid]
Add a role to a client:      addClientRole     <username> <rolename> [priority]
    Higher priority (larger numerical value) roles are evaluated first.
Remove role from a client:   removeClientRole  <username> <rolename>
Get client information:      getClient         <username>
List all clients:            listClients       [count [offset]]
Enable client:               enableClient      <username>
Disable client:              disableClient     <username>

Groups
------
Create a new group:          createGroup       <groupname>
Delete a group:              deleteGroup       <groupname>
Add a role to a group:       addGroupRole      <groupname> <rolename> [priority]
    Higher priority (larger numerical value) roles are evaluated first.
Remove role from a group:    removeGroupRole   <groupname> <rolename>
Add client to a group:       addGroupClient    <groupname> <username> [priority]
    Priority sets the group priority for the given client only.
    Higher priority (larger numerical value) groups are evaluated first.
Remove client from a group:  removeGroupClient <groupname> <username>
Get group information:       getGroup          <groupname>
List all groups:             listGroups        [count [offset]]

Roles
------
Create a new role:           createRole        <rolename>
Delete a role:               deleteRole        <rolename>
Add an ACL to a role:        addRoleACL        <rolename> <aclspec> [priority]
    Higher priority (larger numerical value) ACLs are evaluated first.
Remove ACL from a role:      removeRoleACL     <rolename> <aclspec>
Get role information:        getRole           <rolename>
List all roles:              listRoles         [count [offset]]

aclspec:                     <acltype> <topicFilter> allow|deny
acltype:                     publishClientSend|publishClientReceive
                              |subscribeLiteral|subscribePattern
                              |unsubscribeLiteral|unsubscribePattern

For more information see:
    https://mosquitto.org/documentation/dynamic-security/

";

/// The ACL types a role's ACL may have.
const ROLE_ACL_TYPES: [&str; 6] = [
    "publishClientSend",
    "publishClientReceive",
    "subscribeLiteral",
    "subscribePattern",
    "unsubscribeLiteral",
    "unsubscribePattern",
];

/// The ACL types `setDefaultACLAccess` takes.
const DEFAULT_ACL_TYPES: [&str; 4] = [
    "publishClientSend",
    "publishClientReceive",
    "subscribe",
    "unsubscribe",
];

fn is(word: &[u8], name: &str) -> bool {
    word.eq_ignore_ascii_case(name.as_bytes())
}

fn one_of(word: &[u8], names: &[&str]) -> bool {
    names.iter().any(|n| is(word, n))
}

/// Builds one command object, members in the order they are added.
struct Command(Vec<(Vec<u8>, Json)>);

impl Command {
    fn new(name: &[u8]) -> Command {
        Command(vec![(b"command".to_vec(), Json::String(name.to_vec()))])
    }

    fn s(mut self, key: &str, value: &[u8]) -> Command {
        self.0
            .push((key.as_bytes().to_vec(), Json::String(value.to_vec())));
        self
    }

    fn opt_s(self, key: &str, value: Option<&[u8]>) -> Command {
        match value {
            Some(v) => self.s(key, v),
            None => self,
        }
    }

    fn v(mut self, key: &str, value: Json) -> Command {
        self.0.push((key.as_bytes().to_vec(), value));
        self
    }

    /// mosquitto_ctrl leaves a priority of -1 out.
    fn priority(self, p: i32) -> Command {
        if p == -1 {
            self
        } else {
            self.v("priority", Json::int(i64::from(p)))
        }
    }

    fn payload(self) -> Outcome {
        let tree = Json::Object(vec![(
            b"commands".to_vec(),
            Json::Array(vec![Json::Object(self.0)]),
        )]);
        Outcome::Request(tree.print(false))
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `count [offset]` of the list commands: sent only when above zero.
fn list(name: &str, args: &[Vec<u8>]) -> Outcome {
    let (count, offset) = match args {
        [] => (-1, -1),
        [c] => (atoi(c), -1),
        [c, o] => (atoi(c), atoi(o)),
        _ => return Outcome::Invalid,
    };
    let mut cmd = Command::new(name.as_bytes());
    if count > 0 {
        cmd = cmd.v("count", Json::int(i64::from(count)));
    }
    if offset > 0 {
        cmd = cmd.v("offset", Json::int(i64::from(offset)));
    }
    cmd.payload()
}

/// `<name> <key>`: commands taking exactly one name.
fn single(name: &[u8], key: &str, args: &[Vec<u8>]) -> Outcome {
    match args {
        [v] => Command::new(name).s(key, v).payload(),
        _ => Outcome::Invalid,
    }
}

/// `<a> <b> [priority]`.
fn pair_with_priority(name: &[u8], keys: (&str, &str), args: &[Vec<u8>]) -> Outcome {
    let (a, b, p) = match args {
        [a, b] => (a, b, -1),
        [a, b, p] => (a, b, atoi(p)),
        _ => return Outcome::Invalid,
    };
    Command::new(name)
        .s(keys.0, a)
        .s(keys.1, b)
        .priority(p)
        .payload()
}

fn create_client(c: &mut dyn Console, args: &[Vec<u8>]) -> Outcome {
    let Some((username, options)) = args.split_first() else {
        return Outcome::Invalid;
    };
    let (mut clientid, mut password) = (None, None);
    let mut it = options.iter();
    while let Some(a) = it.next() {
        match a.as_slice() {
            b"-c" => match it.next() {
                Some(v) => clientid = Some(v.clone()),
                None => {
                    c.err("Error: -c argument given, but no clientid provided.\n");
                    return Outcome::Invalid;
                }
            },
            b"-p" => match it.next() {
                Some(v) => password = Some(v.clone()),
                None => {
                    c.err("Error: -p argument given, but no password provided.\n");
                    return Outcome::Invalid;
                }
            },
            // mosquitto_ctrl ignores anything else.
            _ => {}
        }
    }
    if password.is_none() {
        let user = lossy(username);
        c.out(
            format!(
                "Enter new password for {user}. Press return for no password (user will be unable to login).\n"
            )
            .as_bytes(),
        );
        let prompt = format!("New password for {user}: ");
        let verify = format!("Reenter password for {user}: ");
        match console::get_password(c, &prompt, Some(&verify), true) {
            Ok(p) => password = Some(p),
            Err(PasswordError::Mismatch) => {
                c.err("Error: Passwords do not match.\n");
                return Outcome::Done;
            }
            Err(PasswordError::Empty) => c.out(b"\n"),
        }
    }
    Command::new(b"createClient")
        .s("username", username)
        .opt_s("clientid", clientid.as_deref())
        .opt_s("password", password.as_deref())
        .payload()
}

fn set_client_password(c: &mut dyn Console, args: &[Vec<u8>]) -> Outcome {
    let (username, password) = match args {
        [u, p] => (u, p.clone()),
        [u] => {
            let user = lossy(u);
            let prompt = format!("New password for {user}: ");
            let verify = format!("Reenter password for {user}: ");
            match console::get_password(c, &prompt, Some(&verify), false) {
                Ok(p) => (u, p),
                Err(_) => return Outcome::Done,
            }
        }
        _ => return Outcome::Invalid,
    };
    Command::new(b"setClientPassword")
        .s("username", username)
        .s("password", &password)
        .payload()
}

fn set_default_acl_access(c: &mut dyn Console, args: &[Vec<u8>]) -> Outcome {
    let [acltype, access] = args else {
        return Outcome::Invalid;
    };
    if !one_of(acltype, &DEFAULT_ACL_TYPES) {
        return Outcome::Invalid;
    }
    let allow = if is(access, "allow") {
        true
    } else if is(access, "deny") {
        false
    } else {
        c.err("Error: access must be \"allow\" or \"deny\".\n");
        return Outcome::Invalid;
    };
    let acl = Json::Object(vec![
        (b"acltype".to_vec(), Json::String(acltype.clone())),
        (b"allow".to_vec(), Json::Bool(allow)),
    ]);
    Command::new(b"setDefaultACLAccess")
        .v("acls", Json::Array(vec![acl]))
        .payload()
}

fn add_role_acl(args: &[Vec<u8>]) -> Outcome {
    let (rolename, acltype, topic, action, p) = match args {
        [r, t, f, a] => (r, t, f, a, -1),
        [r, t, f, a, p] => (r, t, f, a, atoi(p)),
        _ => return Outcome::Invalid,
    };
    if !one_of(acltype, &ROLE_ACL_TYPES) {
        return Outcome::Invalid;
    }
    let allow = if is(action, "allow") {
        true
    } else if is(action, "deny") {
        false
    } else {
        return Outcome::Invalid;
    };
    Command::new(b"addRoleACL")
        .s("rolename", rolename)
        .s("acltype", acltype)
        .s("topic", topic)
        .v("allow", Json::Bool(allow))
        .priority(p)
        .payload()
}

fn remove_role_acl(args: &[Vec<u8>]) -> Outcome {
    let [rolename, acltype, topic] = args else {
        return Outcome::Invalid;
    };
    if !one_of(acltype, &ROLE_ACL_TYPES) {
        return Outcome::Invalid;
    }
    Command::new(b"removeRoleACL")
        .s("rolename", rolename)
        .s("acltype", acltype)
        .s("topic", topic)
        .payload()
}

/// The dynsec module: `args` starts with the command word.
pub fn main(c: &mut dyn Console, args: &[Vec<u8>]) -> Outcome {
    let Some((word, rest)) = args.split_first() else {
        return Outcome::Invalid;
    };
    let w = word.as_slice();
    if is(w, "help") {
        c.out(HELP.as_bytes());
        return Outcome::Done;
    }
    if is(w, "init") {
        return match init::run(c, rest) {
            InitResult::Finished => Outcome::Done,
            InitResult::Invalid => Outcome::Invalid,
        };
    }
    if is(w, "setDefaultACLAccess") {
        set_default_acl_access(c, rest)
    } else if is(w, "getDefaultACLAccess") {
        Command::new(b"getDefaultACLAccess").payload()
    } else if is(w, "createClient") {
        create_client(c, rest)
    } else if is(w, "deleteClient") {
        single(b"deleteClient", "username", rest)
    } else if is(w, "getClient") {
        single(b"getClient", "username", rest)
    } else if is(w, "listClients") {
        list("listClients", rest)
    } else if is(w, "setClientId") {
        match rest {
            [u] => Command::new(b"setClientId").s("username", u).payload(),
            [u, id] => Command::new(b"setClientId")
                .s("username", u)
                .s("clientid", id)
                .payload(),
            _ => Outcome::Invalid,
        }
    } else if is(w, "setClientPassword") {
        set_client_password(c, rest)
    } else if is(w, "addClientRole") || is(w, "removeClientRole") {
        pair_with_priority(w, ("username", "rolename"), rest)
    } else if is(w, "enableClient") || is(w, "disableClient") {
        single(w, "username", rest)
    } else if is(w, "createGroup") {
        single(b"createGroup", "groupname", rest)
    } else if is(w, "deleteGroup") {
        single(b"deleteGroup", "groupname", rest)
    } else if is(w, "getGroup") {
        single(b"getGroup", "groupname", rest)
    } else if is(w, "listGroups") {
        list("listGroups", rest)
    } else if is(w, "addGroupRole") || is(w, "removeGroupRole") {
        pair_with_priority(w, ("groupname", "rolename"), rest)
    } else if is(w, "addGroupClient") || is(w, "removeGroupClient") {
        // mosquitto_ctrl takes <groupname> <username> but sends the
        // username first.
        let swapped: Vec<Vec<u8>> = match rest {
            [g, u, more @ ..] => [u.clone(), g.clone()]
                .into_iter()
                .chain(more.iter().cloned())
                .collect(),
            _ => return Outcome::Invalid,
        };
        pair_with_priority(w, ("username", "groupname"), &swapped)
    } else if is(w, "setAnonymousGroup") {
        single(b"setAnonymousGroup", "groupname", rest)
    } else if is(w, "getAnonymousGroup") {
        Command::new(b"getAnonymousGroup").payload()
    } else if is(w, "createRole") {
        single(b"createRole", "rolename", rest)
    } else if is(w, "deleteRole") {
        single(b"deleteRole", "rolename", rest)
    } else if is(w, "getRole") {
        single(b"getRole", "rolename", rest)
    } else if is(w, "listRoles") {
        list("listRoles", rest)
    } else if is(w, "addRoleACL") {
        add_role_acl(rest)
    } else if is(w, "removeRoleACL") {
        remove_role_acl(rest)
    } else {
        c.err(&format!("Command '{}' not recognised.\n", lossy(w)));
        Outcome::Unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::ctrl::console::Scripted;

    fn request(a: &[&str]) -> String {
        let args: Vec<Vec<u8>> = a.iter().map(|s| s.as_bytes().to_vec()).collect();
        let mut c = Scripted::default();
        match main(&mut c, &args) {
            Outcome::Request(p) => String::from_utf8(p).unwrap(),
            other => panic!("{a:?}: {other:?} {}", c.stderr),
        }
    }

    fn outcome(a: &[&str], input: &[&str]) -> (Outcome, Scripted) {
        let args: Vec<Vec<u8>> = a.iter().map(|s| s.as_bytes().to_vec()).collect();
        let mut c = Scripted::with_input(input);
        (main(&mut c, &args), c)
    }

    #[test]
    fn payloads_match_mosquitto_ctrl() {
        assert_eq!(
            request(&["listClients"]),
            r#"{"commands":[{"command":"listClients"}]}"#
        );
        assert_eq!(
            request(&["listRoles", "5", "0"]),
            r#"{"commands":[{"command":"listRoles","count":5}]}"#
        );
        assert_eq!(
            request(&["createClient", "bob", "-p", "pw", "-c", "id"]),
            r#"{"commands":[{"command":"createClient","username":"bob","clientid":"id","password":"pw"}]}"#
        );
        assert_eq!(
            request(&["ADDCLIENTROLE", "bob", "r", "7"]),
            r#"{"commands":[{"command":"ADDCLIENTROLE","username":"bob","rolename":"r","priority":7}]}"#
        );
        assert_eq!(
            request(&["addGroupClient", "g", "bob", "-1"]),
            r#"{"commands":[{"command":"addGroupClient","username":"bob","groupname":"g"}]}"#
        );
        assert_eq!(
            request(&["addRoleACL", "r", "publishClientSend", "a/#", "deny", "3"]),
            r#"{"commands":[{"command":"addRoleACL","rolename":"r","acltype":"publishClientSend","topic":"a/#","allow":false,"priority":3}]}"#
        );
        assert_eq!(
            request(&["setDefaultACLAccess", "subscribe", "ALLOW"]),
            r#"{"commands":[{"command":"setDefaultACLAccess","acls":[{"acltype":"subscribe","allow":true}]}]}"#
        );
        assert_eq!(
            request(&["createClient", "a\"b"]).len(),
            r#"{"commands":[{"command":"createClient","username":"a\"b"}]}"#.len()
        );
    }

    #[test]
    fn bad_arguments() {
        assert_eq!(outcome(&["createClient"], &[]).0, Outcome::Invalid);
        assert_eq!(outcome(&["getClient"], &[]).0, Outcome::Invalid);
        assert_eq!(outcome(&["getClient", "a", "b"], &[]).0, Outcome::Invalid);
        assert_eq!(
            outcome(&["listClients", "1", "2", "3"], &[]).0,
            Outcome::Invalid
        );
        assert_eq!(
            outcome(&["addRoleACL", "r", "bogus", "t", "allow"], &[]).0,
            Outcome::Invalid
        );
        let (o, c) = outcome(&["setDefaultACLAccess", "subscribe", "maybe"], &[]);
        assert_eq!(o, Outcome::Invalid);
        assert_eq!(c.stderr, "Error: access must be \"allow\" or \"deny\".\n");
        let (o, c) = outcome(&["createClient", "bob", "-c"], &[]);
        assert_eq!(o, Outcome::Invalid);
        assert_eq!(
            c.stderr,
            "Error: -c argument given, but no clientid provided.\n"
        );
        let (o, c) = outcome(&["bogus"], &[]);
        assert_eq!(o, Outcome::Unknown);
        assert_eq!(c.stderr, "Command 'bogus' not recognised.\n");
    }

    #[test]
    fn prompts() {
        let (o, c) = outcome(&["createClient", "carol"], &["pw1", "pw1"]);
        assert_eq!(
            o,
            Outcome::Request(
                br#"{"commands":[{"command":"createClient","username":"carol","password":"pw1"}]}"#
                    .to_vec()
            )
        );
        assert_eq!(
            c.stdout_text(),
            "Enter new password for carol. Press return for no password (user will be unable to login).\nNew password for carol: \nReenter password for carol: \n"
        );
        let (o, c) = outcome(&["createClient", "dave"], &[""]);
        assert_eq!(
            o,
            Outcome::Request(
                br#"{"commands":[{"command":"createClient","username":"dave"}]}"#.to_vec()
            )
        );
        assert!(c.stdout_text().ends_with("New password for dave: \n"));
        let (o, c) = outcome(&["createClient", "erin"], &["a", "b"]);
        assert_eq!(o, Outcome::Done);
        assert_eq!(c.stderr, "Error: Passwords do not match.\n");
        let (o, c) = outcome(&["setClientPassword", "erin"], &[]);
        assert_eq!(o, Outcome::Done);
        assert_eq!(c.stderr, "Error: Empty password.\n");
    }
}
