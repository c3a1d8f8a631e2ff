//! The agent's own routes on the client router: `/v1/agent/health` (the client's part),
//! `/v1/agent/servers` (the servers this client talks to, read and replaced) and garbage
//! collection of the allocations that stopped here (`/v1/client/gc`, `/v1/client/allocation/:id/gc`).

use super::{find_alloc, HttpErr, HttpResult};
use crate::handle::ClientHandle;
use axum::extract::{Path as UrlPath, State};
use axum::http::Uri;
use axum::response::IntoResponse;
use axum::Json;

/// `GET /v1/agent/health`: the client's part, `{"client": {"ok", "message"}}`; 500 while
/// it is not healthy, as Nomad answers, so a load balancer's check can use the status.
pub(super) async fn health(State(h): State<ClientHandle>) -> HttpResult {
    let (ok, message) = h.health();
    let status = if ok {
        axum::http::StatusCode::OK
    } else {
        axum::http::StatusCode::INTERNAL_SERVER_ERROR
    };
    let body = serde_json::json!({ "client": { "ok": ok, "message": message } });
    Ok((status, Json(body)).into_response())
}

/// `GET /v1/agent/servers`: the servers' RPC addresses, `host:port`.
pub(super) async fn servers(State(h): State<ClientHandle>) -> HttpResult {
    Ok(Json(h.servers()).into_response())
}

/// `PUT /v1/agent/servers?address=A&address=B`: talk to these servers from now on.
pub(super) async fn set_servers(State(h): State<ClientHandle>, uri: Uri) -> HttpResult {
    let addrs: Vec<String> = query_pairs(&uri)
        .into_iter()
        .filter(|(k, v)| k == "address" && !v.trim().is_empty())
        .map(|(_, v)| v.trim().to_string())
        .collect();
    if addrs.is_empty() {
        return Err(HttpErr::bad_request("missing server address"));
    }
    for a in &addrs {
        check_address(a)?;
    }
    h.set_servers(&addrs).map_err(HttpErr::bad_request)?;
    tracing::info!(servers = ?addrs, "server list replaced through the API");
    Ok(().into_response())
}

/// A server address is `host:port` (a name or an IP, and a port number).
fn check_address(a: &str) -> Result<(), HttpErr> {
    let bad = || {
        HttpErr::bad_request(format!(
            "invalid server address {a:?}: expected host:port, e.g. 10.0.0.1:4647"
        ))
    };
    let (host, port) = a.rsplit_once(':').ok_or_else(bad)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
        return Err(bad());
    }
    if host.parse::<std::net::IpAddr>().is_err()
        && !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    {
        return Err(bad());
    }
    Ok(())
}

fn query_pairs(uri: &Uri) -> Vec<(String, String)> {
    let Ok(url) = reqwest::Url::parse(&format!("http://q/?{}", uri.query().unwrap_or(""))) else {
        return Vec::new();
    };
    url.query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Whether the allocation's tasks are all done here (complete, failed or lost).
fn stopped(view: &crate::alloc_runner::AllocView) -> bool {
    matches!(
        view.state.borrow().client_status.as_str(),
        api::ALLOC_CLIENT_COMPLETE | api::ALLOC_CLIENT_FAILED | api::ALLOC_CLIENT_LOST
    )
}

/// Destroys a stopped allocation's runner: its alloc dir and local state go.
fn collect(h: &ClientHandle, id: &str, view: &crate::alloc_runner::AllocView) {
    view.destroy.cancel();
    h.remove(id);
}

/// `GET /v1/client/allocation/:id/gc`: collect one stopped allocation now.
pub(super) async fn gc_alloc(
    State(h): State<ClientHandle>,
    UrlPath(alloc): UrlPath<String>,
) -> HttpResult {
    let view = find_alloc(&h, &alloc)?;
    if !stopped(&view) {
        return Err(HttpErr::bad_request(format!(
            "allocation {alloc} is still running on this client; stop it before collecting it"
        )));
    }
    collect(&h, &alloc, &view);
    Ok(().into_response())
}

/// `GET /v1/client/gc`: collect every stopped allocation of this client now.
pub(super) async fn gc_all(State(h): State<ClientHandle>) -> HttpResult {
    for id in h.alloc_ids() {
        if let Some(view) = h.alloc(&id) {
            if stopped(&view) {
                collect(&h, &id, &view);
            }
        }
    }
    Ok(().into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_addresses_are_host_and_port() {
        for ok in ["10.0.0.1:4647", "server-1.example:4647", "[::1]:4647"] {
            assert!(check_address(ok).is_ok(), "{ok}");
        }
        for bad in ["nope", "10.0.0.1", ":4647", "a b:4647", "h:0", "h:99999"] {
            assert!(check_address(bad).is_err(), "{bad}");
        }
    }
}
