//! `/v1/acl/*`: bootstrap, policies, tokens and roles in Nomad's shapes.
//!
//! The auth layer (`auth.rs`) has already decided whether the caller may enter each
//! route and put the resolved [`Caller`] in the request; the "own objects only" routes
//! (a client token reading its policies, roles or itself) are filtered here, where the
//! objects are. Accessors, secrets, role IDs and times are drawn here, on the leader,
//! before proposing, so the FSM stays deterministic.

use super::auth::Caller;
use super::{
    blocking, found, parse_body, reply, write_reply, ApiErr, ApiResult, AppState, QueryParams,
};
use crate::fsm::{AclCommand, Command};
use crate::now_nanos;
use acl::{
    AclPolicy, AclPolicyListStub, AclRole, AclRolePolicyLink, AclToken, AclTokenListStub,
    AclTokenRoleLink, TokenType,
};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::Extension;
use serde::Deserialize;
use std::collections::BTreeSet;

/// The file whose content (a Raft index) allows one more bootstrap.
pub const RESET_FILE: &str = "acl-bootstrap-reset";

type CallerExt = Option<Extension<Caller>>;

fn caller(c: CallerExt) -> Caller {
    c.map(|Extension(c)| c).unwrap_or_else(Caller::management)
}

fn rfc3339(nanos: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(nanos)
        .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

fn acl_index(s: &crate::state::StateStore) -> u64 {
    s.tables().acl
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct BootstrapRequest {
    bootstrap_secret: String,
}

/// The index written in `<data dir>/server/acl-bootstrap-reset`, if any.
fn reset_index(srv: &AppState) -> Result<u64, ApiErr> {
    let path = srv.config.data_dir.join(RESET_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => text.trim().parse::<u64>().map_err(|_| {
            ApiErr::bad_request(format!(
                "invalid reset index in {}: expected the integer the refused bootstrap reported",
                path.display()
            ))
        }),
        Err(_) => Ok(0),
    }
}

/// `PUT/POST /v1/acl/bootstrap`.
pub async fn bootstrap(State(srv): State<AppState>, body: Bytes) -> ApiResult {
    let req: BootstrapRequest = if body.iter().all(u8::is_ascii_whitespace) {
        BootstrapRequest::default()
    } else {
        parse_body(&body)?
    };
    let secret = if req.bootstrap_secret.is_empty() {
        uuid::Uuid::new_v4().to_string()
    } else {
        uuid::Uuid::parse_str(&req.bootstrap_secret)
            .map_err(|_| ApiErr::bad_request("BootstrapSecret must be a UUID"))?;
        req.bootstrap_secret
    };
    let reset = reset_index(&srv)?;
    let done = srv.snapshot().acl_bootstrap_index();
    if done != 0 && done != reset {
        return Err(ApiErr::bad_request(format!(
            "{} (reset index: {done})",
            crate::fsm::BOOTSTRAP_DONE
        )));
    }
    let token = AclToken {
        accessor_id: uuid::Uuid::new_v4().to_string(),
        secret_id: secret,
        name: "Bootstrap Token".into(),
        kind: TokenType::Management,
        global: true,
        create_time: rfc3339(now_nanos()),
        ..Default::default()
    };
    let accessor = token.accessor_id.clone();
    let r = srv
        .write(Command::Acl(AclCommand::Bootstrap {
            token,
            reset_index: reset,
        }))
        .await?;
    let stored = found("ACL token", &accessor, srv.snapshot().acl_token(&accessor))?;
    Ok(reply(&srv, r.index, &*stored))
}

/// The policy names a token holds, directly and through its roles.
fn policy_names(state: &crate::state::StateStore, t: &AclToken) -> BTreeSet<String> {
    let mut out: BTreeSet<String> = t.policies.iter().cloned().collect();
    for link in &t.roles {
        if let Some(r) = state.acl_role(&link.id) {
            out.extend(r.policies.iter().map(|p| p.name.clone()));
        }
    }
    out
}

fn may_see_policy(state: &crate::state::StateStore, c: &Caller, name: &str) -> bool {
    c.acl.is_management()
        || match &c.token {
            Some(t) => policy_names(state, t).contains(name),
            None => name == super::auth::ANONYMOUS_POLICY,
        }
}

pub async fn list_policies(
    State(srv): State<AppState>,
    c: CallerExt,
    Query(q): Query<QueryParams>,
) -> ApiResult {
    let c = caller(c);
    let state = blocking(&srv, &q, acl_index).await?;
    let out: Vec<AclPolicyListStub> = state
        .acl_policies()
        .values()
        .filter(|p| q.prefix_matches(&p.name) && may_see_policy(&state, &c, &p.name))
        .map(|p| AclPolicyListStub::from(&**p))
        .collect();
    Ok(reply(&srv, acl_index(&state), &out))
}

pub async fn get_policy(
    State(srv): State<AppState>,
    c: CallerExt,
    Path(name): Path<String>,
    Query(q): Query<QueryParams>,
) -> ApiResult {
    let c = caller(c);
    let state = blocking(&srv, &q, acl_index).await?;
    if !may_see_policy(&state, &c, &name) {
        return Err(super::auth::denied());
    }
    let p = found("ACL policy", &name, state.acl_policy(&name))?;
    Ok(reply(&srv, acl_index(&state), &*p))
}

pub async fn put_policy(
    State(srv): State<AppState>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult {
    let mut p: AclPolicy = parse_body(&body)?;
    if p.name.is_empty() {
        p.name = name.clone();
    }
    if p.name != name {
        return Err(ApiErr::bad_request(format!(
            "policy name {:?} in the body does not match {name:?} in the URL",
            p.name
        )));
    }
    if p.rules.is_empty() {
        // Nomad takes an empty rules text as a policy that grants nothing (python-nomad's
        // suite creates one); `Policy::parse` refuses it, so only the rest is checked.
        acl::validate_policy_name(&p.name).map_err(ApiErr::bad_request)?;
        if p.description.len() > acl::types::MAX_DESCRIPTION_LEN {
            return Err(ApiErr::bad_request(format!(
                "description longer than {} bytes",
                acl::types::MAX_DESCRIPTION_LEN
            )));
        }
    } else {
        p.validate().map_err(ApiErr::bad_request)?;
    }
    let r = srv
        .write(Command::Acl(AclCommand::UpsertPolicies {
            policies: vec![p],
        }))
        .await?;
    Ok(write_reply(&srv, r.index))
}

pub async fn delete_policy(State(srv): State<AppState>, Path(name): Path<String>) -> ApiResult {
    let r = srv
        .write(Command::Acl(AclCommand::DeletePolicies {
            names: vec![name],
        }))
        .await?;
    Ok(write_reply(&srv, r.index))
}

pub async fn list_tokens(State(srv): State<AppState>, Query(q): Query<QueryParams>) -> ApiResult {
    let state = blocking(&srv, &q, acl_index).await?;
    let out: Vec<AclTokenListStub> = state
        .acl_tokens()
        .values()
        .filter(|t| q.prefix_matches(&t.accessor_id))
        .map(|t| AclTokenListStub::from(&**t))
        .collect();
    Ok(reply(&srv, acl_index(&state), &out))
}

/// Role links by ID or name, completed from the state; an unknown one is a 400.
fn resolve_roles(
    state: &crate::state::StateStore,
    links: &[AclTokenRoleLink],
) -> Result<Vec<AclTokenRoleLink>, ApiErr> {
    links
        .iter()
        .map(|l| {
            let role = if l.id.is_empty() {
                state.acl_role_by_name(&l.name)
            } else {
                state.acl_role(&l.id)
            };
            let label = if l.id.is_empty() { &l.name } else { &l.id };
            let r =
                role.ok_or_else(|| ApiErr::bad_request(format!("cannot find ACL role {label:?}")))?;
            Ok(AclTokenRoleLink {
                id: r.id.clone(),
                name: r.name.clone(),
            })
        })
        .collect()
}

/// Nomad's checks on what a token create or update asks for.
fn check_token(
    srv: &AppState,
    state: &crate::state::StateStore,
    t: &mut AclToken,
    now: i64,
) -> Result<(), ApiErr> {
    t.roles = resolve_roles(state, &t.roles)?;
    t.validate().map_err(ApiErr::bad_request)?;
    let min = srv.config.acl.token_min_expiration_ttl.as_nanos() as i64;
    let max = srv.config.acl.token_max_expiration_ttl.as_nanos() as i64;
    let out_of_bounds = || {
        ApiErr::bad_request(format!(
            "expiration time cannot be less than {} or more than {} in the future",
            acl::types::format_go_duration(min),
            acl::types::format_go_duration(max)
        ))
    };
    if t.expiration_ttl != 0 {
        if !(min..=max).contains(&t.expiration_ttl) {
            return Err(out_of_bounds());
        }
        t.expiration_time = Some(rfc3339(now + t.expiration_ttl));
    } else if let Some(at) = &t.expiration_time {
        let at = chrono::DateTime::parse_from_rfc3339(at)
            .map_err(|e| ApiErr::bad_request(format!("invalid ExpirationTime {at:?}: {e}")))?;
        let ttl = at
            .timestamp_nanos_opt()
            .unwrap_or(i64::MAX)
            .saturating_sub(now);
        if !(min..=max).contains(&ttl) {
            return Err(out_of_bounds());
        }
    }
    Ok(())
}

/// `POST /v1/acl/token`.
pub async fn create_token(State(srv): State<AppState>, body: Bytes) -> ApiResult {
    let mut t: AclToken = parse_body(&body)?;
    if !t.accessor_id.is_empty() {
        return Err(ApiErr::bad_request(
            "AccessorID must be empty to create a token; to update one, POST to /v1/acl/token/<accessor>",
        ));
    }
    let now = now_nanos();
    check_token(&srv, &srv.snapshot(), &mut t, now)?;
    t.accessor_id = uuid::Uuid::new_v4().to_string();
    t.secret_id = uuid::Uuid::new_v4().to_string();
    t.create_time = rfc3339(now);
    write_token(&srv, t).await
}

async fn write_token(srv: &AppState, t: AclToken) -> ApiResult {
    let accessor = t.accessor_id.clone();
    let r = srv
        .write(Command::Acl(AclCommand::UpsertTokens { tokens: vec![t] }))
        .await?;
    let stored = found("ACL token", &accessor, srv.snapshot().acl_token(&accessor))?;
    Ok(reply(srv, r.index, &*stored))
}

/// `POST /v1/acl/token/:accessor`: name, type, policies, roles and `Global` change; the
/// secret, creation time and expiry are kept.
pub async fn update_token(
    State(srv): State<AppState>,
    Path(accessor): Path<String>,
    body: Bytes,
) -> ApiResult {
    let mut t: AclToken = parse_body(&body)?;
    if !t.accessor_id.is_empty() && t.accessor_id != accessor {
        return Err(ApiErr::bad_request(format!(
            "AccessorID {:?} in the body does not match {accessor:?} in the URL",
            t.accessor_id
        )));
    }
    let state = srv.snapshot();
    let old = found("ACL token", &accessor, state.acl_token(&accessor))?;
    t.accessor_id = old.accessor_id.clone();
    t.secret_id = old.secret_id.clone();
    t.create_time = old.create_time.clone();
    t.expiration_ttl = 0;
    t.expiration_time = None;
    check_token(&srv, &state, &mut t, now_nanos())?;
    t.expiration_time = old.expiration_time.clone();
    t.expiration_ttl = old.expiration_ttl;
    write_token(&srv, t).await
}

pub async fn get_token(
    State(srv): State<AppState>,
    c: CallerExt,
    Path(accessor): Path<String>,
    Query(q): Query<QueryParams>,
) -> ApiResult {
    let c = caller(c);
    let own = c.token.as_ref().is_some_and(|t| t.accessor_id == accessor);
    if !c.acl.is_management() && !own {
        return Err(super::auth::denied());
    }
    let state = blocking(&srv, &q, acl_index).await?;
    let t = found("ACL token", &accessor, state.acl_token(&accessor))?;
    Ok(reply(&srv, acl_index(&state), &*t))
}

/// `GET /v1/acl/token/self`: the caller's token (the anonymous one without a token).
pub async fn token_self(State(srv): State<AppState>, c: CallerExt) -> ApiResult {
    let c = caller(c);
    let state = srv.snapshot();
    let t = c.token.map(|t| (*t).clone()).unwrap_or_else(|| AclToken {
        accessor_id: "anonymous".into(),
        name: "Anonymous Token".into(),
        kind: TokenType::Client,
        policies: vec![super::auth::ANONYMOUS_POLICY.into()],
        global: true,
        ..Default::default()
    });
    Ok(reply(&srv, acl_index(&state), &t))
}

pub async fn delete_token(State(srv): State<AppState>, Path(accessor): Path<String>) -> ApiResult {
    let r = srv
        .write(Command::Acl(AclCommand::DeleteTokens {
            accessors: vec![accessor],
        }))
        .await?;
    Ok(write_reply(&srv, r.index))
}

fn may_see_role(c: &Caller, id: &str) -> bool {
    c.acl.is_management()
        || c.token
            .as_ref()
            .is_some_and(|t| t.roles.iter().any(|r| r.id == id))
}

pub async fn list_roles(
    State(srv): State<AppState>,
    c: CallerExt,
    Query(q): Query<QueryParams>,
) -> ApiResult {
    let c = caller(c);
    let state = blocking(&srv, &q, acl_index).await?;
    let out: Vec<AclRole> = state
        .acl_roles()
        .values()
        .filter(|r| q.prefix_matches(&r.id) && may_see_role(&c, &r.id))
        .map(|r| (**r).clone())
        .collect();
    Ok(reply(&srv, acl_index(&state), &out))
}

fn role_reply(
    srv: &AppState,
    c: &Caller,
    role: Option<std::sync::Arc<AclRole>>,
    what: &str,
) -> ApiResult {
    let state = srv.snapshot();
    let r = found("ACL role", what, role)?;
    if !may_see_role(c, &r.id) {
        return Err(super::auth::denied());
    }
    Ok(reply(srv, acl_index(&state), &*r))
}

pub async fn get_role(
    State(srv): State<AppState>,
    c: CallerExt,
    Path(id): Path<String>,
) -> ApiResult {
    let role = srv.snapshot().acl_role(&id);
    role_reply(&srv, &caller(c), role, &id)
}

pub async fn get_role_by_name(
    State(srv): State<AppState>,
    c: CallerExt,
    Path(name): Path<String>,
) -> ApiResult {
    let role = srv.snapshot().acl_role_by_name(&name);
    role_reply(&srv, &caller(c), role, &name)
}

fn check_role(state: &crate::state::StateStore, r: &mut AclRole) -> Result<(), ApiErr> {
    r.validate().map_err(ApiErr::bad_request)?;
    let mut seen = BTreeSet::new();
    r.policies.retain(|p| seen.insert(p.name.clone()));
    for AclRolePolicyLink { name } in &r.policies {
        if state.acl_policy(name).is_none() {
            return Err(ApiErr::bad_request(format!("cannot find policy {name:?}")));
        }
    }
    Ok(())
}

async fn write_role(srv: &AppState, r: AclRole) -> ApiResult {
    let id = r.id.clone();
    let resp = srv
        .write(Command::Acl(AclCommand::UpsertRoles { roles: vec![r] }))
        .await?;
    let stored = found("ACL role", &id, srv.snapshot().acl_role(&id))?;
    Ok(reply(srv, resp.index, &*stored))
}

/// `POST /v1/acl/role`.
pub async fn create_role(State(srv): State<AppState>, body: Bytes) -> ApiResult {
    let mut r: AclRole = parse_body(&body)?;
    if !r.id.is_empty() {
        return Err(ApiErr::bad_request(
            "ID must be empty to create a role; to update one, POST to /v1/acl/role/<id>",
        ));
    }
    check_role(&srv.snapshot(), &mut r)?;
    r.id = uuid::Uuid::new_v4().to_string();
    write_role(&srv, r).await
}

/// `POST /v1/acl/role/:id`.
pub async fn update_role(
    State(srv): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let mut r: AclRole = parse_body(&body)?;
    if !r.id.is_empty() && r.id != id {
        return Err(ApiErr::bad_request(format!(
            "ID {:?} in the body does not match {id:?} in the URL",
            r.id
        )));
    }
    let state = srv.snapshot();
    found("ACL role", &id, state.acl_role(&id))?;
    r.id = id;
    check_role(&state, &mut r)?;
    write_role(&srv, r).await
}

pub async fn delete_role(State(srv): State<AppState>, Path(id): Path<String>) -> ApiResult {
    let r = srv
        .write(Command::Acl(AclCommand::DeleteRoles { ids: vec![id] }))
        .await?;
    Ok(write_reply(&srv, r.index))
}

/// The ACL routes, nested under `/v1` with the rest of the API.
pub fn routes() -> axum::Router<AppState> {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/acl/bootstrap", post(bootstrap).put(bootstrap))
        .route("/acl/policies", get(list_policies))
        .route(
            "/acl/policy/{name}",
            get(get_policy)
                .post(put_policy)
                .put(put_policy)
                .delete(delete_policy),
        )
        .route("/acl/tokens", get(list_tokens))
        .route("/acl/token", post(create_token).put(create_token))
        .route("/acl/token/self", get(token_self))
        .route(
            "/acl/token/{accessor}",
            get(get_token)
                .post(update_token)
                .put(update_token)
                .delete(delete_token),
        )
        .route("/acl/roles", get(list_roles))
        .route("/acl/role", post(create_role).put(create_role))
        .route("/acl/role/name/{name}", get(get_role_by_name))
        .route(
            "/acl/role/{id}",
            get(get_role)
                .post(update_role)
                .put(update_role)
                .delete(delete_role),
        )
}
