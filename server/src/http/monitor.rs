//! `GET /v1/agent/monitor?log_level=&log_json=&plain=`: this agent's log lines as they
//! are written, in Nomad's shape: a stream of `StreamFrame` JSON objects whose `Data` is
//! the base64 of one or more lines (`plain=true`: the lines themselves), with an empty
//! `{}` frame as a heartbeat. Lines come from [`crate::log_monitor`]; the stream lasts
//! until the reader goes away.

use super::{ApiErr, AppState, QueryParams};
use crate::log_monitor::{parse_level, Received, Subscription};
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::Deserialize;
use std::time::Duration;

/// How often an idle stream sends its `{}`, so a reader that left is noticed.
const HEARTBEAT: Duration = Duration::from_secs(10);

#[derive(Debug, Default, Deserialize)]
pub struct MonitorQuery {
    log_level: Option<String>,
    log_json: Option<String>,
    plain: Option<String>,
    node_id: Option<String>,
    server_id: Option<String>,
}

pub async fn monitor(
    State(srv): State<AppState>,
    Query(q): Query<MonitorQuery>,
) -> Result<Response, ApiErr> {
    if [&q.node_id, &q.server_id]
        .iter()
        .any(|v| v.as_deref().is_some_and(|s| !s.trim().is_empty()))
    {
        return Err(ApiErr(
            StatusCode::NOT_IMPLEMENTED,
            "monitoring another agent (node_id, server_id) is not supported yet: ask that \
             agent's own HTTP address"
                .into(),
        ));
    }
    let Some(logs) = srv.config.log_monitor.clone() else {
        return Err(ApiErr(
            StatusCode::NOT_IMPLEMENTED,
            "this agent does not stream its logs".into(),
        ));
    };
    let raw_level = q.log_level.as_deref().unwrap_or("");
    let level = parse_level(raw_level).ok_or_else(|| {
        ApiErr::bad_request(format!(
            "unknown log level {raw_level:?}: use trace, debug, info, warn or error"
        ))
    })?;
    let json = QueryParams::parse_bool("log_json", &q.log_json)?;
    let plain = QueryParams::parse_bool("plain", &q.plain)?;
    let sub = logs.subscribe(level);
    tracing::debug!(%level, json, "log monitor attached");
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    heartbeat.reset();
    let state = Streaming {
        sub,
        heartbeat,
        json,
        plain,
    };
    let body = futures_util::stream::unfold(state, |mut s| async move {
        let chunk = s.next_chunk().await?;
        Some((Ok::<_, std::convert::Infallible>(chunk), s))
    });
    let content_type = if plain {
        "text/plain"
    } else {
        "application/json"
    };
    Ok((
        [(header::CONTENT_TYPE, content_type)],
        Body::from_stream(body),
    )
        .into_response())
}

struct Streaming {
    sub: Subscription,
    heartbeat: tokio::time::Interval,
    json: bool,
    plain: bool,
}

impl Streaming {
    async fn next_chunk(&mut self) -> Option<Bytes> {
        let text = tokio::select! {
            _ = self.heartbeat.tick() => {
                let beat: &'static [u8] = if self.plain { b"" } else { b"{}\n" };
                return Some(Bytes::from_static(beat));
            }
            r = self.sub.recv() => match r {
                Received::Line(l) if self.json => l.json(),
                Received::Line(l) => l.text(),
                Received::Missed(n) => format!(
                    "[WARN] monitor: {n} log lines were dropped because this reader fell behind\n"
                ),
                Received::Closed => return None,
            },
        };
        self.heartbeat.reset();
        Some(frame(text.as_bytes(), self.plain))
    }
}

/// One `StreamFrame` (or the bytes themselves when `plain`).
fn frame(data: &[u8], plain: bool) -> Bytes {
    if plain {
        return Bytes::copy_from_slice(data);
    }
    let v = serde_json::json!({
        "Offset": 0,
        "Data": base64::engine::general_purpose::STANDARD.encode(data),
        "File": "",
        "FileEvent": "",
    });
    let mut out = v.to_string().into_bytes();
    out.push(b'\n');
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_carries_the_line_base64_encoded_as_nomads_stream_frame() {
        let f = frame(b"hello\n", false);
        let v: serde_json::Value = serde_json::from_slice(&f).unwrap();
        assert_eq!(v["Data"], "aGVsbG8K");
        assert_eq!(v["Offset"], 0);
        assert_eq!(&frame(b"hello\n", true)[..], b"hello\n");
    }
}
