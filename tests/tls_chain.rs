//! Black-box tests of the certificate chain a TLS listener sends: a `certfile` holding
//! only the server's leaf, issued by an intermediate CA that `cafile` or `capath` holds
//! together with the root. Mosquitto 2.0.11 (OpenSSL) completes the chain from those and
//! sends leaf, intermediate and root (seen with `openssl s_client -showcerts`), so a client
//! that trusts only the root verifies it; midge must do the same.
//!
//! Owns: certificate generation with the `openssl` command line, `mosquitto_pub`,
//! `mosquitto_sub` and `openssl s_client` runs against a broker on a free loopback port.
//!
//! Must not: depend on the midge crate, wait without a deadline, or kill anything but the
//! processes it started. A missing tool fails the test (CI installs them). With
//! `MIDGE_TEST_BROKER=/usr/sbin/mosquitto` the suite checks itself against Mosquitto 2.0.11.

mod common;

use std::fs;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{have, run, temp_dir, Finished, TestBroker};

/// Bound for one run of a command-line tool.
const TOOL_LIMIT: Duration = Duration::from_secs(10);

fn need(tools: &[&str], test: &str) -> bool {
    for t in tools {
        if !have(t) {
            panic!("{test} needs `{t}`'+CI+'");
        }
    }
    true
}

/// A temp directory of certificates, removed on drop.
struct Pki(PathBuf);

impl Pki {
    fn f(&self, name: &str) -> String {
        self.0.join(name).display().to_string()
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Runs `openssl args` (file names in `args` are absolute).
fn openssl(args: &[&str]) {
    let f = run(Path::new("openssl"), args, TOOL_LIMIT);
    assert!(success(&f), "openssl {args:?} failed: {}", f.output());
}

fn success(f: &Finished) -> bool {
    f.status.is_some_and(|s| s.success())
}

/// root -> intermediate -> leaf (localhost / 127.0.0.1), P-256; `chain.pem` is
/// intermediate + root, `capath/` holds both with `openssl rehash` links.
fn make_pki() -> Pki {
    let pki = Pki(temp_dir("tls-chain"));
    let d = pki.0.clone();
    let p = |name: &str| pki.f(name);
    fs::write(
        d.join("ca.ext"),
        "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n\
         subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n",
    )
    .expect("write ca.ext");
    fs::write(
        d.join("leaf.ext"),
        "basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n\
         extendedKeyUsage=serverAuth\n",
    )
    .expect("write leaf.ext");
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let req = |name: &str, cn: &str, x509: bool| {
        let key = p(&format!("{name}.key"));
        let out = p(&format!("{name}.{}", if x509 { "pem" } else { "csr" }));
        let subj = format!("/O=midge chain test/CN={cn}");
        let mut a = vec!["req"];
        if x509 {
            a.extend(["-x509", "-days", "3650"]);
        } else {
            a.push("-new");
        }
        a.extend(ec);
        a.extend(["-keyout", &key, "-out", &out, "-subj", &subj]);
        openssl(&a);
    };
    let sign = |name: &str, ca: &str, ext: &str, serial: &str| {
        openssl(&[
            "x509",
            "-req",
            "-in",
            &p(&format!("{name}.csr")),
            "-CA",
            &p(&format!("{ca}.pem")),
            "-CAkey",
            &p(&format!("{ca}.key")),
            "-set_serial",
            serial,
            "-days",
            "3650",
            "-extfile",
            &p(ext),
            "-out",
            &p(&format!("{name}.pem")),
        ]);
    };
    req("root", "Chain Root", true);
    req("int", "Chain Intermediate", false);
    sign("int", "root", "ca.ext", "2");
    req("leaf", "localhost", false);
    sign("leaf", "int", "leaf.ext", "3");
    let root = fs::read_to_string(d.join("root.pem")).expect("read root.pem");
    let int = fs::read_to_string(d.join("int.pem")).expect("read int.pem");
    fs::write(d.join("chain.pem"), format!("{int}{root}")).expect("write chain.pem");
    fs::create_dir_all(d.join("capath")).expect("mkdir capath");
    fs::write(d.join("capath/int.pem"), &int).expect("write capath/int.pem");
    fs::write(d.join("capath/root.pem"), &root).expect("write capath/root.pem");
    // OpenSSL (Mosquitto) finds capath certificates by subject-hash names only.
    openssl(&["rehash", &p("capath")]);
    pki
}

/// A broker with one TLS listener: the leaf alone as certfile, plus `ca_lines`.
fn tls_broker(pki: &Pki, ca_lines: &str) -> TestBroker {
    let config = format!(
        "user root\nallow_anonymous true\nlistener {{port}} 127.0.0.1\n\
         certfile {}\nkeyfile {}\n{ca_lines}",
        pki.f("leaf.pem"),
        pki.f("leaf.key")
    );
    TestBroker::start_config(Some(&config), &[], IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// `mosquitto_pub -r` then `mosquitto_sub -C 1`, both trusting only the root: the retained
/// message comes back through two verified TLS connections.
fn round_trip(b: &TestBroker, pki: &Pki, topic: &str) -> Result<(), String> {
    let port = b.port.to_string();
    let root = pki.f("root.pem");
    let common = [
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "--cafile",
        &root,
        "-t",
        topic,
    ];
    let mut args = common.to_vec();
    args.extend(["-q", "1", "-r", "-m", "through the chain"]);
    let f = run(Path::new("mosquitto_pub"), &args, TOOL_LIMIT);
    if !success(&f) {
        return Err(format!("mosquitto_pub: {}", f.output()));
    }
    let mut args = common.to_vec();
    args.extend(["-C", "1", "-W", "5"]);
    let f = run(Path::new("mosquitto_sub"), &args, TOOL_LIMIT);
    if !success(&f) || f.stdout.trim() != "through the chain" {
        return Err(format!("mosquitto_sub: {}", f.output()));
    }
    Ok(())
}

/// The subjects of the certificates the server sends, in order, from
/// `openssl s_client -showcerts` (which also verifies them against the root).
fn sent_chain(b: &TestBroker, pki: &Pki) -> Vec<String> {
    let connect = format!("127.0.0.1:{}", b.port);
    let root = pki.f("root.pem");
    let f = run(
        Path::new("openssl"),
        &[
            "s_client",
            "-connect",
            &connect,
            "-showcerts",
            "-CAfile",
            &root,
        ],
        TOOL_LIMIT,
    );
    let out = f.output();
    assert!(
        out.contains("Verify return code: 0 (ok)"),
        "s_client did not verify the chain against the root:\n{out}"
    );
    // Lines like " 1 s:O = midge chain test, CN = Chain Intermediate".
    out.lines()
        .filter_map(|l| {
            let (n, s) = l.trim_start().split_once(" s:")?;
            n.parse::<u32>().ok()?;
            Some(s.rsplit("CN = ").next().unwrap_or(s).to_string())
        })
        .collect()
}

const TOOLS: &[&str] = &["openssl", "mosquitto_pub", "mosquitto_sub"];

#[test]
fn leaf_only_certfile_is_completed_from_cafile() {
    if !need(TOOLS, "leaf_only_certfile_is_completed_from_cafile") {
        return;
    }
    let pki = make_pki();
    let b = tls_broker(&pki, &format!("cafile {}\n", pki.f("chain.pem")));
    round_trip(&b, &pki, "chain/cafile").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        sent_chain(&b, &pki),
        ["localhost", "Chain Intermediate", "Chain Root"],
        "leaf, intermediate and root, as Mosquitto 2.0.11 sends them"
    );
}

#[test]
fn leaf_only_certfile_is_completed_from_capath() {
    if !need(TOOLS, "leaf_only_certfile_is_completed_from_capath") {
        return;
    }
    let pki = make_pki();
    let b = tls_broker(&pki, &format!("capath {}\n", pki.f("capath")));
    round_trip(&b, &pki, "chain/capath").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        sent_chain(&b, &pki),
        ["localhost", "Chain Intermediate", "Chain Root"]
    );
}

#[test]
fn without_the_intermediate_a_root_only_client_refuses() {
    if !need(TOOLS, "without_the_intermediate_a_root_only_client_refuses") {
        return;
    }
    let pki = make_pki();
    // The root alone cannot complete the chain: the client sees the leaf only.
    let b = tls_broker(&pki, &format!("cafile {}\n", pki.f("root.pem")));
    let e = round_trip(&b, &pki, "chain/none").expect_err("leaf alone verified");
    assert!(e.starts_with("mosquitto_pub"), "{e}");
}
