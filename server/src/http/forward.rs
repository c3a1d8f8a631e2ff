//! Any server accepts any request: a follower forwards writes, and reads not marked
//! `?stale`, to the leader's HTTP API and relays the answer.

use super::{ApiErr, AppState, MAX_BODY_BYTES};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::OnceLock;
use std::time::Duration;

/// Marks a request a server already forwarded, so it is never forwarded twice.
pub const FORWARDED_HEADER: &str = "x-drover-forwarded";

/// Paths every server answers itself.
fn served_locally(path: &str) -> bool {
    !path.starts_with("/v1/")
        || path.starts_with("/v1/agent/")
        || path.starts_with("/v1/status/")
        || path.starts_with("/v1/client/")
        || path.starts_with("/v1/regions")
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

fn client() -> &'static reqwest::Client {
    static C: OnceLock<reqwest::Client> = OnceLock::new();
    C.get_or_init(|| {
        reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .build()
            .expect("static reqwest configuration")
    })
}

pub async fn forward(State(srv): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    if served_locally(&path)
        || req.headers().contains_key(FORWARDED_HEADER)
        || (req.method() == Method::GET && is_stale(req.uri().query()))
        || srv.is_leader()
    {
        return next.run(req).await;
    }
    let Some(leader) = srv.leader_addr() else {
        return ApiErr(StatusCode::SERVICE_UNAVAILABLE, "no cluster leader".into()).into_response();
    };
    match proxy(&leader, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn proxy(leader: &str, req: Request) -> Result<Response, ApiErr> {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|e| ApiErr(StatusCode::PAYLOAD_TOO_LARGE, format!("request body: {e}")))?;
    let pq = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let method = reqwest::Method::from_bytes(parts.method.as_str().as_bytes())
        .map_err(|_| ApiErr::bad_request("unsupported method"))?;
    let mut out = client()
        .request(method, format!("http://{leader}{pq}"))
        .header(FORWARDED_HEADER, "1")
        // Blocking queries may wait up to ten minutes.
        .timeout(Duration::from_secs(660))
        .body(bytes.to_vec());
    if let Some(ct) = parts.headers.get("content-type") {
        out = out.header("content-type", ct.as_bytes());
    }
    let resp = out.send().await.map_err(|e| {
        ApiErr(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("no cluster leader: the leader at {leader} did not answer ({e})"),
        )
    })?;
    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let headers = resp.headers().clone();
    let body = resp.bytes().await.map_err(|e| {
        ApiErr(
            StatusCode::BAD_GATEWAY,
            format!("the leader at {leader} broke off its answer: {e}"),
        )
    })?;
    let mut r = Response::builder().status(status);
    for (k, v) in headers.iter() {
        let name = k.as_str();
        if name == "content-type" || name.starts_with("x-nomad-") {
            if let (Ok(k), Ok(v)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_bytes(v.as_bytes()),
            ) {
                r = r.header(k, v);
            }
        }
    }
    r.body(Body::from(body))
        .map_err(|e| ApiErr(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
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
        assert!(!served_locally("/v1/jobs"));
        assert!(!served_locally("/v1/internal/node/register"));
    }
}
