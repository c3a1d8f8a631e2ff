//! What each `/v1` route demands of a token, as the "ACL Required" column of Nomad's
//! API docs states it: [`required`] maps (method, path, query) to a [`Requirement`].
//!
//! The namespace is not part of the answer: the server resolves it (query, body, the
//! job's field, then `default`) and checks the capability there, so the check and the
//! write use the same value. Anything this table does not know needs a management token
//! (fail closed): a new route is refused to client tokens until it is added here.

use crate::acl::Acl;
use crate::capability::{NamespaceCapability as N, VariableCapability};

/// What a route demands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    /// No token needed (status, regions, metrics, health, bootstrap, login).
    Open,
    /// Any valid token (`/v1/acl/token/self`).
    AnyToken,
    /// A management token.
    Management,
    /// A capability in the request's namespace.
    Namespace(N),
    /// Any capability at all in the request's namespace (reading the namespace itself).
    NamespaceAny,
    Node(Access),
    Agent(Access),
    Operator(Access),
    Quota(Access),
    Plugin(Access),
    /// A capability on the variable the request names (namespace and path from the
    /// server).
    Variable(VariableCapability),
    /// The route is open to any token, and the server keeps only what the token may see.
    Filtered(Filter),
    /// Every one of these.
    All(Vec<Requirement>),
    /// Not a user route: node secrets and server identity guard it.
    Internal,
}

/// Levels of the singleton rules (`node`, `agent`, `operator`, `quota`, `plugin`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    List,
    Read,
    Write,
}

/// How a filtered route decides per object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// Each object by this capability in its own namespace (`namespace=*` lists); the
    /// token must hold the capability in some namespace to enter, as Nomad's wildcard
    /// check does.
    Namespace(N),
    /// Each object by this capability in its own namespace, with no entry check of its
    /// own (a node's allocations: node read admits, read-job filters).
    Objects(N),
    /// Namespaces the token may use at all ([`Acl::allow_namespace`]).
    Namespaces,
    /// Variables whose path the token may `list`.
    Variables,
    /// Management sees every policy; other tokens only their own (and their roles').
    OwnPolicies,
    /// Management sees every role; other tokens only their own.
    OwnRoles,
    /// Management reads any token; other tokens only themselves.
    OwnToken,
    /// Search results per context (jobs and allocs by `read-job`, nodes by node read...).
    Search,
    /// Events per topic (job, alloc, eval and deployment events by `read-job` in their
    /// namespace, node events by node read, ACL events only for management).
    EventStream,
}

impl Requirement {
    /// Whether `acl` may enter the route for `namespace` (and `var_path` for variable
    /// routes). Open and any-token routes say yes (the server has already resolved the
    /// token); filtered routes say yes when something could pass the filter, and the
    /// server must still filter each object. Internal routes never admit a user token.
    pub fn allows(&self, acl: &Acl, namespace: &str, var_path: &str) -> bool {
        use Access::*;
        match self {
            Requirement::Open | Requirement::AnyToken => true,
            Requirement::Management => acl.is_management(),
            Requirement::Namespace(c) => acl.allow_namespace_operation(namespace, *c),
            Requirement::NamespaceAny => acl.allow_namespace(namespace),
            Requirement::Node(Write) => acl.allow_node_write(),
            Requirement::Node(_) => acl.allow_node_read(),
            Requirement::Agent(Write) => acl.allow_agent_write(),
            Requirement::Agent(_) => acl.allow_agent_read(),
            Requirement::Operator(Write) => acl.allow_operator_write(),
            Requirement::Operator(_) => acl.allow_operator_read(),
            Requirement::Quota(Write) => acl.allow_quota_write(),
            Requirement::Quota(_) => acl.allow_quota_read(),
            Requirement::Plugin(List) => acl.allow_plugin_list(),
            Requirement::Plugin(_) => acl.allow_plugin_read(),
            Requirement::Variable(op) => acl.allow_variable_operation(namespace, var_path, *op),
            Requirement::Filtered(Filter::Namespace(c)) => acl.allow_namespace_operation("*", *c),
            Requirement::Filtered(Filter::Variables) => acl.allow_variable_search(namespace),
            Requirement::Filtered(_) => true,
            Requirement::All(all) => all.iter().all(|r| r.allows(acl, namespace, var_path)),
            Requirement::Internal => false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Read,
    Write,
    Delete,
    Other,
}

fn method(m: &str) -> Method {
    match m.to_ascii_uppercase().as_str() {
        "GET" | "HEAD" => Method::Read,
        "PUT" | "POST" => Method::Write,
        "DELETE" => Method::Delete,
        _ => Method::Other,
    }
}

/// The requirement of `method path?query` (path with its `/v1` prefix, still
/// percent-encoded; query without the `?`).
pub fn required(method_name: &str, path: &str, query: &str) -> Requirement {
    use Method::*;
    use Requirement::*;
    let Some(rest) = path.strip_prefix("/v1/") else {
        return Management;
    };
    let segs: Vec<&str> = rest.split('/').collect();
    // "//", a trailing "/" or dot segments are not routes Drover serves; refusing them
    // here keeps a path that a router might normalise from slipping past the table.
    if segs.iter().any(|s| s.is_empty() || *s == "." || *s == "..") {
        return Management;
    }
    let m = method(method_name);
    if m == Other {
        return Management;
    }
    let all_namespaces = query_param(query, "namespace").as_deref() == Some("*");
    let list = |c: N| {
        if all_namespaces {
            Filtered(Filter::Namespace(c))
        } else {
            Namespace(c)
        }
    };
    let by_method = |read: Requirement, write: Requirement, delete: Requirement| match m {
        Read => read,
        Write => write,
        _ => delete,
    };
    match (segs[0], &segs[1..]) {
        ("jobs", []) => by_method(list(N::ListJobs), Namespace(N::SubmitJob), Management),
        ("jobs", ["parse"]) if m == Write => Namespace(N::ParseJob),
        ("jobs", ["statuses"]) => list(N::ReadJob),
        ("job", rest) if !rest.is_empty() => job(m, rest),
        ("validate", ["job"]) if m == Write => Namespace(N::ReadJob),
        ("allocations", []) if m == Read => list(N::ReadJob),
        ("allocation", [_]) if m == Read => Namespace(N::ReadJob),
        ("allocation", [_, "services"]) if m == Read => Namespace(N::ReadJob),
        ("allocation", [_, "stop"]) if m == Write => Namespace(N::AllocLifecycle),
        ("client", rest) => client(m, rest),
        ("evaluations", []) => by_method(list(N::ReadJob), Management, Management),
        ("evaluations", ["count"]) if m == Read => list(N::ReadJob),
        ("evaluation", [_] | [_, "allocations"]) if m == Read => Namespace(N::ReadJob),
        ("deployments", []) if m == Read => list(N::ReadJob),
        ("deployment", [_] | ["allocations", _]) if m == Read => Namespace(N::ReadJob),
        ("deployment", ["fail" | "pause" | "promote" | "allocation-health" | "unblock", _])
            if m == Write =>
        {
            Namespace(N::SubmitJob)
        }
        ("nodes", []) if m == Read => Node(Access::Read),
        ("node", [_]) if m == Read => Node(Access::Read),
        ("node", [_, "allocations"]) if m == Read => All(vec![
            Node(Access::Read),
            Filtered(Filter::Objects(N::ReadJob)),
        ]),
        ("node", [_, "drain" | "eligibility" | "purge" | "evaluate"]) if m == Write => {
            Node(Access::Write)
        }
        ("services", []) if m == Read => list(N::ReadJob),
        ("service", [_]) if m == Read => Namespace(N::ReadJob),
        ("service", [_, _]) if m == Delete => Namespace(N::SubmitJob),
        ("vars", []) if m == Read => Filtered(Filter::Variables),
        ("var", [_, ..]) => by_method(
            Variable(VariableCapability::Read),
            Variable(VariableCapability::Write),
            Variable(VariableCapability::Destroy),
        ),
        ("namespaces", []) if m == Read => Filtered(Filter::Namespaces),
        ("namespace", [_]) => by_method(NamespaceAny, Management, Management),
        ("acl", rest) => acl_route(m, rest),
        ("operator", rest) => operator(m, rest),
        ("agent", rest) => agent(m, rest),
        ("status", ["leader" | "peers"]) if m == Read => Open,
        ("regions", []) if m == Read => Open,
        ("metrics", []) if m == Read => Open,
        ("search", [] | ["fuzzy"]) if m == Write => Filtered(Filter::Search),
        ("system", ["gc"] | ["reconcile", "summaries"]) if m == Write => Management,
        ("event", ["stream"]) if m == Read => Filtered(Filter::EventStream),
        ("scaling", ["policies"]) if m == Read => list(N::ListScalingPolicies),
        ("scaling", ["policy", _]) if m == Read => Namespace(N::ReadScalingPolicy),
        ("volumes", []) if m == Read => {
            if query_param(query, "type").as_deref() == Some("host") {
                list(N::HostVolumeRead)
            } else {
                list(N::CsiListVolume)
            }
        }
        ("volumes", ["snapshot"]) => by_method(
            Namespace(N::CsiListVolume),
            Namespace(N::CsiWriteVolume),
            Namespace(N::CsiWriteVolume),
        ),
        ("volume", ["csi", _]) => by_method(
            Namespace(N::CsiReadVolume),
            Namespace(N::CsiWriteVolume),
            Namespace(N::CsiWriteVolume),
        ),
        ("volume", ["csi", _, "create"]) if m == Write => Namespace(N::CsiWriteVolume),
        ("volume", ["csi", _, "detach"]) if m == Delete => Namespace(N::CsiMountVolume),
        ("volume", ["host", "create"]) if m == Write => Namespace(N::HostVolumeCreate),
        ("volume", ["host", "register"]) if m == Write => Namespace(N::HostVolumeRegister),
        ("volume", ["host", _]) => by_method(
            Namespace(N::HostVolumeRead),
            Management,
            Namespace(N::HostVolumeDelete),
        ),
        ("plugins", []) if m == Read => Plugin(Access::List),
        ("plugin", ["csi", _]) if m == Read => Plugin(Access::Read),
        ("quotas", []) if m == Read => Quota(Access::Read),
        ("quota", [_]) => by_method(Quota(Access::Read), Management, Management),
        ("internal", _) => Internal,
        _ => Management,
    }
}

/// `/v1/job/<id>[/<sub>]`. A job ID may itself hold slashes (`batch/periodic-1`), so
/// the action is read from the end of the path.
fn job(m: Method, rest: &[&str]) -> Requirement {
    use Method::*;
    use Requirement::*;
    let last = rest.last().copied().unwrap_or("");
    let has_id_and_action = rest.len() >= 2;
    if has_id_and_action && rest.ends_with(&["periodic", "force"]) && rest.len() >= 3 {
        return if m == Write {
            Namespace(N::SubmitJob)
        } else {
            Management
        };
    }
    if has_id_and_action {
        let r = match (last, m) {
            (
                "versions" | "allocations" | "evaluations" | "deployments" | "deployment"
                | "summary" | "services" | "submission",
                Read,
            ) => Some(Namespace(N::ReadJob)),
            ("plan" | "evaluate" | "revert" | "stable", Write) => Some(Namespace(N::SubmitJob)),
            ("dispatch", Write) => Some(Namespace(N::DispatchJob)),
            ("scale", Read) => Some(Namespace(N::ReadJobScaling)),
            ("scale", Write) => Some(Namespace(N::ScaleJob)),
            ("action", Write | Read) => Some(Namespace(N::AllocExec)),
            _ => None,
        };
        if let Some(r) = r {
            return r;
        }
    }
    match m {
        Read => Namespace(N::ReadJob),
        Write | Delete => Namespace(N::SubmitJob),
        Other => Management,
    }
}

/// `/v1/client/...`: served by the agent running the allocation (or relayed to it).
fn client(m: Method, rest: &[&str]) -> Requirement {
    use Method::*;
    use Requirement::*;
    match (rest, m) {
        (["fs", "logs", _], Read) => Namespace(N::ReadLogs),
        (["fs", "ls" | "stat" | "cat" | "readat" | "stream", _], Read) => Namespace(N::ReadFs),
        (["allocation", _, "stats" | "checks"], Read) => Namespace(N::ReadJob),
        (["allocation", _, "exec"], _) => Namespace(N::AllocExec),
        (["allocation", _, "restart" | "signal"], Write) => Namespace(N::AllocLifecycle),
        (["allocation", _, "gc"], Read | Write) => Namespace(N::SubmitJob),
        (["stats"], Read) => Node(Access::Read),
        (["gc"], Read | Write) => Node(Access::Write),
        (["metadata"], Read) => Node(Access::Read),
        (["metadata"], Write) => Node(Access::Write),
        _ => Management,
    }
}

fn acl_route(m: Method, rest: &[&str]) -> Requirement {
    use Method::*;
    use Requirement::*;
    match (rest, m) {
        (["bootstrap"], Write) => Open,
        (["policies"], Read) => Filtered(Filter::OwnPolicies),
        (["policy", _], Read) => Filtered(Filter::OwnPolicies),
        (["policy", _], Write | Delete) => Management,
        (["tokens"], Read) => Management,
        (["token"], Write) => Management,
        (["token", "self"], Read) => AnyToken,
        (["token", "onetime"], Write) => AnyToken,
        (["token", "onetime", "exchange"], Write) => Open,
        (["token", _], Read) => Filtered(Filter::OwnToken),
        (["token", _], Write | Delete) => Management,
        (["roles"], Read) => Filtered(Filter::OwnRoles),
        (["role"], Write) => Management,
        (["role", "name", _], Read) => Filtered(Filter::OwnRoles),
        (["role", _], Read) => Filtered(Filter::OwnRoles),
        (["role", _], Write | Delete) => Management,
        (["auth-methods"], Read) => Open,
        (["login"], Write) => Open,
        (["oidc", "auth-url" | "complete-auth"], Write) => Open,
        _ => Management,
    }
}

fn operator(m: Method, rest: &[&str]) -> Requirement {
    use Method::*;
    use Requirement::*;
    match (rest, m) {
        (["autopilot", "configuration" | "health"], Read) => Operator(Access::Read),
        (["autopilot", "configuration"], Write) => Operator(Access::Write),
        (["scheduler", "configuration"], Read) => Operator(Access::Read),
        (["scheduler", "configuration"], Write) => Operator(Access::Write),
        (["license"], Read) => Operator(Access::Read),
        // Raft membership and leadership, snapshots (every secret) and the keyring
        // (every key) are management-only in Nomad.
        _ => Management,
    }
}

fn agent(m: Method, rest: &[&str]) -> Requirement {
    use Method::*;
    use Requirement::*;
    match (rest, m) {
        (["health"], Read) => Open,
        (["self" | "monitor" | "host" | "schedulers"], Read) => Agent(Access::Read),
        (["members"], Read) => Node(Access::Read),
        (["servers"], Read) => Agent(Access::Read),
        (["servers"], Write) => Agent(Access::Write),
        (["join" | "force-leave"], Write) => Agent(Access::Write),
        (["schedulers", "config"], Read) => Agent(Access::Read),
        (["schedulers", "config"], Write) => Agent(Access::Write),
        (["keyring", _], Read | Write) => Agent(Access::Write),
        (["pprof", ..], Read) => Agent(Access::Write),
        _ => Management,
    }
}

/// The first value of `key` in a query string, percent-decoded (`+` is a space). A
/// value that does not decode to UTF-8 is treated as absent.
pub fn query_param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k)? == key)
            .then(|| percent_decode(v))
            .flatten()
    })
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Policy;
    use Access::{List, Read, Write};
    use Requirement::*;

    /// Every route Drover serves (and the Nomad routes around them), with the
    /// requirement Nomad's API docs give in their "ACL Required" column.
    #[test]
    fn every_route_requires_what_nomad_documents() {
        let ns = Namespace;
        let table: Vec<(&str, &str, &str, Requirement)> = vec![
            // Jobs
            ("GET", "/v1/jobs", "", ns(N::ListJobs)),
            (
                "GET",
                "/v1/jobs",
                "namespace=*",
                Filtered(Filter::Namespace(N::ListJobs)),
            ),
            (
                "GET",
                "/v1/jobs",
                "namespace=%2A",
                Filtered(Filter::Namespace(N::ListJobs)),
            ),
            ("PUT", "/v1/jobs", "", ns(N::SubmitJob)),
            ("POST", "/v1/jobs", "", ns(N::SubmitJob)),
            ("POST", "/v1/jobs/parse", "", ns(N::ParseJob)),
            ("POST", "/v1/validate/job", "", ns(N::ReadJob)),
            ("GET", "/v1/job/web", "", ns(N::ReadJob)),
            ("POST", "/v1/job/web", "", ns(N::SubmitJob)),
            ("DELETE", "/v1/job/web", "purge=true", ns(N::SubmitJob)),
            ("GET", "/v1/job/web/versions", "", ns(N::ReadJob)),
            ("GET", "/v1/job/web/allocations", "", ns(N::ReadJob)),
            ("GET", "/v1/job/web/evaluations", "", ns(N::ReadJob)),
            ("GET", "/v1/job/web/deployments", "", ns(N::ReadJob)),
            ("GET", "/v1/job/web/deployment", "", ns(N::ReadJob)),
            ("GET", "/v1/job/web/summary", "", ns(N::ReadJob)),
            ("GET", "/v1/job/web/services", "", ns(N::ReadJob)),
            ("POST", "/v1/job/web/plan", "", ns(N::SubmitJob)),
            ("POST", "/v1/job/web/evaluate", "", ns(N::SubmitJob)),
            ("POST", "/v1/job/web/revert", "", ns(N::SubmitJob)),
            ("POST", "/v1/job/web/stable", "", ns(N::SubmitJob)),
            ("POST", "/v1/job/web/dispatch", "", ns(N::DispatchJob)),
            ("POST", "/v1/job/web/periodic/force", "", ns(N::SubmitJob)),
            ("GET", "/v1/job/web/scale", "", ns(N::ReadJobScaling)),
            ("POST", "/v1/job/web/scale", "", ns(N::ScaleJob)),
            (
                "GET",
                "/v1/job/batch%2Fperiodic-1/allocations",
                "",
                ns(N::ReadJob),
            ),
            (
                "GET",
                "/v1/job/batch/periodic-1/allocations",
                "",
                ns(N::ReadJob),
            ),
            ("GET", "/v1/job/batch/periodic-1", "", ns(N::ReadJob)),
            // Allocations
            ("GET", "/v1/allocations", "", ns(N::ReadJob)),
            (
                "GET",
                "/v1/allocations",
                "namespace=*",
                Filtered(Filter::Namespace(N::ReadJob)),
            ),
            ("GET", "/v1/allocation/a1", "", ns(N::ReadJob)),
            ("GET", "/v1/allocation/a1/services", "", ns(N::ReadJob)),
            ("POST", "/v1/allocation/a1/stop", "", ns(N::AllocLifecycle)),
            // Client (agent) routes
            (
                "GET",
                "/v1/client/fs/logs/a1",
                "task=web&type=stdout",
                ns(N::ReadLogs),
            ),
            ("GET", "/v1/client/fs/ls/a1", "path=/", ns(N::ReadFs)),
            ("GET", "/v1/client/fs/cat/a1", "", ns(N::ReadFs)),
            ("GET", "/v1/client/fs/stat/a1", "", ns(N::ReadFs)),
            ("GET", "/v1/client/fs/readat/a1", "", ns(N::ReadFs)),
            ("GET", "/v1/client/fs/stream/a1", "", ns(N::ReadFs)),
            ("GET", "/v1/client/allocation/a1/exec", "", ns(N::AllocExec)),
            (
                "POST",
                "/v1/client/allocation/a1/signal",
                "",
                ns(N::AllocLifecycle),
            ),
            (
                "POST",
                "/v1/client/allocation/a1/restart",
                "",
                ns(N::AllocLifecycle),
            ),
            ("GET", "/v1/client/allocation/a1/stats", "", ns(N::ReadJob)),
            ("GET", "/v1/client/allocation/a1/checks", "", ns(N::ReadJob)),
            ("GET", "/v1/client/allocation/a1/gc", "", ns(N::SubmitJob)),
            ("GET", "/v1/client/stats", "", Node(Read)),
            ("GET", "/v1/client/gc", "", Node(Write)),
            // Evaluations and deployments
            ("GET", "/v1/evaluations", "", ns(N::ReadJob)),
            ("DELETE", "/v1/evaluations", "", Management),
            ("GET", "/v1/evaluations/count", "", ns(N::ReadJob)),
            ("GET", "/v1/evaluation/e1", "", ns(N::ReadJob)),
            ("GET", "/v1/evaluation/e1/allocations", "", ns(N::ReadJob)),
            ("GET", "/v1/deployments", "", ns(N::ReadJob)),
            ("GET", "/v1/deployment/d1", "", ns(N::ReadJob)),
            ("GET", "/v1/deployment/allocations/d1", "", ns(N::ReadJob)),
            ("POST", "/v1/deployment/promote/d1", "", ns(N::SubmitJob)),
            ("POST", "/v1/deployment/fail/d1", "", ns(N::SubmitJob)),
            ("POST", "/v1/deployment/pause/d1", "", ns(N::SubmitJob)),
            (
                "POST",
                "/v1/deployment/allocation-health/d1",
                "",
                ns(N::SubmitJob),
            ),
            // Nodes
            ("GET", "/v1/nodes", "", Node(Read)),
            ("GET", "/v1/node/n1", "", Node(Read)),
            (
                "GET",
                "/v1/node/n1/allocations",
                "",
                All(vec![Node(Read), Filtered(Filter::Objects(N::ReadJob))]),
            ),
            ("POST", "/v1/node/n1/drain", "", Node(Write)),
            ("POST", "/v1/node/n1/eligibility", "", Node(Write)),
            ("POST", "/v1/node/n1/evaluate", "", Node(Write)),
            ("POST", "/v1/node/n1/purge", "", Node(Write)),
            // Services and variables
            ("GET", "/v1/services", "", ns(N::ReadJob)),
            ("GET", "/v1/service/web", "", ns(N::ReadJob)),
            ("DELETE", "/v1/service/web/id1", "", ns(N::SubmitJob)),
            ("GET", "/v1/vars", "prefix=a", Filtered(Filter::Variables)),
            ("GET", "/v1/var/a/b", "", Variable(VariableCapability::Read)),
            (
                "PUT",
                "/v1/var/a/b",
                "cas=3",
                Variable(VariableCapability::Write),
            ),
            (
                "DELETE",
                "/v1/var/a/b",
                "",
                Variable(VariableCapability::Destroy),
            ),
            // Namespaces
            ("GET", "/v1/namespaces", "", Filtered(Filter::Namespaces)),
            ("GET", "/v1/namespace/prod", "", NamespaceAny),
            ("PUT", "/v1/namespace/prod", "", Management),
            ("POST", "/v1/namespace/prod", "", Management),
            ("DELETE", "/v1/namespace/prod", "", Management),
            // ACL
            ("POST", "/v1/acl/bootstrap", "", Open),
            ("GET", "/v1/acl/policies", "", Filtered(Filter::OwnPolicies)),
            (
                "GET",
                "/v1/acl/policy/ro",
                "",
                Filtered(Filter::OwnPolicies),
            ),
            ("POST", "/v1/acl/policy/ro", "", Management),
            ("DELETE", "/v1/acl/policy/ro", "", Management),
            ("GET", "/v1/acl/tokens", "", Management),
            ("POST", "/v1/acl/token", "", Management),
            ("GET", "/v1/acl/token/self", "", AnyToken),
            ("GET", "/v1/acl/token/acc-1", "", Filtered(Filter::OwnToken)),
            ("POST", "/v1/acl/token/acc-1", "", Management),
            ("DELETE", "/v1/acl/token/acc-1", "", Management),
            ("POST", "/v1/acl/token/onetime", "", AnyToken),
            ("POST", "/v1/acl/token/onetime/exchange", "", Open),
            ("GET", "/v1/acl/roles", "", Filtered(Filter::OwnRoles)),
            ("POST", "/v1/acl/role", "", Management),
            ("GET", "/v1/acl/role/r1", "", Filtered(Filter::OwnRoles)),
            (
                "GET",
                "/v1/acl/role/name/ops",
                "",
                Filtered(Filter::OwnRoles),
            ),
            ("POST", "/v1/acl/role/r1", "", Management),
            ("DELETE", "/v1/acl/role/r1", "", Management),
            ("GET", "/v1/acl/binding-rules", "", Management),
            // Operator
            ("GET", "/v1/operator/raft/configuration", "", Management),
            ("DELETE", "/v1/operator/raft/peer", "id=x", Management),
            (
                "PUT",
                "/v1/operator/raft/transfer-leadership",
                "",
                Management,
            ),
            (
                "GET",
                "/v1/operator/autopilot/configuration",
                "",
                Operator(Read),
            ),
            (
                "PUT",
                "/v1/operator/autopilot/configuration",
                "",
                Operator(Write),
            ),
            ("GET", "/v1/operator/autopilot/health", "", Operator(Read)),
            (
                "GET",
                "/v1/operator/scheduler/configuration",
                "",
                Operator(Read),
            ),
            (
                "POST",
                "/v1/operator/scheduler/configuration",
                "",
                Operator(Write),
            ),
            ("GET", "/v1/operator/snapshot", "", Management),
            ("PUT", "/v1/operator/snapshot", "", Management),
            ("GET", "/v1/operator/keyring/keys", "", Management),
            // Agent
            ("GET", "/v1/agent/self", "", Agent(Read)),
            ("GET", "/v1/agent/health", "", Open),
            ("GET", "/v1/agent/members", "", Node(Read)),
            ("GET", "/v1/agent/servers", "", Agent(Read)),
            ("PUT", "/v1/agent/servers", "address=x", Agent(Write)),
            ("PUT", "/v1/agent/join", "address=x", Agent(Write)),
            ("PUT", "/v1/agent/force-leave", "node=x", Agent(Write)),
            ("GET", "/v1/agent/monitor", "", Agent(Read)),
            ("GET", "/v1/agent/pprof/heap", "", Agent(Write)),
            // Open status routes
            ("GET", "/v1/status/leader", "", Open),
            ("GET", "/v1/status/peers", "", Open),
            ("GET", "/v1/regions", "", Open),
            ("GET", "/v1/metrics", "", Open),
            // Search, system, events
            ("POST", "/v1/search", "", Filtered(Filter::Search)),
            ("POST", "/v1/search/fuzzy", "", Filtered(Filter::Search)),
            ("PUT", "/v1/system/gc", "", Management),
            ("PUT", "/v1/system/reconcile/summaries", "", Management),
            (
                "GET",
                "/v1/event/stream",
                "topic=Job",
                Filtered(Filter::EventStream),
            ),
            // Scaling, volumes, plugins, quotas
            (
                "GET",
                "/v1/scaling/policies",
                "",
                ns(N::ListScalingPolicies),
            ),
            ("GET", "/v1/scaling/policy/p1", "", ns(N::ReadScalingPolicy)),
            ("GET", "/v1/volumes", "type=csi", ns(N::CsiListVolume)),
            ("GET", "/v1/volumes", "type=host", ns(N::HostVolumeRead)),
            ("GET", "/v1/volume/csi/v1", "", ns(N::CsiReadVolume)),
            ("PUT", "/v1/volume/csi/v1", "", ns(N::CsiWriteVolume)),
            ("DELETE", "/v1/volume/csi/v1", "", ns(N::CsiWriteVolume)),
            ("PUT", "/v1/volume/csi/v1/create", "", ns(N::CsiWriteVolume)),
            (
                "DELETE",
                "/v1/volume/csi/v1/detach",
                "node=n",
                ns(N::CsiMountVolume),
            ),
            ("PUT", "/v1/volume/host/create", "", ns(N::HostVolumeCreate)),
            (
                "PUT",
                "/v1/volume/host/register",
                "",
                ns(N::HostVolumeRegister),
            ),
            ("GET", "/v1/volume/host/h1", "", ns(N::HostVolumeRead)),
            ("DELETE", "/v1/volume/host/h1", "", ns(N::HostVolumeDelete)),
            ("GET", "/v1/plugins", "type=csi", Plugin(List)),
            ("GET", "/v1/plugin/csi/p1", "", Plugin(Read)),
            ("GET", "/v1/quotas", "", Quota(Read)),
            // Internal routes take node secrets and server identity, not tokens.
            ("PUT", "/v1/internal/node/register", "", Internal),
            ("POST", "/v1/internal/raft/append", "", Internal),
        ];
        let mut wrong = Vec::new();
        for (method, path, query, want) in &table {
            let got = required(method, path, query);
            if &got != want {
                wrong.push(format!(
                    "{method} {path}?{query}: got {got:?}, want {want:?}"
                ));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn unknown_and_malformed_routes_fail_closed() {
        for (m, p) in [
            ("GET", "/v1/nope"),
            ("GET", "/v1/jobs/"),
            ("GET", "/v1//jobs"),
            ("GET", "/v1/job/../acl/tokens"),
            ("GET", "/v1/%6aobs"),
            ("PATCH", "/v1/jobs"),
            ("GET", "/ui/jobs"),
            ("GET", ""),
            ("GET", "/v1/status/leader/x"),
            ("GET", "/v1/acl/bootstrap"),
            ("DELETE", "/v1/nodes"),
        ] {
            assert_eq!(required(m, p, ""), Management, "{m} {p}");
        }
    }

    #[test]
    fn method_case_does_not_matter() {
        assert_eq!(required("get", "/v1/jobs", ""), Namespace(N::ListJobs));
        assert_eq!(required("HEAD", "/v1/status/leader", ""), Open);
    }

    #[test]
    fn query_values_are_decoded() {
        assert_eq!(
            query_param("a=1&namespace=%2a", "namespace").as_deref(),
            Some("*")
        );
        assert_eq!(query_param("x=a+b", "x").as_deref(), Some("a b"));
        assert_eq!(query_param("x=%zz", "x"), None);
        assert_eq!(query_param("x=%", "x"), None);
        assert_eq!(query_param("", "x"), None);
    }

    #[test]
    fn requirements_are_checked_against_an_acl() {
        let p = Policy::parse(
            r#"namespace "default" { policy = "read" }
               node { policy = "read" }"#,
        )
        .unwrap();
        let acl = Acl::from_policies([&p]);
        let allows =
            |m: &str, path: &str, q: &str| required(m, path, q).allows(&acl, "default", "");
        assert!(allows("GET", "/v1/jobs", ""));
        assert!(!allows("PUT", "/v1/jobs", ""));
        assert!(allows("GET", "/v1/node/n1/allocations", ""));
        assert!(!allows("POST", "/v1/node/n1/drain", ""));
        assert!(!allows("GET", "/v1/client/fs/logs/a1", ""));
        assert!(allows("GET", "/v1/status/leader", ""));
        assert!(!allows("GET", "/v1/acl/tokens", ""));
        assert!(!allows("PUT", "/v1/internal/node/register", ""));
        assert!(allows("GET", "/v1/jobs", "namespace=*"));
        assert!(!allows("PUT", "/v1/job/web/plan", ""));
        let nodes_only =
            Acl::from_policies([&Policy::parse("node { policy = \"read\" }").unwrap()]);
        assert!(required("GET", "/v1/node/n1/allocations", "").allows(&nodes_only, "default", ""));
        assert!(!required("GET", "/v1/jobs", "namespace=*").allows(&nodes_only, "*", ""));
        assert!(required("GET", "/v1/acl/tokens", "").allows(&Acl::management(), "x", ""));
        assert!(!Requirement::Internal.allows(&Acl::management(), "x", ""));
    }
}
