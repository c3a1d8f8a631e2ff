//! The tracing layer behind `drover monitor`: it copies the agent's log events into the
//! server's [`LogMonitor`] while a monitor is attached, whatever level the agent itself
//! logs at. Drover's own crates are heard at every level, dependencies (Raft, HTTP,
//! storage) from warn up, as the agent's log filter treats them.

use server::log_monitor::{LogLine, LogMonitor};
use std::fmt;
use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::filter::{Filtered, Targets};
use tracing_subscriber::layer::{Context, Filter, Layer};

/// The layer, with its per-layer filter, for `logs`; `ours` are the crates heard at every
/// level.
pub fn layer<S>(logs: LogMonitor, ours: &[&str]) -> Filtered<MonitorLayer, MonitorFilter, S>
where
    S: Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let targets = ours
        .iter()
        .fold(Targets::new().with_default(Level::WARN), |t, c| {
            t.with_target(*c, Level::TRACE)
        });
    MonitorLayer { logs: logs.clone() }.with_filter(MonitorFilter { logs, targets })
}

/// Copies each event it is given into the monitor.
pub struct MonitorLayer {
    logs: LogMonitor,
}

impl<S: Subscriber> Layer<S> for MonitorLayer {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let meta = event.metadata();
        if !self.logs.wants(meta.level()) {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        self.logs.publish(LogLine {
            level: *meta.level(),
            timestamp: chrono::Utc::now()
                .format("%Y-%m-%dT%H:%M:%S%.3fZ")
                .to_string(),
            target: meta.target().to_string(),
            message: fields.message,
            fields: fields.fields,
        });
    }
}

/// Lets an event through only while a monitor wants its level, and tells tracing the most
/// verbose level wanted, so the callsites above the agent's own level stay off otherwise.
pub struct MonitorFilter {
    logs: LogMonitor,
    targets: Targets,
}

impl<S> Filter<S> for MonitorFilter {
    fn enabled(&self, meta: &Metadata<'_>, _: &Context<'_, S>) -> bool {
        meta.is_event()
            && self.logs.wants(meta.level())
            && self.targets.would_enable(meta.target(), meta.level())
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        // Whether a monitor listens changes at run time: ask per event.
        if meta.is_event() && self.targets.would_enable(meta.target(), meta.level()) {
            Interest::sometimes()
        } else {
            Interest::never()
        }
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(
            self.logs
                .max_level()
                .map_or(LevelFilter::OFF, LevelFilter::from_level),
        )
    }
}

/// An event's message and its other fields, as text.
#[derive(Default)]
struct Fields {
    message: String,
    fields: Vec<(String, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, format!("{value:?}"));
    }
}

impl Fields {
    fn put(&mut self, field: &Field, value: String) {
        if field.name() == "message" {
            self.message = value;
        } else {
            self.fields.push((field.name().to_string(), value));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use server::log_monitor::Received;
    use tracing_subscriber::layer::SubscriberExt as _;

    #[tokio::test]
    async fn events_reach_a_monitor_at_its_level_and_nothing_is_sent_without_one() {
        let logs = LogMonitor::new();
        let subscriber = tracing_subscriber::registry().with(layer(logs.clone(), &["drover"]));
        let _guard = tracing::subscriber::set_default(subscriber);
        tracing::callsite::rebuild_interest_cache();
        tracing::debug!(target: "drover::test", job = "web", "before anyone listens");
        let mut sub = logs.subscribe(Level::DEBUG);
        tracing::debug!(target: "drover::test", job = "web", "registered");
        tracing::debug!(target: "sled::tree", "a dependency's chatter");
        tracing::warn!(target: "sled::tree", "a dependency's warning");
        let Received::Line(l) = sub.recv().await else {
            panic!("no line")
        };
        assert_eq!(l.message, "registered");
        assert_eq!(l.fields, vec![("job".to_string(), "web".to_string())]);
        let Received::Line(l) = sub.recv().await else {
            panic!("no line")
        };
        assert_eq!(l.message, "a dependency's warning");
    }
}
