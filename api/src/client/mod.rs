//! A typed HTTP client for Drover's (and Nomad's) `/v1` API.
//!
//! Used by the CLI, the client agents and the tests. It holds several server addresses
//! and fails over between them on connection errors, so an agent keeps working when one
//! server goes away.

use crate::url::encode;
use crate::*;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The server answered with an error status; the body is its sentence.
    #[error("{status}: {message}")]
    Status { status: u16, message: String },
    #[error("cannot reach {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("bad response from {addr}: {message}")]
    Decode { addr: String, message: String },
}

impl ApiError {
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }
    /// The server refused the request (e.g. a node secret that does not match).
    pub fn is_forbidden(&self) -> bool {
        self.status() == Some(403)
    }
}

/// Options of a read: a blocking query waits until the index passes `index`.
#[derive(Debug, Clone, Default)]
pub struct QueryOptions {
    pub index: u64,
    pub wait: Option<Duration>,
    pub stale: bool,
    pub prefix: Option<String>,
}

impl QueryOptions {
    pub fn blocking(index: u64, wait: Duration) -> Self {
        QueryOptions {
            index,
            wait: Some(wait),
            ..Default::default()
        }
    }
}

/// What a read's headers say about the state it came from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueryMeta {
    pub last_index: u64,
    pub known_leader: bool,
    pub last_contact_ms: u64,
}

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    /// Shared by every clone, so an agent's server list can be replaced while it runs
    /// (`PUT /v1/agent/servers`).
    addrs: Arc<RwLock<Arc<Vec<String>>>>,
    current: Arc<AtomicUsize>,
    /// Headers sent with every request (`X-Nomad-Token`, a node's secret), shared by
    /// every clone.
    identity: Arc<RwLock<Vec<(&'static str, String)>>>,
    /// The scheme given to addresses written without one (`https` with TLS).
    scheme: &'static str,
    /// `?namespace=` added to requests on namespaced routes that do not name one
    /// (the CLI's `-namespace` / `NOMAD_NAMESPACE`); per clone, unlike the identity.
    namespace: Option<Arc<str>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("addrs", &self.addresses())
            .finish()
    }
}

/// The address a CLI talks to: `-address`, else `NOMAD_ADDR`, else `DROVER_ADDR`, else local.
pub fn default_address() -> String {
    std::env::var("NOMAD_ADDR")
        .or_else(|_| std::env::var("DROVER_ADDR"))
        .unwrap_or_else(|_| "http://127.0.0.1:4646".to_string())
}

fn normalize(addr: &str, scheme: &str) -> String {
    let a = addr.trim().trim_end_matches('/');
    if a.starts_with("http://") || a.starts_with("https://") {
        a.to_string()
    } else {
        format!("{scheme}://{a}")
    }
}

fn builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        // Under the servers' header-read timeout (5 s by default), which closes
        // connections idle between requests.
        .pool_idle_timeout(Duration::from_secs(3))
}

impl Client {
    pub fn new(addr: &str) -> Self {
        Self::with_addresses(&[addr.to_string()])
    }

    /// A client that tries each address in turn when one cannot be reached.
    pub fn with_addresses(addrs: &[String]) -> Self {
        let http = builder()
            .build()
            .expect("reqwest client with static configuration");
        Self::from_parts(http, addrs, "http")
    }

    /// A client that speaks TLS as `tls` (a `rustls::ClientConfig`: the CA, a client
    /// certificate, how servers are checked) says, and takes addresses written without a
    /// scheme as `https://`. An unusable configuration is a sentence.
    pub fn with_addresses_tls(addrs: &[String], tls: impl std::any::Any) -> Result<Self, String> {
        let http = builder()
            .use_preconfigured_tls(tls)
            .build()
            .map_err(|e| format!("cannot set up TLS: {e}"))?;
        Ok(Self::from_parts(http, addrs, "https"))
    }

    fn from_parts(http: reqwest::Client, addrs: &[String], scheme: &'static str) -> Self {
        Client {
            http,
            addrs: Arc::new(RwLock::new(Arc::new(
                addrs.iter().map(|a| normalize(a, scheme)).collect(),
            ))),
            current: Arc::new(AtomicUsize::new(0)),
            identity: Default::default(),
            scheme,
            namespace: None,
        }
    }

    /// The HTTP client underneath (its TLS included), for requests this type has no
    /// method for.
    pub fn http_client(&self) -> &reqwest::Client {
        &self.http
    }

    fn set_identity(&self, name: &'static str, value: Option<&str>) {
        let mut g = self.identity.write().unwrap_or_else(|e| e.into_inner());
        g.retain(|(n, _)| *n != name);
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            g.push((name, v.to_string()));
        }
    }

    /// Send `X-Nomad-Token: <secret>` with every request (this client and its clones).
    pub fn set_token(&self, secret: Option<&str>) {
        self.set_identity("X-Nomad-Token", secret);
    }

    /// The token's secret this client sends, if any.
    pub fn token(&self) -> Option<String> {
        self.identity
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|(n, _)| *n == "X-Nomad-Token")
            .map(|(_, v)| v.clone())
    }

    /// The builder form of [`Client::set_token`].
    pub fn with_token(self, secret: Option<&str>) -> Self {
        self.set_token(secret);
        self
    }

    /// Add `?namespace=<ns>` to every request on a namespaced route (jobs, allocations,
    /// evaluations, deployments, scaling, variables, services, search) that does not
    /// already name a namespace. `None` or an empty name: the server's default.
    pub fn with_namespace(mut self, namespace: Option<String>) -> Self {
        self.namespace = namespace.filter(|n| !n.trim().is_empty()).map(Arc::from);
        self
    }

    /// The namespace given to [`Client::with_namespace`], if any.
    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    /// The `namespace` query pair this client adds to a request for `path` (which may
    /// carry a query of its own) with `query`: none off namespaced routes, or when the
    /// request already names a namespace.
    fn namespace_param(&self, path: &str, query: &[(String, String)]) -> Option<(String, String)> {
        let ns = self.namespace.as_deref()?;
        let (route, own_query) = path.split_once('?').unwrap_or((path, ""));
        let named = own_query
            .split('&')
            .any(|kv| kv.split('=').next() == Some("namespace"))
            || query.iter().any(|(k, _)| k == "namespace");
        (!named && is_namespaced_route(route)).then(|| ("namespace".to_string(), ns.to_string()))
    }

    /// Send a node's secret with every request: a client agent's identity when the
    /// servers check ACLs.
    pub fn set_node_secret(&self, secret: &str) {
        self.set_identity(crate::wire::NODE_SECRET_HEADER, Some(secret));
    }

    fn addrs(&self) -> Arc<Vec<String>> {
        self.addrs.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The address in use (the last one that answered).
    pub fn address(&self) -> String {
        let addrs = self.addrs();
        addrs[self.current.load(Ordering::Relaxed) % addrs.len()].clone()
    }

    /// Every address this client tries, as given (with their `http://`).
    pub fn addresses(&self) -> Vec<String> {
        self.addrs().to_vec()
    }

    /// Replace the addresses (this client and all its clones); an empty list is refused.
    pub fn set_addresses(&self, addrs: &[String]) -> Result<(), String> {
        if addrs.is_empty() {
            return Err("missing server address".into());
        }
        let new: Vec<String> = addrs.iter().map(|a| normalize(a, self.scheme)).collect();
        *self.addrs.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(new);
        self.current.store(0, Ordering::Relaxed);
        Ok(())
    }

    async fn send<B: Serialize + ?Sized>(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(String, String)],
        body: Option<&B>,
        timeout: Duration,
        headers: &[(&str, &str)],
    ) -> Result<(reqwest::Response, String), ApiError> {
        let addrs = self.addrs();
        let n = addrs.len();
        let start = self.current.load(Ordering::Relaxed);
        let namespace: Vec<(String, String)> =
            self.namespace_param(path, query).into_iter().collect();
        let mut last_err = None;
        for i in 0..n {
            let idx = (start + i) % n;
            let addr = &addrs[idx];
            let mut req = self
                .http
                .request(method.clone(), format!("{addr}{path}"))
                .query(query)
                .query(&namespace)
                .timeout(timeout);
            if let Some(b) = body {
                req = req.json(b);
            }
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            let identity = self
                .identity
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            for (k, v) in identity {
                if !headers.iter().any(|(h, _)| h.eq_ignore_ascii_case(k)) {
                    req = req.header(k, v);
                }
            }
            match req.send().await {
                Ok(resp) => {
                    self.current.store(idx, Ordering::Relaxed);
                    return Ok((resp, addr.clone()));
                }
                Err(e) => {
                    last_err = Some(ApiError::Connect {
                        addr: addr.clone(),
                        source: e,
                    })
                }
            }
        }
        Err(last_err.expect("at least one address"))
    }

    async fn decode<T: DeserializeOwned>(
        resp: reqwest::Response,
        addr: String,
    ) -> Result<(T, QueryMeta), ApiError> {
        let status = resp.status();
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let meta = QueryMeta {
            last_index: header("X-Nomad-Index")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            known_leader: header("X-Nomad-KnownLeader").as_deref() == Some("true"),
            last_contact_ms: header("X-Nomad-LastContact")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
        };
        let bytes = resp.bytes().await.map_err(|e| ApiError::Decode {
            addr: addr.clone(),
            message: e.to_string(),
        })?;
        if !status.is_success() {
            return Err(ApiError::Status {
                status: status.as_u16(),
                message: String::from_utf8_lossy(&bytes).trim().to_string(),
            });
        }
        // Some writes answer an empty 200 (Nomad's `system gc`): read it as `null`.
        let body: &[u8] = if bytes.is_empty() { b"null" } else { &bytes };
        let v = serde_json::from_slice(body).map_err(|e| ApiError::Decode {
            addr,
            message: e.to_string(),
        })?;
        Ok((v, meta))
    }

    /// A read; with `opts.index` set it blocks until the state passes that index.
    pub async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        opts: &QueryOptions,
    ) -> Result<(T, QueryMeta), ApiError> {
        let mut query = Vec::new();
        if opts.index > 0 {
            query.push(("index".to_string(), opts.index.to_string()));
        }
        if let Some(w) = opts.wait {
            query.push(("wait".to_string(), format!("{}ms", w.as_millis())));
        }
        if opts.stale {
            query.push(("stale".to_string(), String::new()));
        }
        if let Some(p) = &opts.prefix {
            query.push(("prefix".to_string(), p.clone()));
        }
        let timeout = opts.wait.unwrap_or(Duration::ZERO) + Duration::from_secs(30);
        let (resp, addr) = self
            .send::<()>(reqwest::Method::GET, path, &query, None, timeout, &[])
            .await?;
        Self::decode(resp, addr).await
    }

    pub async fn put<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ApiError> {
        self.put_with_headers(path, body, &[]).await
    }

    /// A PUT carrying extra headers (a node's secret).
    pub async fn put_with_headers<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        headers: &[(&str, &str)],
    ) -> Result<T, ApiError> {
        let (resp, addr) = self
            .send(
                reqwest::Method::PUT,
                path,
                &[],
                Some(body),
                Duration::from_secs(60),
                headers,
            )
            .await?;
        Ok(Self::decode(resp, addr).await?.0)
    }

    pub async fn delete<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(String, String)],
    ) -> Result<T, ApiError> {
        let (resp, addr) = self
            .send::<()>(
                reqwest::Method::DELETE,
                path,
                query,
                None,
                Duration::from_secs(60),
                &[],
            )
            .await?;
        Ok(Self::decode(resp, addr).await?.0)
    }
}

/// Whether objects under `route` (a `/v1/...` path without its query) live in a
/// namespace, so that a read or write there takes `?namespace=`. Nodes, agents, status,
/// operator, ACL and the namespaces themselves do not.
fn is_namespaced_route(route: &str) -> bool {
    let Some(rest) = route.strip_prefix("/v1/") else {
        return false;
    };
    matches!(
        rest.split('/').next().unwrap_or(""),
        "jobs"
            | "job"
            | "allocations"
            | "allocation"
            | "evaluations"
            | "evaluation"
            | "deployments"
            | "deployment"
            | "scaling"
            | "vars"
            | "var"
            | "services"
            | "service"
            | "search"
    )
}

/// `path?namespace=<ns>` when a namespace is given.
fn with_namespace(path: &str, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) => format!("{path}?namespace={}", encode(ns)),
        None => path.to_string(),
    }
}

fn secret_header(secret: &str) -> Vec<(&'static str, &str)> {
    if secret.is_empty() {
        vec![]
    } else {
        vec![(crate::wire::NODE_SECRET_HEADER, secret)]
    }
}

pub use crate::wire::JobVersionsResponse;

mod allocs;
mod deployments;
mod events;
mod jobs;
mod monitor;
mod nodes;
mod services;
mod stream;
mod variables;

pub use events::{EventFrame, EventStream, StreamEvent};
pub use monitor::{MonitorStream, StreamFrame};
pub use variables::VariableWrite;

#[cfg(test)]
mod tests {
    use super::*;

    fn ns_param(c: &Client, path: &str, query: &[(&str, &str)]) -> Option<String> {
        let query: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        c.namespace_param(path, &query).map(|(_, v)| v)
    }

    #[test]
    fn the_namespace_goes_on_namespaced_routes_only() {
        let c = Client::new("http://127.0.0.1:1").with_namespace(Some("team-a".into()));
        for path in [
            "/v1/jobs",
            "/v1/job/web",
            "/v1/job/web/versions?diffs=true",
            "/v1/job/web/dispatch",
            "/v1/job/web/plan",
            "/v1/allocations",
            "/v1/allocation/abc",
            "/v1/evaluations",
            "/v1/evaluation/abc/allocations",
            "/v1/deployments",
            "/v1/deployment/promote/abc",
            "/v1/scaling/policies",
            "/v1/vars",
            "/v1/var/a/b",
            "/v1/services",
            "/v1/service/web",
            "/v1/search",
        ] {
            assert_eq!(ns_param(&c, path, &[]).as_deref(), Some("team-a"), "{path}");
        }
        for path in [
            "/v1/nodes",
            "/v1/node/abc/allocations",
            "/v1/agent/self",
            "/v1/status/leader",
            "/v1/operator/raft/configuration",
            "/v1/acl/tokens",
            "/v1/namespaces",
            "/v1/namespace/team-a",
            "/v1/jobsx",
            "/v2/jobs",
        ] {
            assert_eq!(ns_param(&c, path, &[]), None, "{path}");
        }
    }

    #[test]
    fn a_request_that_names_a_namespace_keeps_it() {
        let c = Client::new("http://127.0.0.1:1").with_namespace(Some("team-a".into()));
        assert_eq!(ns_param(&c, "/v1/vars?namespace=b", &[]), None);
        assert_eq!(ns_param(&c, "/v1/var/x?cas=1&namespace=b", &[]), None);
        assert_eq!(ns_param(&c, "/v1/var/x", &[("namespace", "b")]), None);
        // A parameter that merely ends in "namespace" is not one.
        assert_eq!(
            ns_param(&c, "/v1/jobs?xnamespace=b", &[]).as_deref(),
            Some("team-a")
        );
    }

    #[test]
    fn no_or_an_empty_namespace_adds_nothing() {
        let plain = Client::new("http://127.0.0.1:1");
        assert_eq!(ns_param(&plain, "/v1/jobs", &[]), None);
        let empty = Client::new("http://127.0.0.1:1").with_namespace(Some(" ".into()));
        assert_eq!(empty.namespace(), None);
        assert_eq!(ns_param(&empty, "/v1/jobs", &[]), None);
    }

    #[test]
    fn a_clone_with_another_namespace_leaves_the_original_alone() {
        let a = Client::new("http://127.0.0.1:1").with_namespace(Some("team-a".into()));
        let b = a.clone().with_namespace(Some("team-b".into()));
        assert_eq!(
            (a.namespace(), b.namespace()),
            (Some("team-a"), Some("team-b"))
        );
    }

    #[test]
    fn job_json_uses_nomad_field_names() {
        let mut job = Job {
            id: "web".into(),
            task_groups: vec![TaskGroup {
                name: "g".into(),
                count: 2,
                tasks: vec![Task {
                    name: "t".into(),
                    driver: "raw_exec".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        job.canonicalize();
        let v = serde_json::to_value(&job).unwrap();
        assert_eq!(v["ID"], "web");
        assert_eq!(v["Type"], "service");
        assert_eq!(v["TaskGroups"][0]["Tasks"][0]["Resources"]["CPU"], 100);
        assert_eq!(v["TaskGroups"][0]["Tasks"][0]["Resources"]["MemoryMB"], 300);
        assert_eq!(
            v["TaskGroups"][0]["Tasks"][0]["KillTimeout"],
            5_000_000_000i64
        );
        assert_eq!(v["TaskGroups"][0]["RestartPolicy"]["Attempts"], 2);
    }

    #[test]
    fn partial_json_from_other_clients_parses() {
        let j: Job = serde_json::from_str(r#"{"ID":"x","TaskGroups":[{"Name":"g","Tasks":[{"Name":"t","Driver":"raw_exec","Config":{"command":"/bin/sleep","args":["5"]}}]}]}"#).unwrap();
        assert_eq!(j.task_groups[0].tasks[0].config["command"], "/bin/sleep");
    }

    #[test]
    fn validation_names_each_problem() {
        let job = Job {
            id: "has space".into(),
            job_type: "nope".into(),
            priority: 50,
            ..Default::default()
        };
        let errs = job.validate();
        assert!(errs.iter().any(|e| e.contains("contains a space")));
        assert!(errs.iter().any(|e| e.contains("job type")));
        assert!(errs.iter().any(|e| e.contains("no task groups")));
    }

    #[test]
    fn event_stream_lines_decode_as_frames_and_heartbeats() {
        let beat: EventFrame = serde_json::from_str("{}").unwrap();
        assert!(beat.is_heartbeat());
        let line = r#"{"Index":7,"Events":[{"Topic":"Job","Type":"JobRegistered","Key":"web","Namespace":"default","FilterKeys":null,"Index":7,"Payload":{"Job":{"ID":"web"}}}]}"#;
        let f: EventFrame = serde_json::from_str(line).unwrap();
        assert!(!f.is_heartbeat());
        assert_eq!((f.index, f.events[0].kind.as_str()), (7, "JobRegistered"));
        assert_eq!(f.events[0].payload["Job"]["ID"], "web");
        let lagged: EventFrame = serde_json::from_str(r#"{"Error":"fell behind"}"#).unwrap();
        assert_eq!(lagged.error.as_deref(), Some("fell behind"));
    }
}
