//! An agent's log lines as it writes them (`GET /v1/agent/monitor`).

use super::*;
use base64::Engine as _;

/// One frame of a streamed file or log, as Nomad's `StreamFrame`; all empty is a
/// heartbeat.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct StreamFrame {
    pub offset: i64,
    /// The bytes, base64 as Go's JSON writes them.
    pub data: Option<String>,
    pub file: String,
    pub file_event: String,
}

/// An open log monitor: [`MonitorStream::next`] gives the log text as it arrives.
pub struct MonitorStream {
    lines: stream::JsonLines,
}

impl MonitorStream {
    /// The next piece of log text (whole lines; heartbeats are skipped); `None` once the
    /// agent ended the stream.
    pub async fn next(&mut self) -> Option<Result<Vec<u8>, ApiError>> {
        loop {
            let frame: StreamFrame = match self.lines.next().await? {
                Ok(f) => f,
                Err(e) => return Some(Err(e)),
            };
            let Some(data) = frame.data.filter(|d| !d.is_empty()) else {
                continue;
            };
            return Some(
                base64::engine::general_purpose::STANDARD
                    .decode(data.as_bytes())
                    .map_err(|e| ApiError::Decode {
                        addr: String::new(),
                        message: format!("a log monitor frame whose Data is not base64: {e}"),
                    }),
            );
        }
    }
}

impl Client {
    /// `GET /v1/agent/monitor`: the agent's log lines at `log_level` (Nomad's names:
    /// trace, debug, info, warn, error) and more severe, as hclog JSON with `json`.
    pub async fn agent_monitor(
        &self,
        log_level: &str,
        json: bool,
    ) -> Result<MonitorStream, ApiError> {
        let query = vec![
            ("log_level".to_string(), log_level.to_string()),
            ("log_json".to_string(), json.to_string()),
        ];
        let lines = self
            .open_json_lines("/v1/agent/monitor", &query, "log monitor")
            .await?;
        Ok(MonitorStream { lines })
    }
}
