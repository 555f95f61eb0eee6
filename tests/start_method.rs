//! The global start method (its own test binary: it changes process-wide state).

aiop::test_support!();

use aiop::blocking::process::{self, Process, StartMethod};

fn parent_pid(_: ()) -> u32 {
    process::parent_process().map_or(0, |p| p.pid())
}

#[test]
fn the_global_start_method_applies_to_spawns_that_do_not_choose() {
    assert_eq!(process::start_method(), StartMethod::SPAWN);
    process::set_start_method(StartMethod::FORK_SERVER);
    assert_eq!(process::start_method(), StartMethod::FORK_SERVER);
    let mut p = Process::spawn(parent_pid, ()).unwrap();
    assert_eq!(p.start_method(), StartMethod::FORK_SERVER);
    // The fork server forked it, but its parent is still this process.
    assert_eq!(p.join().unwrap(), std::process::id());
    // A per-call choice wins over the global one.
    let mut q = Process::builder()
        .start_method(StartMethod::SPAWN)
        .spawn(parent_pid, ())
        .unwrap();
    assert_eq!(q.start_method(), StartMethod::SPAWN);
    assert_eq!(q.join().unwrap(), std::process::id());

    // The fork method as the global default is refused here (the harness has threads).
    // SAFETY: nothing is forked: the spawn is refused.
    process::set_start_method(unsafe { StartMethod::fork() });
    assert!(matches!(
        Process::spawn(parent_pid, ()),
        Err(process::ProcessError::ForkRefused { .. })
    ));
    process::set_start_method(StartMethod::SPAWN);
}
