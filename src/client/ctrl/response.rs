//! ctrl::response: what midge_ctrl prints for the dynamic-security
//! plugin's reply, exactly as mosquitto_ctrl 2.0.11 prints it.
//!
//! Owns: reading the `{"responses":[...]}` payload (cJSON's leniency,
//! case-insensitive keys), the error line, and the layouts of the list,
//! get and default-ACL replies, including what is printed when a reply is
//! malformed.
//!
//! Must not: do I/O; it returns the bytes for stdout and stderr.

use super::super::json::{self, Json};

/// The text to print.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Rendered {
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Rendered {
    fn line(&mut self, parts: &[&[u8]]) {
        for p in parts {
            self.stdout.extend_from_slice(p);
        }
        self.stdout.push(b'\n');
    }

    fn invalid(&mut self) {
        self.stderr
            .push_str("Error: Invalid response from server.\n");
    }
}

/// A cJSON `valuestring` as C's `printf("%s")` shows it: bytes up to a
/// NUL; `(null)` when the item is not a string.
fn c_str(v: Option<&Json>) -> &[u8] {
    match v {
        Some(Json::String(s)) => s.split(|&c| c == 0).next().unwrap_or_default(),
        _ => b"(null)",
    }
}

fn string(v: Option<&Json>) -> Option<&[u8]> {
    match v {
        Some(Json::String(s)) => Some(s.split(|&c| c == 0).next().unwrap_or_default()),
        _ => None,
    }
}

/// `printf("%-*s", width, s)`: pad on the right to `width` bytes.
fn pad(s: &[u8], width: usize) -> Vec<u8> {
    let mut v = s.to_vec();
    while v.len() < width {
        v.push(b' ');
    }
    v
}

/// `(int)valuedouble` as " (priority: N)", or -1 without a number.
fn priority(elem: &Json) -> Vec<u8> {
    let n = match elem.get("priority") {
        Some(Json::Number(d)) => *d as i32,
        _ => -1,
    };
    format!(" (priority: {n})").into_bytes()
}

fn items(v: Option<&Json>) -> Option<&[Json]> {
    match v {
        Some(Json::Array(a)) => Some(a),
        _ => None,
    }
}

/// Print the reply to one request (the payload of the response message).
pub fn render(payload: &[u8]) -> Rendered {
    let mut r = Rendered::default();
    let Some(tree) = json::parse_prefix(payload) else {
        r.stderr.push_str("Error: Payload not JSON.\n");
        return r;
    };
    let Some(responses) = items(tree.get("responses")) else {
        r.stderr.push_str("Error: Payload missing data.\n");
        return r;
    };
    let Some(response) = responses.first() else {
        r.stderr.push_str("Error: Payload missing data.\n");
        return r;
    };
    let Some(command) = response.get("command") else {
        r.stderr.push_str("Error: Payload missing data.\n");
        return r;
    };
    if let Some(error) = response.get("error") {
        r.stderr.push_str(&format!(
            "{}: Error: {}\n",
            String::from_utf8_lossy(c_str(Some(command))),
            String::from_utf8_lossy(c_str(Some(error)))
        ));
        return r;
    }
    // mosquitto_ctrl would crash on a command that is not a string.
    let Some(name) = string(Some(command)) else {
        return r;
    };
    let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
    if is("listClients") {
        list(&mut r, response, "clients", "username");
    } else if is("listGroups") {
        list(&mut r, response, "groups", "groupname");
    } else if is("listRoles") {
        list(&mut r, response, "roles", "rolename");
    } else if is("getClient") {
        client(&mut r, response);
    } else if is("getGroup") {
        group(&mut r, response);
    } else if is("getRole") {
        role(&mut r, response);
    } else if is("getDefaultACLAccess") {
        default_acl_access(&mut r, response);
    } else if is("getAnonymousGroup") {
        anonymous_group(&mut r, response);
    }
    r
}

fn list(r: &mut Rendered, response: &Json, array: &str, key: &str) {
    let Some(data) = response.get("data") else {
        r.invalid();
        return;
    };
    let Some(elems) = items(data.get(array)) else {
        r.invalid();
        return;
    };
    for e in elems {
        match e {
            Json::Object(_) => {
                if let Some(name) = string(e.get(key)) {
                    r.line(&[name]);
                }
            }
            Json::String(_) => r.line(&[c_str(Some(e))]),
            _ => {}
        }
    }
}

/// The object `data.<name>`, or None after printing the error.
fn data_object<'a>(r: &mut Rendered, response: &'a Json, name: &str) -> Option<&'a Json> {
    let data = response
        .get("data")
        .filter(|d| matches!(d, Json::Object(_)));
    let obj = data
        .and_then(|d| d.get(name))
        .filter(|o| matches!(o, Json::Object(_)));
    if obj.is_none() {
        r.invalid();
    }
    obj
}

fn roles(r: &mut Rendered, roles: Option<&Json>, width: usize) {
    let Some(elems) = items(roles) else {
        r.line(&[b"Roles:"]);
        return;
    };
    let mut first = true;
    for e in elems {
        if let Some(name) = string(e.get("rolename")) {
            let label: &[u8] = if first { b"Roles:" } else { b"" };
            first = false;
            r.line(&[&pad(label, width), b" ", name, &priority(e)]);
        }
    }
}

fn client(r: &mut Rendered, response: &Json) {
    let Some(c) = data_object(r, response, "client") else {
        return;
    };
    let Some(username) = string(c.get("username")) else {
        r.invalid();
        return;
    };
    r.line(&[b"Username: ", username]);
    match string(c.get("clientid")) {
        Some(id) => r.line(&[b"Clientid: ", id]),
        None => r.line(&[b"Clientid:"]),
    }
    if let Some(Json::Bool(d)) = c.get("disabled") {
        r.line(&[b"Disabled: ", if *d { b"true" } else { b"false" }]);
    }
    roles(r, c.get("roles"), "Username:".len());
    let Some(groups) = items(c.get("groups")) else {
        r.line(&[b"Groups:"]);
        return;
    };
    let mut first = true;
    for g in groups {
        if let Some(name) = string(g.get("groupname")) {
            let label: &[u8] = if first { b"Groups:   " } else { b"          " };
            first = false;
            r.line(&[label, name, &priority(g)]);
        }
    }
}

fn group(r: &mut Rendered, response: &Json) {
    let Some(g) = data_object(r, response, "group") else {
        return;
    };
    let Some(name) = string(g.get("groupname")) else {
        r.invalid();
        return;
    };
    r.line(&[b"Groupname: ", name]);
    roles(r, g.get("roles"), "Groupname:".len());
    if let Some(clients) = items(g.get("clients")) {
        let mut first = true;
        for c in clients {
            if let Some(u) = string(c.get("username")) {
                let label: &[u8] = if first {
                    b"Clients:   "
                } else {
                    b"           "
                };
                first = false;
                r.line(&[label, u]);
            }
        }
    }
}

fn role(r: &mut Rendered, response: &Json) {
    let Some(role) = data_object(r, response, "role") else {
        return;
    };
    let Some(name) = string(role.get("rolename")) else {
        r.invalid();
        return;
    };
    r.line(&[b"Rolename: ", name]);
    let Some(acls) = items(role.get("acls")) else {
        return;
    };
    let mut first = true;
    for acl in acls {
        let Some(acltype) = string(acl.get("acltype")) else {
            continue;
        };
        let label: &[u8] = if first { b"ACLs:     " } else { b"          " };
        first = false;
        let mut line = label.to_vec();
        line.extend_from_slice(&pad(acltype, 20));
        if let Some(Json::Bool(allow)) = acl.get("allow") {
            line.extend_from_slice(if *allow { b" : allow" } else { b" : deny " });
        }
        if let Some(topic) = string(acl.get("topic")) {
            line.extend_from_slice(b" : ");
            line.extend_from_slice(topic);
        }
        line.extend_from_slice(&priority(acl));
        r.line(&[&line]);
    }
}

fn anonymous_group(r: &mut Rendered, response: &Json) {
    let Some(g) = data_object(r, response, "group") else {
        return;
    };
    match string(g.get("groupname")) {
        Some(name) => r.line(&[name]),
        None => r.invalid(),
    }
}

fn default_acl_access(r: &mut Rendered, response: &Json) {
    let data = response
        .get("data")
        .filter(|d| matches!(d, Json::Object(_)));
    let Some(data) = data else {
        r.invalid();
        return;
    };
    let Some(acls) = items(data.get("acls")) else {
        r.invalid();
        return;
    };
    for acl in acls {
        match (string(acl.get("acltype")), acl.get("allow")) {
            (Some(t), Some(Json::Bool(allow))) => {
                let access: &[u8] = if *allow { b"allow" } else { b"deny" };
                r.line(&[&pad(t, 20), b" : ", access]);
            }
            _ => {
                r.invalid();
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(payload: &str) -> (String, String) {
        let r = render(payload.as_bytes());
        (String::from_utf8_lossy(&r.stdout).into_owned(), r.stderr)
    }

    #[test]
    fn lists() {
        let (o, e) = out(
            r#"{"responses":[{"command":"listClients","data":{"totalCount":2,"clients":["admin",{"username":"bob"},3]}}]}"#,
        );
        assert_eq!((o.as_str(), e.as_str()), ("admin\nbob\n", ""));
        let (o, e) = out(r#"{"responses":[{"command":"listRoles","data":{}}]}"#);
        assert_eq!(
            (o.as_str(), e.as_str()),
            ("", "Error: Invalid response from server.\n")
        );
    }

    #[test]
    fn errors() {
        assert_eq!(
            out(r#"{"responses":[{"command":"getClient","error":"Client not found"}]}"#).1,
            "getClient: Error: Client not found\n"
        );
        assert_eq!(
            out(r#"{"responses":[{"command":7,"error":false}]}"#).1,
            "(null): Error: (null)\n"
        );
        assert_eq!(out("nope").1, "Error: Payload not JSON.\n");
        assert_eq!(out("{}").1, "Error: Payload missing data.\n");
        assert_eq!(
            out(r#"{"responses":[]}"#).1,
            "Error: Payload missing data.\n"
        );
        assert_eq!(
            out(r#"{"responses":[{}]}"#).1,
            "Error: Payload missing data.\n"
        );
        // Trailing bytes after the JSON are ignored, keys match any case.
        assert_eq!(
            out(r#"{"RESPONSES":[{"Command":"x","ERROR":"e"}]} junk"#).1,
            "x: Error: e\n"
        );
    }

    #[test]
    fn get_client() {
        let (o, _) = out(
            r#"{"responses":[{"command":"getClient","data":{"client":{"username":"bob","clientid":"id","disabled":true,
            "roles":[{"rolename":"r2","priority":9},{"rolename":"r1"}],"groups":[{"groupname":"g2","priority":7},{"groupname":"g1"}]}}}]}"#,
        );
        assert_eq!(
            o,
            "Username: bob\nClientid: id\nDisabled: true\nRoles:    r2 (priority: 9)\n          r1 (priority: -1)\nGroups:   g2 (priority: 7)\n          g1 (priority: -1)\n"
        );
        let (o, _) =
            out(r#"{"responses":[{"command":"getClient","data":{"client":{"username":"a"}}}]}"#);
        assert_eq!(o, "Username: a\nClientid:\nRoles:\nGroups:\n");
    }

    #[test]
    fn get_group_and_role() {
        let (o, _) = out(
            r#"{"responses":[{"command":"getGroup","data":{"group":{"groupname":"g1","roles":[{"rolename":"r1","priority":3}],"clients":[{"username":"bob"},{"username":"eve"}]}}}]}"#,
        );
        assert_eq!(
            o,
            "Groupname: g1\nRoles:     r1 (priority: 3)\nClients:   bob\n           eve\n"
        );
        let (o, _) = out(
            r#"{"responses":[{"command":"getRole","data":{"role":{"rolename":"r1","acls":[{"acltype":"publishClientSend","topic":"a/#","allow":true,"priority":5},{"acltype":"subscribeLiteral","topic":"b","allow":false}]}}}]}"#,
        );
        assert_eq!(
            o,
            "Rolename: r1\nACLs:     publishClientSend    : allow : a/# (priority: 5)\n          subscribeLiteral     : deny  : b (priority: -1)\n"
        );
    }

    #[test]
    fn default_access_and_anonymous_group() {
        let (o, e) = out(
            r#"{"responses":[{"command":"getDefaultACLAccess","data":{"acls":[{"acltype":"publishClientSend","allow":false},{"acltype":"subscribe","allow":true},{"acltype":"x"}]}}]}"#,
        );
        assert_eq!(
            o,
            "publishClientSend    : deny\nsubscribe            : allow\n"
        );
        assert_eq!(e, "Error: Invalid response from server.\n");
        let (o, _) = out(
            r#"{"responses":[{"command":"getAnonymousGroup","data":{"group":{"groupname":"anon"}}}]}"#,
        );
        assert_eq!(o, "anon\n");
    }
}
