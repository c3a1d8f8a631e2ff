//! ACL policies, tokens and roles in Nomad's API shapes (PascalCase JSON), their list
//! stubs, and Nomad's validation of names and fields.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest description of a policy or role, in bytes.
pub const MAX_DESCRIPTION_LEN: usize = 256;
/// Longest token name, in bytes.
pub const MAX_TOKEN_NAME_LEN: usize = 256;

/// `/v1/acl/policy/:name`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AclPolicy {
    pub name: String,
    pub description: String,
    /// The policy text (HCL or JSON), as given.
    pub rules: String,
    #[serde(rename = "JobACL", skip_serializing_if = "Option::is_none")]
    pub job_acl: Option<JobAcl>,
    pub create_index: u64,
    pub modify_index: u64,
}

/// A policy attached to a job, group or task (workload identity).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct JobAcl {
    pub namespace: String,
    #[serde(rename = "JobID")]
    pub job_id: String,
    pub group: String,
    pub task: String,
}

/// A policy as `/v1/acl/policies` lists it: without its rules.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AclPolicyListStub {
    pub name: String,
    pub description: String,
    #[serde(rename = "JobACL", skip_serializing_if = "Option::is_none")]
    pub job_acl: Option<JobAcl>,
    pub create_index: u64,
    pub modify_index: u64,
}

impl From<&AclPolicy> for AclPolicyListStub {
    fn from(p: &AclPolicy) -> Self {
        AclPolicyListStub {
            name: p.name.clone(),
            description: p.description.clone(),
            job_acl: p.job_acl.clone(),
            create_index: p.create_index,
            modify_index: p.modify_index,
        }
    }
}

impl AclPolicy {
    /// Nomad's checks on a policy before it is stored: name, description and rules
    /// (the rules must parse; the error carries their `line:column`).
    pub fn validate(&self) -> Result<crate::Policy, String> {
        validate_policy_name(&self.name)?;
        if self.description.len() > MAX_DESCRIPTION_LEN {
            return Err(format!(
                "description longer than {MAX_DESCRIPTION_LEN} bytes"
            ));
        }
        crate::Policy::parse(&self.rules).map_err(|e| format!("failed to parse rules: {e}"))
    }
}

/// The kind of a token.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenType {
    #[default]
    Client,
    Management,
}

/// A role a token holds, by ID and name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AclTokenRoleLink {
    #[serde(rename = "ID")]
    pub id: String,
    pub name: String,
}

/// `/v1/acl/token/:accessor_id`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AclToken {
    #[serde(rename = "AccessorID")]
    pub accessor_id: String,
    #[serde(rename = "SecretID")]
    pub secret_id: String,
    pub name: String,
    #[serde(rename = "Type")]
    pub kind: TokenType,
    pub policies: Vec<String>,
    pub roles: Vec<AclTokenRoleLink>,
    pub global: bool,
    /// RFC 3339, chosen by the leader.
    pub create_time: String,
    /// RFC 3339; `None` for a token that never expires.
    pub expiration_time: Option<String>,
    /// Nanoseconds; written as a Go duration string (`"1h0m0s"`, `""` when unset) as
    /// Nomad does, read from either a string or a number.
    #[serde(
        rename = "ExpirationTTL",
        serialize_with = "ttl_out",
        deserialize_with = "ttl_in"
    )]
    pub expiration_ttl: i64,
    pub create_index: u64,
    pub modify_index: u64,
}

/// A token as `/v1/acl/tokens` lists it: everything but the secret.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AclTokenListStub {
    #[serde(rename = "AccessorID")]
    pub accessor_id: String,
    pub name: String,
    #[serde(rename = "Type")]
    pub kind: TokenType,
    pub policies: Vec<String>,
    pub roles: Vec<AclTokenRoleLink>,
    pub global: bool,
    pub create_time: String,
    pub expiration_time: Option<String>,
    pub create_index: u64,
    pub modify_index: u64,
}

impl From<&AclToken> for AclTokenListStub {
    fn from(t: &AclToken) -> Self {
        AclTokenListStub {
            accessor_id: t.accessor_id.clone(),
            name: t.name.clone(),
            kind: t.kind,
            policies: t.policies.clone(),
            roles: t.roles.clone(),
            global: t.global,
            create_time: t.create_time.clone(),
            expiration_time: t.expiration_time.clone(),
            create_index: t.create_index,
            modify_index: t.modify_index,
        }
    }
}

impl AclToken {
    pub fn is_management(&self) -> bool {
        self.kind == TokenType::Management
    }

    /// Nomad's structural checks on a token a user submits (TTL bounds are the
    /// server's configuration and are checked there).
    pub fn validate(&self) -> Result<(), String> {
        if self.name.len() > MAX_TOKEN_NAME_LEN {
            return Err(format!("token name longer than {MAX_TOKEN_NAME_LEN} bytes"));
        }
        if self.expiration_ttl < 0 {
            return Err("token expiration TTL cannot be negative".into());
        }
        match self.kind {
            TokenType::Client if self.policies.is_empty() && self.roles.is_empty() => {
                Err("client token missing policies or roles".into())
            }
            TokenType::Management if !self.policies.is_empty() || !self.roles.is_empty() => {
                Err("management token cannot be associated with policies or roles".into())
            }
            _ => Ok(()),
        }
    }
}

/// A policy a role grants, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AclRolePolicyLink {
    pub name: String,
}

/// `/v1/acl/role/:id`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AclRole {
    #[serde(rename = "ID")]
    pub id: String,
    pub name: String,
    pub description: String,
    pub policies: Vec<AclRolePolicyLink>,
    pub create_index: u64,
    pub modify_index: u64,
}

impl AclRole {
    pub fn validate(&self) -> Result<(), String> {
        validate_role_name(&self.name)?;
        if self.description.len() > MAX_DESCRIPTION_LEN {
            return Err(format!(
                "description longer than {MAX_DESCRIPTION_LEN} bytes"
            ));
        }
        if self.policies.is_empty() {
            return Err("at least one policy must be specified".into());
        }
        Ok(())
    }
}

fn name_chars_ok(name: &str) -> bool {
    (1..=128).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Policy names: 1 to 128 letters, digits and dashes.
pub fn validate_policy_name(name: &str) -> Result<(), String> {
    if name_chars_ok(name) {
        Ok(())
    } else {
        Err(format!(
            "invalid policy name {name:?}: use 1 to 128 letters, digits and dashes"
        ))
    }
}

/// Role names: 1 to 128 letters, digits and dashes.
pub fn validate_role_name(name: &str) -> Result<(), String> {
    if name_chars_ok(name) {
        Ok(())
    } else {
        Err(format!(
            "invalid role name {name:?}: use 1 to 128 letters, digits and dashes"
        ))
    }
}

fn ttl_out<S: Serializer>(ns: &i64, s: S) -> Result<S::Ok, S::Error> {
    if *ns == 0 {
        s.serialize_str("")
    } else {
        s.serialize_str(&format_go_duration(*ns))
    }
}

fn ttl_in<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Nanos(i64),
        Text(String),
        Null(()),
    }
    match Raw::deserialize(d)? {
        Raw::Nanos(n) => Ok(n),
        Raw::Null(()) => Ok(0),
        Raw::Text(t) if t.is_empty() => Ok(0),
        Raw::Text(t) => parse_go_duration(&t).map_err(serde::de::Error::custom),
    }
}

/// Go's `time.Duration.String()`: `"1h0m0s"`, `"1m30s"`, `"1.5s"`, `"250ms"`.
pub fn format_go_duration(ns: i64) -> String {
    if ns == 0 {
        return "0s".into();
    }
    let sign = if ns < 0 { "-" } else { "" };
    let u = ns.unsigned_abs();
    let frac = |v: u64, unit: u64| -> String {
        let whole = v / unit;
        let rest = v % unit;
        if rest == 0 {
            return whole.to_string();
        }
        // `unit` is a power of ten: its zeros are the fraction's digits.
        let digits = unit.to_string().len() - 1;
        let s = format!("{rest:0digits$}");
        format!("{whole}.{}", s.trim_end_matches('0'))
    };
    if u < 1_000 {
        return format!("{sign}{u}ns");
    }
    if u < 1_000_000 {
        return format!("{sign}{}µs", frac(u, 1_000));
    }
    if u < 1_000_000_000 {
        return format!("{sign}{}ms", frac(u, 1_000_000));
    }
    let hours = u / 3_600_000_000_000;
    let minutes = (u / 60_000_000_000) % 60;
    let secs = frac(u % 60_000_000_000, 1_000_000_000);
    if hours > 0 {
        format!("{sign}{hours}h{minutes}m{secs}s")
    } else if minutes > 0 {
        format!("{sign}{minutes}m{secs}s")
    } else {
        format!("{sign}{secs}s")
    }
}

/// A Go duration string (`"1h30m"`, `"90s"`, `"1.5h"`) in nanoseconds; overflow and
/// unknown units are errors.
pub fn parse_go_duration(text: &str) -> Result<i64, String> {
    let bad = || format!("invalid duration {text:?}");
    let (neg, mut rest) = match text.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total: i128 = 0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let (num, tail) = rest.split_at(num_len);
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let scale: i128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(bad()),
        };
        let (whole, fraction) = num.split_once('.').unwrap_or((num, ""));
        if (whole.is_empty() && fraction.is_empty()) || whole.len() > 20 || fraction.contains('.') {
            return Err(bad());
        }
        let whole: i128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| bad())?
        };
        let mut part = whole.checked_mul(scale).ok_or_else(bad)?;
        let mut div = 1i128;
        for d in fraction.bytes().take(18) {
            div *= 10;
            part += i128::from(d - b'0') * scale / div;
        }
        total += part;
        if total > i128::from(i64::MAX) {
            return Err(bad());
        }
        rest = tail;
    }
    let total = i64::try_from(total).map_err(|_| bad())?;
    Ok(if neg { -total } else { total })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_json_uses_nomads_field_names() {
        let t = AclToken {
            accessor_id: "a".into(),
            secret_id: "s".into(),
            name: "n".into(),
            kind: TokenType::Client,
            policies: vec!["readonly".into()],
            roles: vec![AclTokenRoleLink {
                id: "r1".into(),
                name: "ops".into(),
            }],
            expiration_ttl: 3_600_000_000_000,
            ..AclToken::default()
        };
        let v = serde_json::to_value(&t).unwrap();
        assert_eq!(v["AccessorID"], "a");
        assert_eq!(v["SecretID"], "s");
        assert_eq!(v["Type"], "client");
        assert_eq!(v["Roles"][0]["ID"], "r1");
        assert_eq!(v["ExpirationTTL"], "1h0m0s");
        assert_eq!(v["ExpirationTime"], serde_json::Value::Null);
        let back: AclToken = serde_json::from_value(v).unwrap();
        assert_eq!(back, t);
        let stub = serde_json::to_value(AclTokenListStub::from(&t)).unwrap();
        assert!(stub.get("SecretID").is_none());
        let partial: AclToken =
            serde_json::from_str(r#"{"Type":"management","ExpirationTTL":60000000000}"#).unwrap();
        assert!(partial.is_management());
        assert_eq!(partial.expiration_ttl, 60_000_000_000);
    }

    #[test]
    fn policy_and_role_json_shapes() {
        let p: AclPolicy = serde_json::from_str(
            r#"{"Name":"ro","Rules":"node { policy = \"read\" }","JobACL":{"Namespace":"default","JobID":"web"}}"#,
        )
        .unwrap();
        assert_eq!(p.job_acl.as_ref().unwrap().job_id, "web");
        assert!(p.validate().is_ok());
        let stub = serde_json::to_value(AclPolicyListStub::from(&p)).unwrap();
        assert!(stub.get("Rules").is_none());
        let r: AclRole =
            serde_json::from_str(r#"{"ID":"x","Name":"ops","Policies":[{"Name":"ro"}]}"#).unwrap();
        assert!(r.validate().is_ok());
        assert_eq!(
            serde_json::to_value(&r).unwrap()["Policies"][0]["Name"],
            "ro"
        );
    }

    #[test]
    fn names_follow_nomads_rules() {
        assert!(validate_policy_name("read-only-1").is_ok());
        assert!(validate_policy_name("").is_err());
        assert!(validate_policy_name("has space").is_err());
        assert!(validate_policy_name("under_score").is_err());
        assert!(validate_policy_name(&"a".repeat(128)).is_ok());
        assert!(validate_policy_name(&"a".repeat(129)).is_err());
        assert!(validate_role_name("ops").is_ok());
        assert!(validate_role_name("ops/x").is_err());
        let long = AclToken {
            name: "x".repeat(257),
            kind: TokenType::Management,
            ..AclToken::default()
        };
        assert!(long.validate().is_err());
    }

    #[test]
    fn token_kinds_and_policies_must_agree() {
        let client = AclToken::default();
        assert!(client.validate().is_err());
        let mgmt = AclToken {
            kind: TokenType::Management,
            policies: vec!["x".into()],
            ..AclToken::default()
        };
        assert!(mgmt.validate().is_err());
        let role = AclRole {
            name: "r".into(),
            ..AclRole::default()
        };
        assert!(role.validate().is_err());
    }

    #[test]
    fn policy_validation_reports_rule_positions() {
        let p = AclPolicy {
            name: "bad".into(),
            rules: "namespace \"a\" {\n  policy = \"nope\"\n}".into(),
            ..AclPolicy::default()
        };
        let e = p.validate().unwrap_err();
        assert!(e.contains("2:12: invalid policy \"nope\""), "{e}");
    }

    #[test]
    fn go_durations_round_trip() {
        for (ns, s) in [
            (3_600_000_000_000i64, "1h0m0s"),
            (90_000_000_000, "1m30s"),
            (1_500_000_000, "1.5s"),
            (250_000_000, "250ms"),
            (10_000, "10µs"),
            (5, "5ns"),
        ] {
            assert_eq!(format_go_duration(ns), s);
            assert_eq!(parse_go_duration(s), Ok(ns));
        }
        assert_eq!(parse_go_duration("1.5h"), Ok(5_400_000_000_000));
        assert!(parse_go_duration("10 days").is_err());
        assert!(parse_go_duration("9999999999999h").is_err());
        assert!(parse_go_duration("").is_err());
        assert!(parse_go_duration("h").is_err());
    }
}
