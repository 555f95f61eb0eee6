//! What can go wrong with a pool task.

use std::fmt;
use std::io;
use std::sync::Arc;

/// Why a pool task gave no result, or the pool refused it.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum PoolError {
    /// The worker running the task died before it answered (it was killed,
    /// or the task aborted the process). The worker has been replaced.
    WorkerDied {
        /// The worker's process id.
        pid: u32,
        /// How it ended, in words (`"killed by signal 9"`, `"exited with code 3"`).
        how: String,
    },
    /// The task panicked; this is the panic message.
    TaskPanicked(String),
    /// The task's arguments did not serialize; nothing was submitted.
    Encode(String),
    /// The worker could not run the task: its arguments did not decode
    /// there, or its result did not encode.
    Failed(String),
    /// The task's result did not decode in this process.
    Decode(String),
    /// The pool was closed (or is being joined): no new tasks.
    Closed,
    /// The pool was terminated (or dropped) before the task finished.
    Terminated,
    /// A worker's initializer failed, so the pool cannot run tasks: the
    /// message says how. (Python's pool restarts such workers forever.)
    InitializerFailed(String),
    /// No result within the time given; the task goes on.
    Timeout,
    /// The system refused something the pool needed (shared memory, a
    /// process).
    Io(Arc<io::Error>),
}

impl PoolError {
    /// The panic message, if the task panicked.
    pub fn panic_message(&self) -> Option<&str> {
        match self {
            PoolError::TaskPanicked(m) => Some(m),
            _ => None,
        }
    }

    /// Whether the worker running the task died.
    pub fn is_worker_died(&self) -> bool {
        matches!(self, PoolError::WorkerDied { .. })
    }

    /// Whether this is [`PoolError::Timeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(self, PoolError::Timeout)
    }
}

impl fmt::Display for PoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PoolError::WorkerDied { pid, how } => {
                write!(f, "the worker process {pid} died during the task ({how})")
            }
            PoolError::TaskPanicked(m) => write!(f, "the task panicked: {m}"),
            PoolError::Encode(m) => write!(f, "{m}"),
            PoolError::Failed(m) => write!(f, "the task could not run: {m}"),
            PoolError::Decode(m) => write!(f, "the task's result did not decode: {m}"),
            PoolError::Closed => write!(f, "the pool is closed"),
            PoolError::Terminated => write!(f, "the pool was terminated"),
            PoolError::InitializerFailed(m) => {
                write!(f, "a worker's initializer failed: {m}")
            }
            PoolError::Timeout => write!(f, "timed out waiting for the task's result"),
            PoolError::Io(e) => write!(f, "the pool could not start a worker: {e}"),
        }
    }
}

impl std::error::Error for PoolError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PoolError::Io(e) => Some(&**e),
            _ => None,
        }
    }
}

impl From<io::Error> for PoolError {
    fn from(e: io::Error) -> PoolError {
        PoolError::Io(Arc::new(e))
    }
}
