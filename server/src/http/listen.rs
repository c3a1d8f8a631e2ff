//! The accept loop every server listener runs (HTTP API and RPC): HTTP/1.1 on hyper with
//! a header-read timeout, a cap on concurrent connections per client IP (answered with
//! `429 Too Many Requests` and closed), and graceful shutdown.
//!
//! `axum::serve` has neither limit; Nomad has both (`limits { http_max_conns_per_client,
//! https_handshake_timeout, rpc_max_conns_per_client, rpc_handshake_timeout }`).
//! HTTP/1.1 only: the protocol sniffing of an HTTP/2-capable accept loop reads the first
//! bytes with no deadline, which is exactly what a half-sent request exploits.
//!
//! With TLS (`tls { http rpc }`), each connection's handshake runs in its own task under
//! the same deadline as the headers (Nomad's `https_handshake_timeout` and
//! `rpc_handshake_timeout`), and what the peer's verified certificate is valid for
//! ([`drover_tls::PeerCert`]) goes into every request of that connection's extensions,
//! where `peer_identity` enforces who may call which route.

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Limits of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenLimits {
    /// Concurrent connections one client IP may hold open; 0 disables the cap.
    pub max_conns_per_client: usize,
    /// How long a client may take to send a request's headers (and how long a kept-alive
    /// connection may sit idle before its next request); zero disables the timeout.
    pub header_read_timeout: Duration,
}

impl Default for ListenLimits {
    /// Nomad's defaults: 100 connections per client, 5 seconds.
    fn default() -> Self {
        ListenLimits {
            max_conns_per_client: 100,
            header_read_timeout: Duration::from_secs(5),
        }
    }
}

/// How long shutdown waits for requests in flight (blocking queries may hold minutes).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How long a refused connection gets to take its 429 before it is closed.
const REFUSAL_LINGER: Duration = Duration::from_secs(1);

/// Open connections per client IP.
#[derive(Default)]
struct ConnCounts(Mutex<HashMap<IpAddr, usize>>);

/// One counted connection; uncounts itself when dropped.
struct ConnSlot {
    counts: Arc<ConnCounts>,
    ip: IpAddr,
}

impl ConnCounts {
    /// Counts a new connection from `ip`, unless it already holds `max` of them.
    fn try_acquire(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<ConnSlot> {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = m.entry(ip).or_insert(0);
        if max > 0 && *n >= max {
            return None;
        }
        *n += 1;
        Some(ConnSlot {
            counts: self.clone(),
            ip,
        })
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        let mut m = self.counts.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = m.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

/// The sentence a refused connection receives.
fn too_many_body(ip: IpAddr, max: usize) -> String {
    format!(
        "Your IP {ip} is issuing too many concurrent connections (at most {max}); \
         close some or rate limit your calls and try again.\n"
    )
}

/// TLS on a listener: the acceptor's configuration, and the region whose names
/// (`server.<region>.nomad`, `client.<region>.nomad`) a peer's certificate is checked for.
#[derive(Clone)]
pub struct ListenTls {
    pub config: Arc<drover_tls::rustls::ServerConfig>,
    pub region: String,
}

/// Answers `429 Too Many Requests` with a sentence on a connection past the cap, then
/// closes it (after draining what the client sent, so the answer is not lost to a reset).
async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, ip: IpAddr, max: usize) {
    let body = too_many_body(ip, max);
    let resp = format!(
        "HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(REFUSAL_LINGER, async {
        stream.write_all(resp.as_bytes()).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 1024];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<_, std::io::Error>(())
    })
    .await;
}

/// Client addresses the per-client cap does not apply to (peer servers, whose forwarded
/// blocking queries may legitimately hold many connections at once).
pub type Exempt = Arc<dyn Fn(IpAddr) -> bool + Send + Sync>;

/// One accepted connection (plain or TLS), served until it closes. Every request carries
/// the peer's address (`ConnectInfo<SocketAddr>`) and, over TLS with a client
/// certificate, what that certificate is valid for ([`drover_tls::PeerCert`]).
async fn serve_connection<S>(
    http: hyper::server::conn::http1::Builder,
    watcher: hyper_util::server::graceful::Watcher,
    io: S,
    app: Router,
    peer: std::net::SocketAddr,
    cert: Option<drover_tls::PeerCert>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut req: hyper::Request<_>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        if let Some(c) = cert {
            req.extensions_mut().insert(c);
        }
        super::job_path::rewrite(&mut req);
        tower::ServiceExt::oneshot(app.clone(), req)
    });
    // No route upgrades a connection (exec and logs are plain HTTP streams).
    let conn = watcher.watch(http.serve_connection(TokioIo::new(io), service));
    if let Err(e) = conn.await {
        tracing::debug!(client = %peer, error = %e, "connection ended with an error");
    }
}

/// Serves `app` on `listener` (over TLS when `tls` is set) until `shutdown` fires, then
/// lets requests in flight finish (at most [`SHUTDOWN_GRACE`]). Handlers see the peer as
/// `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ListenLimits,
    exempt: Option<Exempt>,
    tls: Option<ListenTls>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let counts = Arc::new(ConnCounts::default());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new());
    http.header_read_timeout(Some(limits.header_read_timeout).filter(|d| !d.is_zero()));
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
        let slot = match counts.try_acquire(peer.ip(), limits.max_conns_per_client) {
            Some(slot) => Some(slot),
            None if exempt.as_ref().is_some_and(|e| e(peer.ip())) => None,
            None => {
                tracing::debug!(client = %peer.ip(), "too many connections from one client; refused with 429");
                let max = limits.max_conns_per_client;
                match &tls {
                    None => {
                        tokio::spawn(refuse(stream, peer.ip(), max));
                    }
                    Some(t) => {
                        // The sentence goes inside TLS, or the client could not read it.
                        let acceptor = tokio_rustls::TlsAcceptor::from(t.config.clone());
                        tokio::spawn(async move {
                            let hs = tokio::time::timeout(REFUSAL_LINGER, acceptor.accept(stream));
                            if let Ok(Ok(s)) = hs.await {
                                refuse(s, peer.ip(), max).await;
                            }
                        });
                    }
                }
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (app, http, watcher) = (app.clone(), http.clone(), graceful.watcher());
        let Some(tls) = &tls else {
            tokio::spawn(async move {
                serve_connection(http, watcher, stream, app, peer, None).await;
                drop(slot);
            });
            continue;
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.config.clone());
        let region = tls.region.clone();
        let deadline = limits.header_read_timeout;
        tokio::spawn(async move {
            let handshake = acceptor.accept(stream);
            let stream = if deadline.is_zero() {
                handshake.await
            } else {
                tokio::time::timeout(deadline, handshake)
                    .await
                    .unwrap_or_else(|_| Err(std::io::Error::other("timed out")))
            };
            let stream = match stream {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(client = %peer, error = %e, "TLS handshake failed; connection closed");
                    return;
                }
            };
            let cert = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| drover_tls::peer_cert(c, &region));
            serve_connection(http, watcher, stream, app, peer, cert).await;
            drop(slot);
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

    #[test]
    fn connection_slots_are_counted_per_ip_and_released_on_drop() {
        let counts = Arc::new(ConnCounts::default());
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let s1 = counts.try_acquire(a, 2).unwrap();
        let _s2 = counts.try_acquire(a, 2).unwrap();
        assert!(counts.try_acquire(a, 2).is_none(), "a third from one IP");
        let _other = counts
            .try_acquire(b, 2)
            .expect("another IP is not affected");
        drop(s1);
        assert!(
            counts.try_acquire(a, 2).is_some(),
            "a slot freed by a close"
        );
    }

    #[test]
    fn a_cap_of_zero_disables_the_limit() {
        let counts = Arc::new(ConnCounts::default());
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let slots: Vec<_> = (0..1000).map(|_| counts.try_acquire(a, 0)).collect();
        assert!(slots.iter().all(Option::is_some));
    }

    /// Opens `n` connections that each send one full request and hold on; returns each
    /// answer's status line.
    async fn statuses(addr: std::net::SocketAddr, n: usize) -> Vec<String> {
        let mut held = Vec::new();
        let mut out = Vec::new();
        for _ in 0..n {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap();
            let mut buf = vec![0u8; 512];
            let k = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
                .await
                .expect("an answer")
                .unwrap();
            out.push(
                String::from_utf8_lossy(&buf[..k])
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string(),
            );
            held.push(s);
        }
        out
    }

    async fn serve_with(exempt: Option<Exempt>) -> (std::net::SocketAddr, CancellationToken) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let app = Router::new().route("/", axum::routing::get(|| async { "ok" }));
        let limits = ListenLimits {
            max_conns_per_client: 1,
            header_read_timeout: Duration::from_secs(5),
        };
        let token = CancellationToken::new();
        tokio::spawn(serve(l, app, limits, exempt, None, token.clone()));
        (addr, token)
    }

    #[tokio::test]
    async fn a_second_kept_alive_connection_past_the_cap_gets_429() {
        let (addr, token) = serve_with(None).await;
        let got = statuses(addr, 2).await;
        assert_eq!(got[0], "HTTP/1.1 200 OK");
        assert_eq!(got[1], "HTTP/1.1 429 Too Many Requests");
        token.cancel();
    }

    #[tokio::test]
    async fn exempt_clients_such_as_peer_servers_are_not_capped() {
        let (addr, token) = serve_with(Some(Arc::new(|ip: IpAddr| ip.is_loopback()))).await;
        let got = statuses(addr, 3).await;
        assert!(got.iter().all(|s| s == "HTTP/1.1 200 OK"), "{got:?}");
        token.cancel();
    }

    /// A TLS listener with a fresh CA and server certificate.
    fn tls_listener(dir: &std::path::Path) -> ListenTls {
        use drover_tls::generate::{self, CertRequest, Role};
        let ca = generate::ca("test CA", 1).unwrap();
        let req = CertRequest {
            role: Role::Server,
            region: "global".into(),
            domain: "nomad".into(),
            additional_dns: vec![],
            additional_ips: vec![],
            days: 1,
        };
        let cert = generate::cert(&req, &ca.cert, &ca.key, "ca", "ca-key").unwrap();
        for (name, text) in [
            ("ca.pem", &ca.cert),
            ("s.pem", &cert.cert),
            ("s-key.pem", &cert.key),
        ] {
            std::fs::write(dir.join(name), text).unwrap();
        }
        let tls = drover_tls::AgentTls::load(&drover_tls::TlsOptions {
            rpc: true,
            ca_file: Some(dir.join("ca.pem")),
            cert_file: Some(dir.join("s.pem")),
            key_file: Some(dir.join("s-key.pem")),
            ..Default::default()
        })
        .unwrap()
        .unwrap();
        ListenTls {
            config: tls.rpc_acceptor().unwrap(),
            region: "global".into(),
        }
    }

    #[tokio::test]
    async fn a_tls_handshake_that_never_comes_is_closed_at_the_header_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let app = Router::new().route("/", axum::routing::get(|| async { "ok" }));
        let limits = ListenLimits {
            max_conns_per_client: 0,
            header_read_timeout: Duration::from_millis(300),
        };
        let token = CancellationToken::new();
        tokio::spawn(serve(
            l,
            app,
            limits,
            None,
            Some(tls_listener(dir.path())),
            token.clone(),
        ));
        // Plain HTTP to a TLS listener: no answer, the connection is closed.
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = vec![0u8; 512];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("closed, not left hanging")
            .unwrap_or(0);
        assert!(!String::from_utf8_lossy(&buf[..n]).contains("200 OK"));
        // Silence: closed once the deadline passes.
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let start = std::time::Instant::now();
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("the silent connection is closed at the deadline")
            .unwrap_or(0);
        assert_eq!(n, 0);
        assert!(
            start.elapsed() >= Duration::from_millis(250),
            "{:?}",
            start.elapsed()
        );
        token.cancel();
    }

    #[test]
    fn the_refusal_is_a_sentence_naming_the_cap() {
        let s = too_many_body("10.1.2.3".parse().unwrap(), 100);
        assert!(s.contains("10.1.2.3") && s.contains("at most 100"), "{s}");
    }
}
