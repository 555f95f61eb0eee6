//! Who a process is, and which children it has.

use std::sync::Mutex;

use super::registry;

/// Who a process is: its name, pid, daemon flag and identity (its position in
/// the tree of processes started by aiop, as Python's `_identity`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessInfo {
    pub(super) name: String,
    pub(super) pid: u32,
    pub(super) daemon: bool,
    pub(super) ident: Vec<u32>,
}

impl ProcessInfo {
    pub(super) fn new(name: String, pid: u32, daemon: bool, ident: Vec<u32>) -> ProcessInfo {
        ProcessInfo {
            name,
            pid,
            daemon,
            ident,
        }
    }

    /// The process's name (`MainProcess`, `Process-1`, `Process-1:2`, or a chosen one).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether the process is a daemon (ends when its parent ends).
    pub fn daemon(&self) -> bool {
        self.daemon
    }

    /// The position in the process tree: empty for the main process, `[1]`
    /// for its first child, `[1, 2]` for that child's second child.
    pub fn ident(&self) -> &[u32] {
        &self.ident
    }
}

struct Identity {
    me: ProcessInfo,
    parent: Option<ProcessInfo>,
}

static IDENTITY: Mutex<Option<Identity>> = Mutex::new(None);

pub(super) fn set_identity(me: ProcessInfo, parent: ProcessInfo) {
    *IDENTITY.lock().unwrap_or_else(|e| e.into_inner()) = Some(Identity {
        me,
        parent: Some(parent),
    });
}

/// The current process.
pub fn current_process() -> ProcessInfo {
    let guard = IDENTITY.lock().unwrap_or_else(|e| e.into_inner());
    let mut me = guard
        .as_ref()
        .map(|i| i.me.clone())
        .unwrap_or_else(|| ProcessInfo::new("MainProcess".into(), 0, false, Vec::new()));
    me.pid = std::process::id();
    me
}

/// The process that started this one, or `None` in the main process.
pub fn parent_process() -> Option<ProcessInfo> {
    IDENTITY
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .and_then(|i| i.parent.clone())
}

/// The children of this process that are still running; reaps those that
/// ended after their `Process` handle was dropped.
pub fn active_children() -> Vec<ProcessInfo> {
    registry::active()
}

/// The number of CPUs this process may run on (`sched_getaffinity` and cgroup
/// quotas considered), at least 1.
pub fn cpu_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
