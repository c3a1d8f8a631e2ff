//! Service registrations (`provider = "nomad"`): the public reads (`/v1/services`,
//! `/v1/service/:name`, `/v1/job/:id/services`, `/v1/allocation/:id/services`), the
//! operator's delete, and the internal route agents register instances through.
//!
//! Every read is a blocking query on the services table index and takes `namespace`
//! (`*` for all), `filter` (see `filter.rs`; over each registration), `per_page` and
//! `next_token`; `/v1/service/:name` also takes `choose=<n>|<key>`.

use super::filter::{self, Filter};
use super::nodes::registered_node;
use super::{blocking, parse_body, reply, write_reply, ApiErr, ApiResult, AppState, QueryParams};
use crate::fsm::Command;
use crate::state::StateStore;
use api::{ServiceRegistration, ServiceRegistrationListStub, ServiceStub, ServiceUpdateRequest};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Most registrations plus deletions one agent request may carry.
const MAX_CHANGES_PER_REQUEST: usize = 1024;
const MAX_NAME_LEN: usize = 128;
const MAX_ID_LEN: usize = 512;
const MAX_TAGS: usize = 128;
const MAX_TAG_LEN: usize = 1024;
const MAX_ADDRESS_LEN: usize = 255;

/// The query parameters the services reads add to the common ones.
#[derive(Debug, Default, Deserialize)]
pub struct ListParams {
    pub per_page: Option<String>,
    pub next_token: Option<String>,
    pub choose: Option<String>,
}

/// What a read asked for beyond the common parameters, checked.
struct Listing {
    filter: Option<Filter>,
    per_page: Option<usize>,
    next_token: Option<String>,
}

impl Listing {
    fn parse(q: &QueryParams, p: &ListParams) -> Result<Listing, ApiErr> {
        let filter = q.filter()?;
        let per_page = match p.per_page.as_deref().map(str::trim) {
            None | Some("") | Some("0") => None,
            Some(s) => Some(s.parse::<u32>().map_err(|_| {
                ApiErr::bad_request(format!(
                    "invalid per_page {s:?}: expected a positive integer"
                ))
            })? as usize),
        };
        let next_token = p.next_token.clone().filter(|t| !t.is_empty());
        Ok(Listing {
            filter,
            per_page,
            next_token,
        })
    }
}

/// One page of `items` (ordered by `key`): those from `next_token` on, at most
/// `per_page`, and the key of the first one left out (Nomad's `X-Nomad-NextToken`).
fn page<T>(
    items: Vec<T>,
    per_page: Option<usize>,
    next_token: Option<&str>,
    key: impl Fn(&T) -> String,
) -> (Vec<T>, Option<String>) {
    let mut rest: Vec<T> = match next_token {
        Some(t) => items.into_iter().filter(|i| key(i).as_str() >= t).collect(),
        None => items,
    };
    match per_page {
        Some(n) if rest.len() > n => {
            let token = key(&rest[n]);
            rest.truncate(n);
            (rest, Some(token))
        }
        _ => (rest, None),
    }
}

/// `choose=<n>|<key>`: the `n` instances rendezvous (highest random weight) hashing ranks
/// first for `key`. The same key picks the same instances, and adding or removing one
/// instance changes at most one pick.
fn choose(
    items: Vec<Arc<ServiceRegistration>>,
    spec: &str,
) -> Result<Vec<Arc<ServiceRegistration>>, ApiErr> {
    let bad = || {
        ApiErr::bad_request(format!(
            "invalid choose {spec:?}: expected <number>|<key>, e.g. 2|my-client"
        ))
    };
    let (n, key) = spec.split_once('|').ok_or_else(bad)?;
    let n: usize = n.trim().parse().map_err(|_| bad())?;
    if key.is_empty() {
        return Err(bad());
    }
    let mut ranked: Vec<(u64, Arc<ServiceRegistration>)> = items
        .into_iter()
        .map(|r| (hrw_weight(key, &r.id), r))
        .collect();
    ranked.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.id.cmp(&b.1.id)));
    Ok(ranked.into_iter().take(n).map(|(_, r)| r).collect())
}

/// A stable 64-bit weight of `(key, id)`: FNV-1a, then a final mix so weights of
/// similar IDs spread.
fn hrw_weight(key: &str, id: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes().chain([0u8]).chain(id.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h
}

/// A JSON reply with the services table's index and, when more remain, the next token.
fn reply_page<T: serde::Serialize>(
    srv: &AppState,
    state: &StateStore,
    body: &T,
    next: Option<String>,
) -> Response {
    let mut resp = reply(srv, state.tables().services, body);
    if let Some(t) = next.and_then(|t| HeaderValue::from_str(&t).ok()) {
        resp.headers_mut().insert("X-Nomad-NextToken", t);
    }
    resp
}

/// Registrations filtered, sorted by ID, paged.
fn registrations_reply(
    srv: &AppState,
    state: &StateStore,
    regs: Vec<Arc<ServiceRegistration>>,
    l: &Listing,
) -> Response {
    let mut regs = filter::apply(l.filter.as_ref(), regs);
    regs.sort_by(|a, b| a.id.cmp(&b.id));
    let (regs, next) = page(regs, l.per_page, l.next_token.as_deref(), |r| r.id.clone());
    reply_page(srv, state, &regs, next)
}

/// `GET /v1/services`: per namespace, each service name and the union of its tags.
pub async fn list(
    State(srv): State<AppState>,
    Query(q): Query<QueryParams>,
    Query(p): Query<ListParams>,
) -> ApiResult {
    let l = Listing::parse(&q, &p)?;
    let state = blocking(&srv, &q, |s| s.tables().services).await?;
    let regs: Vec<_> = state
        .service_table()
        .values()
        .filter(|r| q.namespace_matches(&r.namespace))
        .cloned()
        .collect();
    let mut by_ns: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for r in filter::apply(l.filter.as_ref(), regs) {
        by_ns
            .entry(r.namespace.clone())
            .or_default()
            .entry(r.service_name.clone())
            .or_default()
            .extend(r.tags.iter().cloned());
    }
    let out: Vec<ServiceRegistrationListStub> = by_ns
        .into_iter()
        .map(|(namespace, services)| ServiceRegistrationListStub {
            namespace,
            services: services
                .into_iter()
                .map(|(service_name, tags)| ServiceStub {
                    service_name,
                    tags: tags.into_iter().collect(),
                })
                .collect(),
        })
        .collect();
    let (out, next) = page(out, l.per_page, l.next_token.as_deref(), |s| {
        s.namespace.clone()
    });
    Ok(reply_page(&srv, &state, &out, next))
}

/// `GET /v1/service/:name`: the instances of a service (an unknown name has none).
pub async fn get_service(
    State(srv): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<QueryParams>,
    Query(p): Query<ListParams>,
) -> ApiResult {
    let l = Listing::parse(&q, &p)?;
    let state = blocking(&srv, &q, |s| s.tables().services).await?;
    let regs: Vec<_> = if q.namespace() == "*" {
        state
            .service_table()
            .values()
            .filter(|r| r.service_name == name)
            .cloned()
            .collect()
    } else {
        state.services_named(q.namespace(), &name)
    };
    match p.choose.as_deref().filter(|c| !c.is_empty()) {
        Some(spec) => {
            let chosen = choose(filter::apply(l.filter.as_ref(), regs), spec)?;
            Ok(reply_page(&srv, &state, &chosen, None))
        }
        None => Ok(registrations_reply(&srv, &state, regs, &l)),
    }
}

/// `GET /v1/job/:id/services`: the instances of a job's allocations.
pub async fn job_services(
    State(srv): State<AppState>,
    Path(job_id): Path<String>,
    Query(q): Query<QueryParams>,
    Query(p): Query<ListParams>,
) -> ApiResult {
    let l = Listing::parse(&q, &p)?;
    let state = blocking(&srv, &q, |s| s.tables().services).await?;
    let regs = state
        .allocs_for_job(q.namespace(), &job_id)
        .iter()
        .flat_map(|a| state.services_for_alloc(&a.id))
        .collect();
    Ok(registrations_reply(&srv, &state, regs, &l))
}

/// `GET /v1/allocation/:id/services`: the instances an allocation registered.
pub async fn alloc_services(
    State(srv): State<AppState>,
    Path(alloc_id): Path<String>,
    Query(q): Query<QueryParams>,
    Query(p): Query<ListParams>,
) -> ApiResult {
    let l = Listing::parse(&q, &p)?;
    let state = blocking(&srv, &q, |s| s.tables().services).await?;
    let regs = state.services_for_alloc(&alloc_id);
    Ok(registrations_reply(&srv, &state, regs, &l))
}

/// `DELETE /v1/service/:name/:id`: an operator removes one registration.
pub async fn delete(
    State(srv): State<AppState>,
    Path((name, id)): Path<(String, String)>,
    Query(q): Query<QueryParams>,
) -> ApiResult {
    let state = srv.snapshot();
    let found = state
        .service(&id)
        .filter(|r| r.service_name == name && q.namespace_matches(&r.namespace));
    if found.is_none() {
        return Err(ApiErr::not_found(format!(
            "service registration {id:?} of service {name:?} not found in namespace {:?}",
            q.namespace()
        )));
    }
    let resp = srv.write(Command::DeleteServices { ids: vec![id] }).await?;
    Ok(write_reply(&srv, resp.index))
}

fn refused(id: &str, why: String) -> ApiErr {
    ApiErr::bad_request(format!("service registration {id:?} refused: {why}"))
}

/// Check one registration an agent sent and fill what the servers decide from state:
/// node, namespace, job and datacenter come from the allocation and node, never the body.
fn checked_registration(
    state: &StateStore,
    node: &api::Node,
    mut r: ServiceRegistration,
) -> Result<ServiceRegistration, ApiErr> {
    if r.id.is_empty()
        || r.id.len() > MAX_ID_LEN
        || r.id.chars().any(|c| c.is_control() || c.is_whitespace())
    {
        return Err(ApiErr::bad_request(format!(
            "a service registration's ID must be 1 to {MAX_ID_LEN} bytes long, without \
             spaces or control characters"
        )));
    }
    let id = r.id.clone();
    if r.alloc_id.is_empty() {
        return Err(refused(&id, "AllocID is missing".into()));
    }
    let Some(alloc) = state.alloc_table().get(&r.alloc_id) else {
        return Err(refused(
            &id,
            format!("allocation {:?} does not exist", r.alloc_id),
        ));
    };
    if alloc.node_id != node.id {
        return Err(ApiErr(
            StatusCode::FORBIDDEN,
            format!(
                "service registration {id:?} refused: allocation {} is not placed on node {}; \
                 a node may only register its own allocations' services",
                alloc.id, node.id
            ),
        ));
    }
    // Ended, or told to stop (its job stopped or purged): a late agent cannot bring a
    // registration back.
    if alloc.terminal() {
        let why = if alloc.client_terminal() {
            alloc.client_status.as_str()
        } else {
            alloc.desired_status.as_str()
        };
        return Err(refused(
            &id,
            format!(
                "allocation {} has ended ({why}); its services cannot be registered",
                alloc.id
            ),
        ));
    }
    let prefix = format!("_nomad-task-{}-", alloc.id);
    if !r.id.starts_with(&prefix) {
        return Err(refused(&id, format!("its ID must start with {prefix:?}")));
    }
    check_fields(&id, &r)?;
    r.node_id = node.id.clone();
    r.namespace = alloc.namespace.to_string();
    r.job_id = alloc.job_id.to_string();
    r.datacenter = node.datacenter.clone();
    r.create_index = 0;
    r.modify_index = 0;
    Ok(r)
}

/// The limits on what an agent may put in a registration's own fields: name, tags,
/// address and port.
fn check_fields(id: &str, r: &ServiceRegistration) -> Result<(), ApiErr> {
    let name_ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if r.service_name.is_empty()
        || r.service_name.len() > MAX_NAME_LEN
        || !r.service_name.chars().all(name_ok)
    {
        return Err(refused(
            id,
            format!(
                "service name {:?} must be 1 to {MAX_NAME_LEN} letters, digits, '-', '_' or '.'",
                r.service_name
            ),
        ));
    }
    if r.tags.len() > MAX_TAGS {
        return Err(refused(
            id,
            format!(
                "it has {} tags; at most {MAX_TAGS} are allowed",
                r.tags.len()
            ),
        ));
    }
    if let Some(t) = r
        .tags
        .iter()
        .find(|t| t.len() > MAX_TAG_LEN || t.chars().any(char::is_control))
    {
        return Err(refused(
            id,
            format!(
                "tag {:?} is longer than {MAX_TAG_LEN} bytes or holds control characters",
                t.chars().take(64).collect::<String>()
            ),
        ));
    }
    if r.address.len() > MAX_ADDRESS_LEN || r.address.chars().any(|c| c.is_control()) {
        return Err(refused(
            id,
            format!("its address must be at most {MAX_ADDRESS_LEN} printable bytes"),
        ));
    }
    if !(0..=65535).contains(&r.port) {
        return Err(refused(id, format!("port {} is outside 0..65535", r.port)));
    }
    Ok(())
}

/// Would storing `r` change the stored registration of its ID?
fn changes(state: &StateStore, r: &ServiceRegistration) -> bool {
    state.service(&r.id).is_none_or(|old| {
        let mut same = r.clone();
        same.create_index = old.create_index;
        same.modify_index = old.modify_index;
        *old != same
    })
}

/// `PUT /v1/internal/node/:id/services` (RPC listener, node secret): an agent registers
/// and deregisters its allocations' service instances.
pub async fn update(
    State(srv): State<AppState>,
    Path(node_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let req: ServiceUpdateRequest = parse_body(&body)?;
    let state = srv.snapshot();
    let node = registered_node(&state, &node_id, &headers, "service update")?;
    let count = req.upsert.len() + req.delete_ids.len();
    if count > MAX_CHANGES_PER_REQUEST {
        return Err(ApiErr::bad_request(format!(
            "service update carries {count} changes; at most {MAX_CHANGES_PER_REQUEST} are \
             accepted in one request"
        )));
    }
    let mut seen = BTreeSet::new();
    let mut upsert = Vec::with_capacity(req.upsert.len());
    for r in req.upsert {
        if !seen.insert(r.id.clone()) {
            return Err(refused(&r.id, "it appears twice in the request".into()));
        }
        upsert.push(checked_registration(&state, node, r)?);
    }
    for id in &req.delete_ids {
        if id.len() > MAX_ID_LEN {
            return Err(ApiErr::bad_request(format!(
                "a service registration ID to delete is longer than {MAX_ID_LEN} bytes"
            )));
        }
        if let Some(r) = state.service(id).filter(|r| r.node_id != node_id) {
            return Err(ApiErr(
                StatusCode::FORBIDDEN,
                format!(
                    "deleting service registration {id:?} refused: it belongs to node {}, \
                     not {node_id}",
                    r.node_id
                ),
            ));
        }
    }
    // Only what changes goes to Raft: an agent re-sending its registrations after a
    // restart does not wake every watcher.
    upsert.retain(|r| changes(&state, r));
    let delete_ids: Vec<String> = req
        .delete_ids
        .into_iter()
        .filter(|id| state.service(id).is_some())
        .collect();
    if upsert.is_empty() && delete_ids.is_empty() {
        let index = state.index();
        return Ok(write_reply(&srv, index));
    }
    let resp = srv
        .write(Command::UpsertServices {
            node_id,
            upsert,
            delete_ids,
        })
        .await?;
    Ok(write_reply(&srv, resp.index))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(id: &str) -> Arc<ServiceRegistration> {
        Arc::new(ServiceRegistration {
            id: id.into(),
            service_name: "web".into(),
            ..Default::default()
        })
    }

    fn ids(v: &[Arc<ServiceRegistration>]) -> Vec<String> {
        v.iter().map(|r| r.id.clone()).collect()
    }

    #[test]
    fn choose_is_stable_per_key_and_moves_little_when_instances_change() {
        let all: Vec<_> = (0..20).map(|i| reg(&format!("i{i:02}"))).collect();
        let a = choose(all.clone(), "3|client-a").unwrap();
        assert_eq!(a.len(), 3);
        let mut shuffled = all.clone();
        shuffled.reverse();
        assert_eq!(ids(&choose(shuffled, "3|client-a").unwrap()), ids(&a));
        // Another key spreads to other instances (some key among a few must differ).
        assert!((0..5).any(|k| ids(&choose(all.clone(), &format!("3|k{k}")).unwrap()) != ids(&a)));
        // Removing an instance not chosen changes nothing; removing a chosen one keeps
        // the other two.
        let without_other: Vec<_> = all
            .iter()
            .filter(|r| !ids(&a).contains(&r.id))
            .take(1)
            .collect();
        let fewer: Vec<_> = all
            .iter()
            .filter(|r| r.id != without_other[0].id)
            .cloned()
            .collect();
        assert_eq!(ids(&choose(fewer, "3|client-a").unwrap()), ids(&a));
        let fewer: Vec<_> = all.iter().filter(|r| r.id != a[0].id).cloned().collect();
        let again = ids(&choose(fewer, "3|client-a").unwrap());
        assert_eq!(&again[..2], &ids(&a)[1..]);
        assert_eq!(choose(all.clone(), "50|x").unwrap().len(), 20);
        for bad in ["3", "x|k", "3|", "-1|k", ""] {
            assert!(choose(all.clone(), bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn paging_returns_pages_in_order_with_the_next_token() {
        let items: Vec<String> = (0..5).map(|i| format!("id{i}")).collect();
        let (p1, t1) = page(items.clone(), Some(2), None, |s| s.clone());
        assert_eq!(
            (p1, t1.clone()),
            (vec!["id0".into(), "id1".into()], Some("id2".into()))
        );
        let (p2, t2) = page(items.clone(), Some(2), t1.as_deref(), |s| s.clone());
        assert_eq!(
            (p2, t2.clone()),
            (vec!["id2".into(), "id3".into()], Some("id4".into()))
        );
        let (p3, t3) = page(items.clone(), Some(2), t2.as_deref(), |s| s.clone());
        assert_eq!((p3, t3), (vec!["id4".to_string()], None));
        let (all, none) = page(items.clone(), None, None, |s| s.clone());
        assert_eq!((all.len(), none), (5, None));
    }

    #[test]
    fn list_params_refuse_bad_per_page_and_filters_with_sentences() {
        let p = ListParams {
            per_page: Some("many".into()),
            ..Default::default()
        };
        let q = QueryParams::default();
        assert!(Listing::parse(&q, &p).err().unwrap().1.contains("per_page"));
        let q = QueryParams {
            filter: Some("Tags contains".into()),
            ..Default::default()
        };
        let e = Listing::parse(&q, &ListParams::default()).err().unwrap();
        assert_eq!(e.0, StatusCode::BAD_REQUEST);
        assert!(e.1.contains("column"), "{}", e.1);
    }

    fn state_with_alloc() -> (StateStore, api::Node) {
        let node = api::Node {
            id: "n1".into(),
            datacenter: "dc9".into(),
            ..Default::default()
        };
        let alloc = api::Allocation {
            id: "a1".into(),
            namespace: "prod".into(),
            job_id: "web".into(),
            node_id: "n1".into(),
            client_status: "running".into(),
            ..Default::default()
        };
        let mut s = StateStore::default();
        crate::fsm::test_put_node(&mut s, node.clone());
        crate::fsm::test_put_alloc(&mut s, alloc);
        (s, node)
    }

    #[test]
    fn registrations_take_node_namespace_job_and_datacenter_from_state() {
        let (s, node) = state_with_alloc();
        let r = ServiceRegistration {
            id: ServiceRegistration::make_id("a1", "t", "web", "http"),
            service_name: "web".into(),
            alloc_id: "a1".into(),
            node_id: "forged".into(),
            namespace: "forged".into(),
            job_id: "forged".into(),
            datacenter: "forged".into(),
            port: 80,
            modify_index: 99,
            ..Default::default()
        };
        let r = checked_registration(&s, &node, r).unwrap();
        assert_eq!(
            (r.node_id.as_str(), r.namespace.as_str(), r.job_id.as_str()),
            ("n1", "prod", "web")
        );
        assert_eq!((r.datacenter.as_str(), r.modify_index), ("dc9", 0));
    }

    #[test]
    fn out_of_bounds_registrations_are_refused_with_sentences() {
        let (s, node) = state_with_alloc();
        let good = ServiceRegistration {
            id: ServiceRegistration::make_id("a1", "t", "web", "http"),
            service_name: "web".into(),
            alloc_id: "a1".into(),
            port: 80,
            ..Default::default()
        };
        assert!(checked_registration(&s, &node, good.clone()).is_ok());
        type Change = Box<dyn Fn(&mut ServiceRegistration)>;
        let cases: Vec<(&str, Change, StatusCode)> = vec![
            (
                "does not exist",
                Box::new(|r| r.alloc_id = "zz".into()),
                StatusCode::BAD_REQUEST,
            ),
            (
                "must start with",
                Box::new(|r| r.id = "_nomad-task-other-x".into()),
                StatusCode::BAD_REQUEST,
            ),
            (
                "service name",
                Box::new(|r| r.service_name = "a b".into()),
                StatusCode::BAD_REQUEST,
            ),
            (
                "service name",
                Box::new(|r| r.service_name = "x".repeat(200)),
                StatusCode::BAD_REQUEST,
            ),
            (
                "tags",
                Box::new(|r| r.tags = vec!["t".into(); 500]),
                StatusCode::BAD_REQUEST,
            ),
            (
                "tag",
                Box::new(|r| r.tags = vec!["x".repeat(5000)]),
                StatusCode::BAD_REQUEST,
            ),
            (
                "port",
                Box::new(|r| r.port = 70000),
                StatusCode::BAD_REQUEST,
            ),
            ("port", Box::new(|r| r.port = -1), StatusCode::BAD_REQUEST),
            (
                "ID must be",
                Box::new(|r| r.id = String::new()),
                StatusCode::BAD_REQUEST,
            ),
            (
                "ID must be",
                Box::new(|r| r.id.push('\n')),
                StatusCode::BAD_REQUEST,
            ),
        ];
        for (want, change, status) in cases {
            let mut r = good.clone();
            change(&mut r);
            let e = checked_registration(&s, &node, r).unwrap_err();
            assert_eq!(e.0, status, "{want}: {}", e.1);
            assert!(e.1.contains(want), "{want}: {}", e.1);
        }
        let other = api::Node {
            id: "n2".into(),
            ..Default::default()
        };
        let e = checked_registration(&s, &other, good).unwrap_err();
        assert_eq!(e.0, StatusCode::FORBIDDEN);
        assert!(e.1.contains("not placed on node n2"), "{}", e.1);
    }
}
