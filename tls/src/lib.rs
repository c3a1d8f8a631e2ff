//! Drover's mutual TLS, in Nomad's shape.
//!
//! An agent's `tls { http rpc ca_file cert_file key_file verify_server_hostname
//! verify_https_client }` block becomes an [`AgentTls`]: the CA, this agent's certificate
//! and key (checked to match), and the rustls configurations every listener and dialler
//! uses. Identities are Nomad's names: `server.<region>.nomad` for servers,
//! `client.<region>.nomad` for client agents, `cli.<region>.nomad` for people.
//!
//! Servers are dialled by IP address (Raft membership holds `ip:port`), so a server's
//! certificate is checked against the *name* `server.<region>.nomad` whatever address was
//! dialled: [`ServerNameVerifier`] wraps rustls's own WebPKI verifier and hands it that
//! name instead of the dialled IP. Doing it in the verifier (rather than with SNI or a
//! resolver override) keeps every URL an honest `https://ip:port`, works through TCP
//! proxies, and is the one place the rule lives.
//!
//! [`generate`] makes a CA and Nomad's agent certificates (`drover tls`).

pub mod generate;

/// The rustls this crate builds configurations with (so users name the same types).
pub use rustls;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{verify_server_cert_signed_by_trust_anchor, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A TLS problem, as a sentence that names the file or setting at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(pub String);

fn err(s: impl Into<String>) -> TlsError {
    TlsError(s.into())
}

/// Nomad's default region.
pub const DEFAULT_REGION: &str = "global";

/// The name a server's certificate must be valid for: `server.<region>.nomad`.
pub fn server_name(region: &str) -> String {
    format!("server.{region}.nomad")
}

/// The name a client agent's certificate carries: `client.<region>.nomad`.
pub fn client_name(region: &str) -> String {
    format!("client.{region}.nomad")
}

/// The crypto this crate uses everywhere (ring, as reqwest's rustls does).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The `tls` block of an agent's configuration, Nomad's names; all off by default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// TLS on the HTTP API (and the UI).
    pub http: bool,
    /// Mutual TLS on the RPC listener (peers, client agents) and on what this agent dials.
    pub rpc: bool,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Check that servers present a certificate for `server.<region>.nomad`.
    pub verify_server_hostname: bool,
    /// Demand a client certificate from the CA on the HTTP API too.
    pub verify_https_client: bool,
    /// The agent's region (`global` when empty).
    pub region: String,
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| {
        err(format!(
            "cannot read the {what} file {}: {e}",
            path.display()
        ))
    })
}

/// Every certificate in a PEM file; at least one.
pub fn load_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path, what)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            err(format!(
                "the {what} file {} is not valid PEM: {e}",
                path.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(err(format!(
            "the {what} file {} holds no PEM certificate (\"BEGIN CERTIFICATE\")",
            path.display()
        )));
    }
    for c in &certs {
        ParsedCertificate::try_from(c).map_err(|e| {
            err(format!(
                "the {what} file {} holds a certificate that cannot be parsed: {e}",
                path.display()
            ))
        })?;
    }
    Ok(certs)
}

/// The CA file as a root store.
pub fn load_ca(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for c in load_certs(path, "CA certificate")? {
        roots.add(c).map_err(|e| {
            err(format!(
                "the CA certificate file {} holds a certificate that is not a usable CA: {e}",
                path.display()
            ))
        })?;
    }
    Ok(roots)
}

/// A private key in PEM (PKCS#8, PKCS#1 or SEC1, as openssl and `drover tls` write them).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path, "key")?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => err(format!(
            "the key file {} holds no PEM private key (\"BEGIN PRIVATE KEY\")",
            path.display()
        )),
        e => err(format!(
            "the key file {} is not a valid PEM private key: {e}",
            path.display()
        )),
    })
}

/// A certificate chain and its private key, checked to belong together.
pub struct Identity {
    pub chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Identity {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("certificates", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// Loads `cert_file` and `key_file`; a key that does not match the certificate is an
    /// error naming both files.
    pub fn load(cert_file: &Path, key_file: &Path) -> Result<Self, TlsError> {
        let chain = load_certs(cert_file, "certificate")?;
        let key = load_key(key_file)?;
        let provider = provider();
        CertifiedKey::from_der(chain.clone(), key.clone_key(), &provider).map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => err(format!(
                "the key file {} does not match the certificate in {}",
                key_file.display(),
                cert_file.display()
            )),
            e => err(format!(
                "the key file {} cannot be used with the certificate in {}: {e}",
                key_file.display(),
                cert_file.display()
            )),
        })?;
        Ok(Identity { chain, key })
    }

    pub fn key(&self) -> PrivateKeyDer<'static> {
        self.key.clone_key()
    }
}

/// What a verified peer certificate is valid for (checked once per connection).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerCert {
    /// Valid for `server.<region>.nomad`: a server of this region.
    pub server: bool,
    /// Valid for `client.<region>.nomad`: a client agent of this region.
    pub client: bool,
}

/// Is `cert` (already verified against the CA) valid for the DNS name `name`?
pub fn valid_for(cert: &CertificateDer<'_>, name: &str) -> bool {
    let (Ok(parsed), Ok(name)) = (
        ParsedCertificate::try_from(cert),
        ServerName::try_from(name.to_string()),
    ) else {
        return false;
    };
    rustls::client::verify_server_name(&parsed, &name).is_ok()
}

/// The roles a verified peer certificate holds in `region`.
pub fn peer_cert(cert: &CertificateDer<'_>, region: &str) -> PeerCert {
    PeerCert {
        server: valid_for(cert, &server_name(region)),
        client: valid_for(cert, &client_name(region)),
    }
}

/// An agent's TLS: its policy and loaded material.
#[derive(Clone)]
pub struct AgentTls {
    pub http: bool,
    pub rpc: bool,
    pub verify_server_hostname: bool,
    pub verify_https_client: bool,
    pub region: String,
    roots: Arc<RootCertStore>,
    identity: Identity,
}

impl std::fmt::Debug for AgentTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentTls")
            .field("http", &self.http)
            .field("rpc", &self.rpc)
            .field("verify_server_hostname", &self.verify_server_hostname)
            .field("verify_https_client", &self.verify_https_client)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl AgentTls {
    /// Loads the files the options name. `None` when neither `http` nor `rpc` is on (as
    /// in Nomad, files alone turn nothing on). A missing setting, or a file that is
    /// missing, unreadable or does not match, is an error naming it.
    pub fn load(opts: &TlsOptions) -> Result<Option<Self>, TlsError> {
        if !opts.http && !opts.rpc {
            return Ok(None);
        }
        let need = |v: &Option<PathBuf>, key: &str| {
            v.clone()
                .filter(|p| !p.as_os_str().is_empty())
                .ok_or_else(|| {
                    err(format!(
                        "tls block: {key} is required when http or rpc is true"
                    ))
                })
        };
        let ca = need(&opts.ca_file, "ca_file")?;
        let cert = need(&opts.cert_file, "cert_file")?;
        let key = need(&opts.key_file, "key_file")?;
        let roots = load_ca(&ca)?;
        let identity = Identity::load(&cert, &key)?;
        let region = if opts.region.is_empty() {
            DEFAULT_REGION.to_string()
        } else {
            opts.region.clone()
        };
        Ok(Some(AgentTls {
            http: opts.http,
            rpc: opts.rpc,
            verify_server_hostname: opts.verify_server_hostname,
            verify_https_client: opts.verify_https_client,
            region,
            roots: Arc::new(roots),
            identity,
        }))
    }

    /// The acceptor configuration of the RPC listener: a client certificate from the CA
    /// is required.
    pub fn rpc_acceptor(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        self.acceptor(true)
    }

    /// The acceptor configuration of the HTTP API: a client certificate is required with
    /// `verify_https_client`, optional (but checked when sent) otherwise.
    pub fn http_acceptor(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        self.acceptor(self.verify_https_client)
    }

    fn acceptor(&self, require_client: bool) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let provider = provider();
        let mut verifier =
            WebPkiClientVerifier::builder_with_provider(self.roots.clone(), provider.clone());
        if !require_client {
            verifier = verifier.allow_unauthenticated();
        }
        let verifier = verifier.build().map_err(|e| {
            err(format!(
                "cannot use the CA to check client certificates: {e}"
            ))
        })?;
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| err(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.identity.chain.clone(), self.identity.key())
            .map_err(|e| err(format!("cannot serve with this certificate and key: {e}")))?;
        // The listeners speak HTTP/1.1 only.
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(cfg))
    }

    /// The configuration this agent dials servers with: its own certificate, and the
    /// server's checked against the CA and (with `verify_server_hostname`) the name
    /// `server.<region>.nomad`, whatever address was dialled.
    pub fn dialer(&self) -> Result<rustls::ClientConfig, TlsError> {
        let expected = self
            .verify_server_hostname
            .then(|| server_name(&self.region));
        let verifier = ServerNameVerifier::new(self.roots.clone(), expected)?;
        rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| err(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_client_auth_cert(self.identity.chain.clone(), self.identity.key())
            .map_err(|e| err(format!("cannot dial with this certificate and key: {e}")))
    }

    /// The configuration a server dials a client agent's HTTP API with (relayed
    /// `/v1/client/*`): [`AgentTls::dialer`]'s certificate, and the agent's checked against
    /// the CA and (with `verify_server_hostname`) the name `client.<region>.nomad`.
    pub fn agent_dialer(&self) -> Result<rustls::ClientConfig, TlsError> {
        let mut cfg = self.dialer()?;
        let expected = self
            .verify_server_hostname
            .then(|| client_name(&self.region));
        let verifier = ServerNameVerifier::new(self.roots.clone(), expected)?;
        cfg.dangerous().set_certificate_verifier(Arc::new(verifier));
        Ok(cfg)
    }

    /// What a peer's verified certificate is valid for, in this agent's region.
    pub fn peer_cert(&self, cert: &CertificateDer<'_>) -> PeerCert {
        peer_cert(cert, &self.region)
    }

    /// The URL scheme of RPC addresses: `https` with `rpc = true`.
    pub fn rpc_scheme(&self) -> &'static str {
        if self.rpc {
            "https"
        } else {
            "http"
        }
    }
}

/// Checks a server's certificate against the CA and, when `expected` is set, that it is
/// valid for that name rather than for the address dialled.
#[derive(Debug)]
pub struct ServerNameVerifier {
    inner: Arc<WebPkiServerVerifier>,
    roots: Arc<RootCertStore>,
    expected: Option<ServerName<'static>>,
    provider: Arc<CryptoProvider>,
}

impl ServerNameVerifier {
    pub fn new(roots: Arc<RootCertStore>, expected: Option<String>) -> Result<Self, TlsError> {
        let provider = provider();
        let inner = WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| err(format!("cannot use the CA to check servers: {e}")))?;
        let expected = expected
            .map(|n| {
                ServerName::try_from(n.clone())
                    .map_err(|_| err(format!("{n:?} is not a valid server name")))
            })
            .transpose()?;
        Ok(ServerNameVerifier {
            inner,
            roots,
            expected,
            provider,
        })
    }
}

impl ServerCertVerifier for ServerNameVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _dialled: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match &self.expected {
            Some(name) => {
                self.inner
                    .verify_server_cert(end_entity, intermediates, name, ocsp_response, now)
            }
            None => {
                // Nomad without verify_server_hostname: any certificate from the CA.
                let cert = ParsedCertificate::try_from(end_entity)?;
                verify_server_cert_signed_by_trust_anchor(
                    &cert,
                    &self.roots,
                    intermediates,
                    now,
                    self.provider.signature_verification_algorithms.all,
                )?;
                Ok(ServerCertVerified::assertion())
            }
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

/// The CLI's TLS (`-ca-cert`, `-client-cert`, `-client-key` or `NOMAD_CACERT`,
/// `NOMAD_CLIENT_CERT`, `NOMAD_CLIENT_KEY`): the server is checked as any HTTPS server is,
/// against the address's host name (Nomad's certificates carry `localhost` and
/// `127.0.0.1`), with the CA file as the only root when one is given.
pub fn cli_dialer(
    ca_cert: Option<&Path>,
    client_cert: Option<&Path>,
    client_key: Option<&Path>,
) -> Result<rustls::ClientConfig, TlsError> {
    let roots = match ca_cert {
        Some(ca) => load_ca(ca)?,
        None => RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        },
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| err(e.to_string()))?
        .with_root_certificates(roots);
    match (client_cert, client_key) {
        (Some(c), Some(k)) => {
            let id = Identity::load(c, k)?;
            builder
                .with_client_auth_cert(id.chain.clone(), id.key())
                .map_err(|e| {
                    err(format!(
                        "cannot use the client certificate {}: {e}",
                        c.display()
                    ))
                })
        }
        (None, None) => Ok(builder.with_no_client_auth()),
        (Some(c), None) => Err(err(format!(
            "a client certificate ({}) needs its key: pass -client-key or set NOMAD_CLIENT_KEY",
            c.display()
        ))),
        (None, Some(k)) => Err(err(format!(
            "a client key ({}) needs its certificate: pass -client-cert or set NOMAD_CLIENT_CERT",
            k.display()
        ))),
    }
}

/// Nomad's environment variables for the CLI's TLS.
pub const ENV_CA_CERT: &str = "NOMAD_CACERT";
pub const ENV_CLIENT_CERT: &str = "NOMAD_CLIENT_CERT";
pub const ENV_CLIENT_KEY: &str = "NOMAD_CLIENT_KEY";

/// [`cli_dialer`] from `NOMAD_CACERT`, `NOMAD_CLIENT_CERT` and `NOMAD_CLIENT_KEY` (empty
/// counts as unset); `None` when none is set.
pub fn cli_dialer_from_env() -> Result<Option<rustls::ClientConfig>, TlsError> {
    let var = |n: &str| {
        std::env::var_os(n)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let (ca, cert, key) = (var(ENV_CA_CERT), var(ENV_CLIENT_CERT), var(ENV_CLIENT_KEY));
    if ca.is_none() && cert.is_none() && key.is_none() {
        return Ok(None);
    }
    cli_dialer(ca.as_deref(), cert.as_deref(), key.as_deref()).map(Some)
}

#[cfg(test)]
mod tests;
