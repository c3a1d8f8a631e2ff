//! A client-only agent's own HTTP listener: HTTP/1.1 on hyper with a header-read
//! timeout and graceful shutdown, over TLS with `tls { http = true }`.
//!
//! The approach is the servers' accept loop (`server::http::listen`), which this crate
//! cannot depend on (the agent never sees the server crate or Raft): each connection's
//! TLS handshake runs in its own task under the same deadline as the request headers, so
//! a peer that connects and says nothing holds neither the loop nor a slot for long. The
//! acceptor comes from the `drover-tls` crate ([`drover_tls::AgentTls::http_acceptor`]):
//! with `verify_https_client = true` a client certificate from the CA is required, and a
//! connection without one ends in the handshake, before any request is read.

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// How long shutdown waits for requests in flight (a followed log may last forever).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// TLS on the agent's HTTP API: the acceptor built from its `tls` block.
#[derive(Clone)]
pub struct HttpTls(Arc<drover_tls::rustls::ServerConfig>);

impl std::fmt::Debug for HttpTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HttpTls")
    }
}

impl HttpTls {
    /// `None` unless the agent's TLS covers its HTTP API (`tls { http = true }`).
    pub fn new(tls: &drover_tls::AgentTls) -> Result<Option<Self>, drover_tls::TlsError> {
        if !tls.http {
            return Ok(None);
        }
        Ok(Some(HttpTls(tls.http_acceptor()?)))
    }
}

/// How the agent's HTTP listener runs.
#[derive(Debug, Clone)]
pub struct ListenOptions {
    /// TLS, with `tls { http = true }`; plain HTTP otherwise.
    pub tls: Option<HttpTls>,
    /// How long a client may take for the TLS handshake and for a request's headers
    /// (Nomad's `limits { https_handshake_timeout }`); zero disables it.
    pub header_read_timeout: Duration,
}

impl Default for ListenOptions {
    /// Plain HTTP and Nomad's 5 seconds.
    fn default() -> Self {
        ListenOptions {
            tls: None,
            header_read_timeout: Duration::from_secs(5),
        }
    }
}

/// Serves one accepted connection (plain or TLS) until it closes.
async fn serve_connection<S>(
    http: hyper::server::conn::http1::Builder,
    watcher: hyper_util::server::graceful::Watcher,
    io: S,
    app: Router,
    peer: SocketAddr,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut req: hyper::Request<_>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        tower::ServiceExt::oneshot(app.clone(), req)
    });
    // No client route upgrades a connection (exec and logs are plain HTTP streams).
    let conn = watcher.watch(http.serve_connection(TokioIo::new(io), service));
    if let Err(e) = conn.await {
        tracing::debug!(client = %peer, error = %e, "connection ended with an error");
    }
}

/// Serves `app` on `listener` until `shutdown` fires, then lets requests in flight finish
/// (at most [`SHUTDOWN_GRACE`]).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    opts: ListenOptions,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new());
    http.header_read_timeout(Some(opts.header_read_timeout).filter(|d| !d.is_zero()));
    let acceptor = opts
        .tls
        .as_ref()
        .map(|t| tokio_rustls::TlsAcceptor::from(t.0.clone()));
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before accept: the
                    // listener itself is fine. Back off a little rather than spin.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let (app, http, watcher) = (app.clone(), http.clone(), graceful.watcher());
        let Some(acceptor) = acceptor.clone() else {
            tokio::spawn(serve_connection(http, watcher, stream, app, peer));
            continue;
        };
        let deadline = opts.header_read_timeout;
        tokio::spawn(async move {
            let handshake = acceptor.accept(stream);
            let stream = if deadline.is_zero() {
                handshake.await
            } else {
                tokio::time::timeout(deadline, handshake)
                    .await
                    .unwrap_or_else(|_| Err(std::io::Error::other("timed out")))
            };
            match stream {
                Ok(s) => serve_connection(http, watcher, s, app, peer).await,
                Err(e) => {
                    tracing::debug!(client = %peer, error = %e, "TLS handshake failed; connection closed");
                }
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::info!("requests still in flight after {SHUTDOWN_GRACE:?}; closing them");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_tls::generate::{self, CertRequest, Role};
    use std::path::Path;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A CA, a client agent's certificate and a CLI certificate in `dir`; the agent's
    /// TLS with `verify_https_client`.
    fn agent_tls(dir: &Path, verify_https_client: bool) -> drover_tls::AgentTls {
        let ca = generate::ca("test CA", 1).unwrap();
        std::fs::write(dir.join("ca.pem"), &ca.cert).unwrap();
        for (stem, role) in [("client", Role::Client), ("cli", Role::Cli)] {
            let req = CertRequest {
                role,
                region: "global".into(),
                domain: "nomad".into(),
                additional_dns: vec![],
                additional_ips: vec![],
                days: 1,
            };
            let c = generate::cert(&req, &ca.cert, &ca.key, "ca", "ca-key").unwrap();
            std::fs::write(dir.join(format!("{stem}.pem")), &c.cert).unwrap();
            std::fs::write(dir.join(format!("{stem}-key.pem")), &c.key).unwrap();
        }
        drover_tls::AgentTls::load(&drover_tls::TlsOptions {
            http: true,
            ca_file: Some(dir.join("ca.pem")),
            cert_file: Some(dir.join("client.pem")),
            key_file: Some(dir.join("client-key.pem")),
            verify_https_client,
            ..Default::default()
        })
        .unwrap()
        .unwrap()
    }

    async fn start(opts: ListenOptions) -> (SocketAddr, CancellationToken) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let app = Router::new().route("/", axum::routing::get(|| async { "ok" }));
        let token = CancellationToken::new();
        tokio::spawn(serve(l, app, opts, token.clone()));
        (addr, token)
    }

    /// A client trusting `dir`'s CA, presenting `cli.pem` when `with_cert`.
    fn https(dir: &Path, with_cert: bool) -> reqwest::Client {
        let ca = drover_tls::load_ca(&dir.join("ca.pem")).unwrap();
        let b = drover_tls::rustls::ClientConfig::builder_with_provider(drover_tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(ca);
        let cfg = if with_cert {
            let id =
                drover_tls::Identity::load(&dir.join("cli.pem"), &dir.join("cli-key.pem")).unwrap();
            b.with_client_auth_cert(id.chain.clone(), id.key()).unwrap()
        } else {
            b.with_no_client_auth()
        };
        reqwest::Client::builder()
            .use_preconfigured_tls(cfg)
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap()
    }

    #[tokio::test]
    async fn plain_http_answers_without_tls() {
        let (addr, token) = start(ListenOptions::default()).await;
        let body = reqwest::get(format!("http://{addr}/"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(body, "ok");
        token.cancel();
    }

    #[tokio::test]
    async fn with_verify_https_client_only_a_certificate_from_the_ca_is_answered() {
        let dir = tempfile::tempdir().unwrap();
        let tls = HttpTls::new(&agent_tls(dir.path(), true)).unwrap();
        let (addr, token) = start(ListenOptions {
            tls,
            ..Default::default()
        })
        .await;
        // The client certificate: answered over https (the agent's certificate carries
        // 127.0.0.1, as Nomad's do).
        let r = https(dir.path(), true)
            .get(format!("https://127.0.0.1:{}/", addr.port()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.text().await.unwrap(), "ok");
        // No client certificate: the handshake (or the first read) fails.
        let r = https(dir.path(), false)
            .get(format!("https://127.0.0.1:{}/", addr.port()))
            .send()
            .await;
        assert!(r.is_err(), "answered without a certificate: {r:?}");
        // Plain HTTP: no answer.
        let r = reqwest::Client::new()
            .get(format!("http://{addr}/"))
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        assert!(r.is_err(), "plain HTTP answered: {r:?}");
        token.cancel();
    }

    #[tokio::test]
    async fn a_silent_tls_connection_is_closed_at_the_header_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let tls = HttpTls::new(&agent_tls(dir.path(), false)).unwrap();
        let (addr, token) = start(ListenOptions {
            tls,
            header_read_timeout: Duration::from_millis(300),
        })
        .await;
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let start = std::time::Instant::now();
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("closed at the deadline, not left hanging")
            .unwrap_or(0);
        assert_eq!(n, 0);
        assert!(start.elapsed() >= Duration::from_millis(250));
        let _ = s.write_all(b"x").await;
        token.cancel();
    }

    #[test]
    fn no_acceptor_without_tls_http() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = agent_tls(dir.path(), false);
        t.http = false;
        assert!(HttpTls::new(&t).unwrap().is_none());
    }
}
