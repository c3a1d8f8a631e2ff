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

/// Nomad's go-style durations ("10s", "1m30s", "500ms") as a `Duration`.
pub fn parse_duration(s: &str) -> anyhow::Result<std::time::Duration> {
    let mut total = 0f64;
    let mut num = String::new();
    let mut unit = String::new();
    let flush = |num: &mut String, unit: &mut String, total: &mut f64| -> anyhow::Result<()> {
        if num.is_empty() {
            anyhow::bail!("invalid duration {s:?}");
        }
        let v: f64 = num.parse()?;
        let mult = match unit.as_str() {
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => anyhow::bail!("invalid duration {s:?}: unknown unit {unit:?}"),
        };
        *total += v * mult;
        num.clear();
        unit.clear();
        Ok(())
    };
    for c in s.trim().chars() {
        if c.is_ascii_digit() || c == '.' {
            if !unit.is_empty() {
                flush(&mut num, &mut unit, &mut total)?;
            }
            num.push(c);
        } else {
            unit.push(c);
        }
    }
    flush(&mut num, &mut unit, &mut total)?;
    Ok(std::time::Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

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
