//! TLS toward the backend (`wss://`, `https://`), with rustls and its `ring` provider (no C
//! toolchain beyond what `ring` itself builds, no OpenSSL to install).
//!
//! Trusted roots: the bundled Mozilla roots (`webpki-roots`, so a minimal container needs no CA
//! package), plus the system's store when it has one, plus any CA file the configuration names
//! (for a backend with a private CA). Skipping verification exists for test setups only: it is
//! an explicit option, and every connection made that way is logged as a warning.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// How the bridge verifies a backend's certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// PEM file of extra CA certificates to trust.
    pub ca_file: Option<PathBuf>,
    /// Accept any certificate (test setups only; logged loudly).
    pub insecure_skip_verify: bool,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates of a PEM file; an error when it holds none.
fn ca_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("CA file {}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("CA file {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("CA file {}: no PEM certificate in it", path.display()));
    }
    Ok(certs)
}

/// The bytes of a PEM file of CA certificates, checked to hold at least one that can be a trust
/// anchor. For a client that takes the PEM itself (the Redis store's), so a file that would
/// fail at the first connection fails when the configuration is read, with the file's name.
pub fn read_ca_file(path: &Path) -> Result<Vec<u8>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("CA file {}: {e}", path.display()))?;
    let mut anchors = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| format!("CA file {}: {e}", path.display()))?;
        anchors.add(cert).map_err(|e| format!("CA file {}: {e}", path.display()))?;
    }
    if anchors.is_empty() {
        return Err(format!("CA file {}: no PEM certificate in it", path.display()));
    }
    Ok(pem)
}

/// Builds the client configuration every TLS link uses.
pub fn client_config(options: &TlsOptions) -> Result<Arc<ClientConfig>, String> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let config = if options.insecure_skip_verify {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(AnyCertificate(provider()))).with_no_client_auth()
    } else {
        let mut roots = RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
        let system = rustls_native_certs::load_native_certs();
        let (added, _) = roots.add_parsable_certificates(system.certs);
        tracing::debug!(system_roots = added, "TLS roots: bundled Mozilla roots and the system's store");
        if let Some(path) = &options.ca_file {
            for cert in ca_certificates(path)? {
                roots.add(cert).map_err(|e| format!("CA file {}: {e}", path.display()))?;
            }
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    Ok(Arc::new(config))
}

/// Accepts every certificate (signatures are still checked, so the handshake is real).
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        tracing::warn!(server = ?server_name, "TLS certificate NOT verified (insecure-skip-verify is on)");
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_must_hold_a_certificate() {
        let dir = std::env::temp_dir().join(format!("ob-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let error = client_config(&TlsOptions { ca_file: Some(empty), insecure_skip_verify: false }).unwrap_err();
        assert!(error.contains("no PEM certificate"), "{error}");
        let missing = client_config(&TlsOptions { ca_file: Some(dir.join("missing.pem")), ..Default::default() });
        assert!(missing.unwrap_err().contains("missing.pem"));
        assert!(client_config(&TlsOptions::default()).is_ok());
        assert!(client_config(&TlsOptions { ca_file: None, insecure_skip_verify: true }).is_ok());
        // The same checks for a client that takes the PEM itself.
        assert!(read_ca_file(&dir.join("empty.pem")).unwrap_err().contains("no PEM certificate"));
        assert!(read_ca_file(&dir.join("missing.pem")).unwrap_err().contains("missing.pem"));
        let ca = rcgen::CertificateParams::new(Vec::<String>::new())
            .unwrap()
            .self_signed(&rcgen::KeyPair::generate().unwrap())
            .unwrap();
        let good = dir.join("ca.pem");
        std::fs::write(&good, ca.pem()).unwrap();
        assert_eq!(read_ca_file(&good).unwrap(), ca.pem().into_bytes());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
