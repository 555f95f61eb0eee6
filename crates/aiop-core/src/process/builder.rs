//! Starting a child: the builder, the start message and the three start methods.

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use rustix::process::{Pid, PidfdFlags};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::reap::Reaper;
use super::start_method::Method;
use super::wire::{self, Call, ExeId, Role, Start};
use super::{
    Process, ProcessError, ProcessInfo, StartMethod, State, child, current_process, forkserver,
    registry, start_method,
};
use crate::sys::call;
use crate::sys::fdpass;
use crate::transfer::{self, Outbound};

type InitEncoder = Arc<dyn Fn(&mut Vec<u8>, &mut Outbound) -> io::Result<()> + Send + Sync>;

#[derive(Clone)]
struct Initializer {
    /// (trampoline, function), or why the function cannot be called in a child.
    offsets: Result<(i64, i64), String>,
    encode: InitEncoder,
}

/// Options for starting a process: name, daemon flag, start method and an
/// initializer.
///
/// ```no_run
/// use aiop_core::process::{Process, StartMethod};
///
/// fn setup(level: u8) { /* configure logging in the child */ }
/// fn work(n: u32) -> u32 { n + 1 }
///
/// let mut p = Process::builder()
///     .name("worker")
///     .daemon(true)
///     .start_method(StartMethod::FORK_SERVER)
///     .initializer(setup, 3)
///     .spawn(work, 41)?;
/// assert_eq!(p.join()?, 42);
/// # Ok::<(), aiop_core::process::ProcessError>(())
/// ```
#[derive(Clone, Default)]
pub struct Builder {
    name: Option<String>,
    daemon: bool,
    method: Option<StartMethod>,
    init: Option<Initializer>,
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("name", &self.name)
            .field("daemon", &self.daemon)
            .field("method", &self.method)
            .field("initializer", &self.init.is_some())
            .finish()
    }
}

impl Builder {
    /// Default options: a generated name, not a daemon, the global start method.
    pub fn new() -> Builder {
        Builder::default()
    }

    /// Names the child (default: `Process-N`, numbered per parent).
    pub fn name(mut self, name: impl Into<String>) -> Builder {
        self.name = Some(name.into());
        self
    }

    /// Makes the child a daemon: it is killed as soon as its parent ends,
    /// however the parent ends.
    pub fn daemon(mut self, daemon: bool) -> Builder {
        self.daemon = daemon;
        self
    }

    /// Chooses the start method for this child (default: [`start_method()`]).
    pub fn start_method(mut self, method: StartMethod) -> Builder {
        self.method = Some(method);
        self
    }

    /// Runs `f(args)` in the child before the main function. If it panics,
    /// the main function does not run and `join` reports the panic.
    pub fn initializer<I>(mut self, f: fn(I), args: I) -> Builder
    where
        I: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        let offsets = call::offsets(f);
        let args = Arc::new(args);
        self.init = Some(Initializer {
            offsets,
            encode: Arc::new(move |buf, out| transfer::encode(&*args, buf, out)),
        });
        self
    }

    /// Starts `f(args)` in a new process.
    ///
    /// `f` is a function or a closure that captures nothing; its arguments
    /// and result cross the process boundary with serde (postcard), and
    /// aiop handles among them take their descriptors along.
    ///
    /// # Errors
    ///
    /// [`ProcessError::Encode`] when the arguments do not serialize (nothing
    /// is started), [`ProcessError::ForkRefused`] for the fork method in a
    /// multi-threaded process, [`ProcessError::Io`] when the system refuses,
    /// and [`ProcessError::Failed`] when this process is itself a spawned
    /// child that skipped [`init`](crate::init).
    pub fn spawn<A, R>(&self, f: fn(A) -> R, args: A) -> Result<Process<R>, ProcessError>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        registry::reap_detached();
        if child::skipped_init() {
            return Err(ProcessError::Failed(
                "this process was started by aiop but never called aiop::init() (call it first thing in main, or use aiop::test_support!() in tests); refusing to spawn".into(),
            ));
        }
        let method = self.method.unwrap_or_else(start_method);
        if method.0 == Method::Fork {
            // Refuse before anything is encoded or started.
            fork_allowed()?;
        }
        // Check and encode everything first: a failure here starts nothing.
        let (trampoline, function) = call::offsets(f).map_err(ProcessError::Failed)?;
        let mut out = Outbound::default();
        let mut init_args = Vec::new();
        let init = match &self.init {
            Some(i) => {
                let (trampoline, function) = i
                    .offsets
                    .clone()
                    .map_err(|m| ProcessError::Failed(format!("initializer: {m}")))?;
                (i.encode)(&mut init_args, &mut out)
                    .map_err(|e| ProcessError::Encode(format!("initializer: {e}")))?;
                Some(Call {
                    trampoline,
                    function,
                    args_len: init_args.len() as u64,
                })
            }
            None => None,
        };
        let mut call_args = Vec::new();
        transfer::encode(&args, &mut call_args, &mut out)
            .map_err(|e| ProcessError::Encode(e.to_string()))?;
        drop(args);
        let call = Call {
            trampoline,
            function,
            args_len: call_args.len() as u64,
        };

        let me = current_process();
        let mut ident = me.ident.clone();
        ident.push(registry::next_number());
        let name = self.name.clone().unwrap_or_else(|| {
            let parts: Vec<String> = ident.iter().map(u32::to_string).collect();
            format!("Process-{}", parts.join(":"))
        });

        let mut args = init_args;
        args.extend_from_slice(&call_args);
        drop(call_args);
        let mut start = Start::new(&me, Role::Call, name.clone(), ident.clone(), self.daemon)?;
        start.init = init;
        start.call = Some(call);
        start.stdout_attached = method == StartMethod::SPAWN && child::test_entry().is_some();
        start.refs = out.refs();
        let header = start.encode()?;
        fdpass::check_frame(header.len() + args.len(), out.fds().len(), wire::MAX_FRAME).map_err(
            |e| {
                ProcessError::Encode(format!(
                    "the arguments do not fit one message: {e} (put large data in shared memory)"
                ))
            },
        )?;

        let (ctl, launch) = match method.0 {
            Method::Spawn => {
                let (pid, pidfd, ctl) = exec_child()?;
                (ctl, Launch::Ready(pid, pidfd))
            }
            Method::ForkServer => {
                let (ctl, theirs) = UnixStream::pair()?;
                (
                    ctl,
                    Launch::Forking(forkserver::request(OwnedFd::from(theirs))?),
                )
            }
            Method::Fork => {
                let (pid, pidfd, ctl) = fork_child()?;
                (ctl, Launch::Ready(pid, pidfd))
            }
        };
        // Sent before the fork server has answered: the child reads it when born.
        let sent = start.send_encoded(&ctl, &header, &args, &out);
        if sent.is_ok() {
            // The counts the arguments carry now belong to the child.
            out.delivered();
        } else {
            drop(out);
        }
        let (pid, pidfd, reaper) = match launch {
            Launch::Ready(pid, pidfd) => (pid, pidfd, Reaper::Direct),
            Launch::Forking(pending) => {
                let (pid, pidfd, status) = pending.started()?;
                (pid, pidfd, Reaper::Server(status))
            }
        };
        let mut process = Process {
            info: ProcessInfo::new(name, pid, self.daemon, ident),
            method,
            pidfd: Arc::new(pidfd),
            ctl: Some(ctl),
            state: Mutex::new(State {
                reaper,
                reply: None,
                partial: Default::default(),
                exit: None,
            }),
            taken: false,
            closed: false,
            _result: PhantomData,
        };
        let fds = process.parent_fds();
        registry::add(process.info.clone(), process.pidfd.clone(), fds);
        if let Err(e) = sent {
            // The child cannot have its start message: make sure it sees the
            // end of it (it exits), then report how it ended if it said why.
            if let Some(ctl) = &process.ctl {
                let _ = ctl.shutdown(std::net::Shutdown::Write);
            }
            return match process.wait(None).and_then(|()| process.result()) {
                Err(failed @ ProcessError::Failed(_)) => Err(failed),
                _ => Err(ProcessError::Io(e)),
            };
        }
        Ok(process)
    }
}

/// A child being started: ready, or being forked by the fork server.
enum Launch {
    Ready(u32, OwnedFd),
    Forking(forkserver::Pending),
}

impl Start {
    /// A start message from this process, for a child with these traits.
    pub(super) fn new(
        me: &ProcessInfo,
        role: Role,
        name: String,
        ident: Vec<u32>,
        daemon: bool,
    ) -> io::Result<Start> {
        Ok(Start {
            protocol: wire::PROTOCOL,
            exe: ExeId::current()?,
            role,
            name,
            ident,
            daemon,
            parent_pid: me.pid,
            parent_name: me.name.clone(),
            parent_ident: me.ident.clone(),
            init: None,
            call: None,
            stdout_attached: false,
            refs: Vec::new(),
        })
    }

    /// The encoded header.
    pub(super) fn encode(&self) -> io::Result<Vec<u8>> {
        postcard::to_allocvec(self).map_err(|e| io::Error::other(format!("start header: {e}")))
    }

    /// Sends this message: the header, then `args` (the initializer's and
    /// the function's arguments, back to back) with `out`'s descriptors,
    /// then, if `stdout_attached`, a frame carrying this process's stdout.
    pub(super) fn send(&self, ctl: &UnixStream, args: &[u8], out: &Outbound) -> io::Result<()> {
        self.send_encoded(ctl, &self.encode()?, args, out)
    }

    /// [`send`](Self::send) with the header already encoded.
    fn send_encoded(
        &self,
        ctl: &UnixStream,
        header: &[u8],
        args: &[u8],
        out: &Outbound,
    ) -> io::Result<()> {
        fdpass::send_frame(ctl, &[header, args], &out.fds())?;
        if self.stdout_attached {
            // In a frame of its own, so that arguments keep every descriptor place.
            fdpass::send_frame(ctl, &[], &[std::io::stdout().as_fd()])?;
        }
        Ok(())
    }
}

/// Re-executes this program as a child; returns its pid, pidfd and our end
/// of its control socket (which the child receives as its stdin).
pub(super) fn exec_child() -> io::Result<(u32, OwnedFd, UnixStream)> {
    let (ours, theirs) = UnixStream::pair()?;
    let test_entry = child::test_entry();
    let mut cmd = Command::new("/proc/self/exe");
    if let Some(arg0) = std::env::args_os().next() {
        cmd.arg0(arg0);
    }
    if let Some(entry) = &test_entry {
        cmd.args([
            entry.as_str(),
            "--exact",
            "--nocapture",
            "--test-threads=1",
            "-q",
        ]);
        // The harness prints a banner before its entry runs: send it to
        // /dev/null; `send_start` hands the child the real stdout.
        cmd.stdout(Stdio::null());
    }
    cmd.env(child::ENV_CHILD, "1")
        .stdin(Stdio::from(OwnedFd::from(theirs)));
    let mut spawned = cmd.spawn()?;
    drop(cmd);
    let pid = spawned.id();
    match open_pidfd(pid) {
        // Not waited through `Child` from here on: the pidfd reaps it.
        Ok(pidfd) => Ok((pid, pidfd, ours)),
        Err(e) => {
            let _ = spawned.kill();
            let _ = spawned.wait();
            Err(e)
        }
    }
}

fn open_pidfd(pid: u32) -> io::Result<OwnedFd> {
    let p = Pid::from_raw(pid as i32).ok_or_else(|| io::Error::other("invalid child pid"))?;
    // Race-free: the child is ours (or the fork server's) and not yet reaped,
    // so its pid cannot have been reused.
    Ok(rustix::process::pidfd_open(p, PidfdFlags::empty())?)
}

/// The fork start method: fork this process, after checking it has one thread.
/// Refuses the fork method unless this process has exactly one thread.
fn fork_allowed() -> Result<(), ProcessError> {
    match crate::sys::proc::thread_count()? {
        n if n == 1 + crate::sys::robust::sentinel_threads() => Ok(()),
        threads => Err(ProcessError::ForkRefused { threads }),
    }
}

fn fork_child() -> Result<(u32, OwnedFd, UnixStream), ProcessError> {
    use crate::sys::proc::{ForkError, Forked};
    let (ours, theirs) = UnixStream::pair()?;
    // Whatever sits in our stdout buffer would be written twice otherwise.
    let _ = std::io::Write::flush(&mut std::io::stdout());
    // Descriptors of this process's other children and of its own parent
    // line, which the forked child must not keep open.
    let mut extra = forkserver::server_fds();
    extra.extend(child::own_ctl());
    extra.push(ours.as_raw_fd());
    match crate::sys::proc::fork_single_threaded() {
        Err(ForkError::Threads(threads)) => Err(ProcessError::ForkRefused { threads }),
        Err(ForkError::Io(e)) => Err(e.into()),
        Ok(Forked::Child) => {
            registry::forget_in_forked_child(&extra);
            forkserver::forget_in_forked_child();
            std::mem::forget(ours);
            child::run(OwnedFd::from(theirs), child::Entry::Forked)
        }
        Ok(Forked::Parent(pid)) => {
            drop(theirs);
            match open_pidfd(pid as u32) {
                Ok(pidfd) => Ok((pid as u32, pidfd, ours)),
                Err(e) => {
                    // The child reads end-of-file instead of a start message
                    // and exits; reap it.
                    drop(ours);
                    crate::sys::proc::wait_pid(pid);
                    Err(e.into())
                }
            }
        }
    }
}
