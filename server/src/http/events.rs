//! `GET /v1/event/stream`: the events this server applied, as Nomad streams them.
//!
//! NDJSON: one `{"Index": n, "Events": [...]}` line per Raft entry with events that pass
//! the subscriber's filter, and a `{}` heartbeat at connect and every
//! `ServerConfig::event_heartbeat`. Query: `index` (start there, as far back as the buffer
//! reaches), `topic=Topic:key` (repeatable, `*` wildcards), `namespace` (`*` for all).
//! Every server answers from its own buffer (`forward.rs` never relays it), and the
//! stream stays open until the client closes it, unless the client reads so slowly that
//! the buffer drops events it has not been sent: then a last `{"Error": "..."}` line
//! says so and the stream ends.

use super::{ApiErr, AppState};
use crate::events::{Event, Frame, Payload, Subscription};
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde::Serialize;
use std::net::SocketAddr;
use std::time::Duration;

/// One event as Nomad's JSON has it.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct EventJson<'a> {
    topic: &'static str,
    #[serde(rename = "Type")]
    kind: &'static str,
    key: &'a str,
    namespace: &'a str,
    filter_keys: Option<&'a [String]>,
    index: u64,
    payload: serde_json::Value,
}

/// An event's payload: `{"Job": ...}`, `{"Allocation": ...}` (without its job),
/// `{"Evaluation": ...}`, `{"Node": ...}` (without its secret), `{"<name>": ...}`.
fn payload_json(p: &Payload) -> serde_json::Result<serde_json::Value> {
    let (name, value) = match p {
        Payload::Job(j) => ("Job", serde_json::to_value(&**j)?),
        Payload::Allocation(a) => {
            let mut v = serde_json::to_value(&**a)?;
            if let Some(o) = v.as_object_mut() {
                o.insert("Job".into(), serde_json::Value::Null);
            }
            ("Allocation", v)
        }
        Payload::Evaluation(e) => ("Evaluation", serde_json::to_value(&**e)?),
        Payload::Node(n) => ("Node", serde_json::to_value(super::nodes::redacted(n))?),
        Payload::Other(name, v) => (*name, v.to_json()?),
    };
    Ok(serde_json::json!({ name: value }))
}

/// An event's JSON text (made once per event, shared by every stream that sends it).
fn encode(e: &Event) -> String {
    let payload = payload_json(&e.payload).unwrap_or_else(|err| {
        tracing::warn!(topic = e.topic.as_str(), key = %e.key, error = %err, "cannot encode an event's payload");
        serde_json::Value::Null
    });
    let json = EventJson {
        topic: e.topic.as_str(),
        kind: e.kind,
        key: &e.key,
        namespace: &e.namespace,
        filter_keys: (!e.filter_keys.is_empty()).then_some(e.filter_keys.as_slice()),
        index: e.index,
        payload,
    };
    serde_json::to_string(&json).unwrap_or_else(|_| "null".into())
}

/// One NDJSON line for a frame.
fn frame_line(f: &Frame, out: &mut String) {
    out.push_str("{\"Index\":");
    out.push_str(&f.index.to_string());
    out.push_str(",\"Events\":[");
    for (i, e) in f.events.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&e.encoded(encode));
    }
    out.push_str("]}\n");
}

const HEARTBEAT: &str = "{}\n";

/// How many event streams one client address may hold: half its connections, so its
/// streams never leave it unable to make other requests (0: no limit).
fn streams_per_client(max_conns_per_client: usize) -> usize {
    match max_conns_per_client {
        0 => 0,
        n => (n / 2).max(1),
    }
}

/// The stream's state between chunks.
struct Streaming {
    sub: Subscription,
    heartbeat: tokio::time::Interval,
    /// Sent the connect heartbeat.
    greeted: bool,
    /// Sent the last line (lagged): end after it.
    done: bool,
}

impl Streaming {
    /// The next chunk: the heartbeat at connect, then events as they are published, with
    /// a heartbeat whenever the interval passes.
    async fn next_chunk(&mut self) -> Option<Bytes> {
        if self.done {
            return None;
        }
        if !self.greeted {
            self.greeted = true;
            self.heartbeat.reset();
            return Some(Bytes::from_static(HEARTBEAT.as_bytes()));
        }
        loop {
            if self.sub.closed() {
                return None;
            }
            match self.sub.read() {
                Ok(frames) if !frames.is_empty() => {
                    let mut out = String::new();
                    for f in &frames {
                        frame_line(f, &mut out);
                    }
                    return Some(Bytes::from(out));
                }
                Ok(_) => {}
                Err(lagged) => {
                    self.done = true;
                    let line = serde_json::json!({ "Error": lagged.to_string() });
                    return Some(Bytes::from(format!("{line}\n")));
                }
            }
            tokio::select! {
                _ = self.heartbeat.tick() => {
                    return Some(Bytes::from_static(HEARTBEAT.as_bytes()));
                }
                _ = self.sub.changed() => {}
            }
        }
    }
}

/// `GET /v1/event/stream`.
pub async fn stream(
    State(srv): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Response, ApiErr> {
    let mut index = 0;
    let mut namespace = None;
    let mut topics = Vec::new();
    for (k, v) in &params {
        match k.as_str() {
            "index" if !v.is_empty() => {
                index = v.parse::<u64>().map_err(|_| {
                    ApiErr::bad_request(format!("invalid index {v:?}: expected an integer"))
                })?;
            }
            "namespace" => namespace = Some(v.as_str()),
            "topic" => topics.push(v.as_str()),
            _ => {}
        }
    }
    let filter = crate::events::Filter::parse(topics, namespace).map_err(ApiErr::bad_request)?;
    let sub = match peer {
        Some(Extension(ConnectInfo(addr))) => {
            let max = streams_per_client(srv.config.http_limits.max_conns_per_client);
            srv.events
                .subscribe_client(addr.ip(), max, index, filter)
                .map_err(|e| ApiErr(StatusCode::TOO_MANY_REQUESTS, e.to_string()))?
        }
        None => srv.events.subscribe(index, filter),
    };
    let period = srv.config.event_heartbeat.max(Duration::from_millis(10));
    let mut heartbeat = tokio::time::interval(period);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let state = Streaming {
        sub,
        heartbeat,
        greeted: false,
        done: false,
    };
    let body = futures_util::stream::unfold(state, |mut s| async move {
        let chunk = s.next_chunk().await?;
        Some((Ok::<_, std::convert::Infallible>(chunk), s))
    });
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(body),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{EventBroker, Filter};
    use std::sync::Arc;

    fn stamped(mut e: Event, index: u64, kind: &'static str) -> Event {
        e.index = index;
        e.typed(Some(kind))
    }

    #[test]
    fn a_node_event_never_carries_the_node_secret() {
        let node = Arc::new(api::Node {
            id: "n1".into(),
            secret_id: "s3cret-value".into(),
            ..Default::default()
        });
        let text = encode(&stamped(Event::node(&node), 4, "NodeRegistration"));
        assert!(!text.contains("s3cret-value"), "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["Topic"], "Node");
        assert_eq!(v["Type"], "NodeRegistration");
        assert_eq!(v["Key"], "n1");
        assert_eq!(v["Namespace"], "");
        assert_eq!(v["FilterKeys"], serde_json::Value::Null);
        assert_eq!(v["Payload"]["Node"]["ID"], "n1");
    }

    #[test]
    fn an_allocation_event_is_sent_without_its_job_and_names_the_job_as_filter_key() {
        let job = Arc::new(api::Job {
            id: "web".into(),
            ..Default::default()
        });
        let a = Arc::new(api::Allocation {
            id: "a1".into(),
            namespace: "default".into(),
            job_id: "web".into(),
            job: Some(job),
            ..Default::default()
        });
        let text = encode(&stamped(Event::alloc(&a), 9, "PlanResult"));
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["Payload"]["Allocation"]["ID"], "a1");
        assert_eq!(v["Payload"]["Allocation"]["Job"], serde_json::Value::Null);
        assert_eq!(v["FilterKeys"], serde_json::json!(["web"]));
        assert_eq!(
            (v["Index"].as_u64(), &v["Type"]),
            (Some(9), &"PlanResult".into())
        );
    }

    #[tokio::test]
    async fn the_stream_greets_then_sends_frames_and_heartbeats() {
        let broker = EventBroker::new(10);
        let job = Arc::new(api::Job {
            id: "web".into(),
            namespace: "default".into(),
            ..Default::default()
        });
        broker.publish(vec![stamped(Event::job(&job), 3, "JobRegistered")]);
        let mut s = Streaming {
            sub: broker.subscribe(0, Filter::parse(["Job:web"], None).unwrap()),
            heartbeat: tokio::time::interval(Duration::from_millis(50)),
            greeted: false,
            done: false,
        };
        let deadline = Duration::from_secs(10);
        let first = tokio::time::timeout(deadline, s.next_chunk()).await;
        assert_eq!(first.unwrap().unwrap(), HEARTBEAT.as_bytes());
        let line = tokio::time::timeout(deadline, s.next_chunk()).await;
        let v: serde_json::Value = serde_json::from_slice(&line.unwrap().unwrap()).unwrap();
        assert_eq!(v["Index"], 3);
        assert_eq!(v["Events"][0]["Type"], "JobRegistered");
        assert_eq!(v["Events"][0]["Payload"]["Job"]["ID"], "web");
        let beat = tokio::time::timeout(deadline, s.next_chunk()).await;
        assert_eq!(beat.unwrap().unwrap(), HEARTBEAT.as_bytes());
    }

    #[tokio::test]
    async fn the_stream_ends_when_the_server_shuts_down() {
        let broker = EventBroker::new(10);
        let mut s = Streaming {
            sub: broker.subscribe(0, Filter::parse([], None).unwrap()),
            heartbeat: tokio::time::interval(Duration::from_secs(3600)),
            greeted: true,
            done: false,
        };
        s.heartbeat.reset();
        broker.close();
        let end = tokio::time::timeout(Duration::from_secs(10), s.next_chunk()).await;
        assert_eq!(end.expect("ends at once"), None);
    }

    #[test]
    fn a_client_may_hold_streams_on_half_its_connections() {
        assert_eq!(streams_per_client(100), 50);
        assert_eq!(streams_per_client(1), 1);
        assert_eq!(streams_per_client(0), 0);
    }
}
