//! The event stream's broker: what each applied Raft entry changed, kept in a bounded ring
//! buffer that `GET /v1/event/stream` (`http/events.rs`) subscribers read from.
//!
//! Events are recorded by the state store's writer (`StateWriter`, the one write path),
//! typed by the FSM after each command (`fsm::apply`, as Nomad types them by the Raft
//! message) and handed to [`EventBroker::publish`] by the apply hook on every server, so a
//! follower streams as well as the leader. Payloads are `Arc`s of what the state already
//! holds; they are turned into JSON only by the HTTP handler, once per event however many
//! subscribers read it.
//!
//! Memory is bounded by the buffer: a subscriber that falls so far behind that events it
//! has not read are evicted is told so ([`Lagged`]) and its stream ends, instead of the
//! server keeping events for it.

use api::{Allocation, Evaluation, Job, Node};
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use tokio::sync::watch;

/// Nomad's event topics. Drover produces Job, Allocation, Evaluation, Node and Service
/// events; the others are accepted in a subscription (a Nomad tool may ask for them) and
/// never match.
pub const KNOWN_TOPICS: [&str; 18] = [
    "*",
    "Job",
    "Allocation",
    "Evaluation",
    "Node",
    "NodeDrain",
    "NodePool",
    "Deployment",
    "Service",
    "ACLToken",
    "ACLPolicy",
    "ACLRole",
    "ACLAuthMethod",
    "ACLBindingRule",
    "Operator",
    "CSIVolume",
    "CSIPlugin",
    "HostVolume",
];

/// Topics Drover publishes events on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    Job,
    Allocation,
    Evaluation,
    Node,
    Deployment,
    Service,
}

impl Topic {
    pub fn as_str(self) -> &'static str {
        match self {
            Topic::Job => "Job",
            Topic::Allocation => "Allocation",
            Topic::Evaluation => "Evaluation",
            Topic::Node => "Node",
            Topic::Deployment => "Deployment",
            Topic::Service => "Service",
        }
    }

    /// The type an event on this topic gets when the command that caused it names none.
    fn default_type(self) -> &'static str {
        match self {
            Topic::Job => "JobRegistered",
            Topic::Allocation => "AllocationUpdated",
            Topic::Evaluation => "EvaluationUpdated",
            Topic::Node => "NodeEvent",
            Topic::Deployment => "DeploymentStatusUpdate",
            Topic::Service => "ServiceRegistration",
        }
    }
}

/// A value that can be put in an event's payload: anything serialisable (used for payloads
/// other than the four typed ones, such as service registrations).
pub trait PayloadValue: Send + Sync + std::fmt::Debug {
    fn to_json(&self) -> serde_json::Result<serde_json::Value>;
}

impl<T: serde::Serialize + Send + Sync + std::fmt::Debug> PayloadValue for T {
    fn to_json(&self) -> serde_json::Result<serde_json::Value> {
        serde_json::to_value(self)
    }
}

/// What an event carries: the object as the state holds it (shared, not copied).
#[derive(Debug, Clone)]
pub enum Payload {
    Job(Arc<Job>),
    /// Sent without its job, as Nomad does.
    Allocation(Arc<Allocation>),
    Evaluation(Arc<Evaluation>),
    /// Sent without its `SecretID`.
    Node(Arc<Node>),
    /// `{"<name>": value}`, e.g. `("Service", registration)`.
    Other(&'static str, Arc<dyn PayloadValue>),
}

impl Payload {
    /// A payload of any serialisable value, sent as `{"<name>": value}`.
    pub fn other<T: PayloadValue + 'static>(name: &'static str, value: Arc<T>) -> Payload {
        Payload::Other(name, value)
    }
}

/// One change, as `GET /v1/event/stream` sends it.
#[derive(Debug, Clone)]
pub struct Event {
    pub topic: Topic,
    /// `JobRegistered`, `PlanResult`, ...; empty until the FSM types it (see [`Event::typed`]).
    pub kind: &'static str,
    pub key: String,
    /// Empty for objects outside namespaces (nodes): such events pass every namespace filter.
    pub namespace: String,
    /// Other keys a `topic=Topic:key` filter matches (an allocation's job ID, ...).
    pub filter_keys: Vec<String>,
    /// The Raft index of the entry that made the change.
    pub index: u64,
    pub payload: Payload,
    /// The event's JSON, made once by the first subscriber that sends it.
    encoded: OnceLock<Arc<str>>,
}

impl Event {
    /// An event of no type yet (the FSM types it after the command) at no index yet (the
    /// state writer sets it).
    pub fn new(topic: Topic, key: &str, namespace: &str, payload: Payload) -> Event {
        Event {
            topic,
            kind: "",
            key: key.to_string(),
            namespace: namespace.to_string(),
            filter_keys: Vec::new(),
            index: 0,
            payload,
            encoded: OnceLock::new(),
        }
    }

    pub fn with_type(mut self, kind: &'static str) -> Event {
        self.kind = kind;
        self
    }

    pub fn with_filter_keys<'a>(mut self, keys: impl IntoIterator<Item = &'a str>) -> Event {
        self.filter_keys = keys.into_iter().map(str::to_string).collect();
        self
    }

    pub fn job(job: &Arc<Job>) -> Event {
        Event::new(Topic::Job, &job.id, job.ns(), Payload::Job(job.clone()))
    }

    pub fn alloc(a: &Arc<Allocation>) -> Event {
        Event::new(
            Topic::Allocation,
            &a.id,
            &a.namespace,
            Payload::Allocation(a.clone()),
        )
        .with_filter_keys([a.job_id.as_str()])
    }

    pub fn eval(e: &Arc<Evaluation>) -> Event {
        Event::new(
            Topic::Evaluation,
            &e.id,
            &e.namespace,
            Payload::Evaluation(e.clone()),
        )
        .with_filter_keys([e.job_id.as_str()])
    }

    pub fn node(n: &Arc<Node>) -> Event {
        Event::new(Topic::Node, &n.id, "", Payload::Node(n.clone()))
    }

    /// Give an untyped event `kind`, or its topic's default type when the command that
    /// made it names none. An event its writer typed keeps its type.
    pub fn typed(mut self, kind: Option<&'static str>) -> Event {
        if self.kind.is_empty() {
            self.kind = kind.unwrap_or(self.topic.default_type());
        }
        self
    }

    /// The event's JSON, made by `encode` the first time it is asked for.
    pub fn encoded(&self, encode: impl FnOnce(&Event) -> String) -> Arc<str> {
        self.encoded.get_or_init(|| encode(self).into()).clone()
    }
}

/// Which events a subscriber wants: `topic=Topic:key` pairs and a namespace.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    /// `(topic, key)`; `*` matches anything.
    topics: Vec<(String, String)>,
    /// `*` for every namespace.
    namespace: String,
}

/// At most this many `topic` parameters, each at most this long.
const MAX_TOPICS: usize = 64;
const MAX_TOPIC_LEN: usize = 512;

impl Filter {
    /// Parse `topic` parameters (`Job`, `Job:web`, `Service:*`, `*`) and the namespace
    /// (`None` or empty means `default`, `*` every namespace). No topic means every topic.
    pub fn parse<'a>(
        topics: impl IntoIterator<Item = &'a str>,
        namespace: Option<&str>,
    ) -> Result<Filter, String> {
        let mut out = Vec::new();
        for t in topics {
            if out.len() == MAX_TOPICS {
                return Err(format!(
                    "too many topic parameters: at most {MAX_TOPICS} may be given"
                ));
            }
            if t.len() > MAX_TOPIC_LEN {
                return Err(format!(
                    "invalid topic {:?}...: longer than {MAX_TOPIC_LEN} bytes",
                    t.chars().take(32).collect::<String>()
                ));
            }
            let (topic, key) = t.split_once(':').unwrap_or((t, "*"));
            if !KNOWN_TOPICS.contains(&topic) {
                return Err(format!(
                    "invalid topic {t:?}: expected Topic or Topic:key with Topic one of {}",
                    KNOWN_TOPICS.join(", ")
                ));
            }
            let key = if key.is_empty() { "*" } else { key };
            out.push((topic.to_string(), key.to_string()));
        }
        if out.is_empty() {
            out.push(("*".into(), "*".into()));
        }
        let namespace = match namespace {
            None | Some("") => api::DEFAULT_NAMESPACE.to_string(),
            Some(n) => n.to_string(),
        };
        Ok(Filter {
            topics: out,
            namespace,
        })
    }

    pub fn matches(&self, e: &Event) -> bool {
        let namespace_ok =
            self.namespace == "*" || e.namespace.is_empty() || e.namespace == self.namespace;
        namespace_ok
            && self.topics.iter().any(|(topic, key)| {
                (topic == "*" || topic == e.topic.as_str())
                    && (key == "*" || *key == e.key || e.filter_keys.iter().any(|k| k == key))
            })
    }
}

/// The events of one Raft entry.
#[derive(Debug)]
pub struct Batch {
    pub index: u64,
    pub events: Vec<Arc<Event>>,
}

/// What one subscriber is sent for one Raft entry: the events that pass its filter.
#[derive(Debug)]
pub struct Frame {
    pub index: u64,
    pub events: Vec<Arc<Event>>,
}

/// A subscriber fell behind the buffer: events it had not read were evicted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "this event stream fell behind: events from index {from} on were dropped from the \
     server's buffer (the newest {capacity} events) before they were sent; reconnect with \
     ?index={oldest} to continue from the oldest event still buffered"
)]
pub struct Lagged {
    pub from: u64,
    pub oldest: u64,
    pub capacity: usize,
}

/// A client already holds as many event streams as it may.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "Your IP {ip} already holds {max} event streams, the most one client may open; close \
     one and try again"
)]
pub struct TooManyStreams {
    pub ip: IpAddr,
    pub max: usize,
}

#[derive(Default)]
struct Ring {
    batches: VecDeque<Arc<Batch>>,
    /// Events in `batches`.
    events: usize,
    /// The index of the newest batch evicted (0: none yet).
    evicted_through: u64,
}

/// The bounded buffer of recent events and the subscribers' wake-up signal.
pub struct EventBroker {
    capacity: usize,
    ring: Mutex<Ring>,
    /// The index of the newest batch published; subscribers wait on it.
    published: watch::Sender<u64>,
    /// Open streams per client address.
    streams: Mutex<HashMap<IpAddr, usize>>,
    /// The server is shutting down: streams end.
    closed: AtomicBool,
}

/// The most batches one read returns, so a long backlog goes out in pieces.
const MAX_BATCHES_PER_READ: usize = 256;

impl EventBroker {
    /// A broker keeping the newest `capacity` events (0 keeps none: streams only
    /// heartbeat).
    pub fn new(capacity: usize) -> Arc<EventBroker> {
        Arc::new(EventBroker {
            capacity,
            ring: Mutex::new(Ring::default()),
            published: watch::channel(0).0,
            streams: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
        })
    }

    /// End every stream (the server is shutting down): subscribers wake and see
    /// [`Subscription::closed`].
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.published.send_modify(|_| {});
    }

    fn ring(&self) -> std::sync::MutexGuard<'_, Ring> {
        self.ring.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Add applied events (in index order) and wake the subscribers. Events of one index
    /// form one batch; the oldest batches are evicted past the capacity (the newest batch
    /// always stays, however large).
    pub fn publish(&self, events: Vec<Event>) {
        if events.is_empty() || self.capacity == 0 {
            return;
        }
        let mut newest = 0;
        {
            let mut guard = self.ring();
            let ring = &mut *guard;
            for e in events {
                let e = Arc::new(e);
                match ring.batches.back_mut() {
                    Some(b) if b.index == e.index => {
                        if let Some(b) = Arc::get_mut(b) {
                            b.events.push(e);
                        } else {
                            // Already handed to a subscriber: replaced with the rest added.
                            let mut events = b.events.clone();
                            events.push(e);
                            *b = Arc::new(Batch {
                                index: b.index,
                                events,
                            });
                        }
                    }
                    // An index below the newest (never from Raft) is dropped, not reordered.
                    Some(b) if b.index > e.index => continue,
                    _ => ring.batches.push_back(Arc::new(Batch {
                        index: e.index,
                        events: vec![e],
                    })),
                }
                ring.events += 1;
            }
            while ring.events > self.capacity && ring.batches.len() > 1 {
                if let Some(old) = ring.batches.pop_front() {
                    ring.events -= old.events.len();
                    ring.evicted_through = old.index;
                }
            }
            if let Some(b) = ring.batches.back() {
                newest = b.index;
            }
        }
        self.published.send_replace(newest);
    }

    /// Subscribe from `index`: the buffered events at or after it, then new ones. An index
    /// older than the buffer starts at the oldest event still buffered (as Nomad does).
    pub fn subscribe(self: &Arc<Self>, index: u64, filter: Filter) -> Subscription {
        let next = index.max(self.ring().evicted_through + 1);
        Subscription {
            broker: self.clone(),
            next,
            woken: self.published.subscribe(),
            filter,
            slot: None,
        }
    }

    /// [`EventBroker::subscribe`] for a client at `ip`, which may hold at most `max`
    /// streams at once (0: no limit). The stream's slot is freed when it is dropped.
    pub fn subscribe_client(
        self: &Arc<Self>,
        ip: IpAddr,
        max: usize,
        index: u64,
        filter: Filter,
    ) -> Result<Subscription, TooManyStreams> {
        {
            let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
            let n = streams.entry(ip).or_insert(0);
            if max > 0 && *n >= max {
                return Err(TooManyStreams { ip, max });
            }
            *n += 1;
        }
        let mut sub = self.subscribe(index, filter);
        sub.slot = Some(ip);
        Ok(sub)
    }

    /// How many events are buffered.
    pub fn len(&self) -> usize {
        self.ring().events
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One subscriber's place in the buffer.
pub struct Subscription {
    broker: Arc<EventBroker>,
    /// The lowest index not yet read.
    next: u64,
    woken: watch::Receiver<u64>,
    filter: Filter,
    /// The client address whose stream count this subscription holds.
    slot: Option<IpAddr>,
}

impl Subscription {
    /// The frames buffered since the last read (only those with events passing the
    /// filter), without waiting; an error once events this subscriber had not read were
    /// evicted.
    pub fn read(&mut self) -> Result<Vec<Frame>, Lagged> {
        self.woken.borrow_and_update();
        let batches: Vec<Arc<Batch>> = {
            let ring = self.broker.ring();
            if ring.evicted_through >= self.next {
                return Err(Lagged {
                    from: self.next,
                    oldest: ring
                        .batches
                        .front()
                        .map_or(ring.evicted_through + 1, |b| b.index),
                    capacity: self.broker.capacity,
                });
            }
            let start = ring.batches.partition_point(|b| b.index < self.next);
            ring.batches
                .range(start..)
                .take(MAX_BATCHES_PER_READ)
                .cloned()
                .collect()
        };
        if let Some(last) = batches.last() {
            self.next = last.index + 1;
            if batches.len() == MAX_BATCHES_PER_READ {
                // More may be waiting: make the next wait return at once.
                self.woken.mark_changed();
            }
        }
        Ok(batches
            .into_iter()
            .filter_map(|b| {
                let events: Vec<Arc<Event>> = b
                    .events
                    .iter()
                    .filter(|e| self.filter.matches(e))
                    .cloned()
                    .collect();
                (!events.is_empty()).then_some(Frame {
                    index: b.index,
                    events,
                })
            })
            .collect())
    }

    /// The server is shutting down: the stream should end.
    pub fn closed(&self) -> bool {
        self.broker.closed.load(Ordering::SeqCst)
    }

    /// Wait until events may have been published since the last [`Subscription::read`]
    /// (or the broker was closed).
    pub async fn changed(&mut self) {
        if self.woken.changed().await.is_err() {
            // The broker is gone (cannot happen while this holds it): never wake.
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let Some(ip) = self.slot else { return };
        let mut streams = self
            .broker
            .streams
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = streams.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                streams.remove(&ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn job_event(index: u64, id: &str, ns: &str) -> Event {
        let job = Arc::new(Job {
            id: id.into(),
            namespace: ns.into(),
            ..Default::default()
        });
        let mut e = Event::job(&job).typed(Some("JobRegistered"));
        e.index = index;
        e
    }

    fn alloc_event(index: u64, id: &str, job: &str) -> Event {
        let a = Arc::new(Allocation {
            id: id.into(),
            namespace: "default".into(),
            job_id: job.into(),
            ..Default::default()
        });
        let mut e = Event::alloc(&a).typed(None);
        e.index = index;
        e
    }

    fn node_event(index: u64, id: &str) -> Event {
        let mut e = Event::node(&Arc::new(Node {
            id: id.into(),
            ..Default::default()
        }))
        .typed(Some("NodeRegistration"));
        e.index = index;
        e
    }

    fn keys(frames: &[Frame]) -> Vec<(u64, String)> {
        frames
            .iter()
            .flat_map(|f| f.events.iter().map(|e| (f.index, e.key.clone())))
            .collect()
    }

    fn filter(topics: &[&str], ns: Option<&str>) -> Filter {
        Filter::parse(topics.iter().copied(), ns).unwrap()
    }

    #[test]
    fn topic_filters_match_the_key_or_a_filter_key_and_wildcards() {
        let job = job_event(1, "web", "default");
        let alloc = alloc_event(2, "a1", "web");
        let node = node_event(3, "n1");
        let all = filter(&[], None);
        assert!(all.matches(&job) && all.matches(&alloc) && all.matches(&node));
        let jobs = filter(&["Job:*"], None);
        assert!(jobs.matches(&job) && !jobs.matches(&alloc) && !jobs.matches(&node));
        assert!(filter(&["Job"], None).matches(&job));
        assert!(filter(&["Job:"], None).matches(&job));
        // An allocation matches its own ID and its job's.
        assert!(filter(&["Allocation:web"], None).matches(&alloc));
        assert!(filter(&["Allocation:a1"], None).matches(&alloc));
        assert!(!filter(&["Allocation:db"], None).matches(&alloc));
        assert!(filter(&["*:web"], None).matches(&alloc));
        let two = filter(&["Job:db", "Node:n1"], None);
        assert!(!two.matches(&job) && two.matches(&node));
        // Topics Drover never publishes on are accepted and match nothing.
        assert!(!filter(&["Deployment:web"], None).matches(&alloc));
    }

    #[test]
    fn namespace_filters_pass_events_outside_namespaces() {
        let prod = job_event(1, "web", "prod");
        let node = node_event(2, "n1");
        assert!(!filter(&[], None).matches(&prod));
        assert!(filter(&[], Some("prod")).matches(&prod));
        assert!(filter(&[], Some("*")).matches(&prod));
        assert!(filter(&[], Some("other")).matches(&node));
    }

    #[test]
    fn bad_topics_are_refused_with_a_sentence() {
        let e = Filter::parse(["Jobs:web"], None).unwrap_err();
        assert!(e.contains("invalid topic \"Jobs:web\"") && e.contains("Allocation"));
        let many = vec!["Job"; MAX_TOPICS + 1];
        assert!(Filter::parse(many, None)
            .unwrap_err()
            .contains("too many topic"));
        let long = format!("Job:{}", "x".repeat(MAX_TOPIC_LEN));
        assert!(Filter::parse([long.as_str()], None)
            .unwrap_err()
            .contains("longer than"));
    }

    #[test]
    fn events_of_one_index_form_one_frame_and_reads_resume_after_it() {
        let b = EventBroker::new(100);
        let mut sub = b.subscribe(0, filter(&[], None));
        assert!(sub.read().unwrap().is_empty());
        b.publish(vec![
            job_event(5, "web", "default"),
            alloc_event(5, "a1", "web"),
            job_event(6, "db", "default"),
        ]);
        let frames = sub.read().unwrap();
        assert_eq!(frames.len(), 2);
        assert_eq!((frames[0].index, frames[0].events.len()), (5, 2));
        assert!(sub.read().unwrap().is_empty(), "nothing is sent twice");
        b.publish(vec![job_event(7, "web", "default")]);
        assert_eq!(keys(&sub.read().unwrap()), [(7, "web".to_string())]);
    }

    #[test]
    fn a_subscription_starts_at_the_requested_index_or_the_oldest_buffered() {
        let b = EventBroker::new(3);
        for i in 1..=5 {
            b.publish(vec![job_event(i, &format!("j{i}"), "default")]);
        }
        assert_eq!(b.len(), 3);
        let from = |index| {
            let frames = b.subscribe(index, filter(&[], None)).read().unwrap();
            frames.iter().map(|f| f.index).collect::<Vec<_>>()
        };
        assert_eq!(from(0), [3, 4, 5], "the whole buffer");
        assert_eq!(from(4), [4, 5], "from the index given, inclusive");
        assert_eq!(
            from(1),
            [3, 4, 5],
            "an evicted index starts at the oldest buffered"
        );
        assert!(from(9).is_empty());
    }

    #[test]
    fn only_matching_events_are_sent_and_empty_frames_are_skipped() {
        let b = EventBroker::new(100);
        let mut sub = b.subscribe(0, filter(&["Job:web"], None));
        b.publish(vec![
            alloc_event(1, "a1", "web"),
            job_event(2, "db", "default"),
        ]);
        b.publish(vec![job_event(3, "web", "default")]);
        assert_eq!(keys(&sub.read().unwrap()), [(3, "web".to_string())]);
    }

    #[test]
    fn a_subscriber_that_falls_behind_the_buffer_is_told_and_memory_stays_bounded() {
        let b = EventBroker::new(4);
        let mut slow = b.subscribe(0, filter(&[], None));
        b.publish(vec![job_event(1, "a", "default")]);
        assert_eq!(slow.read().unwrap().len(), 1);
        for i in 2..=10 {
            b.publish(vec![job_event(i, "a", "default")]);
        }
        assert_eq!(b.len(), 4, "the buffer holds its capacity, not the backlog");
        let lag = slow.read().unwrap_err();
        assert_eq!(
            lag,
            Lagged {
                from: 2,
                oldest: 7,
                capacity: 4
            }
        );
        assert!(lag.to_string().contains("?index=7"), "{lag}");
    }

    #[test]
    fn a_batch_larger_than_the_buffer_is_kept_whole() {
        let b = EventBroker::new(2);
        b.publish(
            (0..5)
                .map(|i| alloc_event(1, &format!("a{i}"), "w"))
                .collect(),
        );
        assert_eq!(b.len(), 5);
        b.publish(vec![job_event(2, "w", "default")]);
        assert_eq!(b.len(), 1);
    }

    #[test]
    fn a_long_backlog_is_read_in_pieces() {
        let b = EventBroker::new(10_000);
        for i in 1..=(MAX_BATCHES_PER_READ as u64 + 10) {
            b.publish(vec![job_event(i, "a", "default")]);
        }
        let mut sub = b.subscribe(0, filter(&[], None));
        assert_eq!(sub.read().unwrap().len(), MAX_BATCHES_PER_READ);
        assert_eq!(sub.read().unwrap().len(), 10);
    }

    #[test]
    fn streams_per_client_are_capped_and_freed_on_drop() {
        let b = EventBroker::new(10);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let one = b.subscribe_client(ip, 2, 0, filter(&[], None)).unwrap();
        let _two = b.subscribe_client(ip, 2, 0, filter(&[], None)).unwrap();
        let err = b
            .subscribe_client(ip, 2, 0, filter(&[], None))
            .err()
            .expect("a third stream is refused");
        assert!(err.to_string().contains("10.0.0.1"), "{err}");
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(b.subscribe_client(other, 2, 0, filter(&[], None)).is_ok());
        drop(one);
        assert!(b.subscribe_client(ip, 2, 0, filter(&[], None)).is_ok());
    }

    #[tokio::test]
    async fn closing_the_broker_wakes_and_ends_every_subscriber() {
        let b = EventBroker::new(10);
        let mut sub = b.subscribe(0, filter(&[], None));
        assert!(!sub.closed());
        let closer = b.clone();
        tokio::spawn(async move { closer.close() });
        tokio::time::timeout(Duration::from_secs(10), sub.changed())
            .await
            .expect("woken by the close");
        assert!(sub.closed());
    }

    #[tokio::test]
    async fn a_publish_wakes_a_waiting_subscriber() {
        let b = EventBroker::new(10);
        let mut sub = b.subscribe(0, filter(&[], None));
        assert!(sub.read().unwrap().is_empty());
        let publisher = b.clone();
        tokio::spawn(async move {
            publisher.publish(vec![job_event(1, "web", "default")]);
        });
        tokio::time::timeout(Duration::from_secs(10), sub.changed())
            .await
            .expect("woken by the publish");
        assert_eq!(sub.read().unwrap().len(), 1);
    }
}
