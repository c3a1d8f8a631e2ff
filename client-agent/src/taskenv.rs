//! A task's environment (`NOMAD_*` variables plus the task's `env` block) and the
//! `${...}` interpolation of runtime variables in driver config and env values.
//!
//! Recognised forms: `${NOMAD_X}` or any other variable of the task's environment,
//! `${env["X"]}`, `${attr.X}` (node attributes), `${node.unique.id}`,
//! `${node.unique.name}`, `${node.datacenter}`, `${node.class}`, `${node.pool}`,
//! `${node.region}`, `${meta.X}` / `${node.meta.X}` (node meta). Anything unknown is
//! left as written, as Nomad does.

use crate::allocdir::TaskDirs;
use crate::driver::FsIsolation;
use crate::ports::AllocatedPort;
use api::{Allocation, Node, Task};
use std::collections::BTreeMap;

/// The environment of one task and what `${...}` can refer to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskEnv {
    /// Variables the task process gets (before any host environment a driver adds).
    pub vars: BTreeMap<String, String>,
    node_attrs: BTreeMap<String, String>,
    node_meta: BTreeMap<String, String>,
    node_fields: BTreeMap<String, String>,
}

fn sanitize_key(k: &str) -> String {
    k.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl TaskEnv {
    /// An environment of these variables only (no node attributes or meta).
    pub fn from_vars(vars: BTreeMap<String, String>) -> TaskEnv {
        TaskEnv {
            vars,
            ..TaskEnv::default()
        }
    }

    /// Builds the environment of `task` of `alloc` on `node`, for a task that sees host
    /// paths and has no ports.
    pub fn build(node: &Node, alloc: &Allocation, task: &Task, dirs: &TaskDirs) -> TaskEnv {
        Self::build_with(node, alloc, task, dirs, &[], FsIsolation::None)
    }

    /// Builds the environment of `task` of `alloc` on `node`: its directories as the
    /// driver's isolation shows them to the task, and its group's ports.
    // Long but flat: one line per variable Nomad sets; split up, the list would be harder
    // to check against Nomad's runtime environment docs.
    pub fn build_with(
        node: &Node,
        alloc: &Allocation,
        task: &Task,
        dirs: &TaskDirs,
        ports: &[AllocatedPort],
        fs: FsIsolation,
    ) -> TaskEnv {
        let job = alloc.job.as_deref();
        let mut vars = BTreeMap::new();
        let mut set = |k: &str, v: String| {
            vars.insert(k.to_string(), v);
        };
        set("NOMAD_ALLOC_ID", alloc.id.to_string());
        set("NOMAD_SHORT_ALLOC_ID", api::short_id(&alloc.id).to_string());
        set("NOMAD_ALLOC_NAME", alloc.name.to_string());
        set("NOMAD_ALLOC_INDEX", alloc.index().to_string());
        set("NOMAD_TASK_NAME", task.name.clone());
        set("NOMAD_GROUP_NAME", alloc.task_group.to_string());
        set("NOMAD_JOB_ID", alloc.job_id.to_string());
        set(
            "NOMAD_JOB_NAME",
            job.map(|j| j.name.clone())
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| alloc.job_id.to_string()),
        );
        let ns = if alloc.namespace.is_empty() {
            job.map(|j| j.ns().to_string())
                .unwrap_or_else(|| api::DEFAULT_NAMESPACE.into())
        } else {
            alloc.namespace.to_string()
        };
        set("NOMAD_NAMESPACE", ns);
        let region = job
            .map(|j| j.region.clone())
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| api::DEFAULT_REGION.into());
        set("NOMAD_REGION", region.clone());
        set("NOMAD_DC", node.datacenter.clone());
        match fs {
            FsIsolation::None => {
                set("NOMAD_ALLOC_DIR", dirs.shared.display().to_string());
                set("NOMAD_TASK_DIR", dirs.local.display().to_string());
                set("NOMAD_SECRETS_DIR", dirs.secrets.display().to_string());
            }
            FsIsolation::Chroot | FsIsolation::Image => {
                set("NOMAD_ALLOC_DIR", "/alloc".into());
                set("NOMAD_TASK_DIR", "/local".into());
                set("NOMAD_SECRETS_DIR", "/secrets".into());
            }
        }
        let res = alloc
            .task_resources
            .get(&task.name)
            .or(task.resources.as_ref())
            .cloned()
            .unwrap_or_default();
        set("NOMAD_CPU_LIMIT", res.cpu.to_string());
        if res.cores > 0 {
            set("NOMAD_CPU_CORES", res.cores.to_string());
        }
        set("NOMAD_MEMORY_LIMIT", res.memory_mb.to_string());
        if res.memory_max_mb > 0 {
            set("NOMAD_MEMORY_MAX_LIMIT", res.memory_max_mb.to_string());
        }
        vars.extend(crate::ports::env_vars(ports));
        // Meta: the task's overrides the group's, which overrides the job's.
        let group = job.and_then(|j| j.task_group(&alloc.task_group));
        let mut meta = BTreeMap::new();
        if let Some(j) = job {
            meta.extend(j.meta.clone());
        }
        if let Some(g) = group {
            meta.extend(g.meta.clone());
        }
        meta.extend(task.meta.clone());
        for (k, v) in meta {
            vars.insert(format!("NOMAD_META_{}", sanitize_key(&k)), v);
        }

        let mut node_fields = BTreeMap::new();
        node_fields.insert("unique.id".to_string(), node.id.clone());
        node_fields.insert("unique.name".to_string(), node.name.clone());
        node_fields.insert("datacenter".to_string(), node.datacenter.clone());
        node_fields.insert("class".to_string(), node.node_class.clone());
        node_fields.insert("pool".to_string(), node.node_pool.clone());
        node_fields.insert("region".to_string(), region);

        let mut env = TaskEnv {
            vars,
            node_attrs: node.attributes.clone(),
            node_meta: node.meta.clone(),
            node_fields,
        };
        // The task's own variables may refer to the ones above, not to each other.
        let task_vars: Vec<(String, String)> = task
            .env
            .iter()
            .map(|(k, v)| (k.clone(), env.interpolate(v)))
            .collect();
        env.vars.extend(task_vars);
        env
    }

    fn lookup(&self, expr: &str) -> Option<String> {
        let expr = expr.trim();
        if let Some(inner) = expr.strip_prefix("env[").and_then(|s| s.strip_suffix(']')) {
            let key = inner.trim().trim_matches('"').trim_matches('\'');
            return self.vars.get(key).cloned();
        }
        if let Some(k) = expr.strip_prefix("attr.") {
            return self.node_attrs.get(k).cloned();
        }
        if let Some(k) = expr
            .strip_prefix("meta.")
            .or_else(|| expr.strip_prefix("node.meta."))
        {
            return self.node_meta.get(k).cloned();
        }
        if let Some(k) = expr.strip_prefix("node.") {
            return self.node_fields.get(k).cloned();
        }
        self.vars.get(expr).cloned()
    }

    /// Replaces every `${...}` this environment knows; leaves the others as written.
    pub fn interpolate(&self, s: &str) -> String {
        let mut out = String::with_capacity(s.len());
        let mut rest = s;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            match after.find('}') {
                Some(end) => {
                    let expr = &after[..end];
                    match self.lookup(expr) {
                        Some(v) => out.push_str(&v),
                        None => out.push_str(&rest[start..start + 2 + end + 1]),
                    }
                    rest = &after[end + 1..];
                }
                None => {
                    out.push_str(&rest[start..]);
                    rest = "";
                }
            }
        }
        out.push_str(rest);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::allocdir::AllocDir;
    use std::path::Path;
    use std::sync::Arc;

    pub(crate) fn sample() -> (Node, Allocation, Task) {
        let mut node = Node {
            id: "node-1".into(),
            name: "n1".into(),
            datacenter: "dc1".into(),
            ..Default::default()
        };
        node.attributes.insert("kernel.name".into(), "linux".into());
        node.meta.insert("rack".into(), "r7".into());
        let task = Task {
            name: "web".into(),
            driver: "raw_exec".into(),
            env: BTreeMap::from([
                ("GREETING".into(), "hi ${NOMAD_TASK_NAME}".into()),
                ("KERNEL".into(), "${attr.kernel.name}".into()),
            ]),
            meta: BTreeMap::from([("tier".into(), "front".into())]),
            ..Default::default()
        };
        let mut job = api::Job {
            id: "example".into(),
            task_groups: vec![api::TaskGroup {
                name: "g".into(),
                tasks: vec![task.clone()],
                ..Default::default()
            }],
            ..Default::default()
        };
        job.canonicalize();
        let alloc = Allocation {
            id: "0123456789abcdef".into(),
            name: "example.g[3]".into(),
            job_id: "example".into(),
            task_group: "g".into(),
            job: Some(Arc::new(job)),
            ..Default::default()
        };
        (node, alloc, job_task(&task))
    }

    fn job_task(t: &Task) -> Task {
        let mut t = t.clone();
        t.canonicalize();
        t
    }

    #[test]
    fn env_has_nomad_variables_and_interpolated_task_env() {
        let (node, alloc, task) = sample();
        let dirs = AllocDir::new(Path::new("/data"), &alloc.id)
            .task_dirs("web")
            .unwrap();
        let env = TaskEnv::build(&node, &alloc, &task, &dirs);
        let v = &env.vars;
        assert_eq!(v["NOMAD_ALLOC_ID"], "0123456789abcdef");
        assert_eq!(v["NOMAD_SHORT_ALLOC_ID"], "01234567");
        assert_eq!(v["NOMAD_ALLOC_INDEX"], "3");
        assert_eq!(v["NOMAD_ALLOC_NAME"], "example.g[3]");
        assert_eq!(v["NOMAD_JOB_NAME"], "example");
        assert_eq!(v["NOMAD_NAMESPACE"], "default");
        assert_eq!(v["NOMAD_REGION"], "global");
        assert_eq!(v["NOMAD_DC"], "dc1");
        assert_eq!(v["NOMAD_GROUP_NAME"], "g");
        assert_eq!(
            v["NOMAD_TASK_DIR"],
            "/data/alloc/0123456789abcdef/web/local"
        );
        assert_eq!(v["NOMAD_ALLOC_DIR"], "/data/alloc/0123456789abcdef/alloc");
        assert_eq!(v["NOMAD_CPU_LIMIT"], "100");
        assert_eq!(v["NOMAD_MEMORY_LIMIT"], "300");
        assert_eq!(v["NOMAD_META_tier"], "front");
        assert_eq!(v["GREETING"], "hi web");
        assert_eq!(v["KERNEL"], "linux");
    }

    #[test]
    fn interpolation_resolves_known_forms_and_keeps_unknown_ones() {
        let (node, alloc, task) = sample();
        let dirs = AllocDir::new(Path::new("/d"), &alloc.id)
            .task_dirs("web")
            .unwrap();
        let env = TaskEnv::build(&node, &alloc, &task, &dirs);
        assert_eq!(
            env.interpolate(r#"${node.unique.id}/${meta.rack}/${env["GREETING"]}/${NOMAD_JOB_ID}"#),
            "node-1/r7/hi web/example"
        );
        assert_eq!(
            env.interpolate("${node.datacenter}-${node.meta.rack}"),
            "dc1-r7"
        );
        assert_eq!(
            env.interpolate("${nope} and ${attr.missing}"),
            "${nope} and ${attr.missing}"
        );
        assert_eq!(env.interpolate("open ${brace"), "open ${brace");
        assert_eq!(env.interpolate("no vars"), "no vars");
    }
}
