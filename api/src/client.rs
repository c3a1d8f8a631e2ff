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
use std::sync::Arc;
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
    addrs: Arc<Vec<String>>,
    current: Arc<AtomicUsize>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("addrs", &self.addrs)
            .finish()
    }
}

/// The address a CLI talks to: `-address`, else `NOMAD_ADDR`, else `DROVER_ADDR`, else local.
pub fn default_address() -> String {
    std::env::var("NOMAD_ADDR")
        .or_else(|_| std::env::var("DROVER_ADDR"))
        .unwrap_or_else(|_| "http://127.0.0.1:4646".to_string())
}

fn normalize(addr: &str) -> String {
    let a = addr.trim().trim_end_matches('/');
    if a.starts_with("http://") || a.starts_with("https://") {
        a.to_string()
    } else {
        format!("http://{a}")
    }
}

impl Client {
    pub fn new(addr: &str) -> Self {
        Self::with_addresses(&[addr.to_string()])
    }

    /// A client that tries each address in turn when one cannot be reached.
    pub fn with_addresses(addrs: &[String]) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            // Under the servers' header-read timeout (5 s by default), which closes
            // connections idle between requests.
            .pool_idle_timeout(Duration::from_secs(3))
            .build()
            .expect("reqwest client with static configuration");
        Client {
            http,
            addrs: Arc::new(addrs.iter().map(|a| normalize(a)).collect()),
            current: Arc::new(AtomicUsize::new(0)),
        }
    }

    pub fn address(&self) -> &str {
        &self.addrs[self.current.load(Ordering::Relaxed) % self.addrs.len()]
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
        let n = self.addrs.len();
        let start = self.current.load(Ordering::Relaxed);
        let mut last_err = None;
        for i in 0..n {
            let idx = (start + i) % n;
            let addr = &self.addrs[idx];
            let mut req = self
                .http
                .request(method.clone(), format!("{addr}{path}"))
                .query(query)
                .timeout(timeout);
            if let Some(b) = body {
                req = req.json(b);
            }
            for (k, v) in headers {
                req = req.header(*k, *v);
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
        let v = serde_json::from_slice(&bytes).map_err(|e| ApiError::Decode {
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

    // ---- jobs ----

    pub async fn register_job(&self, job: &Job) -> Result<JobRegisterResponse, ApiError> {
        self.register_job_opts(job, None).await
    }

    /// Register a job; with `check_index`, only if the job's modify index still matches.
    pub async fn register_job_opts(
        &self,
        job: &Job,
        check_index: Option<u64>,
    ) -> Result<JobRegisterResponse, ApiError> {
        let req = JobRegisterRequest {
            job: Some(job.clone()),
            enforce_index: check_index.is_some(),
            job_modify_index: check_index.unwrap_or(0),
            ..Default::default()
        };
        self.put("/v1/jobs", &req).await
    }

    pub async fn jobs(
        &self,
        opts: &QueryOptions,
    ) -> Result<(Vec<JobListStub>, QueryMeta), ApiError> {
        self.get("/v1/jobs", opts).await
    }

    pub async fn job(&self, id: &str) -> Result<(Job, QueryMeta), ApiError> {
        self.get(&format!("/v1/job/{}", encode(id)), &QueryOptions::default())
            .await
    }

    pub async fn job_allocations(
        &self,
        id: &str,
        opts: &QueryOptions,
    ) -> Result<(Vec<AllocationListStub>, QueryMeta), ApiError> {
        self.get(&format!("/v1/job/{}/allocations", encode(id)), opts)
            .await
    }

    pub async fn job_evaluations(
        &self,
        id: &str,
    ) -> Result<(Vec<Evaluation>, QueryMeta), ApiError> {
        self.get(
            &format!("/v1/job/{}/evaluations", encode(id)),
            &QueryOptions::default(),
        )
        .await
    }

    pub async fn job_summary(&self, id: &str) -> Result<(JobSummary, QueryMeta), ApiError> {
        self.get(
            &format!("/v1/job/{}/summary", encode(id)),
            &QueryOptions::default(),
        )
        .await
    }

    pub async fn job_versions(
        &self,
        id: &str,
    ) -> Result<(JobVersionsResponse, QueryMeta), ApiError> {
        self.get(
            &format!("/v1/job/{}/versions", encode(id)),
            &QueryOptions::default(),
        )
        .await
    }

    pub async fn deregister_job(
        &self,
        id: &str,
        purge: bool,
    ) -> Result<JobDeregisterResponse, ApiError> {
        self.delete(
            &format!("/v1/job/{}", encode(id)),
            &[("purge".to_string(), purge.to_string())],
        )
        .await
    }

    // ---- allocations, evaluations ----

    pub async fn allocations(
        &self,
        opts: &QueryOptions,
    ) -> Result<(Vec<AllocationListStub>, QueryMeta), ApiError> {
        self.get("/v1/allocations", opts).await
    }

    pub async fn allocation(&self, id: &str) -> Result<(Allocation, QueryMeta), ApiError> {
        self.get(
            &format!("/v1/allocation/{}", encode(id)),
            &QueryOptions::default(),
        )
        .await
    }

    pub async fn evaluations(
        &self,
        opts: &QueryOptions,
    ) -> Result<(Vec<Evaluation>, QueryMeta), ApiError> {
        self.get("/v1/evaluations", opts).await
    }

    pub async fn evaluation(&self, id: &str) -> Result<(Evaluation, QueryMeta), ApiError> {
        self.get(
            &format!("/v1/evaluation/{}", encode(id)),
            &QueryOptions::default(),
        )
        .await
    }

    pub async fn evaluation_allocations(
        &self,
        id: &str,
    ) -> Result<(Vec<AllocationListStub>, QueryMeta), ApiError> {
        self.get(
            &format!("/v1/evaluation/{}/allocations", encode(id)),
            &QueryOptions::default(),
        )
        .await
    }

    // ---- nodes ----

    pub async fn nodes(
        &self,
        opts: &QueryOptions,
    ) -> Result<(Vec<NodeListStub>, QueryMeta), ApiError> {
        self.get("/v1/nodes", opts).await
    }

    pub async fn node(&self, id: &str) -> Result<(Node, QueryMeta), ApiError> {
        self.get(
            &format!("/v1/node/{}", encode(id)),
            &QueryOptions::default(),
        )
        .await
    }

    /// The full allocations of a node (what an agent must run); a blocking query.
    pub async fn node_allocations(
        &self,
        node_id: &str,
        opts: &QueryOptions,
    ) -> Result<(Vec<Allocation>, QueryMeta), ApiError> {
        self.get(&format!("/v1/node/{}/allocations", encode(node_id)), opts)
            .await
    }

    // ---- status, agent ----

    pub async fn leader(&self) -> Result<String, ApiError> {
        Ok(self
            .get("/v1/status/leader", &QueryOptions::default())
            .await?
            .0)
    }

    pub async fn peers(&self) -> Result<Vec<String>, ApiError> {
        Ok(self
            .get("/v1/status/peers", &QueryOptions::default())
            .await?
            .0)
    }

    pub async fn agent_self(&self) -> Result<AgentSelf, ApiError> {
        Ok(self
            .get("/v1/agent/self", &QueryOptions::default())
            .await?
            .0)
    }

    // ---- internal endpoints used by client agents (on the servers' RPC listener) ----

    /// Registers (or re-registers) a node. `secret` is the one the servers returned at its
    /// first registration (empty for a new node); the answer carries the node's secret.
    pub async fn register_node(
        &self,
        node: &Node,
        secret: &str,
    ) -> Result<NodeHeartbeatResponse, ApiError> {
        self.put_with_headers(
            "/v1/internal/node/register",
            &NodeRegisterRequest { node: node.clone() },
            &secret_header(secret),
        )
        .await
    }

    pub async fn heartbeat(
        &self,
        node_id: &str,
        secret: &str,
    ) -> Result<NodeHeartbeatResponse, ApiError> {
        self.put_with_headers(
            &format!("/v1/internal/node/{}/heartbeat", encode(node_id)),
            &serde_json::json!({}),
            &secret_header(secret),
        )
        .await
    }

    pub async fn update_allocs(
        &self,
        node_id: &str,
        secret: &str,
        updates: Vec<AllocClientUpdate>,
    ) -> Result<WriteResponse, ApiError> {
        self.put_with_headers(
            &format!("/v1/internal/node/{}/allocs", encode(node_id)),
            &AllocUpdateRequest { alloc: updates },
            &secret_header(secret),
        )
        .await
    }

    /// Registers and deregisters service instances of this node's allocations
    /// (`PUT /v1/internal/node/:id/services`, to a server's RPC listener).
    pub async fn update_services(
        &self,
        node_id: &str,
        secret: &str,
        update: &crate::ServiceUpdateRequest,
    ) -> Result<WriteResponse, ApiError> {
        self.put_with_headers(
            &format!("/v1/internal/node/{}/services", encode(node_id)),
            update,
            &secret_header(secret),
        )
        .await
    }

    // ---- services (provider = "nomad") ----

    /// `GET /v1/services`: per namespace, each service name and its tags. `namespace`
    /// `None` means `default`, `Some("*")` every namespace.
    pub async fn services(
        &self,
        namespace: Option<&str>,
        opts: &QueryOptions,
    ) -> Result<(Vec<crate::ServiceRegistrationListStub>, QueryMeta), ApiError> {
        self.get(&with_namespace("/v1/services", namespace), opts)
            .await
    }

    /// `GET /v1/service/:name`: the registered instances of a service.
    pub async fn service(
        &self,
        name: &str,
        namespace: Option<&str>,
        opts: &QueryOptions,
    ) -> Result<(Vec<crate::ServiceRegistration>, QueryMeta), ApiError> {
        let path = format!("/v1/service/{}", encode(name));
        self.get(&with_namespace(&path, namespace), opts).await
    }

    /// `DELETE /v1/service/:name/:id`: remove one registration.
    pub async fn delete_service(
        &self,
        name: &str,
        id: &str,
        namespace: Option<&str>,
    ) -> Result<WriteResponse, ApiError> {
        let query: Vec<(String, String)> = namespace
            .map(|ns| vec![("namespace".to_string(), ns.to_string())])
            .unwrap_or_default();
        self.delete(
            &format!("/v1/service/{}/{}", encode(name), encode(id)),
            &query,
        )
        .await
    }

    /// `GET /v1/job/:id/services`.
    pub async fn job_services(
        &self,
        job_id: &str,
        opts: &QueryOptions,
    ) -> Result<(Vec<crate::ServiceRegistration>, QueryMeta), ApiError> {
        self.get(&format!("/v1/job/{}/services", encode(job_id)), opts)
            .await
    }

    /// `GET /v1/allocation/:id/services`.
    pub async fn allocation_services(
        &self,
        alloc_id: &str,
        opts: &QueryOptions,
    ) -> Result<(Vec<crate::ServiceRegistration>, QueryMeta), ApiError> {
        self.get(
            &format!("/v1/allocation/{}/services", encode(alloc_id)),
            opts,
        )
        .await
    }
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

// ---- the event stream ----

/// One line of `GET /v1/event/stream`: the events of one Raft entry, or a heartbeat (`{}`:
/// no index, no events), or the server's last line when the stream fell behind (`Error`).
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct EventFrame {
    pub index: u64,
    pub events: Vec<StreamEvent>,
    pub error: Option<String>,
}

impl EventFrame {
    pub fn is_heartbeat(&self) -> bool {
        self.index == 0 && self.events.is_empty() && self.error.is_none()
    }
}

/// One event, as Nomad's event stream sends it.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct StreamEvent {
    pub topic: String,
    #[serde(rename = "Type")]
    pub kind: String,
    pub key: String,
    pub namespace: String,
    pub filter_keys: Option<Vec<String>>,
    pub index: u64,
    /// `{"Job": ...}`, `{"Allocation": ...}`, `{"Service": ...}`, ...
    pub payload: serde_json::Value,
}

/// An open event stream: [`EventStream::next`] reads it line by line.
pub struct EventStream {
    resp: reqwest::Response,
    addr: String,
    buf: Vec<u8>,
}

/// The longest line an event stream may send before the client gives up on it.
const MAX_EVENT_LINE: usize = 64 * 1024 * 1024;

impl EventStream {
    /// The next frame (heartbeats included); `None` once the server ended the stream.
    pub async fn next(&mut self) -> Option<Result<EventFrame, ApiError>> {
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return Some(serde_json::from_slice(&line).map_err(|e| ApiError::Decode {
                    addr: self.addr.clone(),
                    message: format!("an event stream line that is not a frame: {e}"),
                }));
            }
            if self.buf.len() > MAX_EVENT_LINE {
                return Some(Err(ApiError::Decode {
                    addr: self.addr.clone(),
                    message: format!("an event stream line longer than {MAX_EVENT_LINE} bytes"),
                }));
            }
            match self.resp.chunk().await {
                Ok(Some(chunk)) => self.buf.extend_from_slice(&chunk),
                Ok(None) => return None,
                Err(e) => {
                    return Some(Err(ApiError::Decode {
                        addr: self.addr.clone(),
                        message: format!("the event stream broke off: {e}"),
                    }))
                }
            }
        }
    }
}

impl Client {
    /// `GET /v1/event/stream`: events from `index` on (0: all the server still buffers)
    /// on `topics` (`"Job:web"`, `"Service:*"`; none means every topic) in `namespace`
    /// (`None`: default, `"*"`: all). The stream stays open until it is dropped.
    pub async fn event_stream(
        &self,
        topics: &[&str],
        index: u64,
        namespace: Option<&str>,
    ) -> Result<EventStream, ApiError> {
        let mut query: Vec<(String, String)> = topics
            .iter()
            .map(|t| ("topic".to_string(), t.to_string()))
            .collect();
        if index > 0 {
            query.push(("index".into(), index.to_string()));
        }
        if let Some(ns) = namespace {
            query.push(("namespace".into(), ns.to_string()));
        }
        // The request's timeout covers the whole body: a stream has none to speak of.
        let forever = Duration::from_secs(100 * 365 * 24 * 3600);
        let (resp, addr) = self
            .send::<()>(
                reqwest::Method::GET,
                "/v1/event/stream",
                &query,
                None,
                forever,
                &[],
            )
            .await?;
        if !resp.status().is_success() {
            let status = resp.status().as_u16();
            let message = resp.text().await.unwrap_or_default().trim().to_string();
            return Err(ApiError::Status { status, message });
        }
        Ok(EventStream {
            resp,
            addr,
            buf: Vec::new(),
        })
    }
}

// ---- deployments, versions, scaling ----

impl Client {
    pub async fn deployments(
        &self,
        opts: &QueryOptions,
    ) -> Result<(Vec<crate::Deployment>, QueryMeta), ApiError> {
        self.get("/v1/deployments", opts).await
    }

    pub async fn deployment(
        &self,
        id: &str,
        opts: &QueryOptions,
    ) -> Result<(crate::Deployment, QueryMeta), ApiError> {
        self.get(&format!("/v1/deployment/{}", encode(id)), opts)
            .await
    }

    pub async fn deployment_allocations(
        &self,
        id: &str,
    ) -> Result<(Vec<crate::AllocationListStub>, QueryMeta), ApiError> {
        self.get(
            &format!("/v1/deployment/allocations/{}", encode(id)),
            &QueryOptions::default(),
        )
        .await
    }

    /// Promote the canaries of every group (`groups` empty) or of the named ones.
    pub async fn promote_deployment(
        &self,
        id: &str,
        groups: &[String],
    ) -> Result<crate::DeploymentUpdateResponse, ApiError> {
        let req = crate::DeploymentPromoteRequest {
            deployment_id: id.to_string(),
            all: groups.is_empty(),
            groups: groups.to_vec(),
        };
        self.put(&format!("/v1/deployment/promote/{}", encode(id)), &req)
            .await
    }

    pub async fn fail_deployment(
        &self,
        id: &str,
    ) -> Result<crate::DeploymentUpdateResponse, ApiError> {
        let req = crate::DeploymentFailRequest {
            deployment_id: id.to_string(),
        };
        self.put(&format!("/v1/deployment/fail/{}", encode(id)), &req)
            .await
    }

    /// Pause (`true`) or resume (`false`) a deployment.
    pub async fn pause_deployment(
        &self,
        id: &str,
        pause: bool,
    ) -> Result<crate::DeploymentUpdateResponse, ApiError> {
        let req = crate::DeploymentPauseRequest {
            deployment_id: id.to_string(),
            pause,
        };
        self.put(&format!("/v1/deployment/pause/{}", encode(id)), &req)
            .await
    }

    pub async fn set_deployment_alloc_health(
        &self,
        id: &str,
        healthy: &[String],
        unhealthy: &[String],
    ) -> Result<crate::DeploymentUpdateResponse, ApiError> {
        let req = crate::DeploymentAllocHealthRequest {
            deployment_id: id.to_string(),
            healthy_allocation_ids: healthy.to_vec(),
            unhealthy_allocation_ids: unhealthy.to_vec(),
        };
        self.put(
            &format!("/v1/deployment/allocation-health/{}", encode(id)),
            &req,
        )
        .await
    }

    pub async fn job_deployments(
        &self,
        job_id: &str,
    ) -> Result<(Vec<crate::Deployment>, QueryMeta), ApiError> {
        self.get(
            &format!("/v1/job/{}/deployments", encode(job_id)),
            &QueryOptions::default(),
        )
        .await
    }

    /// The job's newest deployment, if it has one.
    pub async fn job_latest_deployment(
        &self,
        job_id: &str,
        opts: &QueryOptions,
    ) -> Result<(Option<crate::Deployment>, QueryMeta), ApiError> {
        self.get(&format!("/v1/job/{}/deployment", encode(job_id)), opts)
            .await
    }

    /// Every version of a job, newest first, each with its diff to the one before.
    pub async fn job_versions_with_diffs(
        &self,
        id: &str,
    ) -> Result<(JobVersionsResponse, QueryMeta), ApiError> {
        self.get(
            &format!("/v1/job/{}/versions?diffs=true", encode(id)),
            &QueryOptions::default(),
        )
        .await
    }

    /// Register version `version`'s spec again as the job's next version.
    pub async fn revert_job(
        &self,
        job_id: &str,
        version: u64,
        enforce_prior_version: Option<u64>,
    ) -> Result<JobRegisterResponse, ApiError> {
        let req = crate::JobRevertRequest {
            job_id: job_id.to_string(),
            job_version: version,
            enforce_prior_version,
        };
        self.put(&format!("/v1/job/{}/revert", encode(job_id)), &req)
            .await
    }

    pub async fn set_job_stability(
        &self,
        job_id: &str,
        version: u64,
        stable: bool,
    ) -> Result<crate::JobStabilityResponse, ApiError> {
        let req = crate::JobStabilityRequest {
            job_id: job_id.to_string(),
            job_version: version,
            stable,
        };
        self.put(&format!("/v1/job/{}/stable", encode(job_id)), &req)
            .await
    }

    /// Set a group's count (a new job version).
    pub async fn scale_job(
        &self,
        job_id: &str,
        group: &str,
        count: i64,
        message: &str,
    ) -> Result<JobRegisterResponse, ApiError> {
        let req = crate::ScalingRequest {
            count: Some(count),
            target: [("Group".to_string(), group.to_string())].into(),
            message: message.to_string(),
            ..Default::default()
        };
        self.put(&format!("/v1/job/{}/scale", encode(job_id)), &req)
            .await
    }

    pub async fn job_scale_status(
        &self,
        job_id: &str,
    ) -> Result<(crate::JobScaleStatus, QueryMeta), ApiError> {
        self.get(
            &format!("/v1/job/{}/scale", encode(job_id)),
            &QueryOptions::default(),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
