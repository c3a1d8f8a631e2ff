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
