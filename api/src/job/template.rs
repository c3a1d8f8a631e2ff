//! `template` blocks: files the client agent renders into a task's directories from Go
//! template text (Nomad's consul-template language) before the task starts, and again
//! when the data they read changes.

use serde::{Deserialize, Serialize};

pub const TEMPLATE_CHANGE_MODE_RESTART: &str = "restart";
pub const TEMPLATE_CHANGE_MODE_SIGNAL: &str = "signal";
pub const TEMPLATE_CHANGE_MODE_NOOP: &str = "noop";

/// Nomad's default `splay`: up to 5 s of random delay before acting on a change.
pub const TEMPLATE_DEFAULT_SPLAY: i64 = 5_000_000_000;
pub const TEMPLATE_DEFAULT_PERMS: &str = "0644";

/// The longest `data` a template may carry.
pub const MAX_TEMPLATE_LEN: usize = 1024 * 1024;

/// One `template` block, with Nomad's JSON field names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Template {
    /// `source`: a template file already in the task directory (e.g. from an artifact).
    pub source_path: String,
    /// `destination`: where the rendered file goes, relative to the task directory.
    pub dest_path: String,
    /// `data`: the template text itself.
    pub embedded_tmpl: String,
    /// `restart` (default), `signal` or `noop`.
    pub change_mode: String,
    /// The signal sent with `change_mode = "signal"`.
    pub change_signal: String,
    /// Nanoseconds: the most random delay before acting on a change.
    pub splay: i64,
    /// The rendered file's mode, an octal string.
    pub perms: String,
    pub left_delim: String,
    pub right_delim: String,
    /// `env = true`: the rendered file holds `KEY=VALUE` lines for the task's environment.
    pub envvars: bool,
    /// `error_on_missing_key`: a missing map key fails the render instead of printing
    /// `<no value>`.
    pub err_missing_key: bool,
}

impl Default for Template {
    fn default() -> Self {
        Template {
            source_path: String::new(),
            dest_path: String::new(),
            embedded_tmpl: String::new(),
            change_mode: TEMPLATE_CHANGE_MODE_RESTART.into(),
            change_signal: String::new(),
            splay: TEMPLATE_DEFAULT_SPLAY,
            perms: TEMPLATE_DEFAULT_PERMS.into(),
            left_delim: "{{".into(),
            right_delim: "}}".into(),
            envvars: false,
            err_missing_key: false,
        }
    }
}

impl Template {
    /// Nomad's defaults for what a partial JSON template left empty.
    pub fn canonicalize(&mut self) {
        if self.change_mode.is_empty() {
            self.change_mode = TEMPLATE_CHANGE_MODE_RESTART.into();
        }
        if self.perms.is_empty() {
            self.perms = TEMPLATE_DEFAULT_PERMS.into();
        }
        if self.left_delim.is_empty() {
            self.left_delim = "{{".into();
        }
        if self.right_delim.is_empty() {
            self.right_delim = "}}".into();
        }
        self.change_signal = self.change_signal.to_uppercase();
    }

    /// The file mode `perms` names; `None` unless it is 1 to 4 octal digits naming
    /// permission bits only (no setuid, setgid or sticky bit).
    pub fn mode(&self) -> Option<u32> {
        parse_perms(&self.perms)
    }
}

/// `perms` as a mode: 1 to 4 octal digits, at most `0777`.
pub fn parse_perms(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 4 || !s.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return None;
    }
    u32::from_str_radix(s, 8).ok().filter(|m| *m <= 0o777)
}

/// Problems with one task's templates, each a sentence starting with `at`.
pub fn template_problems(at: &str, templates: &[Template], errs: &mut Vec<String>) {
    let mut dests = std::collections::BTreeSet::new();
    for (i, t) in templates.iter().enumerate() {
        let at = format!("{at}: template {}", i + 1);
        if t.source_path.is_empty() && t.embedded_tmpl.is_empty() {
            errs.push(format!(
                "{at}: needs `data` (the template text) or `source` (a template file in the \
                 task directory)"
            ));
        }
        if !t.source_path.is_empty() && !t.embedded_tmpl.is_empty() {
            errs.push(format!("{at}: set `data` or `source`, not both"));
        }
        if t.dest_path.is_empty() {
            errs.push(format!("{at}: needs a `destination`"));
        } else if !dests.insert(t.dest_path.as_str()) {
            errs.push(format!(
                "{at}: destination {:?} is used by another template of the task",
                t.dest_path
            ));
        }
        for (what, p) in [("destination", &t.dest_path), ("source", &t.source_path)] {
            if let Some(why) = relative_path_problem(p) {
                errs.push(format!("{at}: {what} {p:?} {why}"));
            }
        }
        match t.change_mode.as_str() {
            TEMPLATE_CHANGE_MODE_RESTART | TEMPLATE_CHANGE_MODE_NOOP => {}
            TEMPLATE_CHANGE_MODE_SIGNAL => {
                if t.change_signal.is_empty() {
                    errs.push(format!(
                        "{at}: change_mode \"signal\" needs a `change_signal` (e.g. \"SIGHUP\")"
                    ));
                }
            }
            other => errs.push(format!(
                "{at}: change_mode {other:?} is not one of restart, signal, noop"
            )),
        }
        if t.splay < 0 {
            errs.push(format!("{at}: splay must not be negative"));
        } else if t.splay > super::MAX_DURATION {
            errs.push(format!("{at}: splay is longer than 876000h"));
        }
        if t.mode().is_none() {
            errs.push(format!(
                "{at}: perms {:?} is not an octal file mode such as \"644\" (at most \"777\")",
                t.perms
            ));
        }
        if t.left_delim.is_empty() || t.right_delim.is_empty() {
            errs.push(format!("{at}: left and right delimiters must not be empty"));
        }
        let texts = [
            &t.embedded_tmpl,
            &t.dest_path,
            &t.source_path,
            &t.change_signal,
            &t.left_delim,
            &t.right_delim,
        ];
        if texts.iter().any(|s| s.contains('\0')) {
            errs.push(format!("{at}: contains a null character"));
        }
        if t.embedded_tmpl.len() > MAX_TEMPLATE_LEN {
            errs.push(format!(
                "{at}: data is {} bytes long; the limit is {}",
                t.embedded_tmpl.len(),
                MAX_TEMPLATE_LEN
            ));
        }
    }
}

/// Why `p` is not a relative path that stays below the task directory (`None`: it is, or
/// it starts with a runtime interpolation the agent checks once resolved).
fn relative_path_problem(p: &str) -> Option<&'static str> {
    if p.starts_with("${") {
        return None;
    }
    if p.starts_with('/') {
        return Some("is absolute; it must be relative to the task directory");
    }
    if p.split('/').any(|c| c == "..") {
        return Some("contains '..'; it must stay inside the task directory");
    }
    if p.contains('\\') {
        return Some("contains '\\'");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perms_are_octal_permission_bits_only() {
        assert_eq!(parse_perms("644"), Some(0o644));
        assert_eq!(parse_perms("0600"), Some(0o600));
        assert_eq!(parse_perms("7"), Some(0o7));
        for bad in ["", "888", "4755", "0o644", "-644", "12345", " 644", "rw"] {
            assert_eq!(parse_perms(bad), None, "{bad}");
        }
    }

    #[test]
    fn json_uses_nomads_field_names_and_defaults() {
        let t: Template =
            serde_json::from_str(r#"{"DestPath":"local/a","EmbeddedTmpl":"x"}"#).unwrap();
        assert_eq!(t.change_mode, "restart");
        assert_eq!(t.splay, 5_000_000_000);
        assert_eq!(t.perms, "0644");
        assert_eq!(
            (t.left_delim.as_str(), t.right_delim.as_str()),
            ("{{", "}}")
        );
        let v = serde_json::to_value(&t).unwrap();
        for k in [
            "SourcePath",
            "DestPath",
            "EmbeddedTmpl",
            "ChangeMode",
            "ChangeSignal",
            "Splay",
            "Perms",
            "LeftDelim",
            "RightDelim",
            "Envvars",
            "ErrMissingKey",
        ] {
            assert!(v.get(k).is_some(), "{k} missing from {v}");
        }
    }

    #[test]
    fn escaping_destinations_and_bad_modes_are_refused() {
        let mut errs = Vec::new();
        let bad = Template {
            dest_path: "../../etc/x".into(),
            change_mode: "reload".into(),
            perms: "4755".into(),
            ..Default::default()
        };
        template_problems("task \"t\"", &[bad], &mut errs);
        let all = errs.join("\n");
        assert!(all.contains("needs `data`"), "{all}");
        assert!(all.contains("contains '..'"), "{all}");
        assert!(all.contains("change_mode \"reload\""), "{all}");
        assert!(all.contains("perms \"4755\""), "{all}");
        let mut errs = Vec::new();
        let ok = Template {
            dest_path: "local/app.conf".into(),
            embedded_tmpl: "{{ env \"X\" }}".into(),
            ..Default::default()
        };
        template_problems("task \"t\"", &[ok], &mut errs);
        assert!(errs.is_empty(), "{errs:?}");
    }
}
