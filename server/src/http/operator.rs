//! `/v1/operator/scheduler/configuration`: the cluster's scheduler settings (algorithm,
//! preemption, registration brake), stored through Raft and read by the workers.

use super::{parse_body, reply, ApiErr, ApiResult, AppState};
use crate::fsm::Command;
use crate::state::StateStore;
use api::{
    SchedulerConfiguration, SchedulerConfigurationResponse, SchedulerSetConfigurationResponse,
};
use axum::body::Bytes;
use axum::extract::{Query, State};
use serde::Deserialize;

/// Nomad's sentence when `RejectJobRegistration` is on.
pub const REGISTRATION_DISABLED: &str =
    "job registration, dispatch, and scale are disabled by the scheduler configuration";

/// Refuse a registration (or dispatch, or scale) while the operator's brake is on.
pub fn check_registration_allowed(state: &StateStore) -> Result<(), ApiErr> {
    if state.scheduler_config().reject_job_registration {
        return Err(ApiErr(
            axum::http::StatusCode::FORBIDDEN,
            REGISTRATION_DISABLED.into(),
        ));
    }
    Ok(())
}

pub async fn get_config(State(srv): State<AppState>) -> ApiResult {
    let state = srv.snapshot();
    let config = (*state.scheduler_config()).clone();
    let index = config.modify_index.max(1);
    let body = SchedulerConfigurationResponse {
        scheduler_config: config,
        index,
        last_contact: srv.last_contact_ms(),
        known_leader: true,
    };
    Ok(reply(&srv, index, &body))
}

#[derive(Debug, Default, Deserialize)]
pub struct CasQuery {
    cas: Option<String>,
}

pub async fn set_config(
    State(srv): State<AppState>,
    Query(q): Query<CasQuery>,
    body: Bytes,
) -> ApiResult {
    let mut config: SchedulerConfiguration = parse_body(&body)?;
    // Nomad's clients send an empty algorithm to mean "unchanged from the default".
    if config.scheduler_algorithm.is_empty() {
        config.scheduler_algorithm = api::SCHEDULER_ALGORITHM_BINPACK.into();
    }
    config.validate().map_err(ApiErr::bad_request)?;
    let cas = match q.cas.as_deref() {
        None | Some("") => None,
        Some(s) => Some(s.parse::<u64>().map_err(|_| {
            ApiErr::bad_request(format!("invalid cas {s:?}: expected a modify index"))
        })?),
    };
    let resp = srv
        .write(Command::SetSchedulerConfig { config, cas })
        .await?;
    let state = srv
        .wait_for_index(resp.index, srv.config.write_timeout)
        .await;
    let updated =
        state.scheduler_config_set() && state.scheduler_config().modify_index == resp.index;
    let body = SchedulerSetConfigurationResponse {
        updated,
        index: resp.index,
    };
    Ok(reply(&srv, resp.index, &body))
}
