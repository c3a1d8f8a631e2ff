//! Any server accepts any request: a follower forwards writes, and reads not marked
//! `?stale`, to the leader's RPC listener and relays the answer. Only the RPC listener
//! honours the forwarded mark (the public router strips it).

use super::relay::{self, Relay};
use super::{ApiErr, AppState, MAX_BODY_BYTES};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::time::Duration;

/// Marks a request a server already forwarded, so it is never forwarded twice.
pub const FORWARDED_HEADER: &str = "x-drover-forwarded";

/// The token a server gives a request it may send to a leader more than once; travels
/// with the forwarded request so the leader's writes carry it (see `Server::write`).
pub const TOKEN_HEADER: &str = "x-drover-request-token";

/// Paths every server answers itself.
fn served_locally(path: &str) -> bool {
    !path.starts_with("/v1/")
        || path.starts_with("/v1/agent/")
        || path.starts_with("/v1/status/")
        || path.starts_with("/v1/client/")
        || path.starts_with("/v1/regions")
        // Each server streams the events it applied; a relay would buffer the stream.
        || path == "/v1/event/stream"
        // Metrics are this agent's own (go-metrics is per process in Nomad too).
        || path == "/v1/metrics"
        || path.starts_with("/v1/internal/raft/")
        || path.starts_with("/v1/internal/cluster/")
        || path.starts_with("/v1/operator/raft/")
        || path == "/v1/jobs/parse"
        || path == "/v1/validate/job"
}

fn is_stale(query: Option<&str>) -> bool {
    query.is_some_and(|q| {
        q.split('&')
            .any(|kv| kv == "stale" || kv.starts_with("stale="))
    })
}

/// The client requests are relayed to the leader's RPC listener with (over mutual TLS,
/// with this server's certificate, when `tls { rpc = true }`).
fn client(srv: &AppState) -> reqwest::Client {
    srv.config.peer_client("forward", || {
        reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            // Under the leader's header-read timeout, which closes idle connections.
            .pool_idle_timeout(Duration::from_secs(3))
    })
}

/// May a request be sent again when the first try's outcome is unknown (the leader died
/// or stepped down while it ran)? Reads, and job registrations: the FSM keeps the version
/// of a job whose spec did not change (`api::diff::is_new_version`), so a repeat is a no-op.
fn retry_safe(method: &Method, path: &str) -> bool {
    let registration = path == "/v1/jobs"
        || path
            .strip_prefix("/v1/job/")
            .is_some_and(|id| !id.is_empty() && !id.contains('/'));
    *method == Method::GET
        || *method == Method::HEAD
        || ((*method == Method::PUT || *method == Method::POST) && registration)
}

/// Run a request on the leader, wherever it is. While there is no leader, or the leader
/// cannot be reached or steps down, the request is held and tried again (up to
/// `rpc_hold_timeout`), so a failover looks like a slow answer rather than an error.
/// One retry loop on purpose (hence its length): the held request, its deadline and the
/// leader last tried are the loop's state.
pub async fn forward(State(srv): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    if req.headers().contains_key(FORWARDED_HEADER) {
        // Relayed by a server: its token (if any) makes a repeat of it apply once.
        let token = req
            .headers()
            .get(TOKEN_HEADER)
            .and_then(|v| v.to_str().ok())
            .filter(|t| !t.is_empty() && t.len() <= 64)
            .map(str::to_string);
        return match token {
            Some(t) => crate::with_request_token(t, next.run(req)).await,
            None => next.run(req).await,
        };
    }
    if served_locally(&path) || (req.method() == Method::GET && is_stale(req.uri().query())) {
        return next.run(req).await;
    }
    let hold = srv.config.rpc_hold_timeout;
    let deadline = tokio::time::Instant::now() + hold;
    let safe = retry_safe(req.method(), &path);
    let (mut parts, body) = req.into_parts();
    // A write this server may send twice gets a token: whichever try reaches the log
    // first is applied, the others are answered with its result.
    parts.headers.remove(TOKEN_HEADER);
    let token = (safe && parts.method != Method::GET && parts.method != Method::HEAD)
        .then(|| uuid::Uuid::new_v4().to_string());
    if let Some(t) = &token {
        parts.headers.insert(
            TOKEN_HEADER,
            HeaderValue::from_str(t).expect("a uuid is a valid header value"),
        );
    }
    let bytes = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(e) => {
            return ApiErr(StatusCode::PAYLOAD_TOO_LARGE, format!("request body: {e}"))
                .into_response()
        }
    };
    let request = || Request::from_parts(parts.clone(), Body::from(bytes.clone()));
    let mut next = Some(next);
    loop {
        let holding = tokio::time::Instant::now() < deadline;
        if srv.is_leader() {
            if let Some(n) = next.take() {
                let resp = match &token {
                    Some(t) => crate::with_request_token(t.clone(), n.run(request())).await,
                    None => n.run(request()).await,
                };
                // Leadership was lost while the request ran: a new leader can answer it.
                if resp.status() == StatusCode::SERVICE_UNAVAILABLE
                    && safe
                    && !srv.is_leader()
                    && tokio::time::Instant::now() < deadline
                {
                    tracing::info!(%path, "lost leadership while answering; holding the request for the next leader");
                    continue;
                }
                return resp;
            }
            // The handler already ran here once: go through the HTTP API again (below).
        }
        let Some(leader) = srv.leader_rpc_addr() else {
            if srv.wait_for_leader(deadline).await.is_none() {
                return ApiErr(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("no cluster leader: none was elected within {hold:?} (is a quorum of servers up?)"),
                )
                .into_response();
            }
            continue;
        };
        match proxy(&srv, &leader, request()).await {
            Ok(r) if r.status() == StatusCode::SERVICE_UNAVAILABLE && safe && holding => {}
            Ok(r) => return r,
            Err(Failure::NotSent(_)) if holding => {}
            Err(Failure::Unknown(_)) if safe && holding => {}
            Err(Failure::NotSent(e) | Failure::Unknown(e)) => return e.into_response(),
        }
        leader_change(&srv, &leader, deadline).await;
    }
}

/// Wait until the leader is no longer `old`, or a short pause passes (it may answer
/// again), or `deadline`.
async fn leader_change(srv: &AppState, old: &str, deadline: tokio::time::Instant) {
    let pause = (tokio::time::Instant::now() + Duration::from_millis(250)).min(deadline);
    let mut metrics = srv.raft.metrics();
    loop {
        metrics.borrow_and_update();
        if srv.leader_rpc_addr().is_some_and(|l| l != old) {
            return;
        }
        if tokio::time::timeout_at(pause, metrics.changed())
            .await
            .is_err()
        {
            return;
        }
    }
}

/// Why relaying to the leader failed: before anything was sent (safe to send again), or
/// with the outcome unknown.
enum Failure {
    NotSent(ApiErr),
    Unknown(ApiErr),
}

async fn proxy(srv: &AppState, leader: &str, req: Request) -> Result<Response, Failure> {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|e| {
            Failure::NotSent(ApiErr(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body: {e}"),
            ))
        })?;
    // The token (if any) and a client agent's node secret travel with the other headers.
    let client = client(srv);
    let relay = Relay {
        client: &client,
        scheme: srv.config.rpc_scheme(),
        addr: leader,
        mark: FORWARDED_HEADER,
        // Blocking queries may wait up to ten minutes.
        timeout: Some(Duration::from_secs(660)),
    };
    let resp = relay.send(&parts, bytes).await.map_err(|e| {
        let err = ApiErr(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("no cluster leader: the leader at {leader} did not answer ({e})"),
        );
        if e.is_connect() {
            Failure::NotSent(err)
        } else {
            Failure::Unknown(err)
        }
    })?;
    // Read whole: an answer broken off by a failover is then a request to try again.
    relay::buffered(resp).await.map_err(|e| {
        Failure::Unknown(ApiErr(
            StatusCode::BAD_GATEWAY,
            format!("the leader at {leader} broke off its answer: {e}"),
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_is_recognised_in_any_position() {
        assert!(is_stale(Some("stale")));
        assert!(is_stale(Some("index=3&stale=")));
        assert!(is_stale(Some("stale=true&wait=1s")));
        assert!(!is_stale(Some("nostale=1")));
        assert!(!is_stale(None));
    }

    #[test]
    fn status_agent_and_raft_routes_are_never_forwarded() {
        assert!(served_locally("/v1/status/leader"));
        assert!(served_locally("/v1/agent/self"));
        assert!(served_locally("/v1/internal/raft/append"));
        assert!(served_locally("/ui"));
        assert!(served_locally("/v1/event/stream"));
        assert!(!served_locally("/v1/jobs"));
        assert!(!served_locally("/v1/internal/node/register"));
    }

    #[test]
    fn only_reads_and_job_registrations_are_sent_twice() {
        assert!(retry_safe(&Method::GET, "/v1/job/web"));
        assert!(retry_safe(&Method::PUT, "/v1/jobs"));
        assert!(retry_safe(&Method::POST, "/v1/job/web"));
        assert!(!retry_safe(&Method::DELETE, "/v1/job/web"));
        assert!(!retry_safe(&Method::POST, "/v1/job/web/dispatch"));
        assert!(!retry_safe(&Method::PUT, "/v1/job/web/evaluate"));
        assert!(!retry_safe(&Method::POST, "/v1/node/n1/drain"));
    }
}
