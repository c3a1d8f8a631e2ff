//! Agent configuration files (`-config agent.hcl`), in the shape of Nomad's agent config.
//!
//! Parsed with hcl-rs through serde: the file is plain configuration (no job language, no
//! functions), so a typed struct is the whole parser. Unknown keys are rejected with the
//! name, so a misspelt setting never passes silently.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AgentFile {
    pub name: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub bind_addr: Option<String>,
    pub datacenter: Option<String>,
    pub region: Option<String>,
    pub log_level: Option<String>,
    pub ports: Option<Ports>,
    /// Addresses other servers and agents should use to reach this one.
    pub advertise: Option<Advertise>,
    pub server: Option<ServerBlock>,
    pub client: Option<ClientBlock>,
    /// `plugin "raw_exec" { config { enabled = true } }`
    pub plugin: Option<BTreeMap<String, PluginBlock>>,
    /// Connection limits of the HTTP and RPC listeners (Nomad's `limits` block).
    pub limits: Option<Limits>,
    /// `telemetry { ... }`: what `GET /v1/metrics` publishes.
    pub telemetry: Option<Telemetry>,
    /// `acl { enabled = true }`: token checks on every request.
    pub acl: Option<AclBlock>,
    /// `tls { http = true rpc = true ca_file cert_file key_file }`: TLS on the HTTP API,
    /// mutual TLS between servers and with client agents.
    pub tls: Option<TlsBlock>,
}

/// `tls { ... }`, Nomad's names and defaults (everything off). Paths are read as given
/// (relative to the agent's working directory).
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TlsBlock {
    pub http: Option<bool>,
    pub rpc: Option<bool>,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub verify_server_hostname: Option<bool>,
    pub verify_https_client: Option<bool>,
}

impl TlsBlock {
    /// The block as the TLS crate takes it, for `region`.
    pub fn options(&self, region: &str) -> drover_tls::TlsOptions {
        drover_tls::TlsOptions {
            http: self.http.unwrap_or(false),
            rpc: self.rpc.unwrap_or(false),
            ca_file: self.ca_file.clone(),
            cert_file: self.cert_file.clone(),
            key_file: self.key_file.clone(),
            verify_server_hostname: self.verify_server_hostname.unwrap_or(false),
            verify_https_client: self.verify_https_client.unwrap_or(false),
            region: region.to_string(),
        }
    }
}

/// `acl { ... }`, Nomad's names: `enabled`, and how long resolved tokens, policies and
/// roles may be cached (`token_ttl`, `policy_ttl`, `role_ttl`, Go durations).
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AclBlock {
    pub enabled: Option<bool>,
    pub token_ttl: Option<String>,
    pub policy_ttl: Option<String>,
    pub role_ttl: Option<String>,
    pub token_min_expiration_ttl: Option<String>,
    pub token_max_expiration_ttl: Option<String>,
}

/// `telemetry { ... }`, Nomad's names. Metrics are always kept and read at scrape time, so
/// `collection_interval` is accepted and checked but changes nothing; names never carry
/// the hostname (as with Nomad's `disable_hostname = true`, which Prometheus wants).
/// `prometheus_metrics` is off by default as in Nomad, but on in `-dev`.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Telemetry {
    pub collection_interval: Option<String>,
    pub disable_hostname: Option<bool>,
    pub prometheus_metrics: Option<bool>,
    pub publish_allocation_metrics: Option<bool>,
    pub publish_node_metrics: Option<bool>,
}

/// `limits { ... }`, Nomad's names and defaults: 100 connections per client IP (0 turns
/// the cap off) and 5 s to send a request's headers (here the header-read timeout; "0s"
/// turns it off).
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub http_max_conns_per_client: Option<usize>,
    pub rpc_max_conns_per_client: Option<usize>,
    pub https_handshake_timeout: Option<String>,
    pub rpc_handshake_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Ports {
    pub http: Option<u16>,
    pub rpc: Option<u16>,
    /// Accepted for compatibility; Drover has no gossip layer.
    pub serf: Option<u16>,
}

#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Advertise {
    pub http: Option<String>,
    pub rpc: Option<String>,
    pub serf: Option<String>,
}

#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServerBlock {
    pub enabled: Option<bool>,
    pub bootstrap_expect: Option<usize>,
    pub server_join: Option<ServerJoin>,
    /// Nomad's go-duration strings, e.g. "10s".
    pub heartbeat_grace: Option<String>,
    pub min_heartbeat_ttl: Option<String>,
    /// How long a request that arrives while there is no leader waits for one ("5s").
    pub rpc_hold_timeout: Option<String>,
    /// The most allocations one job may ask for (sum of group counts); 0: no limit.
    pub job_max_count: Option<u64>,
    /// The largest job source `PUT /v1/jobs/parse` takes, as a size ("1M", "512KiB").
    pub job_max_source_size: Option<String>,
    /// Scheduling workers on the leader (Nomad's `num_schedulers`; Drover's default 2).
    pub num_schedulers: Option<usize>,
}

#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServerJoin {
    #[serde(default)]
    pub retry_join: Vec<String>,
}

#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClientBlock {
    pub enabled: Option<bool>,
    #[serde(default)]
    pub servers: Vec<String>,
    pub node_class: Option<String>,
    pub node_pool: Option<String>,
    #[serde(default)]
    pub meta: BTreeMap<String, String>,
    /// Nomad's client `options` map; Drover reads `user.denylist` and
    /// `user.checked_drivers` (which users exec tasks may not run as).
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PluginBlock {
    pub config: Option<BTreeMap<String, serde_json::Value>>,
}

impl AgentFile {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read agent config {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Self, hcl::Error> {
        hcl::from_str(text)
    }

    /// Is the named driver plugin switched on (`plugin "X" { config { enabled = true } }`)?
    pub fn plugin_enabled(&self, name: &str) -> Option<bool> {
        self.plugin
            .as_ref()?
            .get(name)?
            .config
            .as_ref()?
            .get("enabled")?
            .as_bool()
    }

    /// The `config` block of `plugin "<name>"`, if any.
    pub fn plugin_config(&self, name: &str) -> Option<&BTreeMap<String, serde_json::Value>> {
        self.plugin.as_ref()?.get(name)?.config.as_ref()
    }

    /// Fold a later file over this one: what the later file sets wins.
    pub fn merge(self, later: AgentFile) -> AgentFile {
        AgentFile {
            name: later.name.or(self.name),
            data_dir: later.data_dir.or(self.data_dir),
            bind_addr: later.bind_addr.or(self.bind_addr),
            datacenter: later.datacenter.or(self.datacenter),
            region: later.region.or(self.region),
            log_level: later.log_level.or(self.log_level),
            ports: later.ports.or(self.ports),
            advertise: later.advertise.or(self.advertise),
            server: later.server.or(self.server),
            client: later.client.or(self.client),
            limits: later.limits.or(self.limits),
            telemetry: later.telemetry.or(self.telemetry),
            acl: later.acl.or(self.acl),
            tls: later.tls.or(self.tls),
            plugin: match (self.plugin, later.plugin) {
                (Some(mut a), Some(b)) => {
                    a.extend(b);
                    Some(a)
                }
                (a, b) => b.or(a),
            },
        }
    }
}

/// Nomad's go-style durations ("10s", "1m30s", "500ms") as a `Duration` (checked: huge
/// or negative values are an error, never a panic).
pub fn parse_duration(s: &str) -> anyhow::Result<std::time::Duration> {
    api::duration::parse_go_duration(s).map_err(anyhow::Error::msg)
}

/// A size as Nomad writes it ("1M", "512KiB", "2MB", "1000"): decimal units (K, M, G,
/// with or without B) are powers of 1000, binary ones (KiB, MiB, GiB) of 1024. Checked:
/// a size that does not fit is an error, never a wrap.
pub fn parse_byte_size(s: &str) -> anyhow::Result<u64> {
    let text = s.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "kib" | "ki" => 1 << 10,
        "mib" | "mi" => 1 << 20,
        "gib" | "gi" => 1 << 30,
        other => anyhow::bail!(
            "invalid size {s:?}: unknown unit {other:?} (use B, K, M, G or KiB, MiB, GiB)"
        ),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| anyhow::anyhow!("invalid size {s:?}: expected a number like \"1M\""))?;
    let bytes = value * scale as f64;
    anyhow::ensure!(
        bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64,
        "invalid size {s:?}: too large"
    );
    Ok(bytes.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes_parse_like_nomads() {
        assert_eq!(parse_byte_size("1M").unwrap(), 1_000_000);
        assert_eq!(parse_byte_size("512KiB").unwrap(), 512 * 1024);
        assert_eq!(parse_byte_size("2 MB").unwrap(), 2_000_000);
        assert_eq!(parse_byte_size("100").unwrap(), 100);
        let err = parse_byte_size("1X").unwrap_err().to_string();
        assert!(err.contains("unknown unit"), "{err}");
        assert!(parse_byte_size("99999999999999999999G").is_err());
        assert!(parse_byte_size("M").is_err());
    }

    #[test]
    fn a_nomad_tls_block_parses_and_unknown_keys_are_refused() {
        let f = AgentFile::parse(
            "tls {\n  http = true\n  rpc = true\n  ca_file = \"ca.pem\"\n  \
             cert_file = \"s.pem\"\n  key_file = \"s-key.pem\"\n  \
             verify_server_hostname = true\n  verify_https_client = false\n}\n",
        )
        .unwrap();
        let o = f.tls.unwrap().options("europe");
        assert!(o.http && o.rpc && o.verify_server_hostname && !o.verify_https_client);
        assert_eq!(o.ca_file.as_deref(), Some(Path::new("ca.pem")));
        assert_eq!(o.region, "europe");
        let e = AgentFile::parse("tls {\n  verify_incoming = true\n}\n").unwrap_err();
        assert!(e.to_string().contains("verify_incoming"), "{e}");
        assert_eq!(AgentFile::default().tls, None, "off unless configured");
    }

    #[test]
    fn server_job_limits_parse() {
        let f = AgentFile::parse(
            "server {\n  enabled = true\n  job_max_count = 10\n  job_max_source_size = \"2M\"\n  num_schedulers = 4\n}\n",
        )
        .unwrap();
        let s = f.server.unwrap();
        assert_eq!(s.num_schedulers, Some(4));
        assert_eq!(s.job_max_count, Some(10));
        assert_eq!(s.job_max_source_size.as_deref(), Some("2M"));
    }

    #[test]
    fn nomad_style_agent_config_parses() {
        let f = AgentFile::parse(
            r#"
            name = "s1"
            data_dir = "/tmp/d"
            bind_addr = "127.0.0.1"
            ports {
              http = 5646
              rpc  = 5647
            }
            server {
              enabled = true
              bootstrap_expect = 3
                server_join {
                retry_join = ["127.0.0.1:6647", "127.0.0.1:7647"]
              }
            }
            client {
              enabled = true
              servers = ["127.0.0.1:5646"]
              meta {
                rack = "r1"
              }
            }
            plugin "raw_exec" {
              config {
                enabled = true
              }
            }
            "#,
        )
        .unwrap();
        assert_eq!(f.ports.as_ref().unwrap().rpc, Some(5647));
        let s = f.server.as_ref().unwrap();
        assert_eq!(s.bootstrap_expect, Some(3));
        assert_eq!(s.server_join.as_ref().unwrap().retry_join.len(), 2);
        assert_eq!(f.client.as_ref().unwrap().meta["rack"], "r1");
        assert_eq!(f.plugin_enabled("raw_exec"), Some(true));
        assert_eq!(f.plugin_enabled("docker"), None);
    }

    #[test]
    fn acl_block_parses_with_nomads_names() {
        let f = AgentFile::parse(
            "acl {\n  enabled = true\n  token_ttl = \"30s\"\n  policy_ttl = \"60s\"\n  role_ttl = \"60s\"\n}\n",
        )
        .unwrap();
        let a = f.acl.unwrap();
        assert_eq!(a.enabled, Some(true));
        assert_eq!(a.token_ttl.as_deref(), Some("30s"));
        assert!(AgentFile::parse("acl { enabld = true }").is_err());
    }

    #[test]
    fn telemetry_block_parses_with_nomads_names() {
        let f = AgentFile::parse(
            r#"
            telemetry {
              collection_interval        = "1s"
              disable_hostname           = true
              prometheus_metrics         = true
              publish_allocation_metrics = true
              publish_node_metrics       = true
            }
            "#,
        )
        .unwrap();
        let t = f.telemetry.unwrap();
        assert_eq!(t.prometheus_metrics, Some(true));
        assert_eq!(t.collection_interval.as_deref(), Some("1s"));
        assert!(AgentFile::parse("telemetry { statsd_adress = \"x\" }").is_err());
    }

    #[test]
    fn exec_and_docker_plugin_settings_reach_the_drivers() {
        use client_agent::driver::caps::CapSet;
        use client_agent::driver::docker::DockerPluginConfig;
        use client_agent::driver::exec::ExecConfig;
        let f = AgentFile::parse(
            r#"
            client {
              options = {
                "user.denylist" = "ubuntu, admin"
              }
            }
            plugin "exec" {
              config {
                default_user = "daemon"
                allow_caps   = ["chown", "CAP_NET_BIND_SERVICE"]
              }
            }
            plugin "docker" {
              config {
                volumes {
                  enabled = true
                }
              }
            }
            "#,
        )
        .unwrap();
        let options = &f.client.as_ref().unwrap().options;
        let exec = ExecConfig::from_agent_config(f.plugin_config("exec"), options).unwrap();
        assert_eq!(exec.default_user, "daemon");
        assert_eq!(exec.user_denylist, vec!["ubuntu", "admin"]);
        assert_eq!(
            exec.allow_caps,
            CapSet::parse(&["chown", "net_bind_service"], "t").unwrap()
        );
        let docker = DockerPluginConfig::from_agent_config(f.plugin_config("docker")).unwrap();
        assert!(docker.volumes_enabled);

        // Without settings: Nomad's defaults (nobody, root refused, volumes off).
        let none = AgentFile::parse("").unwrap();
        let exec =
            ExecConfig::from_agent_config(none.plugin_config("exec"), &Default::default()).unwrap();
        assert_eq!(exec, ExecConfig::default());
        assert_eq!(exec.default_user, "nobody");
        assert!(exec.user_denylist.contains(&"root".to_string()));
        let docker = DockerPluginConfig::from_agent_config(none.plugin_config("docker")).unwrap();
        assert!(!docker.volumes_enabled);
    }

    #[test]
    fn wrong_driver_settings_are_refused_with_their_names() {
        let f = AgentFile::parse(
            "plugin \"docker\" {\n config {\n volumes {\n enabld = true\n }\n }\n}\n",
        )
        .unwrap();
        let e = client_agent::driver::docker::DockerPluginConfig::from_agent_config(
            f.plugin_config("docker"),
        )
        .unwrap_err();
        assert!(e.contains("\"enabld\""), "{e}");
        let f =
            AgentFile::parse("plugin \"exec\" {\n config {\n allow_caps = [\"net_rwa\"]\n }\n}\n")
                .unwrap();
        let e = client_agent::driver::exec::ExecConfig::from_agent_config(
            f.plugin_config("exec"),
            &Default::default(),
        )
        .unwrap_err();
        assert!(e.contains("\"net_rwa\" is not a Linux capability"), "{e}");
    }

    #[test]
    fn misspelt_settings_are_rejected_by_name() {
        let e = AgentFile::parse("servr { enabled = true }").unwrap_err();
        assert!(e.to_string().contains("servr"), "{e}");
    }

    #[test]
    fn later_files_win() {
        let a = AgentFile::parse("name = \"a\"\ndatacenter = \"dc1\"").unwrap();
        let b = AgentFile::parse("name = \"b\"").unwrap();
        let m = a.merge(b);
        assert_eq!(m.name.as_deref(), Some("b"));
        assert_eq!(m.datacenter.as_deref(), Some("dc1"));
    }

    #[test]
    fn go_durations_parse() {
        assert_eq!(parse_duration("10s").unwrap().as_secs(), 10);
        assert_eq!(parse_duration("1m30s").unwrap().as_secs(), 90);
        assert_eq!(parse_duration("250ms").unwrap().as_millis(), 250);
        assert!(parse_duration("ten").is_err());
    }
}
