//! `template` blocks: files rendered into a task's directories from Go template text,
//! with the functions consul-template gives Nomad jobs (`env`, `nomadVar`,
//! `nomadService`, string and JSON helpers).
//!
//! The language is Drover's own small implementation of Go's text/template (`lang`,
//! `exec`): the `gtmpl` crate ranges over maps in hash order (a changing file on every
//! render would restart tasks for nothing), runs a range's `else` after a non-empty
//! range, hard-codes `{{ }}` and has no `missingkey=error`.
//!
//! Life of a task's templates ([`Renderer`]): before every start the task runner calls
//! [`Renderer::render_all`], which renders each template (fetching the server data it
//! reads, consul-template's dependency loop) and writes it atomically inside the task's
//! directories (`files`); a template that cannot render keeps the task from starting.
//! While the task runs, [`watch`] polls that data, re-renders, rewrites the files that
//! changed and, after a random `splay`, asks the runner to restart or signal the task.

mod exec;
mod files;
mod funcs;
mod lang;
#[cfg(test)]
mod tests;

pub use funcs::{Dep, Snapshot};

use crate::allocdir::TaskDirs;
use crate::taskenv::TaskEnv;
use api::{Client, QueryOptions, Template};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, DropGuard};

/// Nomad's task event type for template problems.
pub const EVENT_TEMPLATE: &str = "Template";

/// How often a running task's template data is read again (`DROVER_TEMPLATE_POLL_MS`).
fn poll_interval() -> Duration {
    std::env::var("DROVER_TEMPLATE_POLL_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map(|ms| Duration::from_millis(ms.clamp(50, 600_000)))
        .unwrap_or(Duration::from_secs(3))
}

/// How long a task whose template waits for data waits before rendering again.
pub fn retry_interval() -> Duration {
    poll_interval()
}

/// How long one read of template data may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// How many rounds of "render, fetch what was missing" one render may take.
const MAX_ROUNDS: usize = 8;

/// Why templates could not be rendered.
#[derive(Debug, Clone, PartialEq)]
pub enum TemplateError {
    /// Data a template needs does not exist (yet) or cannot be read: wait and retry.
    Missing(String),
    /// The template itself is wrong (syntax, function, path, perms): retrying cannot help.
    Failed(String),
}

/// What a re-render asks of the running task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Restart,
    Signal(String),
}

/// Renders the templates of one task.
pub struct Renderer {
    templates: Vec<Template>,
    client: Option<Client>,
    namespace: String,
    root: PathBuf,
    task: String,
    dirs: TaskDirs,
    env: TaskEnv,
    snapshot: Snapshot,
    /// The deps each template read in its last render.
    used: BTreeSet<Dep>,
    /// What each template last wrote.
    written: Vec<Option<String>>,
}

/// One template's render result.
enum Outcome {
    Text(String),
    Missing(Vec<Dep>),
}

impl Renderer {
    pub fn new(
        templates: Vec<Template>,
        client: Option<Client>,
        namespace: &str,
        root: &Path,
        task: &str,
        dirs: &TaskDirs,
        env: TaskEnv,
    ) -> Self {
        let n = templates.len();
        Renderer {
            templates,
            client,
            namespace: namespace.to_string(),
            root: root.to_path_buf(),
            task: task.to_string(),
            dirs: dirs.clone(),
            env,
            snapshot: Snapshot::new(),
            used: BTreeSet::new(),
            written: vec![None; n],
        }
    }

    /// Renders and writes every template; returns the variables of the `env = true` ones.
    pub async fn render_all(&mut self) -> Result<BTreeMap<String, String>, TemplateError> {
        let mut vars = BTreeMap::new();
        self.used.clear();
        for i in 0..self.templates.len() {
            let text = self.render_fetching(i).await?;
            let t = &self.templates[i];
            if t.envvars {
                let parsed = files::parse_env(&text).map_err(|e| {
                    TemplateError::Failed(format!(
                        "template {:?} has env = true but {e}",
                        t.dest_path
                    ))
                })?;
                vars.extend(parsed);
            }
            self.write(i, &text).map_err(TemplateError::Failed)?;
        }
        Ok(vars)
    }

    fn dest(&self, i: usize) -> Result<PathBuf, String> {
        let dest = self.env.interpolate(&self.templates[i].dest_path);
        files::below_root("destination", &dest, &self.task, &self.dirs)
    }

    fn write(&mut self, i: usize, text: &str) -> Result<(), String> {
        let t = &self.templates[i];
        let mode = t
            .mode()
            .ok_or_else(|| format!("template perms {:?} is not an octal file mode", t.perms))?;
        let dest = self.dest(i)?;
        files::write_atomic(&self.root, &dest, text.as_bytes(), mode)?;
        self.written[i] = Some(text.to_string());
        Ok(())
    }

    /// The template's text (`data`, or its `source` file).
    fn text(&self, i: usize) -> Result<String, String> {
        let t = &self.templates[i];
        if t.source_path.is_empty() {
            return Ok(t.embedded_tmpl.clone());
        }
        let src = self.env.interpolate(&t.source_path);
        let rel = files::below_root("source", &src, &self.task, &self.dirs)?;
        files::read_source(&self.root, &self.task, &rel)
    }

    /// Renders template `i` against the snapshot as it is.
    fn render_once(&self, i: usize) -> Result<(Outcome, BTreeSet<Dep>), String> {
        let t = &self.templates[i];
        let src = self.text(i)?;
        let nodes = lang::parse(&src, &t.left_delim, &t.right_delim).map_err(|e| e.to_string())?;
        if let Some((line, name)) = exec::unknown_function(&nodes, &|n| funcs::NAMES.contains(&n)) {
            return Err(format!(
                "parse error at line {line}: function {name:?} not defined"
            ));
        }
        let ctx = funcs::Context::new(&self.env.vars, &self.snapshot, &self.namespace);
        let table = funcs::FuncTable::new(&ctx);
        let text = exec::execute(&nodes, &Value::Null, &table, t.err_missing_key)
            .map_err(|e| e.to_string())?;
        let used = ctx.used.borrow().clone();
        let missing: Vec<Dep> = ctx.missing.borrow().iter().cloned().collect();
        let absent: Vec<Dep> = ctx.absent.borrow().iter().cloned().collect();
        Ok(if !missing.is_empty() {
            (Outcome::Missing(missing), used)
        } else if !absent.is_empty() {
            (Outcome::Missing(absent), used)
        } else {
            (Outcome::Text(text), used)
        })
    }

    /// Renders template `i`, fetching what it reads until it has everything.
    async fn render_fetching(&mut self, i: usize) -> Result<String, TemplateError> {
        let what = |t: &Template| format!("template {:?}", t.dest_path);
        for _ in 0..MAX_ROUNDS {
            let (outcome, used) = self
                .render_once(i)
                .map_err(|e| TemplateError::Failed(format!("{}: {e}", what(&self.templates[i]))))?;
            self.used.extend(used);
            let deps = match outcome {
                Outcome::Text(t) => return Ok(t),
                Outcome::Missing(deps) => deps,
            };
            let unfetched: Vec<Dep> = deps
                .iter()
                .filter(|d| !self.snapshot.contains_key(*d))
                .cloned()
                .collect();
            if unfetched.is_empty() {
                let names: Vec<String> = deps.iter().map(Dep::describe).collect();
                return Err(TemplateError::Missing(format!(
                    "Missing: {}",
                    names.join(", ")
                )));
            }
            for d in unfetched {
                let v = self.fetch(&d).await.map_err(TemplateError::Missing)?;
                self.snapshot.insert(d, v);
            }
        }
        Err(TemplateError::Failed(format!(
            "{}: still reading new data after {MAX_ROUNDS} rounds",
            what(&self.templates[i])
        )))
    }

    /// Reads one dependency from the servers: `None` when it does not exist.
    async fn fetch(&self, dep: &Dep) -> Result<Option<Value>, String> {
        let Some(client) = &self.client else {
            return Err(format!(
                "cannot read {}: this agent has no server to ask",
                dep.describe()
            ));
        };
        let opts = QueryOptions::default();
        let json = |v: Result<Value, serde_json::Error>| v.map_err(|e| e.to_string());
        let res = tokio::time::timeout(FETCH_TIMEOUT, async {
            match dep {
                Dep::Var { path, namespace } => {
                    match client.variable(path, Some(namespace), &opts).await {
                        Ok((v, _)) => json(serde_json::to_value(v)).map(Some),
                        Err(e) if e.is_not_found() => Ok(None),
                        Err(e) => Err(e.to_string()),
                    }
                }
                Dep::VarList { prefix, namespace } => {
                    match client.variables(prefix, Some(namespace), &opts).await {
                        Ok((v, _)) => json(serde_json::to_value(v)).map(Some),
                        Err(e) => Err(e.to_string()),
                    }
                }
                Dep::Service {
                    name,
                    namespace,
                    choose,
                } => {
                    let mut path = format!(
                        "/v1/service/{}?namespace={}",
                        api::url::encode(name),
                        api::url::encode(namespace)
                    );
                    if let Some(c) = choose {
                        path.push_str(&format!("&choose={}", api::url::encode(c)));
                    }
                    match client.get::<Value>(&path, &opts).await {
                        Ok((v, _)) => Ok(Some(v)),
                        Err(e) if e.is_not_found() => Ok(Some(Value::Array(vec![]))),
                        Err(e) => Err(e.to_string()),
                    }
                }
                Dep::Services { namespace } => {
                    match client.services(Some(namespace), &opts).await {
                        Ok((v, _)) => json(serde_json::to_value(v)).map(Some),
                        Err(e) => Err(e.to_string()),
                    }
                }
            }
        })
        .await;
        match res {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(format!("cannot read {}: {e}", dep.describe())),
            Err(_) => Err(format!(
                "cannot read {}: no answer within {}s",
                dep.describe(),
                FETCH_TIMEOUT.as_secs()
            )),
        }
    }

    /// Reads everything the templates read again; whether anything changed.
    async fn refresh(&mut self) -> bool {
        let mut changed = false;
        for dep in self.used.clone() {
            match self.fetch(&dep).await {
                Ok(v) => {
                    if self.snapshot.get(&dep) != Some(&v) {
                        self.snapshot.insert(dep, v);
                        changed = true;
                    }
                }
                Err(e) => {
                    tracing::debug!(task = %self.task, error = %e, "template data not refreshed")
                }
            }
        }
        changed
    }

    /// Re-renders every template against fresh data, rewrites those whose text changed
    /// and returns them. A template that cannot render keeps its file, as Nomad does.
    async fn rerender(&mut self) -> Vec<usize> {
        let mut changed = Vec::new();
        self.used.clear();
        for i in 0..self.templates.len() {
            match self.render_fetching(i).await {
                Ok(text) if self.written[i].as_deref() != Some(text.as_str()) => {
                    match self.write(i, &text) {
                        Ok(()) => changed.push(i),
                        Err(e) => {
                            tracing::warn!(task = %self.task, error = %e, "cannot write the re-rendered template")
                        }
                    }
                }
                Ok(_) => {}
                Err(TemplateError::Missing(m) | TemplateError::Failed(m)) => {
                    tracing::warn!(task = %self.task, error = %m, "template not re-rendered; keeping its file");
                }
            }
        }
        changed
    }

    /// Takes what the destinations hold now as what was written (after an agent restart).
    fn load_written(&mut self) {
        for i in 0..self.templates.len() {
            self.written[i] = self
                .dest(i)
                .ok()
                .and_then(|d| files::read_written(&self.root, &d).ok());
        }
    }

    /// Whether the templates read anything that can change.
    fn watches_anything(&self) -> bool {
        !self.used.is_empty()
    }
}

/// A running task's template watch: dropped, it stops.
pub struct Watch {
    pub changes: mpsc::UnboundedReceiver<Change>,
    _stop: DropGuard,
}

/// Watches the data `renderer` read while the task runs; sends what each change asks.
pub fn watch(renderer: Renderer) -> Option<Watch> {
    if !renderer.watches_anything() {
        return None;
    }
    Some(spawn_watch(renderer, false))
}

/// The watch of a task the agent reattached to after a restart: what its templates
/// wrote is read back from disk, and a template whose data changed meanwhile is
/// rewritten and acted on at once.
pub fn resume(mut renderer: Renderer) -> Watch {
    renderer.load_written();
    spawn_watch(renderer, true)
}

fn spawn_watch(renderer: Renderer, check_now: bool) -> Watch {
    let (tx, rx) = mpsc::unbounded_channel();
    let stop = CancellationToken::new();
    tokio::spawn(watch_loop(renderer, tx, stop.clone(), check_now));
    Watch {
        changes: rx,
        _stop: stop.drop_guard(),
    }
}

async fn watch_loop(
    mut r: Renderer,
    tx: mpsc::UnboundedSender<Change>,
    stop: CancellationToken,
    mut check_now: bool,
) {
    let every = poll_interval();
    loop {
        if !check_now {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            if !r.refresh().await {
                continue;
            }
        }
        check_now = false;
        let changed = r.rerender().await;
        if changed.is_empty() {
            continue;
        }
        let splay = changed
            .iter()
            .map(|i| r.templates[*i].splay.max(0))
            .max()
            .unwrap_or(0);
        let delay = random_below(Duration::from_nanos(splay as u64));
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        for c in changes_for(changed.iter().map(|i| &r.templates[*i])) {
            if tx.send(c).is_err() {
                return;
            }
        }
    }
}

/// What re-rendered templates ask: one restart if any restarts (it covers the signals),
/// otherwise each distinct signal once.
pub fn changes_for<'t>(templates: impl Iterator<Item = &'t Template>) -> Vec<Change> {
    let mut signals = BTreeSet::new();
    for t in templates {
        match t.change_mode.as_str() {
            api::TEMPLATE_CHANGE_MODE_RESTART => return vec![Change::Restart],
            api::TEMPLATE_CHANGE_MODE_SIGNAL => {
                signals.insert(t.change_signal.clone());
            }
            _ => {}
        }
    }
    signals.into_iter().map(Change::Signal).collect()
}

/// A pseudo-random duration in `[0, max)`.
fn random_below(max: Duration) -> Duration {
    if max.is_zero() {
        return Duration::ZERO;
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|t| t.subsec_nanos() as u128 ^ (std::process::id() as u128) << 7)
        .unwrap_or(0);
    Duration::from_nanos((nanos % max.as_nanos()) as u64)
}
