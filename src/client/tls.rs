//! tls: the client side of TLS (rustls with the ring provider).
//!
//! Owns: turning Mosquitto's client TLS flags (`--cafile`, `--capath`,
//! `--cert`, `--key`, `--insecure`, `--tls-version`, `--tls-alpn`,
//! `--tls-use-os-certs`) into a `rustls::ClientConfig`, and the name the
//! server certificate is checked against.
//!
//! Must not: open sockets or speak MQTT. `--insecure` keeps Mosquitto's
//! meaning: the certificate chain is still verified, only the host name
//! check is skipped.

use std::fs;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::ring as provider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

/// Client TLS settings, as given on the command line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsOptions {
    pub cafile: Option<String>,
    pub capath: Option<String>,
    pub certfile: Option<String>,
    pub keyfile: Option<String>,
    /// Skip the host name check (the chain is still verified).
    pub insecure: bool,
    /// "tlsv1.3" or "tlsv1.2"; None allows both.
    pub version: Option<String>,
    pub alpn: Option<String>,
    /// Trust the system's CA bundle (also what `mqtts://` implies).
    pub use_os_certs: bool,
}

/// Why a TLS configuration could not be built. The text is what the tools
/// print after "Error: ".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsConfigError(pub String);

impl std::fmt::Display for TlsConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsConfigError {}

/// Where Debian, Fedora/RHEL, Alpine and the BSDs keep the system CA
/// bundle; the first that exists is used for `--tls-use-os-certs`.
const OS_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

fn load_certs(path: &str) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let iter = CertificateDer::pem_file_iter(path)
        .map_err(|_| TlsConfigError("Problem setting TLS options: File not found.".into()))?;
    let mut out = Vec::new();
    for c in iter {
        match c {
            Ok(c) => out.push(c),
            Err(e) => {
                return Err(TlsConfigError(format!(
                    "Unable to load certificates from \"{path}\": {e}."
                )))
            }
        }
    }
    Ok(out)
}

fn roots(opts: &TlsOptions) -> Result<RootCertStore, TlsConfigError> {
    let mut roots = RootCertStore::empty();
    if let Some(f) = &opts.cafile {
        let certs = load_certs(f)?;
        let (added, _) = roots.add_parsable_certificates(certs);
        if added == 0 {
            return Err(TlsConfigError(format!(
                "No usable CA certificate in \"{f}\"."
            )));
        }
    }
    if let Some(dir) = &opts.capath {
        // Like OpenSSL, a missing directory just contributes nothing.
        for e in fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_file() {
                // A hashed OpenSSL directory also holds CRLs and other
                // files: take whatever parses as a certificate.
                if let Ok(certs) = load_certs(&p.to_string_lossy()) {
                    roots.add_parsable_certificates(certs);
                }
            }
        }
    }
    if opts.use_os_certs {
        if let Some(bundle) = OS_BUNDLES
            .iter()
            .find(|p| std::path::Path::new(p).is_file())
        {
            if let Ok(certs) = load_certs(bundle) {
                roots.add_parsable_certificates(certs);
            }
        }
    }
    Ok(roots)
}

/// Build the rustls client configuration.
pub fn client_config(opts: &TlsOptions) -> Result<Arc<ClientConfig>, TlsConfigError> {
    let provider = Arc::new(provider::default_provider());
    let versions: &[&'static rustls::SupportedProtocolVersion] = match opts.version.as_deref() {
        None => &[&rustls::version::TLS13, &rustls::version::TLS12],
        Some("tlsv1.3") => &[&rustls::version::TLS13],
        Some("tlsv1.2") => &[&rustls::version::TLS12],
        Some(v @ ("tlsv1.1" | "tlsv1")) => {
            return Err(TlsConfigError(format!(
                "TLS version {v} is not supported (rustls offers tlsv1.2 and tlsv1.3)."
            )))
        }
        Some(_) => {
            return Err(TlsConfigError(
                "Problem setting TLS options, check the options are valid.".into(),
            ))
        }
    };
    let roots = roots(opts)?;
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| TlsConfigError(format!("Problem setting TLS options: {e}.")))?;
    let builder = if roots.is_empty() {
        // Like OpenSSL with an empty store: no error now, every server
        // certificate is refused during the handshake.
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoTrustAnchors {
                schemes: provider
                    .signature_verification_algorithms
                    .supported_schemes(),
            }))
    } else {
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| TlsConfigError(format!("Problem setting TLS options: {e}.")))?;
        if opts.insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(IgnoreHostName { inner: verifier }))
        } else {
            builder.with_webpki_verifier(verifier)
        }
    };
    let mut config = match (&opts.certfile, &opts.keyfile) {
        (Some(cert), Some(key)) => {
            let certs = load_certs(cert)?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                TlsConfigError(format!("Unable to load client key file \"{key}\": {e}."))
            })?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| TlsConfigError(format!("Problem setting client certificate: {e}.")))?
        }
        _ => builder.with_no_client_auth(),
    };
    if let Some(alpn) = &opts.alpn {
        config.alpn_protocols = vec![alpn.as_bytes().to_vec()];
    }
    Ok(Arc::new(config))
}

/// The name to verify the server certificate against: an IP address when
/// `host` is one, a DNS name otherwise.
pub fn server_name(host: &str) -> Result<ServerName<'static>, TlsConfigError> {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(h.to_string())
        .map_err(|_| TlsConfigError(format!("Invalid TLS server name \"{host}\".")))
}

/// No CA at all: refuse every certificate (at handshake time, where
/// Mosquitto reports it too).
#[derive(Debug)]
struct NoTrustAnchors {
    schemes: Vec<SignatureScheme>,
}

impl ServerCertVerifier for NoTrustAnchors {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Err(rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer,
        ))
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer,
        ))
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer,
        ))
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes.clone()
    }
}

/// `--insecure`: the webpki verifier, minus the host name check.
#[derive(Debug)]
struct IgnoreHostName {
    inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for IgnoreHostName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_cafile_reads_like_mosquitto() {
        let opts = TlsOptions {
            cafile: Some("/nonexistent/ca.pem".into()),
            ..TlsOptions::default()
        };
        let e = client_config(&opts).unwrap_err();
        assert_eq!(e.0, "Problem setting TLS options: File not found.");
    }

    #[test]
    fn unsupported_version_refused() {
        let opts = TlsOptions {
            version: Some("tlsv1.1".into()),
            ..TlsOptions::default()
        };
        let e = client_config(&opts).unwrap_err();
        assert!(e.0.contains("tlsv1.1"), "{e}");
        let opts = TlsOptions {
            version: Some("tlsv1.3".into()),
            ..TlsOptions::default()
        };
        assert!(client_config(&opts).is_ok());
    }

    #[test]
    fn server_names() {
        assert!(matches!(
            server_name("127.0.0.1"),
            Ok(ServerName::IpAddress(_))
        ));
        assert!(matches!(server_name("[::1]"), Ok(ServerName::IpAddress(_))));
        assert!(matches!(
            server_name("localhost"),
            Ok(ServerName::DnsName(_))
        ));
        assert!(server_name("bad name!").is_err());
    }
}
