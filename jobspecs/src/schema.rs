//! The names each jobspec block accepts: the ones Drover lowers, and the Nomad names it
//! parses but ignores for now (they produce a warning, never an error).

/// What one block kind accepts.
pub struct Schema {
    /// Attributes Drover reads.
    pub attrs: &'static [&'static str],
    /// Nested blocks Drover reads.
    pub blocks: &'static [&'static str],
    /// Nomad attributes or blocks that Drover accepts and ignores.
    pub ignored: &'static [&'static str],
}

impl Schema {
    /// Every name valid here, for suggestions.
    pub fn all_names(&self) -> Vec<&'static str> {
        let mut v: Vec<&'static str> = self
            .attrs
            .iter()
            .chain(self.blocks)
            .chain(self.ignored)
            .copied()
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }
}

pub const FILE: Schema = Schema {
    attrs: &[],
    blocks: &["job", "variable", "locals"],
    ignored: &[],
};

pub const VARIABLE: Schema = Schema {
    attrs: &["type", "default", "description"],
    blocks: &["validation"],
    ignored: &["sensitive", "nullable"],
};

pub const DYNAMIC: Schema = Schema {
    attrs: &["for_each", "iterator", "labels"],
    blocks: &["content"],
    ignored: &[],
};

pub const VALIDATION: Schema = Schema {
    attrs: &["condition", "error_message"],
    blocks: &[],
    ignored: &[],
};

pub const JOB: Schema = Schema {
    attrs: &[
        "name",
        "type",
        "region",
        "datacenters",
        "namespace",
        "node_pool",
        "priority",
        "all_at_once",
        "meta",
    ],
    blocks: &[
        "meta",
        "constraint",
        "affinity",
        "spread",
        "update",
        "group",
        "reschedule",
        "migrate",
        "task",
        "periodic",
        "parameterized",
        "vault",
    ],
    ignored: &[
        "multiregion",
        "vault_token",
        "vault_namespace",
        "consul_token",
        "consul_namespace",
        "ui",
        "consul",
        "id",
        "payload",
        "dispatched",
    ],
};

pub const GROUP: Schema = Schema {
    attrs: &[
        "count",
        "meta",
        "shutdown_delay",
        "stop_after_client_disconnect",
        "max_client_disconnect",
    ],
    blocks: &[
        "constraint",
        "affinity",
        "spread",
        "restart",
        "reschedule",
        "ephemeral_disk",
        "update",
        "migrate",
        "network",
        "meta",
        "task",
        "service",
        "volume",
        "vault",
    ],
    ignored: &[
        "scaling",
        "consul",
        "disconnect",
        "prevent_reschedule_on_lost",
        "max_run_duration",
    ],
};

pub const TASK: Schema = Schema {
    attrs: &[
        "driver",
        "user",
        "kill_timeout",
        "kill_signal",
        "shutdown_delay",
        "leader",
        "env",
        "meta",
        "config",
    ],
    blocks: &[
        "config",
        "env",
        "resources",
        "meta",
        "lifecycle",
        "logs",
        "restart",
        "constraint",
        "affinity",
        "artifact",
        "dispatch_payload",
        "service",
        "template",
        "vault",
        "csi_plugin",
    ],
    ignored: &[
        "volume_mount",
        "scaling",
        "identity",
        "consul",
        "action",
        "schedule",
        "kind",
        "secret",
        "max_run_duration",
    ],
};

pub const PERIODIC: Schema = Schema {
    attrs: &["cron", "crons", "prohibit_overlap", "time_zone", "enabled"],
    blocks: &[],
    ignored: &[],
};

pub const PARAMETERIZED: Schema = Schema {
    attrs: &["payload", "meta_required", "meta_optional"],
    blocks: &[],
    ignored: &[],
};

pub const SERVICE: Schema = Schema {
    attrs: &[
        "name",
        "port",
        "tags",
        "canary_tags",
        "enable_tag_override",
        "address",
        "address_mode",
        "on_update",
        "provider",
        "task",
        "cluster",
        "meta",
        "canary_meta",
    ],
    blocks: &["check", "check_restart", "connect", "meta", "canary_meta"],
    ignored: &["tagged_addresses", "identity", "kind", "weights"],
};

pub const CHECK: Schema = Schema {
    attrs: &[
        "name",
        "type",
        "command",
        "args",
        "path",
        "protocol",
        "port",
        "address_mode",
        "interval",
        "timeout",
        "initial_status",
        "tls_server_name",
        "tls_skip_verify",
        "method",
        "header",
        "body",
        "success_before_passing",
        "failures_before_critical",
        "failures_before_warning",
        "on_update",
        "grpc_service",
        "grpc_use_tls",
        "expose",
        "task",
    ],
    blocks: &["check_restart", "header"],
    ignored: &["notes"],
};

pub const CHECK_RESTART: Schema = Schema {
    attrs: &["limit", "grace", "ignore_warnings"],
    blocks: &[],
    ignored: &[],
};

pub const VOLUME: Schema = Schema {
    attrs: &["type", "source", "read_only"],
    blocks: &[],
    ignored: &[
        "access_mode",
        "attachment_mode",
        "per_alloc",
        "mount_options",
        "sticky",
    ],
};

pub const PAYLOAD_MODES: &[&str] = &["optional", "required", "forbidden"];

pub const RESOURCES: Schema = Schema {
    attrs: &["cpu", "cores", "memory", "memory_max", "disk"],
    blocks: &[],
    ignored: &["iops", "device", "network", "numa", "secrets"],
};

pub const NETWORK: Schema = Schema {
    attrs: &["mode", "mbits"],
    blocks: &["port"],
    ignored: &["hostname", "dns", "cni"],
};

pub const PORT: Schema = Schema {
    attrs: &["static", "to", "host_network"],
    blocks: &[],
    ignored: &["ignore_collision"],
};

pub const RESTART: Schema = Schema {
    attrs: &["attempts", "interval", "delay", "mode", "render_templates"],
    blocks: &[],
    ignored: &[],
};

pub const RESCHEDULE: Schema = Schema {
    attrs: &[
        "attempts",
        "interval",
        "delay",
        "delay_function",
        "max_delay",
        "unlimited",
    ],
    blocks: &[],
    ignored: &[],
};

pub const EPHEMERAL_DISK: Schema = Schema {
    attrs: &["sticky", "migrate", "size"],
    blocks: &[],
    ignored: &[],
};

pub const UPDATE: Schema = Schema {
    attrs: &[
        "stagger",
        "max_parallel",
        "health_check",
        "min_healthy_time",
        "healthy_deadline",
        "progress_deadline",
        "auto_revert",
        "auto_promote",
        "canary",
    ],
    blocks: &[],
    ignored: &[],
};

pub const MIGRATE: Schema = Schema {
    attrs: &[
        "max_parallel",
        "health_check",
        "min_healthy_time",
        "healthy_deadline",
    ],
    blocks: &[],
    ignored: &[],
};

pub const CONSTRAINT: Schema = Schema {
    attrs: &[
        "attribute",
        "operator",
        "value",
        "version",
        "semver",
        "regexp",
        "distinct_hosts",
        "distinct_property",
        "set_contains",
        "set_contains_any",
        "set_contains_all",
    ],
    blocks: &[],
    ignored: &[],
};

pub const AFFINITY: Schema = Schema {
    attrs: &[
        "attribute",
        "operator",
        "value",
        "weight",
        "version",
        "semver",
        "regexp",
        "set_contains",
        "set_contains_any",
        "set_contains_all",
    ],
    blocks: &[],
    ignored: &[],
};

pub const SPREAD: Schema = Schema {
    attrs: &["attribute", "weight", "max_skew"],
    blocks: &["target"],
    ignored: &[],
};

pub const SPREAD_TARGET: Schema = Schema {
    attrs: &["value", "percent"],
    blocks: &[],
    ignored: &[],
};

pub const LIFECYCLE: Schema = Schema {
    attrs: &["hook", "sidecar"],
    blocks: &[],
    ignored: &[],
};

pub const DISPATCH_PAYLOAD: Schema = Schema {
    attrs: &["file"],
    blocks: &[],
    ignored: &[],
};

pub const ARTIFACT: Schema = Schema {
    attrs: &["source", "destination", "mode", "options"],
    blocks: &["options"],
    ignored: &["headers", "chown"],
};

pub const TEMPLATE: Schema = Schema {
    attrs: &[
        "data",
        "source",
        "destination",
        "perms",
        "left_delimiter",
        "right_delimiter",
        "env",
        "change_mode",
        "change_signal",
        "splay",
        "error_on_missing_key",
    ],
    blocks: &[],
    ignored: &["change_script", "wait", "uid", "gid", "vault_grace", "once"],
};

pub const TEMPLATE_CHANGE_MODES: &[&str] = &["restart", "signal", "noop", "script"];

pub const ARTIFACT_MODES: &[&str] = &["any", "file", "dir"];

pub const LOGS: Schema = Schema {
    attrs: &["max_files", "max_file_size", "disabled", "enabled"],
    blocks: &[],
    ignored: &[],
};

/// Constraint and affinity operators Nomad accepts.
pub const OPERATORS: &[&str] = &[
    "=",
    "==",
    "is",
    "!=",
    "not",
    ">",
    ">=",
    "<",
    "<=",
    "regexp",
    "version",
    "semver",
    "set_contains",
    "set_contains_all",
    "set_contains_any",
    "distinct_hosts",
    "distinct_property",
    "is_set",
    "is_not_set",
];

/// Drivers Drover runs.
pub const DRIVERS: &[&str] = &["docker", "exec", "raw_exec"];
/// Nomad drivers Drover knows of but does not run yet. These, and any other driver
/// (Nomad takes any plugin's name), are a warning, not an error: only a client with
/// that driver could run the task.
pub const DRIVERS_NOT_YET: &[&str] = &["java", "qemu", "podman"];

pub const LIFECYCLE_HOOKS: &[&str] = &["prestart", "poststart", "poststop"];
pub const RESTART_MODES: &[&str] = &["fail", "delay"];
pub const DELAY_FUNCTIONS: &[&str] = &["constant", "exponential", "fibonacci"];
