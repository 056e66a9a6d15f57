//! TLS listeners: a rustls (ring) `ServerConfig` built from Mosquitto's TLS
//! directives, and the identity of a client certificate for
//! `use_identity_as_username` / `use_subject_as_username`.
//!
//! Must not: know MQTT. Errors are sentences naming the file and the problem,
//! for start-up and SIGHUP to report.

use std::fs;
use std::path::Path;
use std::sync::Arc;

use rustls::crypto::ring as provider;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, SupportedCipherSuite};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

use crate::config;

/// OpenSSL cipher names (as in `ciphers` / `ciphers_tls1.3`) that rustls offers.
const SUITE_NAMES: &[(&str, SupportedCipherSuite)] = &[
    (
        "TLS_AES_256_GCM_SHA384",
        provider::cipher_suite::TLS13_AES_256_GCM_SHA384,
    ),
    (
        "TLS_AES_128_GCM_SHA256",
        provider::cipher_suite::TLS13_AES_128_GCM_SHA256,
    ),
    (
        "TLS_CHACHA20_POLY1305_SHA256",
        provider::cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
    ),
    (
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        provider::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        provider::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        provider::cipher_suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "ECDHE-RSA-AES256-GCM-SHA384",
        provider::cipher_suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "ECDHE-RSA-AES128-GCM-SHA256",
        provider::cipher_suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "ECDHE-RSA-CHACHA20-POLY1305",
        provider::cipher_suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
];

/// OpenSSL cipher-string keywords that select "the usual strong suites":
/// rustls offers only those, so they change nothing.
const NEUTRAL_KEYWORDS: &[&str] = &[
    "DEFAULT",
    "HIGH",
    "ALL",
    "ECDHE",
    "EECDH",
    "AESGCM",
    "CHACHA20",
    "@STRENGTH",
];

fn is_tls13(s: &SupportedCipherSuite) -> bool {
    matches!(s, SupportedCipherSuite::Tls13(_))
}

/// Pick suites from an OpenSSL-style list. Exclusions (`!x`, `-x`) and the
/// neutral keywords are accepted; an unknown name is an error naming it.
fn select_suites(list: &str, tls13: bool) -> Result<Vec<SupportedCipherSuite>, String> {
    let mut out: Vec<SupportedCipherSuite> = Vec::new();
    let mut unknown = Vec::new();
    for name in list.split([':', ',', ' ']).filter(|s| !s.is_empty()) {
        if name.starts_with('!') || name.starts_with('-') || name.starts_with('+') {
            continue;
        }
        if NEUTRAL_KEYWORDS.contains(&name) {
            for (_, s) in SUITE_NAMES {
                if is_tls13(s) == tls13 && !out.contains(s) {
                    out.push(*s);
                }
            }
            continue;
        }
        match SUITE_NAMES.iter().find(|(n, _)| *n == name) {
            Some((_, s)) if is_tls13(s) == tls13 => {
                if !out.contains(s) {
                    out.push(*s)
                }
            }
            _ => unknown.push(name.to_string()),
        }
    }
    if !unknown.is_empty() {
        return Err(format!(
            "unsupported cipher(s) {}: rustls offers {}",
            unknown.join(", "),
            SUITE_NAMES
                .iter()
                .filter(|(_, s)| is_tls13(s) == tls13)
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(":")
        ));
    }
    Ok(out)
}

fn load_certs(path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Result<Vec<_>, _> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("Unable to load certificate file \"{}\": {}.", path, e))?
        .collect();
    let certs =
        certs.map_err(|e| format!("Unable to load certificate file \"{}\": {}.", path, e))?;
    if certs.is_empty() {
        return Err(format!(
            "Unable to load certificate file \"{}\": no PEM certificate in it.",
            path
        ));
    }
    Ok(certs)
}

/// The CA certificates of a TLS listener, from `cafile` and every file of
/// `capath`: the trust store for client certificates, and the certificates
/// themselves for completing the server's chain. Like Mosquitto (which loads
/// them for every TLS listener, even without require_certificate), a cafile
/// that is missing, unreadable or holds no certificate is an error with
/// Mosquitto's first line; midge is stricter about capath, which OpenSSL 3
/// only looks into at handshake time: a capath that cannot be read or holds
/// no certificate is refused the same way, instead of failing every client
/// later.
fn load_roots(tls: &config::Tls) -> Result<(RootCertStore, Vec<CertificateDer<'static>>), String> {
    let mut roots = RootCertStore::empty();
    let mut all = Vec::new();
    let cafile_error = |f: &str, why: String| {
        format!(
            "Error: Unable to load CA certificates. Check cafile \"{}\".\n{}",
            f, why
        )
    };
    let capath_error = |d: &str, why: String| {
        format!(
            "Error: Unable to load CA certificates. Check capath \"{}\".\n{}",
            d, why
        )
    };
    if let Some(f) = &tls.cafile {
        for c in load_certs(f).map_err(|e| cafile_error(f, e))? {
            roots.add(c.clone()).map_err(|e| {
                cafile_error(f, format!("Invalid CA certificate in \"{}\": {}.", f, e))
            })?;
            all.push(c);
        }
    }
    if let Some(dir) = &tls.capath {
        let entries = fs::read_dir(dir)
            .map_err(|e| capath_error(dir, format!("Unable to open capath \"{}\": {}.", dir, e)))?;
        // Sorted, so that which of two same-named CAs completes the chain
        // does not depend on the order of the directory.
        let mut paths: Vec<_> = entries.flatten().map(|e| e.path()).collect();
        paths.sort_unstable();
        let mut found = 0usize;
        for p in paths {
            if p.is_file() {
                let s = p.to_string_lossy().to_string();
                // A hashed OpenSSL directory holds other files too (CRLs):
                // take every file that has certificates in it.
                if let Ok(certs) = load_certs(&s) {
                    for c in certs {
                        roots.add(c.clone()).map_err(|e| {
                            capath_error(
                                dir,
                                format!("Invalid CA certificate in \"{}\": {}.", s, e),
                            )
                        })?;
                        all.push(c);
                        found += 1;
                    }
                }
            }
        }
        if found == 0 {
            return Err(capath_error(
                dir,
                format!("No readable PEM certificate in any file of \"{}\".", dir),
            ));
        }
    }
    Ok((roots, all))
}

/// The certificates the server sends. A `certfile` holding more than the
/// leaf is sent as it is, as OpenSSL does with an explicit chain. A leaf
/// alone is completed from the CA certificates the way OpenSSL builds it for
/// Mosquitto: issuer after issuer, up to and including a self-signed root
/// (checked with `openssl s_client -showcerts` against Mosquitto 2.0.11:
/// leaf, intermediate, root), and as far as it gets when an issuer is
/// missing. Issuers are found by their Subject Name, and an issuer whose
/// key identifier differs from the one the certificate names is skipped.
/// Each CA certificate is used at most once, so a loop of issuers ends.
fn complete_chain(
    certs: Vec<CertificateDer<'static>>,
    cas: &[CertificateDer<'static>],
) -> Vec<CertificateDer<'static>> {
    if certs.len() != 1 {
        return certs;
    }
    let mut chain = certs;
    while let Some(last) = chain.last() {
        let Some(child) = chain_names(last) else {
            break;
        };
        if child.issuer == child.subject {
            break; // self-signed: the top of the chain
        }
        let issuer = cas.iter().find(|ca| {
            !chain.iter().any(|c| c.as_ref() == ca.as_ref())
                && chain_names(ca).is_some_and(|p| {
                    p.subject == child.issuer
                        && match (child.authority_key_id, p.subject_key_id) {
                            (Some(a), Some(s)) => a == s,
                            _ => true,
                        }
                })
        });
        match issuer {
            Some(ca) => chain.push(ca.clone()),
            None => break,
        }
    }
    chain
}

/// Build the server side of a TLS listener.
pub fn server_config(tls: &config::Tls) -> Result<Arc<ServerConfig>, String> {
    // CA first, as Mosquitto loads them (net__tls_load_verify).
    let has_ca = tls.cafile.is_some() || tls.capath.is_some();
    let (roots, cas) = if has_ca {
        let (roots, cas) = load_roots(tls)?;
        (Some(roots), cas)
    } else {
        (None, Vec::new())
    };
    let certfile = tls
        .certfile
        .as_deref()
        .ok_or("TLS listener needs certfile")?;
    let keyfile = tls.keyfile.as_deref().ok_or("TLS listener needs keyfile")?;
    let certs = complete_chain(load_certs(certfile)?, &cas);
    let key = PrivateKeyDer::from_pem_file(keyfile)
        .map_err(|e| format!("Unable to load server key file \"{}\": {}.", keyfile, e))?;

    let mut suites: Vec<SupportedCipherSuite> = Vec::new();
    let tls13_list = tls
        .ciphers_tls13
        .as_deref()
        .unwrap_or("TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256");
    suites.extend(select_suites(tls13_list, true).map_err(|e| format!("ciphers_tls1.3: {}", e))?);
    let only13 = tls.tls_version.as_deref() == Some("tlsv1.3");
    if !only13 {
        match &tls.ciphers {
            Some(list) => {
                suites.extend(select_suites(list, false).map_err(|e| format!("ciphers: {}", e))?)
            }
            None => suites.extend(
                SUITE_NAMES
                    .iter()
                    .filter(|(_, s)| !is_tls13(s))
                    .map(|(_, s)| *s),
            ),
        }
    }
    let provider = Arc::new(CryptoProvider {
        cipher_suites: suites,
        ..provider::default_provider()
    });
    let versions: &[&'static rustls::SupportedProtocolVersion] = if only13 {
        &[&rustls::version::TLS13]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| format!("TLS configuration: {}.", e))?;

    let builder = if tls.require_certificate || has_ca && tls.use_identity_as_username {
        let Some(roots) = roots else {
            return Err("require_certificate needs cafile or capath".to_string());
        };
        let mut vb = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
        if let Some(crl) = &tls.crlfile {
            let crls: Result<Vec<_>, _> = CertificateRevocationListDer::pem_file_iter(crl)
                .map_err(|e| format!("Unable to load CRL file \"{}\": {}.", crl, e))?
                .collect();
            let crls = crls.map_err(|e| format!("Unable to load CRL file \"{}\": {}.", crl, e))?;
            vb = vb.with_crls(crls);
        }
        if !tls.require_certificate {
            vb = vb.allow_unauthenticated();
        }
        let verifier = vb
            .build()
            .map_err(|e| format!("TLS client verification: {}.", e))?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let cfg = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("Certificate and key do not match or are unusable: {}.", e))?;
    Ok(Arc::new(cfg))
}

/// Check a listener's TLS settings without binding anything (`--test-config`
/// and start-up): the same errors `server_config` would give.
pub fn check(tls: &config::Tls) -> Result<(), String> {
    server_config(tls).map(|_| ())
}

/// The name a client certificate stands for: its subject CN, or with
/// `subject` the whole subject as `CN=..,OU=..,O=..` (RFC 2253 order, as
/// Mosquitto prints it).
pub fn cert_username(cert: &[u8], subject: bool) -> Option<String> {
    let rdns = subject_rdns(cert)?;
    if subject {
        let parts: Vec<String> = rdns
            .iter()
            .rev()
            .map(|(k, v)| format!("{}={}", k, escape_rfc2253(v)))
            .collect();
        Some(parts.join(","))
    } else {
        rdns.into_iter().find(|(k, _)| k == "CN").map(|(_, v)| v)
    }
}

fn escape_rfc2253(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for (i, ch) in v.chars().enumerate() {
        let special = matches!(ch, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (ch == '#' || ch == ' '))
            || (i + 1 == v.chars().count() && ch == ' ');
        if special {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

/// A DER element: (tag, contents, rest).
fn der(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = b.split_first()?;
    let (&l0, rest) = rest.split_first()?;
    let (len, rest) = if l0 < 0x80 {
        (usize::from(l0), rest)
    } else {
        let n = usize::from(l0 & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let mut len = 0usize;
        for &x in &rest[..n] {
            len = (len << 8) | usize::from(x);
        }
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// The subject of an X.509 certificate as (short name, value) pairs in
/// certificate order.
fn subject_rdns(cert: &[u8]) -> Option<Vec<(String, String)>> {
    let (_, cert_body, _) = der(cert)?; // Certificate SEQUENCE
    let (_, tbs, _) = der(cert_body)?; // TBSCertificate SEQUENCE
    let mut rest = tbs;
    let (tag, _, r) = der(rest)?;
    if tag == 0xA0 {
        rest = r; // explicit version
    }
    // serialNumber, signature, issuer, validity, then subject.
    for _ in 0..4 {
        let (_, _, r) = der(rest)?;
        rest = r;
    }
    let (_, name, _) = der(rest)?;
    let mut out = Vec::new();
    let mut sets = name;
    while !sets.is_empty() {
        let (_, set, r) = der(sets)?;
        sets = r;
        let mut atvs = set;
        while !atvs.is_empty() {
            let (_, atv, r) = der(atvs)?;
            atvs = r;
            let (_, oid, r2) = der(atv)?;
            let (vtag, value, _) = der(r2)?;
            let key = match oid {
                [0x55, 0x04, 0x03] => "CN".to_string(),
                [0x55, 0x04, 0x06] => "C".to_string(),
                [0x55, 0x04, 0x07] => "L".to_string(),
                [0x55, 0x04, 0x08] => "ST".to_string(),
                [0x55, 0x04, 0x0A] => "O".to_string(),
                [0x55, 0x04, 0x0B] => "OU".to_string(),
                [0x55, 0x04, 0x05] => "serialNumber".to_string(),
                [0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x09, 0x01] => {
                    "emailAddress".to_string()
                }
                _ => oid_dotted(oid),
            };
            let text = match vtag {
                // BMPString: UTF-16BE.
                0x1E => {
                    let units: Vec<u16> = value
                        .chunks(2)
                        .map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))
                        .collect();
                    String::from_utf16_lossy(&units)
                }
                _ => String::from_utf8_lossy(value).to_string(),
            };
            out.push((key, text));
        }
    }
    Some(out)
}

/// What chain building needs of a certificate: the DER contents of its
/// Issuer and Subject Names, and the key identifiers of its
/// AuthorityKeyIdentifier and SubjectKeyIdentifier extensions.
#[derive(Debug, PartialEq)]
struct ChainNames<'a> {
    issuer: &'a [u8],
    subject: &'a [u8],
    authority_key_id: Option<&'a [u8]>,
    subject_key_id: Option<&'a [u8]>,
}

fn chain_names(cert: &[u8]) -> Option<ChainNames<'_>> {
    let (_, cert_body, _) = der(cert)?; // Certificate SEQUENCE
    let (_, tbs, _) = der(cert_body)?; // TBSCertificate SEQUENCE
    let mut rest = tbs;
    let (tag, _, r) = der(rest)?;
    if tag == 0xA0 {
        rest = r; // explicit version
    }
    let (_, _, r) = der(rest)?; // serialNumber
    let (_, _, r) = der(r)?; // signature
    let (_, issuer, r) = der(r)?;
    let (_, _, r) = der(r)?; // validity
    let (_, subject, r) = der(r)?;
    let (_, _, rest) = der(r)?; // subjectPublicKeyInfo
                                // Key identifiers only narrow the choice: unreadable extensions leave
                                // the names to decide alone.
    let (authority_key_id, subject_key_id) = key_ids(rest).unwrap_or((None, None));
    Some(ChainNames {
        issuer,
        subject,
        authority_key_id,
        subject_key_id,
    })
}

/// (AuthorityKeyIdentifier keyIdentifier, SubjectKeyIdentifier) from what
/// follows subjectPublicKeyInfo in a TBSCertificate.
type KeyIds<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

fn key_ids(mut rest: &[u8]) -> Option<KeyIds<'_>> {
    let (mut aki, mut ski) = (None, None);
    // Optional issuerUniqueID [1], subjectUniqueID [2], extensions [3].
    while !rest.is_empty() {
        let (tag, body, r) = der(rest)?;
        rest = r;
        if tag != 0xA3 {
            continue;
        }
        let (_, mut exts, _) = der(body)?; // SEQUENCE OF Extension
        while !exts.is_empty() {
            let (_, ext, r) = der(exts)?;
            exts = r;
            let (_, oid, r) = der(ext)?;
            let (mut tag, mut value, r) = der(r)?;
            if tag == 0x01 {
                (tag, value, _) = der(r)?; // critical BOOLEAN
            }
            if tag != 0x04 {
                continue; // extnValue must be an OCTET STRING
            }
            match oid {
                // SubjectKeyIdentifier ::= OCTET STRING
                [0x55, 0x1D, 0x0E] => {
                    if let Some((0x04, id, _)) = der(value) {
                        ski = Some(id);
                    }
                }
                // AuthorityKeyIdentifier ::= SEQUENCE { keyIdentifier [0] OPTIONAL, .. }
                [0x55, 0x1D, 0x23] => {
                    if let Some((0x30, seq, _)) = der(value) {
                        if let Some((0x80, id, _)) = der(seq) {
                            aki = Some(id);
                        }
                    }
                }
                _ => {}
            }
        }
    }
    Some((aki, ski))
}

fn oid_dotted(oid: &[u8]) -> String {
    let mut parts: Vec<u64> = Vec::new();
    let mut acc = 0u64;
    for (i, &b) in oid.iter().enumerate() {
        acc = (acc << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            if parts.is_empty() && i < 8 {
                let first = (acc / 40).min(2);
                parts.push(first);
                parts.push(acc - first * 40);
            } else {
                parts.push(acc);
            }
            acc = 0;
        }
    }
    parts
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(".")
}

/// Whether the certificate/key files exist; used for messages at start-up.
pub fn describe_missing(tls: &config::Tls) -> Option<String> {
    for f in [&tls.certfile, &tls.keyfile, &tls.cafile, &tls.crlfile]
        .into_iter()
        .flatten()
    {
        if !Path::new(f).exists() {
            return Some(format!("Error: Unable to open \"{}\".", f));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cipher_names_map_and_unknown_is_named() {
        let s = select_suites("ECDHE-RSA-AES128-GCM-SHA256:!aNULL", false).unwrap();
        assert_eq!(s.len(), 1);
        let e = select_suites("ECDHE-RSA-AES128-GCM-SHA256:RC4-MD5", false).unwrap_err();
        assert!(e.contains("RC4-MD5"), "{}", e);
        assert_eq!(select_suites("DEFAULT", false).unwrap().len(), 6);
        let t = select_suites("TLS_AES_128_GCM_SHA256", true).unwrap();
        assert_eq!(t.len(), 1);
        assert!(select_suites("TLS_AES_128_CCM_SHA256", true).is_err());
    }

    #[test]
    fn der_walker_never_panics_on_garbage() {
        let mut x: u32 = 12345;
        for n in 0..2000 {
            let mut v = Vec::new();
            for _ in 0..(n % 64) {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                v.push(x as u8);
            }
            let _ = cert_username(&v, true);
            let _ = cert_username(&v, false);
        }
    }

    // Made once with the openssl command line (P-256, 100 years; chain
    // building looks at names and key identifiers only, never at dates):
    // root -> intermediate -> leaf, and an impostor root with the root's
    // name and another key.
    const ROOT: &str = include_str!("../../tests/fixtures/tls-chain/root.pem");
    const INTERMEDIATE: &str = include_str!("../../tests/fixtures/tls-chain/intermediate.pem");
    const LEAF: &str = include_str!("../../tests/fixtures/tls-chain/leaf.pem");
    const IMPOSTOR: &str = include_str!("../../tests/fixtures/tls-chain/impostor-root.pem");

    fn pem(text: &str) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(text.as_bytes()).expect("fixture PEM")
    }

    fn subjects(chain: &[CertificateDer<'static>]) -> Vec<String> {
        chain
            .iter()
            .map(|c| cert_username(c, false).unwrap_or_default())
            .collect()
    }

    #[test]
    fn leaf_alone_is_completed_up_to_and_with_the_root() {
        let (root, int, leaf) = (pem(ROOT), pem(INTERMEDIATE), pem(LEAF));
        let names = chain_names(&leaf).unwrap();
        assert_eq!(names.issuer, chain_names(&int).unwrap().subject);
        assert!(names.authority_key_id.is_some());
        // The order of the CA file does not matter; the impostor (same
        // name as the root, other key) is passed over by its key id.
        let cas = [pem(IMPOSTOR), root.clone(), int.clone()];
        let chain = complete_chain(vec![leaf.clone()], &cas);
        assert_eq!(
            subjects(&chain),
            ["localhost", "Chain Intermediate", "Chain Root"]
        );
        assert_eq!(chain, [leaf.clone(), int.clone(), root.clone()]);
        // As far as it gets without the root.
        let chain = complete_chain(vec![leaf.clone()], std::slice::from_ref(&int));
        assert_eq!(chain, [leaf.clone(), int.clone()]);
        // Nothing to add from unrelated CAs.
        let chain = complete_chain(vec![leaf.clone()], &[pem(IMPOSTOR)]);
        assert_eq!(chain, std::slice::from_ref(&leaf));
        // A certfile with its own chain is sent as it is, as OpenSSL does.
        let chain = complete_chain(vec![leaf.clone(), int.clone()], &cas);
        assert_eq!(chain, [leaf.clone(), int.clone()]);
        // A self-signed certificate is a chain of its own, even when it is
        // in the CA file too.
        let chain = complete_chain(vec![root.clone()], &cas);
        assert_eq!(chain, std::slice::from_ref(&root));
        // Duplicates (a capath with hash links to the same files) are
        // taken once.
        let cas = [int.clone(), int.clone(), root.clone(), root.clone()];
        let chain = complete_chain(vec![leaf.clone()], &cas);
        assert_eq!(chain, [leaf, int, root]);
    }

    /// A minimal certificate: only what `chain_names` reads, with the
    /// common name `cn` as subject, issued by common name `issuer`.
    fn fake_cert(issuer: &str, cn: &str, tail: &[u8]) -> CertificateDer<'static> {
        fn tlv(tag: u8, body: &[u8]) -> Vec<u8> {
            let mut v = vec![tag];
            if body.len() < 0x80 {
                v.push(body.len() as u8);
            } else {
                v.extend([0x82, (body.len() >> 8) as u8, body.len() as u8]);
            }
            v.extend_from_slice(body);
            v
        }
        let name = |cn: &str| {
            let atv = [tlv(0x06, &[0x55, 0x04, 0x03]), tlv(0x0C, cn.as_bytes())].concat();
            tlv(0x30, &tlv(0x31, &tlv(0x30, &atv)))
        };
        let tbs = [
            tlv(0xA0, &tlv(0x02, &[2])),
            tlv(0x02, &[1]),
            tlv(0x30, &[]),
            name(issuer),
            tlv(0x30, &[]),
            name(cn),
            tlv(0x30, &[]),
            tail.to_vec(),
        ]
        .concat();
        let cert = [tlv(0x30, &tbs), tlv(0x30, &[]), tlv(0x03, &[0])].concat();
        CertificateDer::from(tlv(0x30, &cert))
    }

    #[test]
    fn issuer_loops_and_garbage_end_the_chain() {
        // a issued by b, b by a: each is used once, then the walk stops.
        let a = fake_cert("b", "a", &[]);
        let b = fake_cert("a", "b", &[]);
        let leaf = fake_cert("a", "leaf", &[]);
        let chain = complete_chain(vec![leaf.clone()], &[a.clone(), b.clone()]);
        assert_eq!(subjects(&chain), ["leaf", "a", "b"]);
        // A CA listed twice is taken once.
        let chain = complete_chain(vec![leaf.clone()], &[a.clone(), a.clone()]);
        assert_eq!(subjects(&chain), ["leaf", "a"]);
        // The leaf among the CAs is not added again.
        let chain = complete_chain(vec![a.clone()], &[b.clone(), a.clone()]);
        assert_eq!(subjects(&chain), ["a", "b"]);
        // Unreadable extensions leave the names to decide.
        let odd = fake_cert("b", "a", &[0xA3, 0x05, 0x30, 0x03, 0x30, 0x01]);
        assert_eq!(chain_names(&odd).unwrap().subject_key_id, None);
        let chain = complete_chain(vec![leaf.clone()], &[odd]);
        assert_eq!(subjects(&chain), ["leaf", "a"]);
        // Garbage as leaf or as CA: no panic, nothing added.
        let mut x: u32 = 777;
        let mut junk = Vec::new();
        for n in 0..500 {
            let mut v = Vec::new();
            for _ in 0..(n % 97) {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                v.push(x as u8);
            }
            junk.push(CertificateDer::from(v));
        }
        for j in &junk {
            let _ = chain_names(j);
            assert_eq!(complete_chain(vec![j.clone()], &junk).len(), 1);
        }
        let chain = complete_chain(vec![leaf.clone()], &junk);
        assert_eq!(chain, [leaf]);
        // Truncated real certificates.
        let real = pem(INTERMEDIATE);
        for n in 0..real.len() {
            let _ = chain_names(&real[..n]);
        }
    }

    #[test]
    fn oid_text() {
        assert_eq!(oid_dotted(&[0x55, 0x04, 0x03]), "2.5.4.3");
    }
}
