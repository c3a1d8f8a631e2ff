//! The event stream (`GET /v1/event/stream`).

use super::*;

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

/// An open event stream: [`EventStream::next`] reads it frame by frame.
pub struct EventStream {
    lines: stream::JsonLines,
}

impl EventStream {
    /// The next frame (heartbeats included); `None` once the server ended the stream.
    pub async fn next(&mut self) -> Option<Result<EventFrame, ApiError>> {
        self.lines.next().await
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
        let lines = self
            .open_json_lines("/v1/event/stream", &query, "event stream")
            .await?;
        Ok(EventStream { lines })
    }
}
