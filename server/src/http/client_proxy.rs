//! `/v1/client/...` on a server: the client endpoints (logs, files, stats, restart,
//! signal, exec) of the allocation's node.
//!
//! When this process also runs a client agent (`-dev`), its client router is asked
//! first. Otherwise, or when it answers that the allocation is not on its node (a 404
//! marked with [`ALLOC_NOT_HERE_HEADER`]), the request is relayed to the HTTP address of
//! the node the state store places the allocation on, and the answer streams back as
//! it comes, so `follow=true` log streams work through any server.
//!
//! With `tls { http = true }` (which covers every agent's HTTP API, client agents' too,
//! as in Nomad, where a region shares one TLS configuration) the relay dials the agent
//! over https, presenting this server's certificate (a client agent with
//! `verify_https_client` demands one from the CA) and checking the agent's against the
//! CA and, with `verify_server_hostname`, the name `client.<region>.nomad`
//! ([`drover_tls::AgentTls::agent_dialer`]), whatever address the node advertised.

use super::relay::{self, Relay};
use super::{ApiErr, AppState, MAX_BODY_BYTES};
use axum::body::Body;
use axum::extract::{OriginalUri, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;
use tower::ServiceExt;

/// What a client router sets on the 404 of an allocation it does not run.
pub const ALLOC_NOT_HERE_HEADER: &str = "x-drover-alloc-not-here";
/// Marks a request a server relayed to a node, so that it is never relayed again.
const PROXIED_HEADER: &str = "x-drover-client-proxied";

fn builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder().connect_timeout(Duration::from_secs(5))
}

fn plain_client() -> &'static reqwest::Client {
    static C: OnceLock<reqwest::Client> = OnceLock::new();
    C.get_or_init(|| builder().build().expect("static reqwest configuration"))
}

/// The https client for agents' HTTP APIs under `tls`, built once per TLS settings (one
/// server per process, so in practice once) and kept for its connection pool.
fn tls_client(tls: &Arc<drover_tls::AgentTls>) -> Result<reqwest::Client, String> {
    type Cached = Option<(Weak<drover_tls::AgentTls>, reqwest::Client)>;
    static C: Mutex<Cached> = Mutex::new(None);
    let mut cached = C.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((settings, client)) = cached.as_ref() {
        if settings.upgrade().is_some_and(|s| Arc::ptr_eq(&s, tls)) {
            return Ok(client.clone());
        }
    }
    let dialer = tls
        .agent_dialer()
        .map_err(|e| format!("cannot set up TLS to client agents: {e}"))?;
    let client = builder()
        .use_preconfigured_tls(dialer)
        .build()
        .map_err(|e| format!("cannot set up TLS to client agents: {e}"))?;
    *cached = Some((Arc::downgrade(tls), client.clone()));
    Ok(client)
}

/// The client and scheme to reach client agents' HTTP APIs with.
fn agent_client(srv: &AppState) -> Result<(reqwest::Client, &'static str), ApiErr> {
    match srv.config.tls.as_ref().filter(|t| t.settings.http) {
        Some(t) => tls_client(&t.settings)
            .map(|c| (c, "https"))
            .map_err(|e| ApiErr(StatusCode::INTERNAL_SERVER_ERROR, e)),
        None => Ok((plain_client().clone(), "http")),
    }
}

/// The allocation ID in a client path: `/v1/client/fs/<op>/<alloc>` or
/// `/v1/client/allocation/<alloc>/<op>`.
fn alloc_of(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/v1/client/")?;
    let parts: Vec<&str> = rest.split('/').collect();
    match parts.as_slice() {
        ["fs", _, alloc, ..] | ["allocation", alloc, ..] if !alloc.is_empty() => Some(alloc),
        _ => None,
    }
}

/// `node_id=...` from a query string (host stats of another node).
fn node_id_param(query: Option<&str>) -> Option<&str> {
    query?
        .split('&')
        .find_map(|kv| kv.strip_prefix("node_id="))
        .filter(|v| !v.is_empty())
}

pub async fn handle(
    State(srv): State<AppState>,
    OriginalUri(uri): OriginalUri,
    mut req: Request,
) -> Response {
    // Nesting under /v1 stripped the prefix; the client router and nodes want it back.
    *req.uri_mut() = uri;
    match serve(srv, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn serve(srv: AppState, req: Request) -> Result<Response, ApiErr> {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|e| ApiErr(StatusCode::PAYLOAD_TOO_LARGE, format!("request body: {e}")))?;
    let path = parts.uri.path().to_string();
    let proxied = parts.headers.contains_key(PROXIED_HEADER);
    // `?node_id=` naming another node's agent: do not let our own client answer for it.
    let for_other_node = node_id_param(parts.uri.query()).is_some_and(|id| {
        srv.snapshot()
            .node_table()
            .get(id)
            .is_some_and(|n| n.http_addr != srv.config.http_addr.to_string())
    });
    let local_routes = srv.config.client_routes.clone().filter(|_| !for_other_node);
    if let Some(local) = local_routes {
        // A fresh request: the outer route's path parameters must not leak into it.
        let mut local_req = Request::new(Body::from(bytes.clone()));
        *local_req.method_mut() = parts.method.clone();
        *local_req.uri_mut() = parts.uri.clone();
        *local_req.headers_mut() = parts.headers.clone();
        local_req.headers_mut().remove(PROXIED_HEADER);
        let resp = local
            .oneshot(local_req)
            .await
            .unwrap_or_else(|e| match e {});
        if !resp.headers().contains_key(ALLOC_NOT_HERE_HEADER) || proxied {
            return Ok(resp);
        }
    } else if proxied {
        return Err(ApiErr::not_found(format!(
            "{path}: this agent runs no client"
        )));
    }
    let state = srv.snapshot();
    let node_id = match alloc_of(&path) {
        Some(alloc) => {
            let a = state
                .alloc_table()
                .get(alloc)
                .ok_or_else(|| ApiErr::not_found(format!("Unknown allocation \"{alloc}\"")))?;
            a.node_id.clone()
        }
        None => match node_id_param(parts.uri.query()) {
            Some(n) => n.to_string(),
            None => {
                return Err(ApiErr::bad_request(format!(
                    "{path}: this server runs no client; pass node_id= to ask a node"
                )))
            }
        }
        .into(),
    };
    let node = state
        .node_table()
        .get(node_id.as_str())
        .ok_or_else(|| ApiErr::not_found(format!("Unknown node \"{node_id}\"")))?;
    if node.http_addr.is_empty() {
        return Err(ApiErr(
            StatusCode::BAD_GATEWAY,
            format!("node {node_id} has no HTTP address to reach its client API"),
        ));
    }
    // With ACLs on, the token was checked here (`auth.rs`); the node's own secret tells
    // its agent the request comes from a server (`client_agent::http::serve_relayed_only`).
    let mut parts = parts;
    if srv.config.acl.enabled {
        if let Ok(v) = axum::http::HeaderValue::from_str(&node.secret_id) {
            parts.headers.insert(api::wire::NODE_SECRET_HEADER, v);
        }
    }
    let (client, scheme) = agent_client(&srv)?;
    let relay = Relay {
        client: &client,
        scheme,
        addr: &node.http_addr,
        mark: PROXIED_HEADER,
        // Log streams with `follow=true` last as long as the reader wants.
        timeout: None,
    };
    let resp = relay.send(&parts, bytes).await.map_err(|e| {
        ApiErr(
            StatusCode::BAD_GATEWAY,
            format!(
                "node {node_id} at {scheme}://{} did not answer: {e}",
                node.http_addr
            ),
        )
    })?;
    Ok(relay::streamed(resp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alloc_ids_are_found_in_every_client_path() {
        assert_eq!(alloc_of("/v1/client/fs/logs/abc"), Some("abc"));
        assert_eq!(alloc_of("/v1/client/fs/cat/abc"), Some("abc"));
        assert_eq!(alloc_of("/v1/client/allocation/abc/stats"), Some("abc"));
        assert_eq!(alloc_of("/v1/client/stats"), None);
        assert_eq!(node_id_param(Some("a=1&node_id=n1")), Some("n1"));
    }

    /// `AgentTls` with `tls { http = true verify_server_hostname = true
    /// verify_https_client = true }` and the certificate `<stem>.pem` in `dir`.
    fn settings(dir: &std::path::Path, stem: &str) -> drover_tls::AgentTls {
        drover_tls::AgentTls::load(&drover_tls::TlsOptions {
            http: true,
            verify_server_hostname: true,
            verify_https_client: true,
            ca_file: Some(dir.join("ca.pem")),
            cert_file: Some(dir.join(format!("{stem}.pem"))),
            key_file: Some(dir.join(format!("{stem}-key.pem"))),
            ..Default::default()
        })
        .unwrap()
        .unwrap()
    }

    /// An https listener answering "ok" with `agent`'s certificate, demanding a client
    /// certificate from the CA (a client agent with `verify_https_client`).
    async fn agent_listener(
        agent: &drover_tls::AgentTls,
    ) -> (String, tokio_util::sync::CancellationToken) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let app = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
        let token = tokio_util::sync::CancellationToken::new();
        let tls = super::super::listen::ListenTls {
            config: agent.http_acceptor().unwrap(),
            region: agent.region.clone(),
        };
        tokio::spawn(super::super::listen::serve(
            l,
            app,
            Default::default(),
            None,
            Some(tls),
            token.clone(),
        ));
        (addr, token)
    }

    #[tokio::test]
    async fn the_relay_presents_its_certificate_and_takes_only_a_client_agents() {
        use drover_tls::generate::{self, CertRequest, Role};
        let dir = tempfile::tempdir().unwrap();
        let ca = generate::ca("test CA", 1).unwrap();
        std::fs::write(dir.path().join("ca.pem"), &ca.cert).unwrap();
        for (stem, role) in [("server", Role::Server), ("client", Role::Client)] {
            let req = CertRequest {
                role,
                region: "global".into(),
                domain: "nomad".into(),
                additional_dns: vec![],
                additional_ips: vec![],
                days: 1,
            };
            let c = generate::cert(&req, &ca.cert, &ca.key, "ca", "ca-key").unwrap();
            std::fs::write(dir.path().join(format!("{stem}.pem")), &c.cert).unwrap();
            std::fs::write(dir.path().join(format!("{stem}-key.pem")), &c.key).unwrap();
        }
        let relay = Arc::new(settings(dir.path(), "server"));
        let client = tls_client(&relay).unwrap();
        // A client agent's certificate (`client.global.nomad`): answered, so the relay's
        // own certificate was accepted too.
        let (addr, token) = agent_listener(&settings(dir.path(), "client")).await;
        let r = client.get(format!("https://{addr}/")).send().await.unwrap();
        assert_eq!(r.text().await.unwrap(), "ok");
        token.cancel();
        // Something else from the same CA answering at a node's address: refused.
        let (addr, token) = agent_listener(&settings(dir.path(), "server")).await;
        let e = client
            .get(format!("https://{addr}/"))
            .send()
            .await
            .unwrap_err();
        assert!(e.is_connect(), "{e:?}");
        token.cancel();
    }
}
