//! Start methods: how a child process is created, and the global default.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU8, Ordering};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Method {
    Spawn,
    ForkServer,
    Fork,
}

/// How a child process is started. See the [module docs](crate::process#start-methods).
///
/// `SPAWN` and `FORK_SERVER` are constants; the fork method is only
/// available through the `unsafe` [`StartMethod::fork`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StartMethod(pub(super) Method);

impl StartMethod {
    /// Re-execute the program (the default).
    pub const SPAWN: StartMethod = StartMethod(Method::Spawn);
    /// Fork from a small single-threaded fork server started on first use.
    pub const FORK_SERVER: StartMethod = StartMethod(Method::ForkServer);

    /// Fork the calling process.
    ///
    /// Spawning with this method is refused ([`ProcessError::ForkRefused`](crate::process::ProcessError::ForkRefused))
    /// while the process has more than one thread.
    ///
    /// # Safety
    ///
    /// The child is a copy of the parent's memory with only the calling
    /// thread. The caller asserts that nothing the child function uses
    /// depends on state that a copy breaks: an async runtime or thread pool
    /// started in the parent (its threads do not exist in the child),
    /// descriptors whose peer counts on a single reader, random generators
    /// that must not repeat. Prefer `SPAWN` or `FORK_SERVER`.
    #[allow(unsafe_code)] // an unsafe marker only: the body does nothing unsafe
    pub const unsafe fn fork() -> StartMethod {
        StartMethod(Method::Fork)
    }

    /// Python's name for the method: `"spawn"`, `"forkserver"` or `"fork"`.
    pub fn name(self) -> &'static str {
        match self.0 {
            Method::Spawn => "spawn",
            Method::ForkServer => "forkserver",
            Method::Fork => "fork",
        }
    }
}

impl Default for StartMethod {
    fn default() -> Self {
        StartMethod::SPAWN
    }
}

impl fmt::Display for StartMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The error of parsing a [`StartMethod`] from a name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseStartMethodError {
    name: String,
}

impl fmt::Display for ParseStartMethodError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.name == "fork" {
            write!(
                f,
                "the fork start method is an unsafe opt-in: use `unsafe {{ StartMethod::fork() }}`"
            )
        } else {
            write!(
                f,
                "unknown start method {:?} (expected \"spawn\" or \"forkserver\")",
                self.name
            )
        }
    }
}

impl std::error::Error for ParseStartMethodError {}

impl FromStr for StartMethod {
    type Err = ParseStartMethodError;

    /// Parses `"spawn"` or `"forkserver"`. `"fork"` is refused: it needs
    /// the `unsafe` [`StartMethod::fork`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "spawn" => Ok(StartMethod::SPAWN),
            "forkserver" => Ok(StartMethod::FORK_SERVER),
            _ => Err(ParseStartMethodError {
                name: s.to_string(),
            }),
        }
    }
}

static DEFAULT_METHOD: AtomicU8 = AtomicU8::new(0);

/// Sets the start method used by spawns that do not choose one.
pub fn set_start_method(method: StartMethod) {
    let v = match method.0 {
        Method::Spawn => 0,
        Method::ForkServer => 1,
        Method::Fork => 2,
    };
    DEFAULT_METHOD.store(v, Ordering::Relaxed);
}

/// The start method used by spawns that do not choose one.
pub fn start_method() -> StartMethod {
    match DEFAULT_METHOD.load(Ordering::Relaxed) {
        1 => StartMethod::FORK_SERVER,
        2 => StartMethod(Method::Fork),
        _ => StartMethod::SPAWN,
    }
}
