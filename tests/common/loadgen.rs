//! A load generator that finds its backends the way Traefik's Nomad provider does: it
//! re-reads `GET /v1/service/<name>` every second and sends requests round-robin to the
//! instances listed there (skipping canaries, recognised by a tag), counting every
//! request that fails. Zero failures during a rollout means no instance was routed to
//! while it could not serve.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What the generator saw.
#[derive(Debug, Default, Clone)]
pub struct LoadReport {
    pub requests: u64,
    pub failures: u64,
    /// The first few failures, with the backend and the error.
    pub failure_samples: Vec<String>,
    /// Response bodies (trimmed) and how often each was seen: which versions served.
    pub bodies: BTreeMap<String, u64>,
    /// Times the instance list was read, and how often it was empty.
    pub refreshes: u64,
    pub empty_refreshes: u64,
    pub elapsed: Duration,
}

pub struct LoadGen {
    stop: Arc<AtomicBool>,
    report: Arc<Mutex<LoadReport>>,
    handle: Option<JoinHandle<()>>,
    started: Instant,
}

impl LoadGen {
    /// Starts generating against the instances of `service` listed by `api` (an HTTP
    /// base URL of any server). Instances tagged `canary_tag` are skipped. About
    /// `rate_per_sec` requests per second, each with a 2 s timeout.
    pub fn start(api: &str, service: &str, canary_tag: &str, rate_per_sec: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let report = Arc::new(Mutex::new(LoadReport::default()));
        let (api, service, canary_tag) =
            (api.to_string(), service.to_string(), canary_tag.to_string());
        let handle = {
            let stop = stop.clone();
            let report = report.clone();
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::builder()
                    .timeout(Duration::from_secs(2))
                    .pool_max_idle_per_host(0)
                    .build()
                    .unwrap();
                let gap = Duration::from_secs(1) / rate_per_sec.max(1);
                let mut backends: Vec<String> = Vec::new();
                let mut refreshed = Instant::now() - Duration::from_secs(10);
                let mut next = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    if refreshed.elapsed() >= Duration::from_secs(1) {
                        refreshed = Instant::now();
                        if let Some(list) = instances(&client, &api, &service, &canary_tag) {
                            let mut r = report.lock().unwrap();
                            r.refreshes += 1;
                            r.empty_refreshes += u64::from(list.is_empty());
                            backends = list;
                        }
                    }
                    if backends.is_empty() {
                        std::thread::sleep(gap);
                        continue;
                    }
                    let target = &backends[next % backends.len()];
                    next = next.wrapping_add(1);
                    let outcome = client
                        .get(format!("http://{target}/"))
                        .send()
                        .map_err(|e| e.to_string())
                        .and_then(|resp| {
                            let status = resp.status();
                            let body = resp.text().map_err(|e| e.to_string())?;
                            if status.is_success() {
                                Ok(body)
                            } else {
                                Err(format!("status {status}"))
                            }
                        });
                    let mut r = report.lock().unwrap();
                    r.requests += 1;
                    match outcome {
                        Ok(body) => *r.bodies.entry(body.trim().to_string()).or_default() += 1,
                        Err(e) => {
                            r.failures += 1;
                            if r.failure_samples.len() < 10 {
                                r.failure_samples.push(format!("{target}: {e}"));
                            }
                        }
                    }
                    drop(r);
                    std::thread::sleep(gap);
                }
            })
        };
        LoadGen {
            stop,
            report,
            handle: Some(handle),
            started: Instant::now(),
        }
    }

    /// What was seen so far.
    pub fn snapshot(&self) -> LoadReport {
        let mut r = self.report.lock().unwrap().clone();
        r.elapsed = self.started.elapsed();
        r
    }

    pub fn finish(mut self) -> LoadReport {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        self.snapshot()
    }
}

impl Drop for LoadGen {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// `address:port` of every listed instance without `canary_tag`, as a proxy would route.
/// `None` when the list could not be read (the previous list stays in use).
fn instances(
    client: &reqwest::blocking::Client,
    api: &str,
    service: &str,
    canary_tag: &str,
) -> Option<Vec<String>> {
    let v: serde_json::Value = client
        .get(format!("{api}/v1/service/{service}"))
        .send()
        .ok()?
        .json()
        .ok()?;
    Some(
        v.as_array()?
            .iter()
            .filter(|i| {
                !i["Tags"]
                    .as_array()
                    .is_some_and(|t| t.iter().any(|t| t == canary_tag))
            })
            .filter(|i| !i["Address"].as_str().unwrap_or("").is_empty())
            .map(|i| format!("{}:{}", i["Address"].as_str().unwrap_or(""), i["Port"]))
            .collect(),
    )
}
