//! The accept loop every server listener runs (HTTP API and RPC): HTTP/1.1 on hyper with
//! a header-read timeout, a cap on concurrent connections per client IP (answered with
//! `429 Too Many Requests` and closed), and graceful shutdown.
//!
//! `axum::serve` has neither limit; Nomad has both (`limits { http_max_conns_per_client,
//! https_handshake_timeout, rpc_max_conns_per_client, rpc_handshake_timeout }`).
//! HTTP/1.1 only: the protocol sniffing of an HTTP/2-capable accept loop reads the first
//! bytes with no deadline, which is exactly what a half-sent request exploits.

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
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

/// Answers `429 Too Many Requests` with a sentence on a connection past the cap, then
/// closes it (after draining what the client sent, so the answer is not lost to a reset).
async fn refuse(mut stream: TcpStream, ip: IpAddr, max: usize) {
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

/// Serves `app` on `listener` until `shutdown` fires, then lets requests in flight finish
/// (at most [`SHUTDOWN_GRACE`]). Handlers see the peer as `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ListenLimits,
    exempt: Option<Exempt>,
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
                tokio::spawn(refuse(stream, peer.ip(), limits.max_conns_per_client));
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<_>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            super::job_path::rewrite(&mut req);
            tower::ServiceExt::oneshot(app.clone(), req)
        });
        // No route upgrades a connection (exec and logs are plain HTTP streams).
        let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(client = %peer, error = %e, "connection ended with an error");
            }
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
            let mut s = TcpStream::connect(addr).await.unwrap();
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
        tokio::spawn(serve(l, app, limits, exempt, token.clone()));
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

    #[test]
    fn the_refusal_is_a_sentence_naming_the_cap() {
        let s = too_many_body("10.1.2.3".parse().unwrap(), 100);
        assert!(s.contains("10.1.2.3") && s.contains("at most 100"), "{s}");
    }
}
