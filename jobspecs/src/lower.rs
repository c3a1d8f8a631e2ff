//! Lowering the HCL tree of one `job` block into `api::Job`: jobs, groups and tasks,
//! with the positioned checks that need the source (duplicate names, drivers, counts).

use crate::features::{default_service_names, CSI, VAULT};
use crate::parts::{child, default_migrate, default_update, set};
use crate::reader::Reader;
use crate::schema::{self, DRIVERS, DRIVERS_NOT_YET};
use api::{Job, ReschedulePolicy, RestartPolicy, Task, TaskGroup};
use hcl_edit::structure::Block;
use hcl_edit::Span;
use std::collections::BTreeMap;

impl Reader<'_> {
    /// Lowers a `job "id" { ... }` block. Groups are read after the job's own settings,
    /// so that job-level `update`, `migrate` and `reschedule` and the job type are known.
    // Long on purpose: one match arm per attribute and block the schema allows.
    pub fn job(&mut self, b: &Block) -> Job {
        let id = self.label(b, "").unwrap_or_default();
        if let (Some(label), Some(m)) = (b.labels.first(), api::job_id_problem(&id)) {
            self.error(label.span(), "", m);
        }
        let path = format!("job {id:?}");
        let mut job = Job {
            id,
            ..Job::default()
        };
        let (attrs, blocks) = self.items(&b.body, &path, &schema::JOB);
        for a in attrs {
            match a.key.as_str() {
                "name" => set(&mut job.name, self.string(a, &path)),
                "type" => {
                    let types = ["service", "batch", "system", "sysbatch"];
                    set(&mut job.job_type, self.one_of(a, &path, &types));
                }
                "region" => set(&mut job.region, self.string(a, &path)),
                "namespace" => set(&mut job.namespace, self.string(a, &path)),
                "node_pool" => set(&mut job.node_pool, self.string(a, &path)),
                "datacenters" => set(&mut job.datacenters, self.string_list(a, &path)),
                "priority" => {
                    if let Some(p) = self.int(a, &path) {
                        if !(1..=100).contains(&p) {
                            self.error(
                                a.value.span(),
                                &path,
                                format!("priority must be between 1 and 100, got {p}"),
                            );
                        }
                        job.priority = p.clamp(0, 1000) as i32;
                    }
                }
                "all_at_once" => set(&mut job.all_at_once, self.bool(a, &path)),
                "meta" => set(&mut job.meta, self.string_map(a, &path)),
                _ => {}
            }
        }
        let job_type = if job.job_type.is_empty() {
            api::JOB_TYPE_SERVICE.to_string()
        } else {
            job.job_type.clone()
        };
        let mut groups = Vec::new();
        let mut job_reschedule = None;
        let mut job_migrate = None;
        for blk in blocks {
            match blk.ident.as_str() {
                "meta" => job.meta.extend(self.string_map_block(blk, &path)),
                "constraint" => job.constraints.extend(self.constraint(blk, &path)),
                "affinity" => job.affinities.extend(self.affinity(blk, &path)),
                "spread" => job.spreads.extend(self.spread(blk, &path)),
                "update" => job.update = Some(self.update(blk, &path, default_update())),
                "reschedule" => {
                    let base = ReschedulePolicy::default_for(&job_type);
                    job_reschedule = Some(self.reschedule(blk, &path, base));
                }
                "migrate" => job_migrate = Some(self.migrate(blk, &path, default_migrate())),
                "periodic" => job.periodic = Some(self.periodic(blk, &path, &job_type)),
                "parameterized" => {
                    job.parameterized_job = Some(self.parameterized(blk, &path, &job_type))
                }
                "vault" => self.reject(blk.ident.span(), &path, &VAULT),
                "group" | "task" => groups.push(blk),
                _ => {}
            }
        }
        let inherited = Inherited {
            job_type: &job_type,
            update: job.update.clone(),
            reschedule: job_reschedule,
            migrate: job_migrate,
        };
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for g in groups {
            let Some(name) = self.label(g, &path) else {
                continue;
            };
            if let Some(line) = seen.get(&name) {
                let msg = format!("group {name:?} is defined twice (first on line {line})");
                self.error(g.labels[0].span(), &path, msg);
                continue;
            }
            seen.insert(name.clone(), self.line_of(g));
            let problem = if g.ident.as_str() == "task" {
                api::task_name_problem(&name)
            } else {
                api::group_name_problem(&name)
            };
            if let Some(m) = problem {
                self.error(g.labels[0].span(), &path, m);
            }
            let group = if g.ident.as_str() == "task" {
                self.lone_task(g, &path, name, &inherited)
            } else {
                self.group(g, &path, name, &inherited)
            };
            job.task_groups.push(group);
        }
        if job.task_groups.is_empty() {
            self.error(
                b.ident.span(),
                &path,
                "a job needs at least one `group \"name\" { ... }`",
            );
        }
        default_service_names(&mut job);
        job
    }

    fn line_of(&self, b: &Block) -> usize {
        b.span().map(|s| self.sm.line_col(s.start).0).unwrap_or(0)
    }

    /// A `task` directly in a job: Nomad wraps it in a group of the same name.
    fn lone_task(&mut self, b: &Block, job_path: &str, name: String, inh: &Inherited) -> TaskGroup {
        let restart = RestartPolicy::default_for(inh.job_type);
        let task = self.task(b, job_path, name.clone(), &restart);
        TaskGroup {
            name,
            count: 1,
            update: inh.update.clone(),
            reschedule_policy: inh.reschedule.clone(),
            migrate: inh.migrate.clone(),
            tasks: vec![task],
            ..TaskGroup::default()
        }
    }

    // Long on purpose: one match arm per attribute and block the schema allows, so the
    // whole block reads as one table.
    fn group(&mut self, b: &Block, job_path: &str, name: String, inh: &Inherited) -> TaskGroup {
        let path = child(job_path, b);
        let mut g = TaskGroup {
            name,
            count: 1,
            update: inh.update.clone(),
            reschedule_policy: inh.reschedule.clone(),
            migrate: inh.migrate.clone(),
            ..TaskGroup::default()
        };
        let (attrs, blocks) = self.items(&b.body, &path, &schema::GROUP);
        for a in attrs {
            match a.key.as_str() {
                "count" => {
                    if let Some(c) = self.int_max(a, &path, api::MAX_AMOUNT) {
                        if c < 0 {
                            self.error(
                                a.value.span(),
                                &path,
                                format!("count must be >= 0, got {c}"),
                            );
                        }
                        g.count = c;
                    }
                }
                "meta" => set(&mut g.meta, self.string_map(a, &path)),
                "shutdown_delay" => g.shutdown_delay = self.duration(a, &path),
                "stop_after_client_disconnect" => {
                    g.stop_after_client_disconnect = self.duration(a, &path)
                }
                "max_client_disconnect" => g.max_client_disconnect = self.duration(a, &path),
                _ => {}
            }
        }
        let mut tasks = Vec::new();
        let mut ports = BTreeMap::new();
        for blk in blocks {
            match blk.ident.as_str() {
                "meta" => g.meta.extend(self.string_map_block(blk, &path)),
                "constraint" => g.constraints.extend(self.constraint(blk, &path)),
                "affinity" => g.affinities.extend(self.affinity(blk, &path)),
                "spread" => g.spreads.extend(self.spread(blk, &path)),
                "restart" => {
                    let base = RestartPolicy::default_for(inh.job_type);
                    g.restart_policy = Some(self.restart(blk, &path, base));
                }
                "reschedule" => {
                    let base = g
                        .reschedule_policy
                        .clone()
                        .unwrap_or_else(|| ReschedulePolicy::default_for(inh.job_type));
                    g.reschedule_policy = Some(self.reschedule(blk, &path, base));
                }
                "ephemeral_disk" => g.ephemeral_disk = Some(self.ephemeral_disk(blk, &path)),
                "update" => {
                    let base = g.update.clone().unwrap_or_else(default_update);
                    g.update = Some(self.update(blk, &path, base));
                }
                "migrate" => {
                    let base = g.migrate.clone().unwrap_or_else(default_migrate);
                    g.migrate = Some(self.migrate(blk, &path, base));
                }
                "network" => {
                    let n = self.network(blk, &path, &mut ports);
                    g.networks.push(n);
                }
                "task" => tasks.push(blk),
                "service" => g.services.push(self.service(blk, &path)),
                "volume" => {
                    if let Some(v) = self.volume(blk, &path) {
                        if g.volumes.contains_key(&v.name) {
                            self.error(
                                blk.labels[0].span(),
                                &path,
                                format!("volume {:?} is defined twice", v.name),
                            );
                        }
                        g.volumes.insert(v.name.clone(), v);
                    }
                }
                "vault" => self.reject(blk.ident.span(), &path, &VAULT),
                _ => {}
            }
        }
        let group_restart = g
            .restart_policy
            .clone()
            .unwrap_or_else(|| RestartPolicy::default_for(inh.job_type));
        g.tasks = self.tasks(&tasks, &path, &group_restart);
        if g.tasks.is_empty() {
            self.error(
                b.ident.span(),
                &path,
                "a group needs at least one `task \"name\" { ... }`",
            );
        }
        g
    }

    /// A group's `task` blocks, each named once, over the group's restart policy.
    fn tasks(&mut self, blocks: &[&Block], path: &str, restart: &RestartPolicy) -> Vec<Task> {
        let mut tasks = Vec::new();
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for t in blocks {
            let Some(name) = self.label(t, path) else {
                continue;
            };
            if let Some(line) = seen.get(&name) {
                let msg = format!("task {name:?} is defined twice (first on line {line})");
                self.error(t.labels[0].span(), path, msg);
                continue;
            }
            seen.insert(name.clone(), self.line_of(t));
            if let Some(m) = api::task_name_problem(&name) {
                self.error(t.labels[0].span(), path, m);
            }
            tasks.push(self.task(t, path, name, restart));
        }
        tasks
    }

    // Long on purpose, like `job` and `group`: one match arm per attribute and block the
    // schema allows, so the whole block reads as one table.
    fn task(&mut self, b: &Block, group_path: &str, name: String, restart: &RestartPolicy) -> Task {
        let path = child(group_path, b);
        let mut t = Task {
            name,
            restart_policy: Some(restart.clone()),
            ..Task::default()
        };
        let (attrs, blocks) = self.items(&b.body, &path, &schema::TASK);
        for a in attrs {
            match a.key.as_str() {
                "driver" => {
                    if let Some(d) = self.string(a, &path) {
                        if DRIVERS_NOT_YET.contains(&d.as_str()) {
                            self.warning(
                                a.value.span(),
                                &path,
                                format!("driver {d:?} is not supported by Drover yet"),
                            );
                        } else if !DRIVERS.contains(&d.as_str()) {
                            // Nomad takes any plugin's name; only placement needs the
                            // driver, so an unknown one is a warning (with a hint).
                            let known: Vec<&str> =
                                DRIVERS.iter().chain(DRIVERS_NOT_YET).copied().collect();
                            let hint = crate::diag::closest(&d, &known)
                                .map(|c| format!("; did you mean {c:?}?"))
                                .unwrap_or_default();
                            self.warning(
                                a.value.span(),
                                &path,
                                format!(
                                    "unknown driver {d:?}{hint}: the job is accepted, but only \
                                     a client with this driver plugin can run the task \
                                     (Drover runs {})",
                                    DRIVERS.join(", ")
                                ),
                            );
                        }
                        t.driver = d;
                    }
                }
                "user" => set(&mut t.user, self.string(a, &path)),
                "kill_timeout" => set(&mut t.kill_timeout, self.duration(a, &path)),
                "shutdown_delay" => t.shutdown_delay = self.duration(a, &path),
                "kill_signal" => set(&mut t.kill_signal, self.string(a, &path)),
                "leader" => set(&mut t.leader, self.bool(a, &path)),
                "env" => set(&mut t.env, self.string_map(a, &path)),
                "meta" => set(&mut t.meta, self.string_map(a, &path)),
                "config" => {
                    if let Some(v) = self.value(a, &path) {
                        match v {
                            serde_json::Value::Object(m) => t.config = m.into_iter().collect(),
                            other => self.error(
                                a.value.span(),
                                &path,
                                format!(
                                    "config must be an object, got {}",
                                    crate::value::type_name(&other)
                                ),
                            ),
                        }
                    }
                }
                _ => {}
            }
        }
        for blk in blocks {
            match blk.ident.as_str() {
                "config" => {
                    self.no_label(blk, &path);
                    let cpath = child(&path, blk);
                    t.config.extend(self.free_form(&blk.body, &cpath));
                }
                "env" => t.env.extend(self.string_map_block(blk, &path)),
                "meta" => t.meta.extend(self.string_map_block(blk, &path)),
                "resources" => t.resources = Some(self.resources(blk, &path)),
                "lifecycle" => t.lifecycle = Some(self.lifecycle(blk, &path)),
                "logs" => t.log_config = Some(self.logs(blk, &path)),
                "artifact" => t.artifacts.push(self.artifact(blk, &path)),
                "dispatch_payload" => t.dispatch_payload = Some(self.dispatch_payload(blk, &path)),
                "restart" => t.restart_policy = Some(self.restart(blk, &path, restart.clone())),
                "constraint" => t.constraints.extend(self.constraint(blk, &path)),
                "affinity" => t.affinities.extend(self.affinity(blk, &path)),
                "service" => t.services.push(self.service(blk, &path)),
                "template" => t.templates.push(self.template(blk, &path)),
                "vault" => self.reject(blk.ident.span(), &path, &VAULT),
                "csi_plugin" => self.reject(blk.ident.span(), &path, &CSI),
                _ => {}
            }
        }
        // A failed `driver` read was reported already; only a missing one is new.
        if t.driver.is_empty() && !b.body.has_attribute("driver") {
            self.error(b.ident.span(), &path, "missing attribute \"driver\"");
        }
        t
    }
}

/// What groups take from their job when they do not say otherwise.
struct Inherited<'a> {
    job_type: &'a str,
    update: Option<api::UpdateStrategy>,
    reschedule: Option<ReschedulePolicy>,
    migrate: Option<api::MigrateStrategy>,
}
