//! `GET /v1/metrics`: this agent's metrics (`crate::metrics`) in Nomad's JSON, or with
//! `?format=prometheus` in the Prometheus text format. Served by every server itself,
//! never forwarded to the leader.

use super::{ApiErr, ApiResult, AppState};
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
pub struct MetricsQuery {
    format: Option<String>,
}

/// The content type Prometheus expects of the text format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

pub async fn metrics(State(srv): State<AppState>, Query(q): Query<MetricsQuery>) -> ApiResult {
    let registry = crate::metrics::global();
    let mut collected = registry.collect();
    collected
        .gauges
        .extend(crate::metrics::runtime_gauges(registry));
    match q.format.as_deref() {
        None | Some("") | Some("json") => {
            Ok(axum::Json(collected.to_json(chrono::Utc::now())).into_response())
        }
        Some("prometheus") if srv.config.prometheus_metrics => Ok((
            [(header::CONTENT_TYPE, PROMETHEUS_TEXT)],
            collected.to_prometheus(),
        )
            .into_response()),
        // Nomad's sentence when the sink is off.
        Some("prometheus") => Err(ApiErr(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Prometheus is not enabled: set telemetry { prometheus_metrics = true } in the \
             agent configuration"
                .into(),
        )),
        Some(other) => Err(ApiErr::bad_request(format!(
            "unsupported metrics format {other:?}: use no format (JSON) or format=prometheus"
        ))),
    }
}
