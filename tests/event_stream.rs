//! `GET /v1/event/stream` through the real binary: NDJSON frames in Nomad's shape for what
//! the servers apply, topic filters, `index` resume, a `{}` heartbeat at connect and on
//! its interval, and a stream that stays open.

mod common;

use common::*;
use std::io::BufRead;
use std::sync::mpsc;
use std::time::{Duration, Instant};

const JOB: &str = r#"
job "streamed" {
  datacenters = ["dc1"]
  type = "service"

  group "main" {
    count = 1

    task "sleep" {
      driver = "raw_exec"
      kill_timeout = "2s"

      config {
        command = "/bin/sh"
        args    = ["-c", "exec sleep 3600"]
      }

      resources {
        cpu    = 20
        memory = 16
      }
    }
  }
}
"#;

/// What a stream's reader thread saw.
enum Seen {
    Line(String),
    /// The server ended the stream (or the connection broke).
    End(String),
}

/// An open event stream whose lines arrive on a channel, read by its own thread.
struct Stream {
    lines: mpsc::Receiver<Seen>,
}

impl Stream {
    /// `GET <base>/v1/event/stream<query>`; its answer's headers must arrive within 10 s.
    fn open(base: &str, query: &str) -> Stream {
        let url = format!("{base}/v1/event/stream{query}");
        let (tx, rx) = mpsc::channel();
        let (opened_tx, opened) = mpsc::channel();
        let target = url.clone();
        std::thread::spawn(move || {
            let client = reqwest::blocking::Client::builder()
                .timeout(None::<Duration>)
                .build()
                .unwrap();
            let resp = match client.get(&target).send() {
                Ok(r) => r,
                Err(e) => return drop(opened_tx.send(Err(e.to_string()))),
            };
            let ct = resp.headers().get("content-type").cloned();
            if resp.status().as_u16() != 200 {
                let status = resp.status();
                return drop(opened_tx.send(Err(format!("{status}: {:?}", resp.text()))));
            }
            let _ = opened_tx.send(Ok(ct));
            let mut reader = std::io::BufReader::new(resp);
            loop {
                let mut line = String::new();
                let seen = match reader.read_line(&mut line) {
                    Ok(0) => Seen::End("end of stream".into()),
                    Ok(_) => Seen::Line(line),
                    Err(e) => Seen::End(e.to_string()),
                };
                let end = matches!(seen, Seen::End(_));
                if tx.send(seen).is_err() || end {
                    return;
                }
            }
        });
        let ct = match opened.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(ct)) => ct,
            Ok(Err(e)) => panic!("{url}: {e}"),
            Err(_) => panic!("{url}: no answer within 10 s (was it relayed and buffered?)"),
        };
        let ct = ct.and_then(|v| v.to_str().ok().map(str::to_string));
        assert!(
            ct.as_deref()
                .is_some_and(|c| c.starts_with("application/json")),
            "{ct:?}"
        );
        Stream { lines: rx }
    }

    /// The next NDJSON value, within `timeout`.
    fn next(&self, timeout: Duration) -> Option<serde_json::Value> {
        match self.lines.recv_timeout(timeout) {
            Ok(Seen::Line(l)) => Some(
                serde_json::from_str(&l)
                    .unwrap_or_else(|e| panic!("a line that is not JSON ({e}): {l:?}")),
            ),
            Ok(Seen::End(why)) => panic!("the server ended the event stream: {why}"),
            Err(_) => None,
        }
    }

    /// How the stream ended (lines before the end are skipped), within `timeout`.
    fn end(&self, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(Seen::Line(_)) => {}
                Ok(Seen::End(why)) => return why,
                Err(_) => panic!("the stream did not end within {timeout:?}"),
            }
        }
    }

    /// Read values until `want` picks one, or panic naming `what` after `timeout`. Every
    /// value read on the way is passed to `check`.
    fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&serde_json::Value),
        mut want: impl FnMut(&serde_json::Value) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(v) = self.next(left) else {
                panic!("timed out after {timeout:?} waiting for {what}");
            };
            check(&v);
            if let Some(t) = want(&v) {
                return t;
            }
        }
    }
}

fn events(frame: &serde_json::Value) -> Vec<serde_json::Value> {
    frame["Events"].as_array().cloned().unwrap_or_default()
}

fn is_heartbeat(v: &serde_json::Value) -> bool {
    v.as_object().is_some_and(|o| o.is_empty())
}

/// Every event in a frame carries the frame's index and Nomad's fields.
fn well_formed(v: &serde_json::Value) {
    if is_heartbeat(v) {
        return;
    }
    let index = v["Index"].as_u64().expect("a frame has an Index");
    for e in events(v) {
        assert_eq!(e["Index"].as_u64(), Some(index), "{e}");
        for field in ["Topic", "Type", "Key", "Namespace", "Payload"] {
            assert!(e.get(field).is_some(), "an event without {field}: {e}");
        }
        assert!(!e.to_string().contains("SecretID"), "a node secret in {e}");
    }
}

#[test]
fn event_stream_sends_job_and_allocation_frames_heartbeats_and_resumes_from_an_index() {
    let agent = DevAgent::start_with_env(&[("DROVER_EVENT_HEARTBEAT_MS", "1000")]);
    let jobs = Stream::open(&agent.addr(), "?topic=Job:*");
    let all = Stream::open(&agent.addr(), "?topic=*");
    let connect = Duration::from_secs(5);
    for s in [&jobs, &all] {
        let first = s.next(connect).expect("a heartbeat at connect");
        assert!(is_heartbeat(&first), "the first line is {{}}: {first}");
    }

    let job_file = agent.dir.path().join("streamed.hcl");
    std::fs::write(&job_file, JOB).unwrap();
    let out = agent.cli(&["job", "run", "-detach", job_file.to_str().unwrap()]);
    assert!(out.status.success(), "job run: {}", stderr(&out));

    let only_jobs = |v: &serde_json::Value| {
        well_formed(v);
        for e in events(v) {
            assert_eq!(e["Topic"], "Job", "topic=Job:* let through {e}");
        }
    };
    let registered_at = jobs.wait_for(
        "a JobRegistered event for the job",
        Duration::from_secs(30),
        only_jobs,
        |v| {
            events(v)
                .into_iter()
                .find(|e| e["Type"] == "JobRegistered" && e["Key"] == "streamed")
                .map(|e| {
                    assert_eq!(e["Namespace"], "default");
                    assert_eq!(e["Payload"]["Job"]["ID"], "streamed");
                    e["Index"].as_u64().unwrap()
                })
        },
    );

    let alloc = all.wait_for(
        "an Allocation event for the job",
        Duration::from_secs(30),
        well_formed,
        |v| {
            events(v).into_iter().find(|e| {
                e["Topic"] == "Allocation" && e["Payload"]["Allocation"]["JobID"] == "streamed"
            })
        },
    );
    let filter_keys = alloc["FilterKeys"].as_array().cloned().unwrap_or_default();
    assert!(filter_keys.contains(&"streamed".into()), "{alloc}");
    assert_eq!(
        alloc["Payload"]["Allocation"]["Job"],
        serde_json::Value::Null,
        "an allocation event is sent without its job"
    );

    // The stream stays open: heartbeats keep coming on their (1 s) interval.
    let mut beats = 0;
    jobs.wait_for(
        "3 more heartbeats",
        Duration::from_secs(15),
        only_jobs,
        |v| {
            beats += usize::from(is_heartbeat(v));
            (beats == 3).then_some(())
        },
    );

    // A new subscriber starting at that index is sent the buffered event again; one
    // filtered to another job is not.
    let resumed = Stream::open(
        &agent.addr(),
        &format!("?index={registered_at}&topic=Job:streamed"),
    );
    resumed.wait_for(
        "the buffered JobRegistered event from ?index",
        Duration::from_secs(10),
        well_formed,
        |v| {
            let e = events(v);
            (!e.is_empty()).then(|| {
                assert_eq!(v["Index"].as_u64(), Some(registered_at), "{v}");
                assert_eq!(e[0]["Type"], "JobRegistered");
            })
        },
    );
    // The same through `api::Client::event_stream`.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = api::Client::new(&agent.addr());
        let mut s = client
            .event_stream(&["Job:streamed"], registered_at, None)
            .await
            .expect("the stream opens");
        let within = Duration::from_secs(10);
        let first = tokio::time::timeout(within, s.next()).await;
        let first = first.expect("a heartbeat in time").unwrap().unwrap();
        assert!(first.is_heartbeat(), "{first:?}");
        let frame = tokio::time::timeout(within, s.next()).await;
        let frame = frame.expect("a frame in time").unwrap().unwrap();
        assert_eq!(frame.index, registered_at);
        assert_eq!(frame.events[0].kind, "JobRegistered");
        assert_eq!(frame.events[0].payload["Job"]["ID"], "streamed");
        let bad = client.event_stream(&["Nope"], 0, None).await.err();
        assert_eq!(bad.and_then(|e| e.status()), Some(400));
    });

    let other = Stream::open(&agent.addr(), "?topic=Job:another");
    let deadline = Instant::now() + Duration::from_secs(3);
    while let Some(v) = other.next(deadline.saturating_duration_since(Instant::now())) {
        assert!(is_heartbeat(&v), "topic=Job:another let through {v}");
    }
}

#[test]
fn event_stream_refuses_bad_queries_and_too_many_streams_with_sentences() {
    // Four connections per client leave room for two streams.
    let mut agent = DevAgent::start_with_env(&[("DROVER_HTTP_MAX_CONNS_PER_CLIENT", "4")]);
    let get = |query: &str| {
        let r = reqwest::blocking::get(format!("{}/v1/event/stream{query}", agent.addr()))
            .expect("GET");
        (r.status().as_u16(), r.text().unwrap_or_default())
    };
    let (status, text) = get("?topic=Jobs:web");
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("invalid topic \"Jobs:web\""), "{text}");
    let (status, text) = get("?index=-3");
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("invalid index"), "{text}");

    let first = Stream::open(&agent.addr(), "?topic=Node");
    let second = Stream::open(&agent.addr(), "?topic=Job");
    for s in [&first, &second] {
        assert!(s
            .next(Duration::from_secs(5))
            .is_some_and(|v| is_heartbeat(&v)));
    }
    let (status, text) = get("?topic=Job");
    assert_eq!(status, 429, "{text}");
    assert!(text.contains("event streams"), "{text}");

    // Shutting down ends open streams properly, not cut off after the shutdown grace.
    agent.terminate();
    for s in [&first, &second] {
        assert_eq!(s.end(Duration::from_secs(20)), "end of stream");
    }
}

#[test]
fn a_follower_streams_the_events_it_applies_without_relaying_to_the_leader() {
    let cluster = common::cluster::Cluster::start(&[]);
    let leader = cluster.wait_leader(Duration::from_secs(30));
    let follower = &cluster.servers[(leader + 1) % cluster.servers.len()];
    let stream = Stream::open(&follower.http(), "?topic=Job:followed");
    let first = stream
        .next(Duration::from_secs(5))
        .expect("a heartbeat at connect");
    assert!(is_heartbeat(&first), "{first}");
    let r = reqwest::blocking::Client::new()
        .put(format!("{}/v1/jobs", cluster.servers[leader].http()))
        .json(&common::cluster::tiny_job("followed", 1))
        .send()
        .expect("PUT /v1/jobs to the leader");
    assert_eq!(r.status().as_u16(), 200, "{:?}", r.text());
    stream.wait_for(
        "the follower's JobRegistered event",
        Duration::from_secs(30),
        well_formed,
        |v| {
            events(v)
                .into_iter()
                .find(|e| e["Type"] == "JobRegistered" && e["Key"] == "followed")
        },
    );
}

const SERVICE_JOB: &str = r#"
job "announced" {
  type = "service"

  group "main" {
    network {
      port "http" {}
    }

    service {
      name     = "announced"
      provider = "nomad"
      port     = "http"
      tags     = ["edge"]
    }

    task "sleep" {
      driver       = "raw_exec"
      kill_timeout = "2s"

      config {
        command = "/bin/sh"
        args    = ["-c", "exec sleep 3600"]
      }

      resources {
        cpu    = 20
        memory = 16
      }
    }
  }
}
"#;

/// As Traefik's watch mode holds it: `?index=0&topic=Service:*` at the default heartbeat
/// interval (30 s). The registration's frame comes within 1 s of the instance being
/// listed, and the stream is still open, with heartbeats, after more than 60 s.
#[test]
fn a_service_registration_frame_arrives_within_a_second_and_the_stream_outlives_a_minute() {
    let agent = DevAgent::start();
    let opened = Instant::now();
    let stream = Stream::open(&agent.addr(), "?index=0&topic=Service:*");
    let first = stream
        .next(Duration::from_secs(5))
        .expect("a heartbeat at connect");
    assert!(is_heartbeat(&first), "the first line is {{}}: {first}");

    // A poller notes when the instance is first listed by `GET /v1/service/announced`.
    let listed = {
        let url = format!("{}/v1/service/announced", agent.addr());
        std::thread::spawn(move || {
            let client = reqwest::blocking::Client::new();
            let deadline = Instant::now() + Duration::from_secs(90);
            while Instant::now() < deadline {
                let v: Option<serde_json::Value> =
                    client.get(&url).send().ok().and_then(|r| r.json().ok());
                if v.as_ref()
                    .and_then(|v| v.as_array())
                    .is_some_and(|l| !l.is_empty())
                {
                    return Some(Instant::now());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            None
        })
    };
    let job_file = agent.dir.path().join("announced.hcl");
    std::fs::write(&job_file, SERVICE_JOB).unwrap();
    let out = agent.cli(&["job", "run", "-detach", job_file.to_str().unwrap()]);
    assert!(out.status.success(), "job run: {}", stderr(&out));

    let only_services = |v: &serde_json::Value| {
        well_formed(v);
        for e in events(v) {
            assert_eq!(e["Topic"], "Service", "topic=Service:* let through {e}");
        }
    };
    let (frame_at, event) = stream.wait_for(
        "a ServiceRegistration frame",
        Duration::from_secs(60),
        only_services,
        |v| {
            events(v)
                .into_iter()
                .find(|e| e["Type"] == "ServiceRegistration")
                .map(|e| (Instant::now(), e))
        },
    );
    let listed_at = listed
        .join()
        .unwrap()
        .expect("the instance was listed within 90 s");
    let svc = &event["Payload"]["Service"];
    assert_eq!(svc["ServiceName"], "announced", "{event}");
    assert_eq!(event["Key"], svc["ID"], "{event}");
    assert_eq!(event["Namespace"], "default", "{event}");
    assert!(svc["Port"].as_u64().unwrap_or(0) > 0, "{event}");
    assert!(!svc["Address"].as_str().unwrap_or("").is_empty(), "{event}");
    let late = frame_at.saturating_duration_since(listed_at);
    eprintln!(
        "ServiceRegistration frame {late:.1?} after the instance was listed \
         (or {:.1?} before)",
        listed_at.saturating_duration_since(frame_at)
    );
    assert!(
        late < Duration::from_secs(1),
        "the frame came {late:?} after the registration"
    );

    // Still open past a minute: nothing but heartbeats (at 30 s and 60 s) meanwhile,
    // and no end in the seconds after.
    let mut beats = 0;
    while beats < 2 {
        let left = Duration::from_secs(75).saturating_sub(opened.elapsed());
        let v = stream.next(left).unwrap_or_else(|| {
            panic!(
                "no heartbeat for {:?} after {beats} heartbeats",
                opened.elapsed()
            )
        });
        only_services(&v);
        beats += usize::from(is_heartbeat(&v));
    }
    let beats_at = opened.elapsed();
    match stream
        .lines
        .recv_timeout(Duration::from_secs(63).saturating_sub(opened.elapsed()))
    {
        Ok(Seen::End(why)) => panic!("the stream ended after {:?}: {why}", opened.elapsed()),
        Ok(Seen::Line(_)) | Err(mpsc::RecvTimeoutError::Timeout) => {}
        Err(e) => panic!("{e}"),
    }
    eprintln!(
        "event stream still open after {:.1?}; heartbeats 2 ({beats_at:.1?}) after the one at connect",
        opened.elapsed()
    );
    assert!(
        beats_at >= Duration::from_secs(55),
        "heartbeats too early: {beats_at:?}"
    );
    assert!(opened.elapsed() > Duration::from_secs(60));
}
