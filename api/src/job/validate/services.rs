//! Validation of `service` and `check` blocks (Nomad's rules and sentences).

use super::*;

/// Each service's own problems (see `Service::problems`), and its checks' durations.
pub(super) fn check_services(at: &str, services: &[Service], errs: &mut Vec<String>) {
    for s in services {
        for p in s.problems() {
            match p.check {
                Some(i) => errs.push(format!(
                    "{at}: service {:?} check {:?}: {}",
                    s.name, s.checks[i].name, p.message
                )),
                None => errs.push(format!("{at}: service {:?}: {}", s.name, p.message)),
            }
        }
        for c in &s.checks {
            let at = format!("{at}: service {:?} check {:?}", s.name, c.name);
            check_duration(&at, "interval", c.interval, errs);
            check_duration(&at, "timeout", c.timeout, errs);
        }
    }
}

/// The rules that look at all of a group's services together (its own and its tasks'):
/// one provider, no service twice on one port, port labels that exist, tasks that exist.
pub(super) fn check_group_services(at: &str, g: &TaskGroup, errs: &mut Vec<String>) {
    let task_services = g.tasks.iter().flat_map(|t| &t.services);
    let all: Vec<&Service> = g.services.iter().chain(task_services).collect();
    let providers: std::collections::BTreeSet<&str> = all.iter().map(|s| s.provider()).collect();
    if providers.len() > 1 {
        errs.push(format!(
            "{at}: Multiple service providers used: task group services must use the same \
             provider (found {})",
            providers.into_iter().collect::<Vec<_>>().join(" and ")
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for s in &all {
        if !seen.insert((s.name.as_str(), s.port_label.as_str())) {
            errs.push(format!("{at}: Service {:?} is duplicate", s.name));
        }
    }
    let tasks: Vec<&str> = g.tasks.iter().map(|t| t.name.as_str()).collect();
    for s in &g.services {
        if s.address_mode == ADDRESS_MODE_DRIVER {
            errs.push(format!(
                "{at}: service {:?} cannot use address_mode=\"driver\", only services defined \
                 in a \"task\" block can use this mode",
                s.name
            ));
        }
        if !s.task_name.is_empty() && !tasks.contains(&s.task_name.as_str()) {
            errs.push(format!(
                "{at}: service {:?} refers to task {:?}, which is not in the group",
                s.name, s.task_name
            ));
        }
        for c in &s.checks {
            if !c.task_name.is_empty() && !tasks.contains(&c.task_name.as_str()) {
                errs.push(format!(
                    "{at}: service {:?} check {:?} refers to task {:?}, which is not in the group",
                    s.name, c.name, c.task_name
                ));
            }
        }
    }
    check_port_labels(at, g, &all, errs);
}

/// Port labels: the group's network ports and its tasks' (a number is a port too; with
/// address_mode "driver" the driver's own port map decides).
fn check_port_labels(at: &str, g: &TaskGroup, all: &[&Service], errs: &mut Vec<String>) {
    let mut labels = std::collections::BTreeSet::new();
    let task_networks = g
        .tasks
        .iter()
        .filter_map(|t| t.resources.as_ref())
        .flat_map(|r| &r.networks);
    for n in g.networks.iter().chain(task_networks) {
        for p in n.reserved_ports.iter().chain(&n.dynamic_ports) {
            labels.insert(p.label.as_str());
        }
    }
    let known = |label: &str, mode: &str| {
        label.is_empty()
            || mode == ADDRESS_MODE_DRIVER
            || label.parse::<u16>().is_ok()
            || labels.contains(label)
    };
    let mut missing: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for s in all {
        if !known(&s.port_label, &s.address_mode) {
            missing.entry(&s.port_label).or_default().push(&s.name);
        }
    }
    for (label, services) in missing {
        errs.push(format!(
            "{at}: port label {label:?} referenced by services {} does not exist; \
             define it in the group's network block",
            services.join(", ")
        ));
    }
    for s in all {
        for c in &s.checks {
            if !known(&c.port_label, &c.address_mode) {
                errs.push(format!(
                    "{at}: port label {:?} referenced by service {:?} check {:?} does not \
                     exist; define it in the group's network block",
                    c.port_label, s.name, c.name
                ));
            }
        }
    }
}

/// One problem of a service found by `Service::problems`.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceProblem {
    /// The index of the check it is in, or `None` for the service itself.
    pub check: Option<usize>,
    /// The jobspec attribute or block it is about, so a jobspec parser can point at it
    /// ("" for the block as a whole).
    pub field: &'static str,
    pub message: String,
}

impl Service {
    /// Nomad's rules for one service and its checks, each problem a sentence. Empty
    /// fields count as their defaults, so a service can be checked before
    /// `canonicalize` (as the jobspec parser does, to point at the attribute); the rules
    /// that need the whole group are in `TaskGroup::validate`.
    pub fn problems(&self) -> Vec<ServiceProblem> {
        let mut out = Vec::new();
        let mut service = |field: &'static str, message: String| {
            out.push(ServiceProblem {
                check: None,
                field,
                message,
            })
        };
        if !self.name.is_empty() {
            if let Some(m) = service_name_problem(&self.name) {
                service("name", m);
            }
        }
        let mode = self.address_mode.as_str();
        if !mode.is_empty() && !SERVICE_ADDRESS_MODES.contains(&mode) {
            service(
                "address_mode",
                format!(
                    "Service address_mode must be \"auto\", \"host\", \"driver\", \"alloc\" or \
                     \"alloc_ipv6\"; not {mode:?}"
                ),
            );
        } else if !self.address.is_empty() && !matches!(mode, "" | ADDRESS_MODE_AUTO) {
            service(
                "address",
                "Service address_mode must be \"auto\" if address is set".to_string(),
            );
        }
        if !self.on_update.is_empty() && !ON_UPDATE_MODES.contains(&self.on_update.as_str()) {
            service(
                "on_update",
                format!(
                    "Service on_update must be \"require_healthy\", \"ignore_warnings\", or \
                     \"ignore\"; not {:?}",
                    self.on_update
                ),
            );
        }
        let provider = self.provider();
        let nomad = provider == SERVICE_PROVIDER_NOMAD;
        if !SERVICE_PROVIDERS.contains(&provider) {
            service(
                "provider",
                format!("Service provider must be \"consul\", or \"nomad\"; not {provider:?}"),
            );
        }
        if self.connect.as_ref().is_some_and(|c| !c.is_null()) {
            service(
                "connect",
                if nomad {
                    "Service with provider nomad cannot include Connect blocks".to_string()
                } else {
                    "Consul Connect is not supported by Drover, on purpose: the service mesh \
                     sidecars and upstreams this service expects would never be started; \
                     remove the connect block to run the service without the mesh"
                        .to_string()
                },
            );
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, c) in self.checks.iter().enumerate() {
            if !c.name.is_empty() && !names.insert(c.name.as_str()) {
                out.push(ServiceProblem {
                    check: Some(i),
                    field: "name",
                    message: format!(
                        "check {:?} is duplicate: give each check of a service its own name",
                        c.name
                    ),
                });
            }
            for (field, message) in c.problems(self) {
                out.push(ServiceProblem {
                    check: Some(i),
                    field,
                    message,
                });
            }
        }
        out
    }
}

impl ServiceCheck {
    /// Nomad's rules for a check of `service`, as (jobspec attribute, sentence).
    fn problems(&self, service: &Service) -> Vec<(&'static str, String)> {
        let mut out: Vec<(&'static str, String)> = Vec::new();
        let nomad = service.provider() == SERVICE_PROVIDER_NOMAD;
        let ty = self.check_type.to_lowercase();
        self.type_problems(service, nomad, &ty, &mut out);
        self.timing_problems(&mut out);
        let on_update = self.mode_problems(service, &mut out);
        if nomad {
            self.nomad_only_problems(&ty, on_update, &mut out);
        } else {
            self.consul_problems(&ty, &mut out);
        }
        for (field, what, v) in [
            ("path", "path", &self.path),
            ("body", "body", &self.body),
            ("command", "command", &self.command),
        ] {
            let mut e = Vec::new();
            check_text("check", what, v, &mut e);
            out.extend(e.into_iter().map(|m| (field, m)));
        }
        out
    }

    /// The check's type against the provider, and what that type needs (port, path, command).
    fn type_problems(
        &self,
        service: &Service,
        nomad: bool,
        ty: &str,
        out: &mut Vec<(&'static str, String)>,
    ) {
        let allowed = if nomad {
            NOMAD_CHECK_TYPES
        } else {
            CONSUL_CHECK_TYPES
        };
        if !allowed.contains(&ty) {
            let hint = if nomad && CONSUL_CHECK_TYPES.contains(&ty) {
                " (the nomad provider runs http and tcp checks only)"
            } else {
                ""
            };
            out.push((
                "type",
                format!(
                    "invalid check type ({ty:?}), must be one of {}{hint}",
                    allowed.join(", ")
                ),
            ));
        }
        if matches!(ty, CHECK_GRPC | CHECK_HTTP | CHECK_TCP)
            && self.port_label.is_empty()
            && service.port_label.is_empty()
        {
            out.push((
                "port",
                format!(
                    "check requires a port but neither check nor service {:?} have a port",
                    service.name
                ),
            ));
        }
        match ty {
            CHECK_HTTP if self.path.is_empty() => {
                out.push(("path", "http type must have http path".to_string()))
            }
            CHECK_HTTP if self.path.contains("://") => out.push((
                "path",
                format!(
                    "http type must have relative http path, not {:?}: the check adds the \
                     service's address and port",
                    self.path
                ),
            )),
            CHECK_SCRIPT if self.command.is_empty() => out.push((
                "command",
                "script type must have a valid script path".to_string(),
            )),
            _ => {}
        }
    }

    /// `interval`, `timeout` and `initial_status`.
    fn timing_problems(&self, out: &mut Vec<(&'static str, String)>) {
        let secs = show_nanos(MIN_CHECK_INTERVAL);
        if self.interval == 0 {
            out.push((
                "interval",
                format!("missing required value interval. Interval cannot be less than {secs}"),
            ));
        } else if self.interval < MIN_CHECK_INTERVAL {
            out.push((
                "interval",
                format!(
                    "interval ({}) cannot be lower than {secs}",
                    show_nanos(self.interval)
                ),
            ));
        }
        if self.timeout == 0 {
            out.push((
                "timeout",
                format!("missing required value timeout. Timeout cannot be less than {secs}"),
            ));
        } else if self.timeout < MIN_CHECK_INTERVAL {
            out.push((
                "timeout",
                format!(
                    "timeout ({}) is lower than required minimum timeout {secs}",
                    show_nanos(self.timeout)
                ),
            ));
        }
        let status = self.initial_status.as_str();
        if !status.is_empty() && !CHECK_INITIAL_STATUSES.contains(&status) {
            out.push((
                "initial_status",
                format!(
                    "invalid initial check state ({status}), must be one of \"passing\", \
                     \"warning\", \"critical\" or empty"
                ),
            ));
        }
    }

    /// `address_mode`, `protocol`, `on_update` (the check's, or its service's, returned)
    /// and `check_restart`.
    fn mode_problems<'a>(
        &'a self,
        service: &'a Service,
        out: &mut Vec<(&'static str, String)>,
    ) -> &'a str {
        let mode = self.address_mode.as_str();
        if mode == ADDRESS_MODE_AUTO {
            out.push((
                "address_mode",
                "invalid address_mode \"auto\" - auto only valid for services".to_string(),
            ));
        } else if !mode.is_empty() && !CHECK_ADDRESS_MODES.contains(&mode) {
            out.push((
                "address_mode",
                format!(
                    "invalid address_mode {mode:?}: use {}",
                    CHECK_ADDRESS_MODES.join(", ")
                ),
            ));
        }
        if !self.protocol.is_empty() && !CHECK_PROTOCOLS.contains(&self.protocol.as_str()) {
            out.push((
                "protocol",
                format!("invalid protocol {:?}: use http or https", self.protocol),
            ));
        }
        let on_update = if self.on_update.is_empty() {
            service.on_update.as_str()
        } else {
            self.on_update.as_str()
        };
        if !on_update.is_empty() && !ON_UPDATE_MODES.contains(&on_update) {
            out.push((
                "on_update",
                format!(
                    "on_update must be \"require_healthy\", \"ignore_warnings\", or \"ignore\"; \
                     got {on_update:?}"
                ),
            ));
        }
        if let Some(cr) = &self.check_restart {
            if on_update == ON_UPDATE_IGNORE {
                out.push((
                    "check_restart",
                    "on_update value \"ignore\" is not compatible with check_restart".to_string(),
                ));
            } else if on_update == ON_UPDATE_IGNORE_WARNINGS && !cr.ignore_warnings {
                out.push((
                    "check_restart",
                    "on_update value \"ignore_warnings\" not supported with check_restart \
                     ignore_warnings value \"false\""
                        .to_string(),
                ));
            }
            if cr.limit < 0 {
                out.push((
                    "check_restart",
                    format!(
                        "check_restart limit must be greater than or equal to 0 but found {}",
                        cr.limit
                    ),
                ));
            }
            if cr.grace < 0 {
                out.push((
                    "check_restart",
                    format!(
                        "check_restart grace must be greater than or equal to 0 but found {}",
                        show_nanos(cr.grace)
                    ),
                ));
            }
        }
        on_update
    }

    /// The thresholds of a check, by attribute name.
    fn thresholds(&self) -> [(&'static str, i64); 3] {
        [
            ("success_before_passing", self.success_before_passing),
            ("failures_before_critical", self.failures_before_critical),
            ("failures_before_warning", self.failures_before_warning),
        ]
    }

    /// Fields the nomad provider does not run (they belong to Consul's checks).
    fn nomad_only_problems(
        &self,
        ty: &str,
        on_update: &str,
        out: &mut Vec<(&'static str, String)>,
    ) {
        let mode = self.address_mode.as_str();
        let thresholds = self.thresholds();
        let consul_only = |what: &str| format!("{what} may only be set for Consul service checks");
        if self.expose {
            out.push(("expose", consul_only("expose")));
        }
        if on_update == ON_UPDATE_IGNORE_WARNINGS {
            out.push((
                "on_update",
                "on_update may only be set to ignore_warnings for Consul service checks \
                 (Nomad's checks have no warning state)"
                    .to_string(),
            ));
        }
        if self
            .check_restart
            .as_ref()
            .is_some_and(|c| c.ignore_warnings)
        {
            out.push((
                "check_restart",
                "ignore_warnings on check_restart only supported for Consul service checks"
                    .to_string(),
            ));
        }
        if mode == ADDRESS_MODE_DRIVER {
            out.push(("address_mode", consul_only("address_mode = driver")));
        }
        if ty == CHECK_HTTP
            && !self.method.is_empty()
            && !HTTP_METHODS.contains(&self.method.as_str())
        {
            out.push((
                "method",
                format!(
                    "method type {:?} not supported in Nomad http check",
                    self.method
                ),
            ));
        }
        for (field, v) in thresholds {
            if v != 0 {
                out.push((field, consul_only(field)));
            }
        }
        if !self.tls_server_name.is_empty() {
            out.push(("tls_server_name", consul_only("tls_server_name")));
        }
    }

    /// Consul's own rules for `expose` and the thresholds.
    fn consul_problems(&self, ty: &str, out: &mut Vec<(&'static str, String)>) {
        let thresholds = self.thresholds();
        if self.expose && !matches!(ty, CHECK_GRPC | CHECK_HTTP) {
            out.push((
                "expose",
                "expose may only be set on HTTP or gRPC checks".to_string(),
            ));
        }
        for (field, v) in thresholds {
            if v < 0 {
                out.push((field, format!("{field} must be non-negative")));
            } else if v > 0 && !matches!(ty, CHECK_GRPC | CHECK_HTTP | CHECK_TCP) {
                out.push((
                    field,
                    format!("{field} not supported for check of type {ty:?}"),
                ));
            }
        }
    }
}

/// The HTTP methods a Nomad http check may use.
const HTTP_METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE",
];

/// Why a service name is refused, if it is (Nomad's rule: RFC 1123, letters, digits and
/// dashes, at most 63 characters). Interpolations (`${NOMAD_JOB_NAME}`...) are resolved
/// on the client, so each counts as a valid piece here.
pub fn service_name_problem(name: &str) -> Option<String> {
    let mut stripped = String::new();
    let mut rest = name;
    while let Some(start) = rest.find("${") {
        match rest[start..].find('}') {
            Some(end) => {
                stripped.push_str(&rest[..start]);
                stripped.push_str("ENV-VAR");
                rest = &rest[start + end + 1..];
            }
            None => break,
        }
    }
    stripped.push_str(rest);
    let b = stripped.as_bytes();
    let ok = (1..=63).contains(&b.len())
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric();
    (!ok).then(|| {
        format!(
            "Service name must be valid per RFC 1123 and can contain only alphanumeric \
             characters or dashes and must be no longer than 63 characters: {name:?}"
        )
    })
}
