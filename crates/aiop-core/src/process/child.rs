//! The child side: `init()`, the test-harness entry, and running the call.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use rustix::fs::{Mode, OFlags};

use super::info::set_identity;
use super::wire::{self, Role, Start};
use super::{ProcessInfo, forkserver};
use crate::sys::call::{self, Outcome, SameImage};
use crate::sys::{fdpass, proc};
use crate::transfer::Inbound;

/// Set in a child's environment by the Spawn start method; `init()` removes it.
pub(crate) const ENV_CHILD: &str = "AIOP_CHILD";

/// Exit code of a child that could not even read what to run.
const EXIT_BOOT: i32 = 70;
/// Exit code of a child whose function panicked or could not be called.
const EXIT_FAILED: i32 = 1;

/// The module path of the crate's `test_support!()`, set from a constructor
/// before `main` (`OnceLock::set` neither allocates nor needs std's runtime).
static TEST_MODULE: OnceLock<&'static str> = OnceLock::new();

/// Whether this process was started by aiop and `init()` took over: spawns
/// are refused in a re-executed child that never reached `init()`.
static INITIALIZED: AtomicBool = AtomicBool::new(false);

/// This process's own control socket, if it is a child (closed in forked
/// grandchildren, which must not hold their grandparent's line open).
static OWN_CTL: AtomicI32 = AtomicI32::new(-1);

/// The proof, in a child started by aiop, that its parent's function offsets
/// are valid here (set once the start message is checked).
static IMAGE: std::sync::OnceLock<SameImage> = std::sync::OnceLock::new();

/// The image proof of this process, if it is a child started by aiop.
pub(crate) fn same_image() -> Option<&'static SameImage> {
    IMAGE.get()
}

#[doc(hidden)]
pub fn __enable_test_mode(module_path: &'static str) {
    let _ = TEST_MODULE.set(module_path);
}

/// The libtest filter that selects the child entry, in test binaries.
pub(crate) fn test_entry() -> Option<String> {
    let path = TEST_MODULE.get()?;
    // libtest names tests by their path inside the crate, without the crate.
    Some(match path.split_once("::") {
        Some((_, inner)) => format!("{inner}::__aiop_child_entry"),
        None => "__aiop_child_entry".to_string(),
    })
}

/// Whether this process is a re-executed child that never reached `init()`.
pub(crate) fn skipped_init() -> bool {
    !INITIALIZED.load(Ordering::Relaxed) && std::env::var_os(ENV_CHILD).is_some()
}

pub(crate) fn own_ctl() -> Option<i32> {
    let fd = OWN_CTL.load(Ordering::Relaxed);
    (fd >= 0).then_some(fd)
}

/// Turns this process into the child it was started as, if it was started by
/// aiop; returns at once otherwise.
///
/// Call it first thing in `main` of every program that spawns processes
/// with the Spawn or ForkServer start method: a spawned child re-executes the
/// program, and `init()` is where it takes over, runs the requested function
/// and exits without returning. In the parent it only checks one environment
/// variable.
///
/// Test binaries use [`test_support!`](crate::test_support) instead.
///
/// # Examples
///
/// ```no_run
/// // First thing in `main`:
/// aiop_core::init();
/// // ... the program, which may spawn processes ...
/// ```
pub fn init() {
    if std::env::var_os(ENV_CHILD).is_none() || INITIALIZED.load(Ordering::Relaxed) {
        return;
    }
    if proc::secure_execution() {
        // A setuid or setcap program must not let its environment choose code
        // to run: it is never an aiop child.
        return;
    }
    INITIALIZED.store(true, Ordering::Relaxed);
    // So that the child's own plain `Command`s do not inherit the marker.
    // Changing the environment is only sound while no other thread can read
    // it: at the top of `main`, or in the test harness's child entry (whose
    // main thread is parked). Otherwise the variable stays; `INITIALIZED`
    // keeps this process's own spawns working.
    if TEST_MODULE.get().is_some() || proc::thread_count().is_ok_and(|n| n == 1) {
        proc::remove_env(ENV_CHILD);
    }
    let ctl = match take_stdin() {
        Ok(fd) => fd,
        Err(e) => {
            eprintln!("aiop: a spawned child could not take its control socket from stdin: {e}");
            std::process::exit(EXIT_BOOT);
        }
    };
    run(ctl, Entry::Exec)
}

/// The control socket arrives as stdin (so that `std` can start the child
/// with `posix_spawn`); move it to a close-on-exec descriptor and give the
/// child `/dev/null` as stdin, as Python's `multiprocessing` does.
fn take_stdin() -> io::Result<OwnedFd> {
    let ctl = rustix::io::fcntl_dupfd_cloexec(rustix::stdio::stdin(), 3)?;
    let null = rustix::fs::open("/dev/null", OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?;
    rustix::stdio::dup2_stdin(&null)?;
    Ok(ctl)
}

/// How this child came to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Entry {
    /// Re-executed (Spawn, or the fork server itself): a fresh image.
    Exec,
    /// Forked (Fork, or by the fork server): a copy of its parent's image.
    Forked,
}

fn end(entry: Entry, code: i32) -> ! {
    // The process's own exit work (a forked copy skips the C library's
    // atexit handlers, which are its parent's).
    super::exit::run_exit_hooks();
    match entry {
        // A fresh image may run its atexit handlers (coverage, sanitizers).
        Entry::Exec => std::process::exit(code),
        // A copy must not run its parent's.
        Entry::Forked => proc::exit_now(code),
    }
}

/// Runs the child: reads its `Start`, runs the call, replies, exits.
pub(crate) fn run(ctl: OwnedFd, entry: Entry) -> ! {
    OWN_CTL.store(ctl.as_raw_fd(), Ordering::Relaxed);
    let sock = UnixStream::from(ctl);
    let frame = match fdpass::recv_frame(&sock, wire::MAX_FRAME) {
        Ok(Some(f)) => f,
        // The parent went away before saying what to run.
        Ok(None) => end(entry, EXIT_BOOT),
        Err(e) => {
            eprintln!("aiop: a spawned child could not read its start message: {e}");
            end(entry, EXIT_BOOT)
        }
    };
    let (start, rest) = match postcard::take_from_bytes::<Start>(&frame.payload) {
        Ok(v) => v,
        Err(e) => fail(
            &sock,
            entry,
            format!("the child could not decode its start message: {e}"),
        ),
    };
    if start.stdout_attached {
        if let Ok(Some(f)) = fdpass::recv_frame(&sock, 0) {
            if let Some(out) = f.fds.first() {
                let _ = rustix::stdio::dup2_stdout(out);
            }
        }
    }

    // From here on, every way out gives back the slot counts the arguments
    // carry unless the function took them (dropping `inbound` does).
    let inbound = Inbound::new(frame.fds, start.refs.clone());
    if start.protocol != wire::PROTOCOL {
        give_back_and_fail(
            inbound,
            &sock,
            entry,
            format!(
                "protocol mismatch: parent {}, child {}",
                start.protocol,
                wire::PROTOCOL
            ),
        );
    }
    let image = match entry {
        Entry::Exec => match SameImage::check(&start.exe) {
            Ok(image) => image,
            Err(m) => give_back_and_fail(inbound, &sock, entry, m),
        },
        Entry::Forked => SameImage::forked(),
    };
    let _ = IMAGE.set(image.clone());
    set_identity(
        ProcessInfo::new(start.name.clone(), 0, start.daemon, start.ident.clone()),
        ProcessInfo::new(
            start.parent_name.clone(),
            start.parent_pid,
            false,
            start.parent_ident.clone(),
        ),
    );
    if start.role == Role::ForkServer {
        drop(inbound);
        forkserver::serve(sock)
    }
    if start.daemon {
        match proc::kill_self_on_hangup(&sock) {
            Ok(true) => {}
            // The parent is already gone: a daemon child ends with it.
            Ok(false) => {
                drop(inbound);
                end(entry, EXIT_BOOT)
            }
            Err(e) => give_back_and_fail(
                inbound,
                &sock,
                entry,
                format!("the child could not watch its parent: {e}"),
            ),
        }
    }
    let init_len = start.init.map_or(0, |c| c.args_len as usize);
    let call_len = start.call.map_or(0, |c| c.args_len as usize);
    if init_len.checked_add(call_len) != Some(rest.len()) {
        give_back_and_fail(
            inbound,
            &sock,
            entry,
            "the start message's argument lengths do not add up".into(),
        );
    }
    let (init_args, call_args) = rest.split_at(init_len);
    let mut inbound = inbound;
    if let Some(init) = start.init {
        let (outcome, inb) =
            call::invoke(&image, init.trampoline, init.function, init_args, inbound);
        inbound = inb;
        match outcome {
            Outcome::Returned(..) => {}
            Outcome::Panicked(m) => give_back_and_reply(
                inbound,
                &sock,
                entry,
                start.daemon,
                Outcome::Panicked(format!("the initializer panicked: {m}")),
            ),
            Outcome::Failed(m) => give_back_and_reply(
                inbound,
                &sock,
                entry,
                start.daemon,
                Outcome::Failed(format!("initializer: {m}")),
            ),
        }
    }
    let Some(c) = start.call else {
        give_back_and_fail(
            inbound,
            &sock,
            entry,
            "the start message names no function".into(),
        )
    };
    let (outcome, inbound) = call::invoke(&image, c.trampoline, c.function, call_args, inbound);
    give_back_and_reply(inbound, &sock, entry, start.daemon, outcome)
}

/// Drops `inbound` (giving back the counts nobody adopted: the process is
/// about to end without running destructors), then replies.
fn give_back_and_reply(
    inbound: Inbound,
    sock: &UnixStream,
    entry: Entry,
    daemon: bool,
    outcome: Outcome,
) -> ! {
    drop(inbound);
    reply(sock, entry, daemon, outcome)
}

fn give_back_and_fail(inbound: Inbound, sock: &UnixStream, entry: Entry, msg: String) -> ! {
    drop(inbound);
    fail(sock, entry, msg)
}

fn fail(sock: &UnixStream, entry: Entry, msg: String) -> ! {
    reply(sock, entry, false, Outcome::Failed(msg))
}

fn reply(sock: &UnixStream, entry: Entry, daemon: bool, outcome: Outcome) -> ! {
    if daemon {
        // Write-space wake-ups would raise the hang-up signal too.
        let _ = proc::disarm_hangup(sock);
    }
    let (tag, body, code, out) = match outcome {
        Outcome::Returned(bytes, out) => {
            // The result's slot counts go first, then the result.
            let mut body = postcard::to_allocvec(&out.refs()).unwrap_or_default();
            body.extend_from_slice(&bytes);
            (wire::REPLY_OK, body, 0, Some(out))
        }
        Outcome::Panicked(m) => (wire::REPLY_PANIC, m.into_bytes(), EXIT_FAILED, None),
        Outcome::Failed(m) => (wire::REPLY_FAILED, m.into_bytes(), EXIT_FAILED, None),
    };
    let fds = out.as_ref().map(|o| o.fds()).unwrap_or_default();
    // A result that cannot be framed is reported instead (and its slot
    // counts given back below).
    let too_big = fdpass::check_frame(1 + body.len(), fds.len(), wire::MAX_FRAME)
        .err()
        .map(|e| {
            format!("the result does not fit one message: {e} (put large data in shared memory)")
        });
    let sent = match too_big {
        Some(msg) => {
            fdpass::send_frame(sock, &[&[wire::REPLY_FAILED], msg.as_bytes()], &[]).map(|()| false)
        }
        None => fdpass::send_frame(sock, &[&[tag], &body], &fds).map(|()| true),
    };
    drop(fds);
    match (&sent, out) {
        // The counts the result carries now belong to the parent.
        (Ok(true), Some(out)) => out.delivered(),
        (_, out) => drop(out),
    }
    match sent {
        Ok(true) => end(entry, code),
        Ok(false) => end(entry, EXIT_FAILED),
        Err(e) => {
            // The parent is gone (or stopped reading); nothing to tell it.
            if e.kind() != io::ErrorKind::BrokenPipe {
                eprintln!("aiop: a child could not send its result: {e}");
            }
            end(entry, EXIT_FAILED)
        }
    }
}
