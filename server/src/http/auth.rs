//! The ACL layer: with `acl { enabled = true }`, every `/v1` request is checked here
//! before its handler runs, on whichever server answers it (after `forward.rs`, so a
//! follower relays the request with its token and the leader decides on its own state).
//!
//! 1. The token: `X-Nomad-Token`, else `Authorization: Bearer`. A secret that names no
//!    live token (unknown or expired) is a 403 "ACL token not found". Without a token
//!    the `anonymous` policy applies (nothing when it does not exist), unless the request
//!    carries a registered node's secret (`X-Nomad-Node-Secret`: a client agent watching
//!    its allocations, rendering templates): that is the node's identity, which may read
//!    nodes and read jobs, services and variables in every namespace.
//! 2. The requirement: `acl::route::required` on the path the router matches (after
//!    `job_path` re-encoded the slashes of job IDs) and the query.
//! 3. The namespace, as Nomad resolves it: the object's own namespace for routes that
//!    name an allocation, evaluation or deployment; the job's `Namespace` in the body of
//!    a registration or plan (empty: `default`, which is where it is stored); else
//!    `?namespace=`, else `default`.
//! 4. Not allowed: 403 "Permission denied", before the handler touches anything.
//!    Allowed: the [`Caller`] goes into the request for the ACL handlers, and list
//!    answers (jobs, allocations, evaluations, deployments, services, variables, a
//!    node's allocations) keep only what the token may read.
//!
//! Internal routes (node registration, heartbeats, alloc updates, Raft and cluster
//! routes) are not user routes: their own checks (node secret, peer listener) stand.
//! `/v1/client/*` is checked here before it is relayed to the node that runs the
//! allocation. The web UI (`/ui`) asks for a management token for now, in the
//! `X-Nomad-Token` header or the `drover-token` cookie, and otherwise answers a page
//! saying so.

use super::{ApiErr, AppState, MAX_BODY_BYTES};
use acl::{Acl, AclToken, Filter, NamespaceCapability, Policy, Requirement, VariableCapability};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

/// The policy that applies to requests without a token.
pub const ANONYMOUS_POLICY: &str = "anonymous";
/// The cookie the UI reads a token from.
pub const UI_COOKIE: &str = "drover-token";

/// Who is asking, as the layer resolved it.
#[derive(Clone)]
pub struct Caller {
    /// `None`: anonymous (or a node's identity).
    pub token: Option<Arc<AclToken>>,
    pub acl: Arc<Acl>,
}

impl Caller {
    /// The caller when ACLs are off: allowed everything.
    pub fn management() -> Caller {
        Caller {
            token: None,
            acl: Arc::new(Acl::management()),
        }
    }
}

/// Nomad's 403.
pub fn denied() -> ApiErr {
    ApiErr(StatusCode::FORBIDDEN, "Permission denied".into())
}

fn token_not_found() -> ApiErr {
    ApiErr(StatusCode::FORBIDDEN, "ACL token not found".into())
}

/// Built ACLs by secret ("" for anonymous), each with when it was built.
type Built = HashMap<String, (Instant, Arc<Acl>)>;

/// Built ACLs by secret, dropped whenever the ACL tables change or after `token_ttl`.
#[derive(Default)]
pub struct AclCache {
    /// The ACL table index the entries were built at, and the entries.
    inner: Mutex<(u64, Built)>,
}

impl AclCache {
    fn get_or_build(
        &self,
        acl_index: u64,
        key: &str,
        ttl: std::time::Duration,
        build: impl FnOnce() -> Acl,
    ) -> Arc<Acl> {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if g.0 != acl_index {
            g.1.clear();
            g.0 = acl_index;
        }
        if let Some((at, acl)) = g.1.get(key) {
            if at.elapsed() < ttl {
                return acl.clone();
            }
        }
        let acl = Arc::new(build());
        if g.1.len() > 10_000 {
            g.1.clear();
        }
        g.1.insert(key.to_string(), (Instant::now(), acl.clone()));
        acl
    }
}

/// The token's secret from `X-Nomad-Token` or `Authorization: Bearer`.
pub fn secret_of(headers: &HeaderMap) -> Option<String> {
    let direct = headers
        .get("x-nomad-token")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|s| !s.is_empty());
    let bearer = || {
        headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|s| !s.is_empty())
    };
    direct.or_else(bearer).map(str::to_string)
}

/// Has the token passed its expiration time?
pub fn expired(t: &AclToken, now: chrono::DateTime<chrono::Utc>) -> bool {
    t.expiration_time
        .as_deref()
        .and_then(|e| chrono::DateTime::parse_from_rfc3339(e).ok())
        .is_some_and(|e| e <= now)
}

/// The ACL of a set of stored policies (names that do not exist grant nothing).
fn acl_of(state: &crate::state::StateStore, names: impl IntoIterator<Item = String>) -> Acl {
    let parsed: Vec<Policy> = names
        .into_iter()
        .filter_map(|n| state.acl_policy(&n))
        .filter_map(|p| Policy::parse(&p.rules).ok())
        .collect();
    Acl::from_policies(parsed.iter())
}

fn node_acl() -> Arc<Acl> {
    static A: OnceLock<Arc<Acl>> = OnceLock::new();
    A.get_or_init(|| {
        let rules = r#"
            namespace "*" {
              policy = "read"
              variables {
                path "*" { capabilities = ["read", "list"] }
              }
            }
            node { policy = "read" }
        "#;
        let p = Policy::parse(rules).expect("the node identity's built-in policy parses");
        Arc::new(Acl::from_policies([&p]))
    })
    .clone()
}

/// Resolve who is asking; `Err` is the 403 for a secret that names no live token.
fn resolve(srv: &AppState, headers: &HeaderMap) -> Result<Caller, ApiErr> {
    let state = srv.snapshot();
    let acl_index = state.tables().acl;
    let ttl = srv.config.acl.token_ttl;
    match secret_of(headers) {
        Some(secret) => {
            let token = state
                .acl_token_by_secret(&secret)
                .filter(|t| !expired(t, chrono::Utc::now()))
                .ok_or_else(token_not_found)?;
            let acl = if token.is_management() {
                Arc::new(Acl::management())
            } else {
                srv.acl_cache.get_or_build(acl_index, &secret, ttl, || {
                    let mut names: Vec<String> = token.policies.clone();
                    for link in &token.roles {
                        if let Some(r) = state.acl_role(&link.id) {
                            names.extend(r.policies.iter().map(|p| p.name.clone()));
                        }
                    }
                    acl_of(&state, names)
                })
            };
            Ok(Caller {
                token: Some(token),
                acl,
            })
        }
        None => {
            let node_secret = headers
                .get(api::wire::NODE_SECRET_HEADER)
                .and_then(|v| v.to_str().ok())
                .filter(|s| !s.is_empty());
            if let Some(ns) = node_secret {
                if state.node_table().values().any(|n| n.secret_id == ns) {
                    return Ok(Caller {
                        token: None,
                        acl: node_acl(),
                    });
                }
            }
            let acl = srv.acl_cache.get_or_build(acl_index, "", ttl, || {
                acl_of(&state, [ANONYMOUS_POLICY.to_string()])
            });
            Ok(Caller { token: None, acl })
        }
    }
}

/// The namespace of the object a path names by ID (allocation, evaluation, deployment),
/// when it exists.
fn object_namespace(state: &crate::state::StateStore, path: &str) -> Option<String> {
    let segs: Vec<&str> = path.strip_prefix("/v1/")?.split('/').collect();
    let alloc = |id: &str| state.alloc_table().get(id).map(|a| a.namespace.to_string());
    match segs.as_slice() {
        ["allocation", id, ..] => alloc(id),
        ["client", "fs", _, id] => alloc(id),
        ["client", "allocation", id, ..] => alloc(id),
        ["evaluation", id, ..] => state.eval_table().get(*id).map(|e| e.namespace.clone()),
        ["deployment", id] | ["deployment", _, id] => {
            state.deployment(id).map(|d| d.namespace.clone())
        }
        // Reading a namespace needs a capability in that namespace.
        ["namespace", name] => Some(name.to_string()),
        _ => None,
    }
    .map(|ns| {
        if ns.is_empty() {
            api::DEFAULT_NAMESPACE.to_string()
        } else {
            ns
        }
    })
}

/// Does this request carry a job in its body (registration, plan)?
fn carries_job(method: &Method, path: &str) -> bool {
    if *method != Method::PUT && *method != Method::POST {
        return false;
    }
    if path == "/v1/jobs" {
        return true;
    }
    let Some(rest) = path.strip_prefix("/v1/job/") else {
        return false;
    };
    match rest.split_once('/') {
        None => !rest.is_empty(),
        Some((_, "plan")) => true,
        _ => false,
    }
}

/// The job's namespace in a registration body (`default` when empty or absent).
fn body_namespace(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.get("Job")?
                .get("Namespace")?
                .as_str()
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        })
        .unwrap_or_else(|| api::DEFAULT_NAMESPACE.to_string())
}

fn query_namespace(query: &str) -> String {
    acl::route::query_param(query, "namespace")
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| api::DEFAULT_NAMESPACE.to_string())
}

/// The variable path of `/v1/var/<path>`, percent-decoded.
fn var_path(path: &str) -> String {
    path.strip_prefix("/v1/var/")
        .and_then(|p| acl::route::query_param(&format!("p={p}"), "p"))
        .unwrap_or_default()
}

/// Which list answers are filtered per object, and by what.
#[derive(Clone, Copy)]
enum ListFilter {
    Namespace(NamespaceCapability),
    Variables,
    /// `/v1/namespaces`: the namespaces the token may use at all.
    Namespaces,
}

fn list_filter(method: &Method, path: &str) -> Option<ListFilter> {
    if *method != Method::GET {
        return None;
    }
    let segs: Vec<&str> = path.strip_prefix("/v1/")?.split('/').collect();
    match segs.as_slice() {
        ["jobs"] => Some(ListFilter::Namespace(NamespaceCapability::ListJobs)),
        ["allocations"] | ["evaluations"] | ["deployments"] | ["services"] => {
            Some(ListFilter::Namespace(NamespaceCapability::ReadJob))
        }
        ["node", _, "allocations"] => Some(ListFilter::Namespace(NamespaceCapability::ReadJob)),
        ["vars"] => Some(ListFilter::Variables),
        ["namespaces"] => Some(ListFilter::Namespaces),
        _ => None,
    }
}

fn keeps(acl: &Acl, f: ListFilter, item: &serde_json::Value) -> bool {
    let field = |k: &str| item.get(k).and_then(|v| v.as_str()).unwrap_or("");
    let ns = Some(field("Namespace"))
        .filter(|s| !s.is_empty())
        .unwrap_or(api::DEFAULT_NAMESPACE);
    match f {
        ListFilter::Namespace(c) => acl.allow_namespace_operation(ns, c),
        ListFilter::Variables => {
            acl.allow_variable_operation(ns, field("Path"), VariableCapability::List)
        }
        ListFilter::Namespaces => {
            let name = field("Name");
            !name.is_empty() && acl.allow_namespace(name)
        }
    }
}

/// Keep only the list items the caller may read (a 200 JSON array; anything else as is).
async fn filter_list(resp: Response, acl: &Acl, f: ListFilter) -> Response {
    if resp.status() != StatusCode::OK {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return ApiErr(
            StatusCode::INTERNAL_SERVER_ERROR,
            "reading a list answer failed".into(),
        )
        .into_response();
    };
    let Ok(serde_json::Value::Array(items)) = serde_json::from_slice::<serde_json::Value>(&bytes)
    else {
        return Response::from_parts(parts, Body::from(bytes));
    };
    let kept: Vec<serde_json::Value> = items.into_iter().filter(|i| keeps(acl, f, i)).collect();
    let out = serde_json::to_vec(&kept).unwrap_or_default();
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(out))
}

/// The token in the UI's `drover-token` cookie (for UI actions that replay a request as
/// `X-Nomad-Token`).
pub fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            (k == UI_COOKIE).then(|| v.to_string())
        })
}

/// `/ui` with ACLs on: a management token (header or cookie) or a page saying what to do.
fn ui_allowed(srv: &AppState, headers: &HeaderMap) -> bool {
    let secret = secret_of(headers).or_else(|| cookie_token(headers));
    let state = srv.snapshot();
    secret
        .and_then(|s| state.acl_token_by_secret(&s))
        .is_some_and(|t| t.is_management() && !expired(&t, chrono::Utc::now()))
}

fn ui_refusal() -> Response {
    let page = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
        <title>Drover: token required</title></head><body><main>\
        <h1>ACLs are enabled</h1><p>The web UI needs a management token for now. Set the \
        <code>drover-token</code> cookie for this site to the token's secret ID (or send \
        it in the <code>X-Nomad-Token</code> header), then reload.</p></main></body></html>";
    (
        StatusCode::FORBIDDEN,
        [(axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8")],
        page,
    )
        .into_response()
}

/// The layer (see the module doc). With ACLs off it only answers `/v1/acl/*` with a 400.
pub async fn check(State(srv): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    if !srv.config.acl.enabled {
        if path == "/v1/acl" || path.starts_with("/v1/acl/") {
            return ApiErr::bad_request("ACL support disabled").into_response();
        }
        return next.run(req).await;
    }
    if path == "/ui" || path.starts_with("/ui/") {
        if ui_allowed(&srv, req.headers()) {
            return next.run(req).await;
        }
        return ui_refusal();
    }
    if !path.starts_with("/v1/") {
        return next.run(req).await;
    }
    let query = req.uri().query().unwrap_or("").to_string();
    let requirement = acl::required(req.method().as_str(), &path, &query);
    if matches!(requirement, Requirement::Internal | Requirement::Open) {
        return next.run(req).await;
    }
    let caller = match resolve(&srv, req.headers()) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let (parts, body) = req.into_parts();
    let (namespace, body) = if carries_job(&parts.method, &path) {
        let bytes = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
            Ok(b) => b,
            Err(e) => {
                return ApiErr(StatusCode::PAYLOAD_TOO_LARGE, format!("request body: {e}"))
                    .into_response()
            }
        };
        (body_namespace(&bytes), Body::from(bytes))
    } else {
        let ns =
            object_namespace(&srv.snapshot(), &path).unwrap_or_else(|| query_namespace(&query));
        (ns, body)
    };
    let acl = caller.acl.clone();
    let mut allowed = requirement.allows(&acl, &namespace, &var_path(&path));
    if !acl.is_management() {
        // Search results and the event stream are not filtered per object here: a token
        // must be able to read what they may show.
        match requirement {
            Requirement::Filtered(Filter::Search) => {
                allowed &= acl.allow_namespace_operation(&namespace, NamespaceCapability::ReadJob)
            }
            Requirement::Filtered(Filter::EventStream) => {
                allowed &= acl.allow_namespace_operation(&namespace, NamespaceCapability::ReadJob)
                    && acl.allow_node_read()
            }
            _ => {}
        }
    }
    if !allowed {
        return denied().into_response();
    }
    let filter = (!acl.is_management())
        .then(|| list_filter(&parts.method, &path))
        .flatten();
    let mut req = Request::from_parts(parts, body);
    req.extensions_mut().insert(caller);
    let resp = next.run(req).await;
    match filter {
        Some(f) => filter_list(resp, &acl, f).await,
        None => resp,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_come_from_either_header() {
        let mut h = HeaderMap::new();
        assert_eq!(secret_of(&h), None);
        h.insert("authorization", "Bearer abc".parse().unwrap());
        assert_eq!(secret_of(&h).as_deref(), Some("abc"));
        h.insert("x-nomad-token", "def".parse().unwrap());
        assert_eq!(secret_of(&h).as_deref(), Some("def"));
    }

    #[test]
    fn registrations_take_the_namespace_of_their_job() {
        assert!(carries_job(&Method::PUT, "/v1/jobs"));
        assert!(carries_job(&Method::POST, "/v1/job/web"));
        assert!(carries_job(&Method::POST, "/v1/job/web/plan"));
        assert!(!carries_job(&Method::POST, "/v1/job/web/dispatch"));
        assert!(!carries_job(&Method::GET, "/v1/jobs"));
        assert_eq!(body_namespace(br#"{"Job":{"Namespace":"prod"}}"#), "prod");
        assert_eq!(body_namespace(br#"{"Job":{"Namespace":""}}"#), "default");
        assert_eq!(body_namespace(b"not json"), "default");
    }

    #[test]
    fn variable_paths_are_decoded() {
        assert_eq!(var_path("/v1/var/nomad/jobs/web"), "nomad/jobs/web");
        assert_eq!(var_path("/v1/var/a%20b"), "a b");
    }

    #[test]
    fn expired_tokens_are_recognised() {
        let now = chrono::Utc::now();
        let mut t = AclToken::default();
        assert!(!expired(&t, now));
        t.expiration_time = Some("2000-01-01T00:00:00Z".into());
        assert!(expired(&t, now));
        t.expiration_time = Some("2999-01-01T00:00:00Z".into());
        assert!(!expired(&t, now));
    }
}
