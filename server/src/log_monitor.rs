//! The agent's own log lines for `GET /v1/agent/monitor` (`drover monitor`).
//!
//! The binary's tracing layer hands each event to [`LogMonitor::publish`], which fans it
//! out on a bounded broadcast channel. Nothing is formatted or sent while no monitor
//! listens: the layer's level hint is [`LogMonitor::max_level`] (so a `debug!` the agent
//! does not log stays behind tracing's global level check) and it asks
//! [`LogMonitor::wants`] before formatting, a few relaxed atomic loads. Each
//! [`Subscription`] names the most verbose level it wants, so a monitor at `debug` hears
//! debug lines even while the agent logs at `info`, as Nomad's monitor does; a reader
//! that falls behind loses lines (and is told how many), never slows the agent.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::broadcast;
use tracing::Level;

/// Lines kept for a slow reader before it starts losing them.
const BUFFER: usize = 1024;

/// One log event, with the fields the layer saw, formatted for each reader as it asks.
#[derive(Debug, Clone)]
pub struct LogLine {
    pub level: Level,
    /// RFC 3339 with milliseconds.
    pub timestamp: String,
    /// The module that logged it (`server::worker`).
    pub target: String,
    pub message: String,
    pub fields: Vec<(String, String)>,
}

impl LogLine {
    /// Nomad's text shape: `<time> [LEVEL] <module>: <message>: k=v k=v`.
    pub fn text(&self) -> String {
        let mut s = format!(
            "{} [{}] {}: {}",
            self.timestamp, self.level, self.target, self.message
        );
        for (i, (k, v)) in self.fields.iter().enumerate() {
            s.push_str(if i == 0 { ": " } else { " " });
            s.push_str(&format!("{k}={v}"));
        }
        s.push('\n');
        s
    }

    /// hclog's JSON shape (`-json`): `@level`, `@message`, `@module`, `@timestamp`, then
    /// the fields.
    pub fn json(&self) -> String {
        let mut m = serde_json::Map::new();
        m.insert(
            "@level".into(),
            self.level.as_str().to_ascii_lowercase().into(),
        );
        m.insert("@message".into(), self.message.clone().into());
        m.insert("@module".into(), self.target.clone().into());
        m.insert("@timestamp".into(), self.timestamp.clone().into());
        for (k, v) in &self.fields {
            m.entry(k.clone()).or_insert_with(|| v.clone().into());
        }
        let mut s = serde_json::Value::Object(m).to_string();
        s.push('\n');
        s
    }
}

/// The fan-out; cheap to clone (one per listener and one in the tracing layer).
#[derive(Clone)]
pub struct LogMonitor {
    inner: Arc<Inner>,
}

struct Inner {
    tx: broadcast::Sender<Arc<LogLine>>,
    /// Subscriptions per level they ask for, indexed by [`rank`].
    wanted: [AtomicUsize; 5],
}

impl std::fmt::Debug for LogMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogMonitor")
            .field("subscribers", &self.inner.tx.receiver_count())
            .finish()
    }
}

impl Default for LogMonitor {
    fn default() -> Self {
        Self::new()
    }
}

/// 0 for error up to 4 for trace: a subscription at rank r wants every event at rank <= r.
fn rank(level: &Level) -> usize {
    match *level {
        Level::ERROR => 0,
        Level::WARN => 1,
        Level::INFO => 2,
        Level::DEBUG => 3,
        Level::TRACE => 4,
    }
}

impl LogMonitor {
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(BUFFER);
        LogMonitor {
            inner: Arc::new(Inner {
                tx,
                wanted: Default::default(),
            }),
        }
    }

    /// Does any monitor want events at `level`? The layer's first question, every event.
    pub fn wants(&self, level: &Level) -> bool {
        self.inner.wanted[rank(level)..]
            .iter()
            .any(|n| n.load(Ordering::Relaxed) > 0)
    }

    /// The most verbose level any monitor wants (`None`: nobody listens). The tracing
    /// layer reports it as its level hint, so with no monitor a `debug!` the agent does
    /// not log costs no more than before.
    pub fn max_level(&self) -> Option<Level> {
        [
            Level::TRACE,
            Level::DEBUG,
            Level::INFO,
            Level::WARN,
            Level::ERROR,
        ]
        .into_iter()
        .find(|l| self.inner.wanted[rank(l)].load(Ordering::Relaxed) > 0)
    }

    /// Hands a line to every monitor (those that do not want its level skip it).
    pub fn publish(&self, line: LogLine) {
        let _ = self.inner.tx.send(Arc::new(line));
    }

    /// A new listener for lines at `level` and below (more severe).
    pub fn subscribe(&self, level: Level) -> Subscription {
        // Subscribe before counting, so no line the count lets through is missed.
        let rx = self.inner.tx.subscribe();
        self.inner.wanted[rank(&level)].fetch_add(1, Ordering::Relaxed);
        // Callsites above the agent's own level become live (and dead again on drop).
        tracing::callsite::rebuild_interest_cache();
        Subscription {
            rx,
            level,
            inner: self.inner.clone(),
        }
    }
}

/// One monitor's stream of lines; dropping it stops the agent formatting for it.
pub struct Subscription {
    rx: broadcast::Receiver<Arc<LogLine>>,
    level: Level,
    inner: Arc<Inner>,
}

/// What a subscription reads next.
#[derive(Debug)]
pub enum Received {
    Line(Arc<LogLine>),
    /// The reader fell behind and this many lines were dropped.
    Missed(u64),
    Closed,
}

impl Subscription {
    /// The next line at this subscription's level.
    pub async fn recv(&mut self) -> Received {
        loop {
            match self.rx.recv().await {
                Ok(line) if line.level <= self.level => return Received::Line(line),
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(n)) => return Received::Missed(n),
                Err(broadcast::error::RecvError::Closed) => return Received::Closed,
            }
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.inner.wanted[rank(&self.level)].fetch_sub(1, Ordering::Relaxed);
        tracing::callsite::rebuild_interest_cache();
    }
}

/// A `log_level` as Nomad spells it (`INFO`, `warn`, `ERR`, ...).
pub fn parse_level(s: &str) -> Option<Level> {
    Some(match s.trim().to_ascii_lowercase().as_str() {
        "trace" => Level::TRACE,
        "debug" => Level::DEBUG,
        "" | "info" => Level::INFO,
        "warn" | "warning" => Level::WARN,
        "err" | "error" => Level::ERROR,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(level: Level, message: &str) -> LogLine {
        LogLine {
            level,
            timestamp: "2026-01-01T00:00:00.000Z".into(),
            target: "server::worker".into(),
            message: message.into(),
            fields: vec![("job".into(), "web".into())],
        }
    }

    #[test]
    fn nothing_is_wanted_until_a_monitor_subscribes_and_after_it_leaves() {
        let m = LogMonitor::new();
        assert!(!m.wants(&Level::ERROR));
        let sub = m.subscribe(Level::INFO);
        assert!(m.wants(&Level::ERROR) && m.wants(&Level::INFO));
        assert!(!m.wants(&Level::DEBUG));
        assert_eq!(m.max_level(), Some(Level::INFO));
        drop(sub);
        assert!(!m.wants(&Level::ERROR));
        assert_eq!(m.max_level(), None);
    }

    #[tokio::test]
    async fn each_subscription_gets_only_its_levels() {
        let m = LogMonitor::new();
        let mut info = m.subscribe(Level::INFO);
        let mut debug = m.subscribe(Level::DEBUG);
        m.publish(line(Level::DEBUG, "chatty"));
        m.publish(line(Level::INFO, "news"));
        let Received::Line(l) = info.recv().await else {
            panic!()
        };
        assert_eq!(l.message, "news");
        let Received::Line(l) = debug.recv().await else {
            panic!()
        };
        assert_eq!(l.message, "chatty");
    }

    #[test]
    fn text_and_json_follow_nomads_shapes() {
        let l = line(Level::DEBUG, "processing evaluation");
        assert_eq!(
            l.text(),
            "2026-01-01T00:00:00.000Z [DEBUG] server::worker: processing evaluation: job=web\n"
        );
        let v: serde_json::Value = serde_json::from_str(&l.json()).unwrap();
        assert_eq!(v["@level"], "debug");
        assert_eq!(v["@module"], "server::worker");
        assert_eq!(v["job"], "web");
    }

    #[test]
    fn nomads_level_names_parse() {
        assert_eq!(parse_level("ERR"), Some(Level::ERROR));
        assert_eq!(parse_level("Debug"), Some(Level::DEBUG));
        assert_eq!(parse_level("loud"), None);
    }
}
