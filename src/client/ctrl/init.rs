//! ctrl::init: `midge_ctrl dynsec init <file> <admin> [password]`: a new
//! dynamic-security configuration file with one admin client, the file
//! `mosquitto_ctrl dynsec init` writes, readable by midge and Mosquitto.
//!
//! Owns: the file's contents (key order and cJSON's tab layout), the admin
//! password hash (PBKDF2-HMAC-SHA512, 101 iterations, 12-byte random salt,
//! standard base64, as Mosquitto 2.0 writes), creating the file without
//! ever overwriting one, and the messages around it.
//!
//! Must not: connect to anything. The hash is computed here with `ring`
//! rather than through `auth::password` because `client` must not depend
//! on the broker's rooms; `tests/ctrl.rs` proves both brokers accept it.
//!
//! Differences from mosquitto_ctrl 2.0.11: the file is created with
//! `O_EXCL` and mode 0640 (as later Mosquitto releases do), so a file that
//! appears between the check and the write is not overwritten and the
//! hash is not world-readable.

use std::io::Write;
use std::num::NonZeroU32;
use std::os::unix::fs::OpenOptionsExt;

use ring::rand::SecureRandom;

use super::super::json::Json;
use super::console::{self, Console};
use crate::protocol::base64::encode as base64;

/// `PW_DEFAULT_ITERATIONS` in Mosquitto 2.0.
pub const ITERATIONS: u32 = 101;
/// Mosquitto 2.0's salt length.
pub const SALT_LEN: usize = 12;

/// The client entry's `password` and `salt` fields.
pub fn hash_password(password: &[u8], salt: &[u8]) -> (String, String) {
    let mut hash = [0u8; 64];
    let iterations = NonZeroU32::new(ITERATIONS).unwrap_or(NonZeroU32::MIN);
    ring::pbkdf2::derive(
        ring::pbkdf2::PBKDF2_HMAC_SHA512,
        iterations,
        salt,
        password,
        &mut hash,
    );
    (base64(&hash), base64(salt))
}

fn obj(members: Vec<(&str, Json)>) -> Json {
    Json::Object(
        members
            .into_iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v))
            .collect(),
    )
}

/// The whole configuration, as `cJSON_Print` lays it out.
pub fn config_file(admin: &[u8], password: &[u8], salt: &[u8]) -> Vec<u8> {
    let (hash64, salt64) = hash_password(password, salt);
    let dynsec = "$CONTROL/dynamic-security/#";
    let acl = |t: &str, topic: &str| {
        obj(vec![
            ("acltype", Json::str(t)),
            ("topic", Json::str(topic)),
            ("allow", Json::Bool(true)),
        ])
    };
    let client = obj(vec![
        ("username", Json::String(admin.to_vec())),
        ("textName", Json::str("Dynsec admin user")),
        ("password", Json::str(&hash64)),
        ("salt", Json::str(&salt64)),
        ("iterations", Json::int(i64::from(ITERATIONS))),
        (
            "roles",
            Json::Array(vec![obj(vec![("rolename", Json::str("admin"))])]),
        ),
    ]);
    let role = obj(vec![
        ("rolename", Json::str("admin")),
        (
            "acls",
            Json::Array(vec![
                acl("publishClientSend", dynsec),
                acl("publishClientReceive", dynsec),
                acl("subscribePattern", dynsec),
                acl("publishClientReceive", "$SYS/#"),
                acl("subscribePattern", "$SYS/#"),
                acl("publishClientReceive", "#"),
                acl("subscribePattern", "#"),
                acl("unsubscribePattern", "#"),
            ]),
        ),
    ]);
    let tree = obj(vec![
        ("clients", Json::Array(vec![client])),
        ("roles", Json::Array(vec![role])),
        (
            "defaultACLAccess",
            obj(vec![
                ("publishClientSend", Json::Bool(false)),
                ("publishClientReceive", Json::Bool(true)),
                ("subscribe", Json::Bool(false)),
                ("unsubscribe", Json::Bool(true)),
            ]),
        ),
    ]);
    tree.print(true)
}

/// What the command returns to `main`.
#[derive(Debug, PartialEq, Eq)]
pub enum InitResult {
    /// Done or gave up with a message; exit code 0 (as Mosquitto).
    Finished,
    /// Bad arguments: `main` prints the `MOSQ_ERR_INVAL` message.
    Invalid,
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `dynsec init` with its arguments (after "init").
pub fn run(c: &mut dyn Console, args: &[Vec<u8>]) -> InitResult {
    if args.len() < 2 {
        c.err("dynsec init: Not enough arguments - filename, or admin-user missing.\n");
        return InitResult::Invalid;
    }
    if args.len() > 3 {
        c.err("dynsec init: Too many arguments.\n");
        return InitResult::Invalid;
    }
    let (file, admin) = (lossy(&args[0]), &args[1]);
    let admin_text = lossy(admin);
    let password = match args.get(2) {
        Some(p) => p.clone(),
        None => {
            let prompt = format!("New password for {admin_text}: ");
            let verify = format!("Reenter password for {admin_text}: ");
            match console::get_password(c, &prompt, Some(&verify), false) {
                Ok(p) => p,
                Err(_) => return InitResult::Finished,
            }
        }
    };
    if std::path::Path::new(&file).exists() {
        c.err(&already_exists(&file));
        return InitResult::Finished;
    }
    let mut salt = [0u8; SALT_LEN];
    if ring::rand::SystemRandom::new().fill(&mut salt).is_err() {
        c.err("dynsec init: Internal error while encoding password.\n");
        return InitResult::Finished;
    }
    let text = config_file(admin, &password, &salt);
    let opened = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o640)
        .open(&file);
    let written = match opened {
        Ok(mut f) => f.write_all(&text).and_then(|()| f.sync_all()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            c.err(&already_exists(&file));
            return InitResult::Finished;
        }
        Err(e) => Err(e),
    };
    if written.is_err() {
        c.err(&format!(
            "dynsec init: Unable to open '{file}' for writing.\n"
        ));
        return InitResult::Finished;
    }
    c.out(
        format!(
            "The client '{admin_text}' has been created in the file '{file}'.\n\
             This client is configured to allow you to administer the dynamic security plugin only.\n\
             It does not have access to publish messages to normal topics.\n\
             You should create your application clients to do that, for example:\n   \
             midge_ctrl <connect options> dynsec createClient <username>\n   \
             midge_ctrl <connect options> dynsec createRole <rolename>\n   \
             midge_ctrl <connect options> dynsec addRoleACL <rolename> publishClientSend my/topic [priority]\n   \
             midge_ctrl <connect options> dynsec addClientRole <username> <rolename> [priority]\n\
             See https://mosquitto.org/documentation/dynamic-security/ for details of all commands.\n"
        )
        .as_bytes(),
    );
    InitResult::Finished
}

fn already_exists(file: &str) -> String {
    format!("dynsec init: '{file}' already exists. Remove the file or use a different location..\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::ctrl::console::Scripted;

    #[test]
    fn pbkdf2_sha512_vector() {
        // Same salt and password as a `mosquitto_passwd` $7$ entry
        // (checked against Python's hashlib.pbkdf2_hmac).
        let (hash, salt) = hash_password(b"password", b"0123456789ab");
        assert_eq!(salt, "MDEyMzQ1Njc4OWFi");
        assert_eq!(
            hash,
            "uAhjSMFrFKPND0iWyTXsxET36hDBAvu7LqiX1au82iDOT9W7IG9XGjasDAepCB3nZMPp79k+PyCilDXRAZuIVA=="
        );
    }

    #[test]
    fn layout_is_cjson_print() {
        let text = String::from_utf8(config_file(b"admin", b"pw", b"0123456789ab")).unwrap();
        let (hash, salt) = hash_password(b"pw", b"0123456789ab");
        let expected = format!(
            "{{\n\t\"clients\":\t[{{\n\t\t\t\"username\":\t\"admin\",\n\t\t\t\"textName\":\t\"Dynsec admin user\",\n\t\t\t\"password\":\t\"{hash}\",\n\t\t\t\"salt\":\t\"{salt}\",\n\t\t\t\"iterations\":\t101,\n\t\t\t\"roles\":\t[{{\n\t\t\t\t\t\"rolename\":\t\"admin\"\n\t\t\t\t}}]\n\t\t}}],\n\t\"roles\":\t[{{\n\t\t\t\"rolename\":\t\"admin\",\n\t\t\t\"acls\":\t[{{\n"
        );
        assert!(text.starts_with(&expected), "{text}");
        assert!(text.ends_with(
            "\t\"defaultACLAccess\":\t{\n\t\t\"publishClientSend\":\tfalse,\n\t\t\"publishClientReceive\":\ttrue,\n\t\t\"subscribe\":\tfalse,\n\t\t\"unsubscribe\":\ttrue\n\t}\n}"
        ));
    }

    #[test]
    fn argument_errors() {
        let mut c = Scripted::default();
        assert_eq!(run(&mut c, &[b"f".to_vec()]), InitResult::Invalid);
        assert_eq!(
            c.stderr,
            "dynsec init: Not enough arguments - filename, or admin-user missing.\n"
        );
        let mut c = Scripted::default();
        let four: Vec<Vec<u8>> = vec![b"a".to_vec(); 4];
        assert_eq!(run(&mut c, &four), InitResult::Invalid);
        assert_eq!(c.stderr, "dynsec init: Too many arguments.\n");
    }

    #[test]
    fn never_overwrites() {
        let dir = std::env::temp_dir().join(format!("midge-ctrl-init-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let f = dir.join("ds.json");
        let path = f.to_string_lossy().into_owned();
        let args = vec![path.as_bytes().to_vec(), b"admin".to_vec(), b"pw".to_vec()];
        let mut c = Scripted::default();
        assert_eq!(run(&mut c, &args), InitResult::Finished);
        assert!(c
            .stdout_text()
            .starts_with("The client 'admin' has been created"));
        let first = std::fs::read(&f).unwrap();
        let mut c = Scripted::default();
        run(&mut c, &args);
        assert_eq!(
            c.stderr,
            format!("dynsec init: '{path}' already exists. Remove the file or use a different location..\n")
        );
        assert_eq!(std::fs::read(&f).unwrap(), first);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
