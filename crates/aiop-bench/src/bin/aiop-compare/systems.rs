//! The systems compared: how each is built and run.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::record::Format;

/// How a system is built and started.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    /// aiop-bench, from this workspace.
    Aiop,
    /// A Rust peer or floor: a crate under `crates/aiop-bench/peers`, with
    /// its own workspace and lock file, built into `target/peers`.
    Peer {
        dir: &'static str,
        bin: &'static str,
        args: &'static [&'static str],
    },
    /// A Python anchor script under `crates/aiop-bench/anchors`, run by the
    /// virtual environment's interpreter.
    Python {
        script: &'static str,
        args: &'static [&'static str],
    },
}

/// One system of the comparison.
#[derive(Debug)]
pub(crate) struct System {
    pub(crate) name: &'static str,
    pub(crate) what: &'static str,
    pub(crate) kind: Kind,
}

impl System {
    pub(crate) fn format(&self) -> Format {
        match self.kind {
            Kind::Aiop => Format::Aiop,
            Kind::Peer { .. } => Format::Peer,
            Kind::Python { .. } => Format::Python,
        }
    }
}

/// The Python anchors' workloads that the table uses.
const PYTHON_WORKLOADS: &str = "lock_uncontended,event_pingpong,queue_pingpong,queue_throughput,\
                                pipe_pingpong,concurrent_waiters,pool_map,process_spawn";

/// Every system, in the order of a round (each round starts one further on).
pub(crate) const SYSTEMS: &[System] = &[
    System {
        name: "aiop",
        what: "aiop-bench (this workspace)",
        kind: Kind::Aiop,
    },
    System {
        name: "floor",
        what: "physical floors: bare futex, spin, socketpair and pipe ping-pongs, shm ring, fork/exec",
        kind: Kind::Peer {
            dir: "floor",
            bin: "floor",
            args: &["all"],
        },
    },
    System {
        name: "locks",
        what: "futex mutex floor, raw_sync 0.1.5 (pthread, process-shared), flock",
        kind: Kind::Peer {
            dir: "locks",
            bin: "peer-locks",
            args: &[],
        },
    },
    System {
        name: "ipc-channel",
        what: "ipc-channel 0.23.1 (servo)",
        kind: Kind::Peer {
            dir: "ipc-channel",
            bin: "peer-ipc-channel",
            args: &[],
        },
    },
    System {
        name: "iceoryx2",
        what: "iceoryx2 0.10.0",
        kind: Kind::Peer {
            dir: "iceoryx2",
            bin: "peer-iceoryx2",
            args: &[],
        },
    },
    System {
        name: "ipmpsc",
        what: "ipmpsc 0.5.1",
        kind: Kind::Peer {
            dir: "ipmpsc",
            bin: "peer-ipmpsc",
            args: &[],
        },
    },
    System {
        name: "interprocess",
        what: "interprocess 2.4.7 (tokio local sockets)",
        kind: Kind::Peer {
            dir: "interprocess",
            bin: "peer-interprocess",
            args: &[],
        },
    },
    System {
        name: "procspawn",
        what: "procspawn 1.0.2",
        kind: Kind::Peer {
            dir: "procspawn",
            bin: "peer-procspawn",
            args: &[],
        },
    },
    System {
        name: "python",
        what: "Python anchors: multiprocessing, aioprocessing 2.0.1, aiomultiprocess 0.9.1 (anchors/bench.py)",
        kind: Kind::Python {
            script: "bench.py",
            args: &["--only", PYTHON_WORKLOADS],
        },
    },
    System {
        name: "python-pool",
        what: "Python pool round trip and start: aioprocessing, aiomultiprocess (anchors/pool_apply.py)",
        kind: Kind::Python {
            script: "pool_apply.py",
            args: &[],
        },
    },
    System {
        name: "python-manager",
        what: "Python manager round trip: multiprocessing.managers.SyncManager dict (anchors/manager_dict.py)",
        kind: Kind::Python {
            script: "manager_dict.py",
            args: &[],
        },
    },
];

/// The repository's paths.
#[derive(Debug, Clone)]
pub(crate) struct Paths {
    pub(crate) root: PathBuf,
}

impl Paths {
    pub(crate) fn new() -> Paths {
        let here = Path::new(env!("CARGO_MANIFEST_DIR"));
        let root = here
            .join("../..")
            .canonicalize()
            .unwrap_or_else(|_| here.join("../.."));
        Paths { root }
    }
    fn bench_dir(&self) -> PathBuf {
        self.root.join("crates/aiop-bench")
    }
    pub(crate) fn peers_target(&self) -> PathBuf {
        self.root.join("target/peers")
    }
    pub(crate) fn venv(&self) -> PathBuf {
        self.root.join("target/anchor-venv")
    }
    pub(crate) fn out_dir(&self) -> PathBuf {
        self.root.join("target/compare")
    }
}

/// Knobs passed to every run.
#[derive(Debug, Clone)]
pub(crate) struct Knobs {
    pub(crate) pin: bool,
    pub(crate) quick: bool,
}

/// Runs `cmd` to completion, keeping the last lines of its error output for
/// a failure message.
fn build_step(cmd: &mut Command) -> Result<(), String> {
    let out = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run {:?}: {e}", cmd.get_program()))?;
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let tail: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = tail[tail.len().saturating_sub(3)..].join(" / ");
    Err(format!("{}: {tail}", out.status))
}

/// Builds `system`; an error says why it cannot run on this machine.
pub(crate) fn build(system: &System, paths: &Paths) -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    match system.kind {
        Kind::Aiop => build_step(
            Command::new(&cargo)
                .args([
                    "build",
                    "--release",
                    "-p",
                    "aiop-bench",
                    "--bin",
                    "aiop-bench",
                ])
                .current_dir(&paths.root),
        ),
        Kind::Peer { dir, .. } => build_step(
            Command::new(&cargo)
                .args(["build", "--release", "--locked"])
                .current_dir(paths.bench_dir().join("peers").join(dir))
                .env("CARGO_TARGET_DIR", paths.peers_target())
                // The workspace's settings must not leak into the peer's build.
                .env_remove("RUSTFLAGS")
                .env_remove("CARGO_ENCODED_RUSTFLAGS"),
        ),
        Kind::Python { .. } => python_env(
            &std::env::var("PYTHON").unwrap_or_else(|_| "python3".into()),
            &paths.venv(),
        ),
    }
}

/// The pinned versions of the Python anchors' libraries.
const PYTHON_PACKAGES: &[&str] = &["aioprocessing==2.0.1", "aiomultiprocess==0.9.1"];

/// Makes the virtual environment `venv` the Python anchors run in, with
/// the interpreter `python3`, once.
fn python_env(python3: &str, venv: &Path) -> Result<(), String> {
    let python = venv.join("bin/python");
    let ready = || {
        Command::new(&python)
            .args(["-c", "import aioprocessing, aiomultiprocess"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if ready() {
        return Ok(());
    }
    build_step(Command::new(python3).arg("--version"))
        .map_err(|_| format!("no `{python3}` on this machine"))?;
    if !python.exists() {
        build_step(Command::new(python3).args(["-m", "venv"]).arg(venv)).map_err(|e| {
            format!("`{python3} -m venv` failed ({e}); on Debian: apt install python3-venv")
        })?;
    }
    build_step(
        Command::new(venv.join("bin/pip"))
            .args(["install", "-q"])
            .args(PYTHON_PACKAGES),
    )
    .map_err(|e| format!("pip install {} failed: {e}", PYTHON_PACKAGES.join(" ")))?;
    if ready() {
        Ok(())
    } else {
        Err("the virtual environment cannot import aioprocessing and aiomultiprocess".into())
    }
}

/// The command that runs `system` once.
pub(crate) fn command(system: &System, paths: &Paths, knobs: &Knobs) -> Command {
    let mut cmd = match system.kind {
        Kind::Aiop => {
            let mut cmd = Command::new(paths.root.join("target/release/aiop-bench"));
            cmd.args(crate::catalog::aiop_names());
            if knobs.pin {
                cmd.env("AIOP_BENCH_PIN", "0");
            }
            if knobs.quick {
                cmd.env("AIOP_BENCH_ITERS", "20")
                    .env("AIOP_BENCH_DUR_MS", "200")
                    .env("AIOP_BENCH_POOL_ITEMS", "200000")
                    .env("AIOP_BENCH_POOL_RUNS", "2");
            }
            cmd
        }
        Kind::Peer { bin, args, .. } => {
            let mut cmd = Command::new(paths.peers_target().join("release").join(bin));
            cmd.args(args).env("PIN", if knobs.pin { "1" } else { "0" });
            if knobs.quick {
                cmd.env("ITERS", "2000")
                    .env("WARMUP", "100")
                    .env("DUR_MS", "200")
                    .env("SPAWN_ITERS", "20")
                    .env("POOL_ITERS", "200");
            } else {
                cmd.env("ITERS", "20000")
                    .env("DUR_MS", "1000")
                    .env("SPAWN_ITERS", "200")
                    .env("POOL_ITERS", "5000");
            }
            cmd
        }
        Kind::Python { script, args } => {
            let mut cmd = Command::new(paths.venv().join("bin/python"));
            cmd.arg(paths.bench_dir().join("anchors").join(script))
                .args(args)
                .env("ANCHOR_WAITERS", "10000")
                // Only the manager anchor reads it: its client and server
                // are placed as aiop's (the other anchors run unpinned).
                .env("PIN", if knobs.pin { "1" } else { "0" });
            if knobs.quick {
                match script {
                    "bench.py" => {
                        cmd.args(["--duration", "0.3"]);
                    }
                    "manager_dict.py" => {
                        cmd.args(["--iters", "2000", "--warmup", "100"]);
                    }
                    _ => {
                        cmd.args(["--iters", "200", "--amp-iters", "10", "--start-reps", "1"]);
                    }
                }
            }
            cmd
        }
    };
    cmd.current_dir(&paths.root).stdin(Stdio::null());
    cmd
}

/// What one run of a system gave.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) lines: Vec<String>,
    /// Why the run failed, if it did (its lines still count).
    pub(crate) failure: Option<String>,
}

/// Runs `cmd` in its own process group, killing the group after `limit`.
pub(crate) fn run(mut cmd: Command, limit: Duration) -> Run {
    use std::os::unix::process::CommandExt;
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return Run {
                lines: Vec::new(),
                failure: Some(format!("cannot start {:?}: {e}", cmd.get_program())),
            };
        }
    };
    let stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let reader = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<String>>()
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if start.elapsed() > limit => {
                timed_out = true;
                kill_group(child.id());
                break child.wait().ok();
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(_) => break None,
        }
    };
    // The group's other processes (a benchmark's children) may hold the
    // pipes open: kill them too, so the readers see the end.
    kill_group(child.id());
    let lines = reader.join().unwrap_or_default();
    let err = err_reader.join().unwrap_or_default();
    let failure = if timed_out {
        Some(format!("timed out after {} s", limit.as_secs()))
    } else {
        match status {
            Some(s) if s.success() => None,
            Some(s) => {
                let last = err
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("");
                Some(format!("{s}: {last}"))
            }
            None => Some("lost track of the process".into()),
        }
    };
    Run { lines, failure }
}

#[allow(unsafe_code)]
fn kill_group(pid: u32) {
    // SAFETY: kill(2) with a negative pid signals the process group that
    // `run` created for this child (process_group(0) made its id the
    // child's pid); it touches no memory of ours.
    unsafe {
        libc::kill(-(pid as libc::pid_t), libc::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_run_keeps_its_lines_and_says_why() {
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            "echo 'RESULT case=a kind=rtt median_us=1.5'; echo 'it broke' >&2; exit 3",
        ]);
        let run = run(cmd, Duration::from_secs(60));
        assert_eq!(run.lines, ["RESULT case=a kind=rtt median_us=1.5"]);
        let failure = run.failure.expect("a failure");
        assert!(failure.contains("exit status: 3"), "{failure}");
        assert!(failure.ends_with("it broke"), "{failure}");
    }

    #[test]
    fn a_hung_run_is_killed_with_its_children() {
        // The shell's child holds the output pipe open: only killing the
        // whole group lets the run end.
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo started; sleep 600 & wait"]);
        let run = run(cmd, Duration::from_millis(300));
        assert_eq!(run.lines, ["started"]);
        let failure = run.failure.expect("a failure");
        assert!(failure.starts_with("timed out"), "{failure}");
    }

    #[test]
    fn the_manager_anchor_is_pinned_as_aiop_and_shortened_by_quick() {
        let system = SYSTEMS
            .iter()
            .find(|s| s.name == "python-manager")
            .expect("the manager anchor");
        let paths = Paths::new();
        let run = |pin, quick| {
            let cmd = command(system, &paths, &Knobs { pin, quick });
            let args: Vec<String> = cmd
                .get_args()
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            let pin = cmd
                .get_envs()
                .find(|(k, _)| *k == "PIN")
                .and_then(|(_, v)| v)
                .map(|v| v.to_string_lossy().into_owned());
            (args, pin)
        };
        let (args, pin) = run(true, false);
        assert!(args[0].ends_with("anchors/manager_dict.py"), "{args:?}");
        assert_eq!(args.len(), 1, "{args:?}");
        assert_eq!(pin.as_deref(), Some("1"));
        let (args, pin) = run(false, true);
        assert_eq!(args[1..], ["--iters", "2000", "--warmup", "100"]);
        assert_eq!(pin.as_deref(), Some("0"));
    }

    #[test]
    fn a_missing_python_is_a_reason_not_a_crash() {
        let venv = std::env::temp_dir().join(format!("aiop-compare-test-{}", std::process::id()));
        let err = python_env("/nonexistent/python3", &venv).expect_err("no interpreter");
        assert_eq!(err, "no `/nonexistent/python3` on this machine");
        assert!(!venv.exists(), "nothing was created");
    }

    #[test]
    fn a_peer_that_fails_to_build_is_a_reason_not_a_crash() {
        let dir = std::env::temp_dir().join(format!("aiop-compare-peer-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("src")).expect("mkdir");
        std::fs::write(
            dir.join("Cargo.toml"),
            "[package]\nname = \"broken-peer\"\nversion = \"0.1.0\"\nedition = \"2021\"\n[workspace]\n",
        )
        .expect("write");
        std::fs::write(dir.join("src/main.rs"), "fn main() { this is not rust }").expect("write");
        let result = build_step(
            Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
                .args(["build", "--offline", "--quiet"])
                .current_dir(&dir)
                .env("CARGO_TARGET_DIR", dir.join("target")),
        );
        std::fs::remove_dir_all(&dir).expect("clean up");
        let err = result.expect_err("a build failure");
        assert!(err.contains("exit status: 101"), "{err}");
        assert!(err.contains("error"), "{err}");
    }
}
