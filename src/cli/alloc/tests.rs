use super::*;
use api::TaskState;

const S: i64 = 1_000_000_000;

fn alloc() -> Allocation {
    let mut a = Allocation {
        id: "0af996ed-1111-2222-3333-444444444444".into(),
        eval_id: "be9bde98-1111-2222-3333-444444444444".into(),
        name: "example.cache[0]".into(),
        node_id: "43c0b14e-1111-2222-3333-444444444444".into(),
        node_name: "n1".into(),
        job_id: "example".into(),
        client_status: "running".into(),
        desired_status: "run".into(),
        create_time: 100 * S,
        modify_time: 110 * S,
        ..Default::default()
    };
    a.task_states.insert(
        "redis".into(),
        TaskState {
            state: "running".into(),
            events: vec![
                TaskEvent::new("Received", 100 * S, ""),
                TaskEvent::new("Started", 101 * S, "Task started by client"),
            ],
            ..Default::default()
        },
    );
    a
}

#[test]
fn alloc_page_has_header_and_newest_events_first() {
    let out = render_alloc(&alloc(), false, 120 * S);
    assert!(out.starts_with("ID                  = 0af996ed\n"));
    assert!(out.contains("Client Description  = <none>\n"));
    assert!(out.contains("Created             = 20s ago\n"));
    assert!(out.contains("\nTask \"redis\" is \"running\"\nRecent Events:\nTime"));
    let started = out.find("Started").unwrap();
    let received = out.find("Received").unwrap();
    assert!(started < received, "{out}");
}

#[test]
fn terminated_events_show_the_exit_code() {
    let mut e = TaskEvent::new("Terminated", 0, "");
    (e.detail_mut().exit_code, e.detail_mut().signal) = (137, 9);
    assert_eq!(event_description(&e), "Exit Code: 137, Signal: 9");
}

#[test]
fn job_tables_show_nodes_and_node_tables_show_jobs() {
    let stub = AllocationListStub::from_alloc(&alloc());
    let job = alloc_table(
        std::slice::from_ref(&stub),
        false,
        120 * S,
        AllocTableKind::Job,
    );
    assert!(job.starts_with("ID        Node ID   Task Group"), "{job}");
    let node = alloc_table(&[stub], false, 120 * S, AllocTableKind::Node);
    assert!(node.starts_with("ID        Job ID   Task Group"), "{node}");
    assert!(node.contains("running  20s ago  10s ago"), "{node}");
}
