//! The fork server under concurrency and after its death (its own test
//! binary: it finds the server among this process's children).

aiop::test_support!();

mod common;

use std::collections::HashSet;

use aiop::blocking::process::{self, Process, ProcessError, StartMethod};
use common::{GENEROUS, ends_within, park_forever, pidfd};

fn fast() -> aiop::blocking::process::Builder {
    Process::builder().start_method(StartMethod::FORK_SERVER)
}

fn echo(x: u64) -> (u64, u32) {
    (x, std::process::id())
}

fn parked(_: ()) {
    park_forever()
}

/// This process's children, from /proc (every thread's list).
fn children_of_this_process() -> HashSet<u32> {
    let mut pids = HashSet::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        if let Ok(list) = std::fs::read_to_string(task.path().join("children")) {
            pids.extend(
                list.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
    }
    pids
}

#[test]
fn fork_server_from_many_threads_then_after_its_death() {
    // Eight threads, each starting and joining children through one server.
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            std::thread::spawn(move || {
                (0..6u64)
                    .map(|i| {
                        let mut p = fast().spawn(echo, t * 100 + i).unwrap();
                        let (v, pid) = p.join().unwrap();
                        assert_eq!(pid, p.pid());
                        v
                    })
                    .collect::<Vec<u64>>()
            })
        })
        .collect();
    for (t, h) in threads.into_iter().enumerate() {
        let t = t as u64;
        assert_eq!(
            h.join().unwrap(),
            (0..6).map(|i| t * 100 + i).collect::<Vec<_>>()
        );
    }

    // A child of the server that will outlive it.
    let mut orphan = fast().spawn(parked, ()).unwrap();
    let active: HashSet<u32> = process::active_children().iter().map(|c| c.pid()).collect();
    let servers: Vec<u32> = children_of_this_process()
        .difference(&active)
        .copied()
        .collect();
    assert_eq!(
        servers.len(),
        1,
        "expected exactly the fork server besides the children: {servers:?}"
    );
    let server = pidfd(servers[0]);
    rustix::process::pidfd_send_signal(&server, rustix::process::Signal::KILL).unwrap();
    assert!(ends_within(&server, GENEROUS));

    // The next request starts a new server.
    let mut p = fast().spawn(echo, 7).unwrap();
    assert_eq!(p.join().unwrap().0, 7);

    // The orphan still runs, can be signalled, and its end is seen (its
    // status died with the server that would have reported it).
    assert!(orphan.is_alive());
    orphan.kill().unwrap();
    let err = orphan.join_timeout(GENEROUS).unwrap_err();
    assert!(matches!(err, ProcessError::Failed(_)), "{err}");
    assert!(
        err.to_string().contains("lost with the fork server"),
        "{err}"
    );
    assert!(!orphan.is_alive());
    assert_eq!(orphan.exitcode(), None);
}
