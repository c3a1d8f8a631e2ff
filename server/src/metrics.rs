//! Telemetry: the process's metrics under Nomad's names, served by `GET /v1/metrics` in
//! Nomad's JSON and in the Prometheus text format (`http/metrics.rs`).
//!
//! Timings and counts are recorded where each thing happens with the `metrics` facade
//! (`metrics::histogram!("nomad.raft.commitTime")`); [`Registry`] is the recorder behind it.
//! Why the facade and our own recorder rather than `prometheus-client`: Nomad's JSON gives
//! every counter and timer go-metrics' aggregate (Count, Sum, Min, Max, Mean, Stddev), which
//! neither `prometheus-client` (buckets, sum, count) nor the facade's Prometheus exporter
//! keeps; the facade is process-wide like go-metrics, so any crate can record without a
//! handle threaded through it, and the recorder is one small type that renders both formats.
//!
//! Gauges are not recorded: they are read when a scrape asks ([`Registry::add_source`]), from
//! the server (leadership, broker, plan queue, heartbeats, job summaries) and from this
//! process's client agent (allocations, host memory), so they are never stale.
//!
//! Aggregates cover the agent's whole life rather than go-metrics' ten-second intervals; a
//! Prometheus scrape wants cumulative sums and counts anyway, and `Rate` is per second of
//! uptime.

use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

/// A series' labels, in the order they were given.
pub type Labels = Vec<(String, String)>;

/// One gauge reading.
#[derive(Debug, Clone, PartialEq)]
pub struct Gauge {
    pub name: String,
    pub labels: Labels,
    pub value: f64,
}

impl Gauge {
    pub fn new(name: &str, labels: &[(&str, &str)], value: f64) -> Self {
        Gauge {
            name: name.to_string(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            value,
        }
    }
}

/// Values kept for quantiles in the Prometheus output (the newest ones).
const RECENT: usize = 1024;

/// What go-metrics keeps per counter and timer, plus the newest values for quantiles.
#[derive(Debug, Clone, Default)]
pub struct Aggregate {
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    sum_sq: f64,
    recent: VecDeque<f64>,
}

impl Aggregate {
    pub fn add(&mut self, v: f64) {
        if !v.is_finite() {
            return;
        }
        if self.count == 0 || v < self.min {
            self.min = v;
        }
        if self.count == 0 || v > self.max {
            self.max = v;
        }
        self.count += 1;
        self.sum += v;
        self.sum_sq += v * v;
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(v);
    }

    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum / self.count as f64
        }
    }

    /// The sample standard deviation, as go-metrics computes it.
    pub fn stddev(&self) -> f64 {
        if self.count < 2 {
            return 0.0;
        }
        let n = self.count as f64;
        ((self.sum_sq - self.sum * self.sum / n) / (n - 1.0))
            .max(0.0)
            .sqrt()
    }

    /// The `q` quantile of the newest values (nearest rank).
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.recent.is_empty() {
            return None;
        }
        let mut v: Vec<f64> = self.recent.iter().copied().collect();
        v.sort_by(f64::total_cmp);
        let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
        Some(v[rank - 1])
    }
}

#[derive(Debug, Default)]
struct Cell(Mutex<Aggregate>);

impl Cell {
    fn add(&self, v: f64) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).add(v);
    }
    fn get(&self) -> Aggregate {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl ::metrics::CounterFn for Cell {
    fn increment(&self, value: u64) {
        self.add(value as f64);
    }
    fn absolute(&self, value: u64) {
        self.add(value as f64);
    }
}

impl ::metrics::HistogramFn for Cell {
    fn record(&self, value: f64) {
        self.add(value);
    }
}

/// A gauge set through the facade (f64 bits).
#[derive(Debug, Default)]
struct GaugeCell(AtomicU64);

impl ::metrics::GaugeFn for GaugeCell {
    fn increment(&self, value: f64) {
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                Some((f64::from_bits(b) + value).to_bits())
            });
    }
    fn decrement(&self, value: f64) {
        self.increment(-value);
    }
    fn set(&self, value: f64) {
        self.0.store(value.to_bits(), Ordering::Relaxed);
    }
}

type SeriesKey = (String, Labels);
type Source = Box<dyn Fn() -> Vec<Gauge> + Send + Sync>;

/// The process's metrics: the facade's recorder and the gauge sources read at scrape time.
pub struct Registry {
    started: Instant,
    counters: Mutex<BTreeMap<SeriesKey, Arc<Cell>>>,
    samples: Mutex<BTreeMap<SeriesKey, Arc<Cell>>>,
    gauges: Mutex<BTreeMap<SeriesKey, Arc<GaugeCell>>>,
    sources: Mutex<Vec<Source>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn series_key(key: &::metrics::Key) -> SeriesKey {
    let labels = key
        .labels()
        .map(|l| (l.key().to_string(), l.value().to_string()))
        .collect();
    (key.name().to_string(), labels)
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            started: Instant::now(),
            counters: Mutex::default(),
            samples: Mutex::default(),
            gauges: Mutex::default(),
            sources: Mutex::default(),
        }
    }
}

impl Registry {
    /// Read these gauges at every scrape (a server, a client agent).
    pub fn add_source(&self, f: impl Fn() -> Vec<Gauge> + Send + Sync + 'static) {
        lock(&self.sources).push(Box::new(f));
    }

    pub fn uptime(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    /// Everything now: recorded aggregates and the sources' gauges, sorted by name.
    pub fn collect(&self) -> Collected {
        let aggs = |m: &Mutex<BTreeMap<SeriesKey, Arc<Cell>>>| -> Vec<(SeriesKey, Aggregate)> {
            lock(m).iter().map(|(k, c)| (k.clone(), c.get())).collect()
        };
        let mut gauges: Vec<Gauge> = lock(&self.gauges)
            .iter()
            .map(|((name, labels), g)| Gauge {
                name: name.clone(),
                labels: labels.clone(),
                value: f64::from_bits(g.0.load(Ordering::Relaxed)),
            })
            .collect();
        for source in lock(&self.sources).iter() {
            gauges.extend(source());
        }
        gauges.sort_by(|a, b| (&a.name, &a.labels).cmp(&(&b.name, &b.labels)));
        Collected {
            uptime: self.uptime().as_secs_f64(),
            gauges,
            counters: aggs(&self.counters),
            samples: aggs(&self.samples),
        }
    }
}

/// The facade's view of the one registry.
struct Installed(&'static Registry);

impl ::metrics::Recorder for Installed {
    fn describe_counter(
        &self,
        _: ::metrics::KeyName,
        _: Option<::metrics::Unit>,
        _: ::metrics::SharedString,
    ) {
    }
    fn describe_gauge(
        &self,
        _: ::metrics::KeyName,
        _: Option<::metrics::Unit>,
        _: ::metrics::SharedString,
    ) {
    }
    fn describe_histogram(
        &self,
        _: ::metrics::KeyName,
        _: Option<::metrics::Unit>,
        _: ::metrics::SharedString,
    ) {
    }

    fn register_counter(
        &self,
        key: &::metrics::Key,
        _: &::metrics::Metadata<'_>,
    ) -> ::metrics::Counter {
        let cell = lock(&self.0.counters)
            .entry(series_key(key))
            .or_default()
            .clone();
        ::metrics::Counter::from_arc(cell)
    }

    fn register_gauge(
        &self,
        key: &::metrics::Key,
        _: &::metrics::Metadata<'_>,
    ) -> ::metrics::Gauge {
        let cell = lock(&self.0.gauges)
            .entry(series_key(key))
            .or_default()
            .clone();
        ::metrics::Gauge::from_arc(cell)
    }

    fn register_histogram(
        &self,
        key: &::metrics::Key,
        _: &::metrics::Metadata<'_>,
    ) -> ::metrics::Histogram {
        let cell = lock(&self.0.samples)
            .entry(series_key(key))
            .or_default()
            .clone();
        ::metrics::Histogram::from_arc(cell)
    }
}

/// The process's registry, installed as the facade's recorder on first use (go-metrics'
/// sink is process-wide too; every agent in the process reports into it).
pub fn global() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    let r = REGISTRY.get_or_init(Registry::default);
    INSTALLED.call_once(|| {
        // Another recorder already installed (an embedding program's) keeps its place.
        let _ = ::metrics::set_global_recorder(Installed(r));
    });
    r
}

/// One scrape's worth of metrics.
#[derive(Debug, Clone)]
pub struct Collected {
    pub uptime: f64,
    pub gauges: Vec<Gauge>,
    pub counters: Vec<(SeriesKey, Aggregate)>,
    pub samples: Vec<(SeriesKey, Aggregate)>,
}

/// `GET /v1/metrics`: Nomad's JSON (`MetricsSummary`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Summary {
    pub timestamp: String,
    pub gauges: Vec<GaugeValue>,
    pub points: Vec<serde_json::Value>,
    pub counters: Vec<SampledValue>,
    pub samples: Vec<SampledValue>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GaugeValue {
    pub name: String,
    pub value: f64,
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SampledValue {
    pub name: String,
    pub count: u64,
    pub rate: f64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    pub stddev: f64,
    pub labels: BTreeMap<String, String>,
}

impl Collected {
    pub fn to_json(&self, now: chrono::DateTime<chrono::Utc>) -> Summary {
        let labels = |l: &Labels| l.iter().cloned().collect::<BTreeMap<_, _>>();
        let uptime = self.uptime.max(1.0);
        let sampled = |v: &[(SeriesKey, Aggregate)]| {
            v.iter()
                .map(|((name, l), a)| SampledValue {
                    name: name.clone(),
                    count: a.count,
                    rate: a.sum / uptime,
                    sum: a.sum,
                    min: a.min,
                    max: a.max,
                    mean: a.mean(),
                    stddev: a.stddev(),
                    labels: labels(l),
                })
                .collect()
        };
        Summary {
            // Go's time.Time text, as Nomad's sink prints its interval.
            timestamp: now.format("%Y-%m-%d %H:%M:%S %z UTC").to_string(),
            gauges: self
                .gauges
                .iter()
                .map(|g| GaugeValue {
                    name: g.name.clone(),
                    value: g.value,
                    labels: labels(&g.labels),
                })
                .collect(),
            points: Vec::new(),
            counters: sampled(&self.counters),
            samples: sampled(&self.samples),
        }
    }

    /// The Prometheus text exposition format (0.0.4): Nomad's names with every character
    /// Prometheus does not allow (the dots) turned into `_`; timers are summaries in
    /// milliseconds with the 0.5, 0.9 and 0.99 quantiles of their newest values.
    pub fn to_prometheus(&self) -> String {
        let mut out = String::new();
        let mut last = String::new();
        for g in &self.gauges {
            let name = prom_name(&g.name);
            if name != last {
                let _ = writeln!(out, "# HELP {name} {}\n# TYPE {name} gauge", g.name);
                last = name.clone();
            }
            let _ = writeln!(
                out,
                "{name}{} {}",
                prom_labels(&g.labels, None),
                prom_value(g.value)
            );
        }
        for ((raw, labels), a) in &self.counters {
            let name = prom_name(raw);
            if name != last {
                let _ = writeln!(out, "# HELP {name} {raw}\n# TYPE {name} counter");
                last = name.clone();
            }
            let _ = writeln!(
                out,
                "{name}{} {}",
                prom_labels(labels, None),
                prom_value(a.sum)
            );
        }
        for ((raw, labels), a) in &self.samples {
            let name = prom_name(raw);
            if name != last {
                let _ = writeln!(out, "# HELP {name} {raw}\n# TYPE {name} summary");
                last = name.clone();
            }
            for q in ["0.5", "0.9", "0.99"] {
                if let Some(v) = a.quantile(q.parse().unwrap_or(0.5)) {
                    let _ = writeln!(
                        out,
                        "{name}{} {}",
                        prom_labels(labels, Some(q)),
                        prom_value(v)
                    );
                }
            }
            let l = prom_labels(labels, None);
            let _ = writeln!(out, "{name}_sum{l} {}", prom_value(a.sum));
            let _ = writeln!(out, "{name}_count{l} {}", a.count);
        }
        out
    }
}

/// A metric or label name Prometheus accepts: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn prom_name(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() || s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert(0, '_');
    }
    s
}

fn prom_labels(labels: &Labels, quantile: Option<&str>) -> String {
    let mut parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{}=\"{}\"", prom_name(k).replace(':', "_"), escape(v)))
        .collect();
    if let Some(q) = quantile {
        parts.push(format!("quantile=\"{q}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn prom_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

/// This process's resident memory in bytes (`/proc/self/statm`), 0 where unreadable.
pub fn resident_bytes() -> u64 {
    let page = 4096;
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * page)
}

/// Gauges every agent reports: uptime and runtime (tokio tasks stand for goroutines).
pub fn runtime_gauges(registry: &Registry) -> Vec<Gauge> {
    let mut g = vec![
        Gauge::new("nomad.uptime", &[], registry.uptime().as_secs_f64().floor()),
        Gauge::new("nomad.runtime.alloc_bytes", &[], resident_bytes() as f64),
        Gauge::new("nomad.runtime.sys_bytes", &[], resident_bytes() as f64),
    ];
    if let Ok(h) = tokio::runtime::Handle::try_current() {
        let m = h.metrics();
        g.push(Gauge::new(
            "nomad.runtime.num_goroutines",
            &[],
            m.num_alive_tasks() as f64,
        ));
        g.push(Gauge::new(
            "nomad.runtime.num_workers",
            &[],
            m.num_workers() as f64,
        ));
    }
    g
}

/// A server's gauges, read at scrape time. Leadership and peers on every server; the
/// broker, plan queue, heartbeats and job summaries on the leader only, as Nomad emits
/// them (a follower's would be empty or double-counted).
pub fn server_gauges(srv: &crate::Server) -> Vec<Gauge> {
    let leader = srv.is_leader();
    let raft = srv.raft.metrics().borrow().clone();
    let voters = raft.membership_config.membership().voter_ids().count();
    let mut g = vec![
        Gauge::new(
            "nomad.nomad.leader.is_leader",
            &[],
            f64::from(u8::from(leader)),
        ),
        Gauge::new("nomad.raft.peers", &[], voters as f64),
        Gauge::new(
            "nomad.raft.appliedIndex",
            &[],
            raft.last_applied.map_or(0, |l| l.index) as f64,
        ),
    ];
    if !leader {
        return g;
    }
    let b = srv.broker.stats();
    g.push(Gauge::new(
        "nomad.nomad.broker.total_ready",
        &[],
        b.ready as f64,
    ));
    g.push(Gauge::new(
        "nomad.nomad.broker.total_unacked",
        &[],
        b.unacked as f64,
    ));
    g.push(Gauge::new(
        "nomad.nomad.broker.total_blocked",
        &[],
        b.blocked as f64,
    ));
    g.push(Gauge::new(
        "nomad.nomad.blocked_evals.total_blocked",
        &[],
        b.blocked as f64,
    ));
    let queued = srv.plans.max_capacity() - srv.plans.capacity();
    g.push(Gauge::new(
        "nomad.nomad.plan.queue_depth",
        &[],
        queued as f64,
    ));
    g.push(Gauge::new(
        "nomad.nomad.heartbeat.active",
        &[],
        srv.heartbeats.active() as f64,
    ));
    g.extend(job_gauges(&srv.snapshot()));
    g
}

/// `nomad.nomad.job_summary.*` per job and task group, `nomad.nomad.job_status.*` totals.
pub fn job_gauges(state: &crate::state::StateStore) -> Vec<Gauge> {
    let mut g = Vec::new();
    let mut by_status: BTreeMap<&str, u64> = [("pending", 0), ("running", 0), ("dead", 0)]
        .into_iter()
        .collect();
    for job in state.job_table().values() {
        *by_status.entry(job.status.as_str()).or_default() += 1;
        let summary = state.job_summary(job);
        for (group, s) in &summary.summary {
            let labels = [
                ("job", job.id.as_str()),
                ("task_group", group.as_str()),
                ("namespace", job.ns()),
            ];
            for (what, n) in [
                ("queued", s.queued),
                ("complete", s.complete),
                ("failed", s.failed),
                ("running", s.running),
                ("starting", s.starting),
                ("lost", s.lost),
                ("unknown", s.unknown),
            ] {
                let name = format!("nomad.nomad.job_summary.{what}");
                g.push(Gauge::new(&name, &labels, n as f64));
            }
        }
    }
    for (status, n) in by_status {
        if matches!(status, "pending" | "running" | "dead") {
            g.push(Gauge::new(
                &format!("nomad.nomad.job_status.{status}"),
                &[],
                n as f64,
            ));
        }
    }
    g
}

/// Milliseconds since `start`, as go-metrics' `MeasureSince` records timers.
pub fn ms_since(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregates_keep_go_metrics_figures() {
        let mut a = Aggregate::default();
        for v in [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0] {
            a.add(v);
        }
        assert_eq!((a.count, a.sum, a.min, a.max), (8, 40.0, 2.0, 9.0));
        assert_eq!(a.mean(), 5.0);
        assert!((a.stddev() - 2.138).abs() < 0.001, "{}", a.stddev());
        assert_eq!(a.quantile(0.5), Some(4.0));
        assert_eq!(a.quantile(0.99), Some(9.0));
        a.add(f64::NAN);
        assert_eq!(a.count, 8, "a NaN is not a measurement");
    }

    #[test]
    fn prometheus_text_uses_nomads_names_with_underscores() {
        let mut commit = Aggregate::default();
        commit.add(1.5);
        let c = Collected {
            uptime: 10.0,
            gauges: vec![
                Gauge::new("nomad.nomad.broker.total_ready", &[], 3.0),
                Gauge::new(
                    "nomad.nomad.job_summary.running",
                    &[("job", "we\"b"), ("task_group", "g")],
                    2.0,
                ),
            ],
            counters: vec![],
            samples: vec![(("nomad.raft.commitTime".into(), vec![]), commit)],
        };
        let text = c.to_prometheus();
        assert!(
            text.contains(
                "# TYPE nomad_nomad_broker_total_ready gauge\nnomad_nomad_broker_total_ready 3\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("nomad_nomad_job_summary_running{job=\"we\\\"b\",task_group=\"g\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE nomad_raft_commitTime summary"),
            "{text}"
        );
        assert!(
            text.contains("nomad_raft_commitTime{quantile=\"0.5\"} 1.5"),
            "{text}"
        );
        assert!(text.contains("nomad_raft_commitTime_count 1"), "{text}");
        let json = serde_json::to_value(c.to_json(chrono::Utc::now())).unwrap();
        assert_eq!(json["Samples"][0]["Name"], "nomad.raft.commitTime");
        assert_eq!(json["Samples"][0]["Mean"], 1.5);
        assert_eq!(json["Gauges"][1]["Labels"]["task_group"], "g");
        assert!(json["Points"].as_array().unwrap().is_empty());
    }

    #[test]
    fn names_prometheus_refuses_are_made_acceptable() {
        assert_eq!(
            prom_name("nomad.client.host.memory.total"),
            "nomad_client_host_memory_total"
        );
        assert_eq!(prom_name("9lives-x"), "_9lives_x");
        assert_eq!(prom_name(""), "_");
    }
}
