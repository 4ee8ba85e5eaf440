//! Confinement tests that drive the probe host binary (built with the
//! `probes` feature): the limits that end a worker (address space, stack,
//! lifetime CPU) end it by the intended signal; a seccomp violation is
//! reported with its syscall number; a healthy worker's work fits the
//! allow-list; the fds layer keeps `RLIMIT_FSIZE` from killing a worker
//! whose stderr is a file; and the whole probe matrix holds when the
//! prober starts as an unprivileged user.

// Test helpers panic on harness failures, like the tests themselves.
#![allow(clippy::unwrap_used)]

mod confine_support;

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use confine_support::{Context, expected};
use sandbox::confine::probes::{Probe, ProbeResult, Step};
use sandbox::confine::{CheckCell, CheckConfig, LandlockSupport, ViolationReport, probe_kernel};

const HOST: &str = env!("CARGO_BIN_EXE_sandbox-probe-host");
const NOBODY: u32 = 65534;

struct Run {
    status: ExitStatus,
    pid: u32,
    /// What the host wrote on its socket.
    out: String,
    stderr: String,
}

impl Run {
    fn signal(&self) -> Option<i32> {
        self.status.signal()
    }
}

/// Spawns the host with `args`; its stdout (the worker socket) is one end
/// of a socketpair whose other end returns with the child.
fn spawn(args: &[&str], stderr: Stdio) -> (Child, UnixStream) {
    let (ours, theirs) = UnixStream::pair().unwrap();
    let child = Command::new(HOST)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(OwnedFd::from(theirs)))
        .stderr(stderr)
        .spawn()
        .unwrap();
    ours.set_read_timeout(Some(Duration::from_mins(1))).unwrap();
    (child, ours)
}

fn finish(child: Child, mut ours: UnixStream) -> Run {
    let pid = child.id();
    let mut out = String::new();
    let _ = ours.read_to_string(&mut out);
    let output = child.wait_with_output().unwrap();
    Run {
        status: output.status,
        pid,
        out,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn run(args: &[&str]) -> Run {
    let (child, ours) = spawn(args, Stdio::piped());
    finish(child, ours)
}

fn assert_fully_confined(run: &Run) {
    let report = run
        .out
        .lines()
        .find(|l| l.starts_with("report "))
        .unwrap_or_else(|| panic!("{}", run.out));
    for layer in ["fds", "prctl", "rlimits", "landlock", "seccomp"] {
        assert!(report.contains(&format!("{layer}=applied")), "{report}");
    }
    let privileges = if nix::unistd::geteuid().is_root() {
        "privileges=applied"
    } else {
        "privileges=not needed"
    };
    assert!(report.contains(privileges), "{report}");
}

#[test]
fn address_space_limit_ends_the_worker_with_an_abort() {
    let run = run(&["--as-mib", "256", "stress", "alloc"]);
    assert_fully_confined(&run);
    // The failed allocation aborts through the allowed abort path: SIGABRT
    // with Rust's message, never a sandbox violation.
    assert_eq!(
        run.signal(),
        Some(libc::SIGABRT),
        "{:?} {}",
        run.status,
        run.stderr
    );
    assert!(
        run.stderr.contains("memory allocation of"),
        "{}",
        run.stderr
    );
    assert_eq!(
        ViolationReport::find_in(run.stderr.as_bytes()),
        None,
        "{}",
        run.stderr
    );
}

#[test]
fn native_stack_overflow_ends_only_that_worker_cleanly() {
    let run = run(&["stress", "recurse"]);
    assert_fully_confined(&run);
    let signal = run.signal();
    assert!(
        signal == Some(libc::SIGABRT) || signal == Some(libc::SIGSEGV),
        "{:?} {}",
        run.status,
        run.stderr
    );
    if signal == Some(libc::SIGABRT) {
        assert!(
            run.stderr.contains("has overflowed its stack"),
            "{}",
            run.stderr
        );
    }
    assert_eq!(
        ViolationReport::find_in(run.stderr.as_bytes()),
        None,
        "{}",
        run.stderr
    );
}

#[test]
fn lifetime_cpu_limit_sends_sigxcpu() {
    let start = Instant::now();
    let run = run(&["--cpu-secs", "1", "stress", "burn"]);
    assert_fully_confined(&run);
    assert_eq!(
        run.signal(),
        Some(libc::SIGXCPU),
        "{:?} {}",
        run.status,
        run.stderr
    );
    // One CPU second plus generous room for a busy machine.
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn a_violation_reports_its_syscall_then_dies_by_sigsys() {
    let run = run(&["stress", "violation"]);
    assert_fully_confined(&run);
    assert_eq!(run.signal(), Some(libc::SIGSYS), "{:?}", run.status);
    let report =
        ViolationReport::find_in(run.stderr.as_bytes()).unwrap_or_else(|| panic!("{}", run.stderr));
    assert_eq!(report.syscall, libc::SYS_socket);
    assert_eq!(report.syscall_name(), Some("socket"));
    assert_eq!(u32::try_from(report.pid).unwrap(), run.pid);
    assert!(!run.out.contains("stress-done"));

    let killed = self::run(&["--action", "kill", "stress", "violation"]);
    assert_eq!(killed.signal(), Some(libc::SIGSYS), "{:?}", killed.status);
    assert_eq!(ViolationReport::find_in(killed.stderr.as_bytes()), None);
}

#[test]
fn a_healthy_worker_does_its_work_under_every_layer() {
    let (child, mut ours) = spawn(&["stress", "healthy"], Stdio::piped());
    ours.write_all(b"ping").unwrap();
    let run = finish(child, ours);
    assert_fully_confined(&run);
    assert!(run.status.success(), "{:?} {}", run.status, run.stderr);
    assert!(
        run.out
            .contains("pong elapsed_ok=true cpu_ok=true random=true caught=true"),
        "{}",
        run.out
    );
    assert!(run.out.contains("stress-done"), "{}", run.out);
    // The caught panic printed its message on the kept stderr pipe.
    assert!(run.stderr.contains("a script bug"), "{}", run.stderr);
}

#[test]
fn stderr_on_a_file_cannot_kill_the_worker_through_rlimit_fsize() {
    let dir = std::env::temp_dir().join(format!("picloud-confine-stderr-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("stderr.log");
    let open = || Stdio::from(std::fs::File::create(&path).unwrap());

    // With the fds layer, a file on fd 2 is swapped for /dev/null.
    let (child, ours) = spawn(&["stress", "stderr"], open());
    let run = finish(child, ours);
    assert!(run.status.success(), "{:?}", run.status);
    assert!(run.out.contains("stress-done"), "{}", run.out);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);

    // Without it, RLIMIT_FSIZE 0 turns that one write into SIGXFSZ.
    let (child, ours) = spawn(&["--layers", "no:fds", "stress", "stderr"], open());
    let run = finish(child, ours);
    assert_eq!(run.signal(), Some(libc::SIGXFSZ), "{:?}", run.status);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn probes_target_what_the_caller_gives() {
    // A probe host aimed at a listener this test owns, with every layer on:
    // killed at socket(), and the listener never sees a connection.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let run = run(&["probe", "connect_loopback", "--port", &port]);
    assert_eq!(run.signal(), Some(libc::SIGSYS));
    assert_eq!(
        ViolationReport::find_in(run.stderr.as_bytes()).and_then(|r| r.syscall_name()),
        Some("socket")
    );
    assert!(listener.accept().is_err(), "the listener must see nothing");

    // Landlock alone lets the socket be made but refuses the connect.
    let run = self::run(&[
        "--layers",
        "only:landlock",
        "probe",
        "connect_loopback",
        "--port",
        &port,
    ]);
    let line = run
        .out
        .lines()
        .find(|l| l.starts_with("probe-result"))
        .unwrap_or_default();
    assert_eq!(
        ProbeResult::parse_line(line),
        Some(ProbeResult::Denied {
            errno: libc::EACCES,
            step: Step::Connect
        }),
        "{}",
        run.out
    );
    assert!(listener.accept().is_err(), "the listener must see nothing");
}

fn setpriv_nobody() -> Option<Command> {
    if !nix::unistd::geteuid().is_root() || !std::path::Path::new("/usr/bin/setpriv").exists() {
        return None;
    }
    let mut cmd = Command::new("/usr/bin/setpriv");
    cmd.args([
        &format!("--reuid={NOBODY}"),
        &format!("--regid={NOBODY}"),
        "--clear-groups",
        "--inh-caps=-all",
        HOST,
    ]);
    Some(cmd)
}

fn parse_cell(words: &[&str]) -> CheckCell {
    let num = |i: usize| words.get(i).and_then(|w| w.parse::<i64>().ok());
    match words.first().copied() {
        Some("allowed") => CheckCell::Returned {
            result: ProbeResult::Allowed,
        },
        Some("denied") => {
            let line = format!("probe-result denied errno={} step={}", words[1], words[2]);
            CheckCell::Returned {
                result: ProbeResult::parse_line(&line).unwrap(),
            }
        }
        Some("killed") => CheckCell::Killed {
            signal: i32::try_from(num(1).unwrap()).unwrap(),
            syscall: num(2),
        },
        Some("exited") => CheckCell::Exited {
            code: i32::try_from(num(1).unwrap()).unwrap(),
        },
        _ => CheckCell::Error {
            message: words.join(" "),
        },
    }
}

#[test]
fn the_matrix_holds_for_an_unprivileged_prober() {
    let Some(mut cmd) = setpriv_nobody() else {
        eprintln!("skipped: needs root and setpriv to start the prober as nobody");
        return;
    };
    let output = cmd.arg("check").output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{:?} {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let abi = match probe_kernel().landlock {
        LandlockSupport::Available { abi } => abi,
        _ => 0,
    };
    let ctx = Context {
        root: false,
        cap_sys_resource: false,
        landlock_abi: abi,
    };
    let columns = CheckConfig::matrix();
    let mut seen = 0;
    let mut failures = Vec::new();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let ["cell", probe, column, rest @ ..] = words.as_slice() else {
            panic!("unexpected line {line}");
        };
        let probe: Probe = probe.parse().unwrap();
        let column = &columns[column.parse::<usize>().unwrap()];
        let cell = parse_cell(rest);
        let want = expected(probe, column.modes, ctx);
        if !want.matches(&cell) {
            failures.push(format!(
                "{} / {}: got {cell:?}, want {want:?}",
                probe.name(),
                column.name
            ));
        }
        seen += 1;
    }
    assert_eq!(seen, Probe::ALL.len() * columns.len(), "{text}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The uid owning `/proc/PID/maps` of a live host held by `stress wait`
/// (the `/proc/PID` directory itself always shows the effective uid).
fn proc_owner_while_waiting(layers: &str) -> u32 {
    let mut cmd = setpriv_nobody().expect("checked by the caller");
    let (ours, theirs) = UnixStream::pair().unwrap();
    let mut child = cmd
        .args(["--layers", layers, "stress", "wait"])
        .stdin(Stdio::null())
        .stdout(Stdio::from(OwnedFd::from(theirs)))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    drop(cmd);
    ours.set_read_timeout(Some(Duration::from_mins(1))).unwrap();
    // Wait until the host has confined itself and said so.
    let mut first = [0u8; 7];
    (&ours).read_exact(&mut first).unwrap();
    assert_eq!(&first, b"report ");
    let owner = std::fs::metadata(format!("/proc/{}/maps", child.id()))
        .unwrap()
        .uid();
    drop(ours);
    assert!(child.wait().unwrap().success());
    owner
}

#[test]
fn an_undumpable_worker_is_hidden_from_its_own_uid() {
    if setpriv_nobody().is_none() {
        eprintln!("skipped: needs root and setpriv to start the prober as nobody");
        return;
    }
    // Not dumpable: /proc/PID/* belongs to root, so another process of the
    // worker's uid cannot read its memory maps or ptrace it.
    assert_eq!(proc_owner_while_waiting("only:prctl"), 0);
    assert_eq!(proc_owner_while_waiting("none"), NOBODY);
}

#[test]
fn a_failing_layer_stops_the_worker_unless_weakness_is_allowed() {
    // Pid 1 is never the host's parent, so the fds layer's parent check fails.
    let strict = run(&["--expect-parent", "1", "stress", "stderr"]);
    assert_eq!(strict.status.code(), Some(3), "{:?}", strict.status);
    assert!(
        strict
            .out
            .starts_with("confine-error fds layer: the parent exited"),
        "{}",
        strict.out
    );
    assert!(!strict.out.contains("stress-done"));

    let weak = run(&["--weak", "--expect-parent", "1", "stress", "stderr"]);
    assert!(weak.status.success(), "{:?} {}", weak.status, weak.stderr);
    let report = weak.out.lines().next().unwrap_or_default();
    assert!(
        report.contains("fds=UNAVAILABLE (fds layer: the parent exited"),
        "{report}"
    );
    // The other layers still apply.
    for layer in ["prctl", "rlimits", "landlock", "seccomp"] {
        assert!(report.contains(&format!("{layer}=applied")), "{report}");
    }
    assert!(weak.out.contains("stress-done"), "{}", weak.out);
}
