//! `Process` across real processes: results, panics, signals, timeouts,
//! daemons, nesting, start methods, identity and bad input.

aiop::test_support!();

mod common;

use std::time::Duration;

use aiop::arena::Slot;
use aiop::blocking::process::{self, Process, ProcessError, StartMethod};
use common::{
    GENEROUS, RefusesToDeserialize, ends_within, park_forever, pidfd, set_and_wake, wait_nonzero,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Job {
    id: u32,
    words: Vec<String>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Report {
    id: u32,
    upper: Vec<String>,
    total: usize,
    pid: u32,
}

fn summarize(job: Job) -> Report {
    Report {
        id: job.id,
        total: job.words.iter().map(String::len).sum(),
        upper: job.words.iter().map(|w| w.to_uppercase()).collect(),
        pid: std::process::id(),
    }
}

#[test]
fn arguments_in_typed_result_out() {
    let job = Job {
        id: 7,
        words: vec!["fork".into(), "server".into()],
    };
    let mut p = Process::spawn(summarize, job).unwrap();
    let pid = p.pid();
    let report = p.join().unwrap();
    assert_eq!(
        report,
        Report {
            id: 7,
            upper: vec!["FORK".into(), "SERVER".into()],
            total: 10,
            pid
        }
    );
    assert_ne!(pid, std::process::id());
    assert_eq!(p.exitcode(), Some(0));
    assert!(p.exit_status().unwrap().success());
    assert!(!p.is_alive());
}

#[test]
fn large_arguments_and_result_do_not_deadlock() {
    // Far beyond a socket buffer in both directions.
    let data: Vec<u8> = (0..8 << 20).map(|i: u32| (i % 251) as u8).collect();
    let mut p = Process::spawn(
        |v: Vec<u8>| v.into_iter().rev().collect::<Vec<u8>>(),
        data.clone(),
    )
    .unwrap();
    let back = p.join().unwrap();
    assert_eq!(back.len(), data.len());
    assert!(back.iter().rev().eq(data.iter()));
}

#[test]
fn panic_comes_back_with_its_message() {
    let mut p = Process::spawn(|x: u32| -> u32 { panic!("boom {x}") }, 7).unwrap();
    let err = p.join().unwrap_err();
    assert_eq!(err.panic_message(), Some("boom 7"), "{err}");
    assert_eq!(err.to_string(), "the child panicked: boom 7");
    assert_eq!(p.exitcode(), Some(1));
}

#[test]
fn exit_without_result_reports_the_code() {
    let mut p = Process::spawn(|code: i32| -> u32 { std::process::exit(code) }, 3).unwrap();
    assert!(matches!(p.join(), Err(ProcessError::Exited(3))));
    assert_eq!(p.exitcode(), Some(3));
}

#[test]
fn abort_reports_the_signal() {
    let mut p = Process::spawn(|_: ()| -> u32 { std::process::abort() }, ()).unwrap();
    let err = p.join().unwrap_err();
    assert_eq!(err.signal(), Some(libc::SIGABRT), "{err}");
    assert_eq!(p.exitcode(), Some(-libc::SIGABRT));
}

#[test]
fn kill_gives_the_signal_exit_code() {
    let mut p = Process::spawn(parked, ()).unwrap();
    assert!(p.is_alive());
    assert_eq!(p.exitcode(), None);
    p.kill().unwrap();
    let err = p.join().unwrap_err();
    assert_eq!(err.signal(), Some(libc::SIGKILL));
    assert_eq!(err.to_string(), "the child was ended by signal 9 (SIGKILL)");
    assert_eq!(p.exitcode(), Some(-9));
    // Signalling an ended child is a no-op, as in Python.
    p.kill().unwrap();
    p.terminate().unwrap();
}

#[test]
fn terminate_sends_sigterm() {
    let mut p = Process::spawn(parked, ()).unwrap();
    p.terminate().unwrap();
    assert_eq!(p.join().unwrap_err().signal(), Some(libc::SIGTERM));
    assert_eq!(p.exitcode(), Some(-libc::SIGTERM));
}

#[test]
fn join_timeout_expires_on_a_sleeping_child_and_join_works_after() {
    let mut p = Process::spawn(parked, ()).unwrap();
    let err = p.join_timeout(Duration::from_millis(100)).unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert!(p.is_alive());
    p.kill().unwrap();
    assert_eq!(p.join_timeout(GENEROUS).unwrap_err().signal(), Some(9));
}

#[test]
fn join_twice_and_close() {
    let mut p = Process::spawn(parked, ()).unwrap();
    assert!(matches!(p.close(), Err(ProcessError::StillRunning)));
    p.kill().unwrap();
    assert!(p.join().is_err());
    assert!(matches!(p.join(), Err(ProcessError::AlreadyJoined)));
    p.close().unwrap();
    assert!(matches!(p.join(), Err(ProcessError::Closed)));
}

#[test]
fn names_identity_and_parent() {
    fn who(_: ()) -> (String, Vec<u32>, bool, u32, String) {
        let me = process::current_process();
        let parent = process::parent_process().expect("a child has a parent");
        (
            me.name().to_string(),
            me.ident().to_vec(),
            me.daemon(),
            parent.pid(),
            parent.name().to_string(),
        )
    }
    let mut p = Process::builder()
        .name("worker-a")
        .daemon(true)
        .spawn(who, ())
        .unwrap();
    assert_eq!(p.name(), "worker-a");
    assert!(p.daemon());
    let (name, ident, daemon, ppid, pname) = p.join().unwrap();
    assert_eq!(name, "worker-a");
    assert_eq!(ident.len(), 1);
    assert!(daemon);
    assert_eq!(ppid, std::process::id());
    assert_eq!(pname, "MainProcess");
    assert_eq!(process::current_process().name(), "MainProcess");
    assert!(process::parent_process().is_none());

    let mut q = Process::spawn(who, ()).unwrap();
    assert!(q.name().starts_with("Process-"), "{}", q.name());
    assert_eq!(q.join().unwrap().0, q.name());
    assert!(process::cpu_count() >= 1);
}

#[test]
fn nested_spawn_child_spawns_grandchild() {
    fn grandchild(x: u64) -> (u64, u32, String) {
        let parent = process::parent_process().unwrap();
        (
            x * 10,
            parent.pid(),
            process::current_process().name().to_string(),
        )
    }
    fn child(x: u64) -> (u64, u32, u32, String, String) {
        let mut g = Process::spawn(grandchild, x).unwrap();
        let (v, gppid, gname) = g.join().unwrap();
        (
            v + 1,
            gppid,
            std::process::id(),
            gname,
            process::current_process().name().to_string(),
        )
    }
    let mut p = Process::spawn(child, 4).unwrap();
    let (v, grandchilds_parent, child_pid, gname, cname) = p.join().unwrap();
    assert_eq!(v, 41);
    assert_eq!(grandchilds_parent, child_pid);
    assert_eq!(gname, format!("{cname}:1"));
}

#[test]
fn sixteen_spawns_at_once() {
    let mut ps: Vec<Process<u64>> = (0..16u64)
        .map(|i| Process::spawn(|(a, b): (u64, u64)| a * b, (i, i)).unwrap())
        .collect();
    let got: Vec<u64> = ps.iter_mut().map(|p| p.join().unwrap()).collect();
    assert_eq!(got, (0..16u64).map(|i| i * i).collect::<Vec<_>>());
}

fn triple(x: u64) -> u64 {
    x * 3
}

#[test]
fn forkserver_start_method() {
    let mut ps: Vec<Process<u64>> = (0..8u64)
        .map(|i| {
            Process::builder()
                .start_method(StartMethod::FORK_SERVER)
                .spawn(triple, i)
                .unwrap()
        })
        .collect();
    for (i, p) in ps.iter_mut().enumerate() {
        assert_eq!(p.start_method(), StartMethod::FORK_SERVER);
        assert_eq!(p.join().unwrap(), 3 * i as u64);
        assert_eq!(p.exitcode(), Some(0));
    }
    // Signals and panics travel the same way through the server.
    let mut p = Process::builder()
        .start_method(StartMethod::FORK_SERVER)
        .spawn(parked, ())
        .unwrap();
    p.kill().unwrap();
    assert_eq!(p.join().unwrap_err().signal(), Some(9));
    assert_eq!(p.exitcode(), Some(-9));
    let mut p = Process::builder()
        .start_method(StartMethod::FORK_SERVER)
        .spawn(|_: ()| -> u8 { panic!("from a forked child") }, ())
        .unwrap();
    assert_eq!(
        p.join().unwrap_err().panic_message(),
        Some("from a forked child")
    );
}

/// Runs in a fork-server child, which has exactly one thread.
fn fork_from_single_threaded(x: u64) -> (u64, bool) {
    // SAFETY: this process is a fork-server child running only this function.
    let fork = unsafe { StartMethod::fork() };
    let mut p = Process::builder()
        .start_method(fork)
        .spawn(triple, x)
        .unwrap();
    let v = p.join().unwrap();
    let mut q = Process::builder()
        .start_method(fork)
        .spawn(parked, ())
        .unwrap();
    q.kill().unwrap();
    (v, q.join().unwrap_err().signal() == Some(9))
}

#[test]
fn fork_start_method_in_a_single_threaded_process() {
    let mut p = Process::builder()
        .start_method(StartMethod::FORK_SERVER)
        .spawn(fork_from_single_threaded, 14)
        .unwrap();
    assert_eq!(p.join().unwrap(), (42, true));
}

/// Runs in a fork-server child (one thread): prints without a newline,
/// forks, and returns everything that reached stdout.
fn print_then_fork(_: ()) -> String {
    use std::io::{Read, Write};
    let (rd, wr) = rustix::pipe::pipe().unwrap();
    let saved = rustix::io::dup(rustix::stdio::stdout()).unwrap();
    rustix::stdio::dup2_stdout(&wr).unwrap();
    drop(wr);
    print!("once"); // stays in std's line buffer: no newline yet
    // SAFETY: this process is a fork-server child running only this function.
    let fork = unsafe { StartMethod::fork() };
    Process::builder()
        .start_method(fork)
        .spawn(|_: ()| (), ())
        .unwrap()
        .join()
        .unwrap();
    println!();
    std::io::stdout().flush().unwrap();
    // Puts the real stdout back, closing the pipe's last write end.
    rustix::stdio::dup2_stdout(&saved).unwrap();
    let mut seen = String::new();
    std::fs::File::from(rd).read_to_string(&mut seen).unwrap();
    seen
}

#[test]
fn a_forked_child_does_not_print_its_parents_buffered_output_again() {
    let mut p = Process::builder()
        .start_method(StartMethod::FORK_SERVER)
        .spawn(print_then_fork, ())
        .unwrap();
    assert_eq!(p.join().unwrap(), "once\n");
}

#[test]
fn fork_is_refused_in_a_multithreaded_process() {
    // The test harness runs this test on a thread of its own: more than one thread.
    // SAFETY: the spawn is expected to be refused before anything is forked.
    let fork = unsafe { StartMethod::fork() };
    let err = Process::builder()
        .start_method(fork)
        .spawn(triple, 1)
        .unwrap_err();
    match err {
        ProcessError::ForkRefused { threads } => assert!(threads > 1),
        other => panic!("expected ForkRefused, got {other}"),
    }
    assert!(err_text(fork).contains("refused"));
}

fn err_text(m: StartMethod) -> String {
    Process::builder()
        .start_method(m)
        .spawn(triple, 1)
        .unwrap_err()
        .to_string()
}

#[test]
fn start_method_names() {
    assert_eq!("spawn".parse::<StartMethod>().unwrap(), StartMethod::SPAWN);
    assert_eq!(
        "forkserver".parse::<StartMethod>().unwrap(),
        StartMethod::FORK_SERVER
    );
    let e = "spwan".parse::<StartMethod>().unwrap_err();
    assert_eq!(
        e.to_string(),
        "unknown start method \"spwan\" (expected \"spawn\" or \"forkserver\")"
    );
    let e = "fork".parse::<StartMethod>().unwrap_err();
    assert!(e.to_string().contains("unsafe"), "{e}");
    assert_eq!(StartMethod::FORK_SERVER.to_string(), "forkserver");
}

static INITIALIZED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

fn set_initialized(v: u32) {
    INITIALIZED.store(v, std::sync::atomic::Ordering::Relaxed);
}

fn read_initialized(_: ()) -> u32 {
    INITIALIZED.load(std::sync::atomic::Ordering::Relaxed)
}

#[test]
fn initializer_runs_before_the_function() {
    for method in [StartMethod::SPAWN, StartMethod::FORK_SERVER] {
        let b = Process::builder()
            .start_method(method)
            .initializer(set_initialized, 99);
        assert_eq!(b.spawn(read_initialized, ()).unwrap().join().unwrap(), 99);
        // The builder can start more children with the same initializer.
        assert_eq!(b.spawn(read_initialized, ()).unwrap().join().unwrap(), 99);
    }
    let mut p = Process::builder()
        .initializer(|_: ()| panic!("no config"), ())
        .spawn(read_initialized, ())
        .unwrap();
    assert_eq!(
        p.join().unwrap_err().panic_message(),
        Some("the initializer panicked: no config")
    );
}

#[test]
fn active_children_lists_running_children_and_reaps_dropped_ones() {
    let mut p = Process::spawn(parked, ()).unwrap();
    assert!(
        process::active_children()
            .iter()
            .any(|c| c.pid() == p.pid())
    );
    p.kill().unwrap();
    p.join().unwrap_err();
    assert!(
        !process::active_children()
            .iter()
            .any(|c| c.pid() == p.pid())
    );

    // A handle dropped while its child runs: the child is reaped later.
    let q = Process::spawn(parked, ()).unwrap();
    let pid = q.pid();
    let watch = q.sentinel().try_clone_to_owned().unwrap();
    q.kill().unwrap();
    drop(q);
    assert!(ends_within(&watch, GENEROUS));
    process::active_children();
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "child {pid} left as a zombie"
    );
}

// ---------------------------------------------------------------------------
// Daemons

/// A daemon grandchild: publishes its pid in word 1, then waits to be killed.
fn daemon_sleeper(slot: Slot) {
    set_and_wake(&slot, 1, std::process::id());
    park_forever()
}

/// A child that starts a daemon grandchild, then waits for word 2 (or forever).
fn start_daemon_then_wait(slot: Slot) {
    let _d = Process::builder()
        .daemon(true)
        .spawn(daemon_sleeper, slot.clone())
        .unwrap();
    wait_nonzero(&slot, 2);
}

#[test]
fn daemon_child_ends_within_a_second_of_its_parents_sigkill() {
    let slot = Slot::new().unwrap();
    let mut parent = Process::spawn(start_daemon_then_wait, slot.clone()).unwrap();
    let daemon = pidfd(wait_nonzero(&slot, 1));
    parent.kill().unwrap();
    assert_eq!(parent.join().unwrap_err().signal(), Some(9));
    assert!(
        ends_within(&daemon, Duration::from_secs(1)),
        "the daemon outlived its parent by 1 s"
    );
}

#[test]
fn daemon_child_ends_when_its_parent_returns() {
    let slot = Slot::new().unwrap();
    let mut parent = Process::spawn(start_daemon_then_wait, slot.clone()).unwrap();
    let daemon = pidfd(wait_nonzero(&slot, 1));
    set_and_wake(&slot, 2, 1);
    parent.join().unwrap();
    assert!(
        ends_within(&daemon, GENEROUS),
        "the daemon outlived its parent"
    );
}

#[test]
fn daemon_child_through_the_fork_server_ends_with_its_parent() {
    fn start(slot: Slot) {
        let _d = Process::builder()
            .daemon(true)
            .start_method(StartMethod::FORK_SERVER)
            .spawn(daemon_sleeper, slot.clone())
            .unwrap();
        park_forever()
    }
    let slot = Slot::new().unwrap();
    let mut parent = Process::spawn(start, slot.clone()).unwrap();
    let daemon = pidfd(wait_nonzero(&slot, 1));
    parent.kill().unwrap();
    parent.join().unwrap_err();
    assert!(
        ends_within(&daemon, Duration::from_secs(1)),
        "the daemon outlived its parent by 1 s"
    );
}

// ---------------------------------------------------------------------------
// Bad input

#[test]
fn arguments_that_fail_to_deserialize_report_an_error() {
    for method in [StartMethod::SPAWN, StartMethod::FORK_SERVER] {
        let mut p = Process::builder()
            .start_method(method)
            .spawn(|_: RefusesToDeserialize| 1u32, RefusesToDeserialize)
            .unwrap();
        let err = p.join_timeout(GENEROUS).unwrap_err();
        assert!(matches!(err, ProcessError::Failed(_)), "{err}");
        assert!(
            err.to_string().contains("could not decode its arguments"),
            "{err}"
        );
        assert_eq!(p.exitcode(), Some(1));
    }
}

#[derive(Debug, Deserialize)]
struct RefusesToSerialize;

impl Serialize for RefusesToSerialize {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("not today"))
    }
}

#[test]
fn arguments_that_fail_to_serialize_start_nothing() {
    let before = process::active_children().len();
    let err = Process::spawn(|_: RefusesToSerialize| 1u32, RefusesToSerialize).unwrap_err();
    assert!(matches!(err, ProcessError::Encode(_)), "{err}");
    assert!(process::active_children().len() <= before);
}

#[test]
fn a_result_that_fails_to_serialize_is_an_error() {
    let mut p = Process::spawn(|_: ()| RefusesToSerialize, ()).unwrap();
    let err = p.join().unwrap_err();
    assert!(
        err.to_string().contains("could not encode its result"),
        "{err}"
    );
}

/// A child function that never returns on its own.
fn parked(_: ()) {
    park_forever()
}

/// Starts this test binary as an aiop child by hand, the way the Spawn
/// method does; returns it and our end of its control socket.
fn child_by_hand() -> (std::process::Child, std::os::unix::net::UnixStream) {
    use std::os::fd::OwnedFd;
    use std::process::{Command, Stdio};
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["__aiop_child_entry", "--exact", "--test-threads=1", "-q"])
        .env("AIOP_CHILD", "1")
        .stdin(Stdio::from(OwnedFd::from(theirs)))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    (child, ours)
}

#[test]
fn a_child_fed_a_garbage_start_message_reports_it_and_exits() {
    let (mut child, ours) = child_by_hand();
    aiop_core::fdpass::send_frame(&ours, &[&[0xff; 40]], &[]).unwrap();
    let reply = aiop_core::fdpass::recv_frame(&ours, 1 << 20)
        .unwrap()
        .expect("a reply");
    assert_eq!(reply.payload[0], 2, "a failure reply");
    let msg = String::from_utf8_lossy(&reply.payload[1..]).into_owned();
    assert!(msg.contains("could not decode its start message"), "{msg}");
    assert_eq!(child.wait().unwrap().code(), Some(1));

    // A child whose parent vanishes before saying anything just exits.
    let (mut child, ours) = child_by_hand();
    drop(ours);
    assert_eq!(child.wait().unwrap().code(), Some(70));
}

/// Runs only when started by the test below: a process that has aiop's
/// child marker in its environment but never went through `aiop::init()`
/// (a program that forgot to call it).
#[test]
fn skipped_init_probe() {
    if std::env::var_os("AIOP_SKIPPED_INIT_PROBE").is_none() {
        return;
    }
    let err = Process::spawn(triple, 1).unwrap_err();
    assert!(
        err.to_string().contains("never called aiop::init()"),
        "{err}"
    );
    std::process::exit(42)
}

#[test]
fn a_process_that_skipped_init_refuses_to_spawn() {
    use std::process::{Command, Stdio};
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["skipped_init_probe", "--exact", "--test-threads=1", "-q"])
        .env("AIOP_CHILD", "1")
        .env("AIOP_SKIPPED_INIT_PROBE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(42), "the probe did not see the refusal");
}

#[test]
fn a_dropped_handle_does_not_leave_its_child_blocked_on_a_large_reply() {
    fn big(_: ()) -> Vec<u8> {
        vec![7; 16 << 20]
    }
    let p = Process::spawn(big, ()).unwrap();
    let watch = p.sentinel().try_clone_to_owned().unwrap();
    // Nobody will read the 16 MiB reply: the child must still be able to end.
    drop(p);
    assert!(
        ends_within(&watch, GENEROUS),
        "the child is stuck writing its reply"
    );
    process::active_children();
}
