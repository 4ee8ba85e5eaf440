//! Test-only probe host (built only with the `probes` feature): confines
//! itself with the layers named on the command line, then runs one probe or
//! one stress action and reports on its stdout, which it keeps as the
//! "worker socket" (fd 3). The confinement tests spawn it; it is never part
//! of a release build.
//!
//! ```text
//! sandbox-probe-host [--layers all|none|only:L|no:L] [--action report|kill]
//!                    [--as-mib N] [--cpu-secs N] [--weak] [--expect-parent PID]
//!                    (probe NAME [--port P] [--parent PID] [--victim PID] [--fd FD] [--scratch PATH]
//!                     | stress alloc|recurse|burn|stderr|violation|healthy|wait
//!                     | check)
//! ```
//! Output lines: `report ...`, then `probe-result ...` (or `stress-done`);
//! nothing more when a signal ends the process. `check` confines nothing
//! itself: it runs the probe matrix in confined forks and prints `cell ...`
//! lines on stdout.

use std::ffi::CString;
use std::hint::black_box;
use std::io::{Read, Write};
use std::os::fd::FromRawFd;
use std::process::ExitCode;

use sandbox::confine::probes::{self, Probe, ProbeResult, ProbeTargets};
use sandbox::confine::{
    CheckCell, CheckConfig, ConfinementPlan, ExpectedParent, Layer, LayerMode, LayerModes,
    PlanOptions, ViolationAction, apply, check_with,
};

const SOCKET_FD: i32 = 3;

struct Args {
    modes: LayerModes,
    action: ViolationAction,
    as_mib: Option<u64>,
    cpu_secs: Option<u64>,
    command: Vec<String>,
    options: Vec<(String, String)>,
}

fn parse_layer(name: &str) -> Result<Layer, String> {
    Layer::ALL
        .into_iter()
        .find(|l| l.name() == name)
        .ok_or_else(|| format!("unknown layer {name}"))
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        modes: LayerModes::default(),
        action: ViolationAction::Report,
        as_mib: None,
        cpu_secs: None,
        command: Vec::new(),
        options: Vec::new(),
    };
    let mut weak = false;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--layers" => {
                let v = value()?;
                args.modes = match v.as_str() {
                    "all" => LayerModes::default(),
                    "none" => LayerModes::all(LayerMode::Off),
                    other => match other.split_once(':') {
                        Some(("only", l)) => LayerModes::only(parse_layer(l)?),
                        Some(("no", l)) => LayerModes::all_but(parse_layer(l)?),
                        _ => return Err(format!("bad --layers {other}")),
                    },
                };
            }
            "--action" => {
                args.action = match value()?.as_str() {
                    "kill" => ViolationAction::Kill,
                    _ => ViolationAction::Report,
                };
            }
            "--as-mib" => args.as_mib = Some(value()?.parse().map_err(|_| "bad --as-mib")?),
            "--cpu-secs" => args.cpu_secs = Some(value()?.parse().map_err(|_| "bad --cpu-secs")?),
            "--weak" => weak = true,
            flag if flag.starts_with("--") => {
                let v = value()?;
                args.options
                    .push((flag.trim_start_matches("--").to_owned(), v));
            }
            _ => args.command.push(arg),
        }
    }
    if weak {
        for layer in Layer::ALL {
            if args.modes.get(layer) == LayerMode::Required {
                args.modes.set(layer, LayerMode::AllowWeak);
            }
        }
    }
    Ok(args)
}

fn option(args: &Args, name: &str) -> Option<i32> {
    args.options
        .iter()
        .find(|(k, _)| k == name)
        .and_then(|(_, v)| v.parse().ok())
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("probe host: {e}");
            return ExitCode::from(2);
        }
    };
    if args.command.first().map(String::as_str) == Some("check") {
        print_check();
        return ExitCode::SUCCESS;
    }
    // The harness's end of our stdout becomes the worker socket.
    // SAFETY: dup2 onto a fixed descriptor number before anything else runs.
    if unsafe { libc::dup2(1, SOCKET_FD) } < 0 {
        return ExitCode::from(2);
    }
    // SAFETY: fd 3 was just made a duplicate of stdout and nothing else owns it.
    let mut socket = unsafe { std::fs::File::from_raw_fd(SOCKET_FD) };

    let mut options = PlanOptions {
        modes: args.modes,
        on_violation: args.action,
        // `--expect-parent` lets a test make the fds layer fail on purpose.
        parent: ExpectedParent::Pid(
            option(&args, "expect-parent").unwrap_or_else(|| nix::unistd::getppid().as_raw()),
        ),
        ..PlanOptions::default()
    };
    if let Some(mib) = args.as_mib {
        options.rlimits.address_space_bytes = mib * 1024 * 1024;
    }
    if let Some(secs) = args.cpu_secs {
        options.rlimits.cpu_seconds = secs;
    }
    let targets = match targets(&args) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("probe host: {e}");
            return ExitCode::from(2);
        }
    };
    let plan = match ConfinementPlan::new(SOCKET_FD, &options) {
        Ok(p) => p,
        Err(e) => {
            let _ = writeln!(socket, "plan-error {e}");
            return ExitCode::from(3);
        }
    };
    match apply(&plan) {
        Ok(report) => {
            let _ = writeln!(socket, "report {report}");
        }
        Err(e) => {
            let _ = writeln!(socket, "confine-error {e}");
            return ExitCode::from(3);
        }
    }
    match args
        .command
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["probe", name] => match name.parse::<Probe>() {
            Ok(probe) => {
                let line = probes::run(probe, &targets).to_line();
                let _ = socket.write_all(line.as_bytes());
            }
            Err(e) => {
                let _ = writeln!(socket, "bad-probe {e}");
                return ExitCode::from(2);
            }
        },
        ["stress", what] => stress(what, &mut socket),
        _ => {
            let _ = writeln!(socket, "bad-command");
            return ExitCode::from(2);
        }
    }
    ExitCode::SUCCESS
}

/// Runs the whole probe matrix (unconfined runner, confined forks) and
/// prints one line per cell: `cell PROBE COLUMN KIND [DETAIL...]`.
fn print_check() {
    let columns = CheckConfig::matrix();
    let table = check_with(&PlanOptions::default(), &columns);
    if let Some(err) = &table.setup_error {
        println!("setup-error {err}");
        return;
    }
    for row in &table.rows {
        for (i, cell) in row.cells.iter().enumerate() {
            let detail = match cell {
                CheckCell::Returned {
                    result: ProbeResult::Allowed,
                } => "allowed".to_owned(),
                CheckCell::Returned {
                    result: ProbeResult::Denied { errno, step },
                } => format!("denied {errno} {}", step.name()),
                CheckCell::Killed { signal, syscall } => {
                    format!(
                        "killed {signal} {}",
                        syscall.map_or_else(|| "-".to_owned(), |s| s.to_string())
                    )
                }
                CheckCell::Exited { code } => format!("exited {code}"),
                CheckCell::Error { message } => format!("error {message}"),
            };
            println!("cell {} {i} {detail}", row.probe.name());
        }
    }
}

fn targets(args: &Args) -> Result<ProbeTargets, String> {
    let scratch = args
        .options
        .iter()
        .find(|(k, _)| k == "scratch")
        .map_or_else(
            || format!("/tmp/picloud-probe-host-{}", std::process::id()),
            |(_, v)| v.clone(),
        );
    Ok(ProbeTargets {
        scratch_path: CString::new(scratch).map_err(|e| e.to_string())?,
        loopback_port: option(args, "port")
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or(0),
        parent_pid: option(args, "parent").unwrap_or(0),
        victim_pid: option(args, "victim").unwrap_or(0),
        inherited_fd: option(args, "fd").unwrap_or(-1),
    })
}

fn stress(what: &str, socket: &mut std::fs::File) {
    match what {
        // Grows the heap until RLIMIT_AS refuses: the allocation failure aborts.
        "alloc" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 4 << 20]);
                black_box(&hoard);
            }
        }
        // Native recursion past the stack: std's guard-page handler aborts.
        "recurse" => {
            black_box(recurse(black_box(u64::MAX)));
        }
        // Burns CPU until RLIMIT_CPU sends SIGXCPU.
        "burn" => {
            let mut x = 0u64;
            loop {
                x = black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1));
            }
        }
        // A write to stderr: fatal (SIGXFSZ) only if stderr were a regular file.
        "stderr" => {
            eprintln!("a line on stderr");
        }
        // A call outside the allow-list.
        "violation" => {
            // SAFETY: socket() with constant arguments.
            let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0) };
            black_box(fd);
        }
        // Holds the process (for inspection from outside) until the harness
        // closes its end of the socket.
        "wait" => {
            let mut sink = Vec::new();
            let _ = socket.read_to_end(&mut sink);
        }
        // What a healthy worker does: socket I/O, heap churn, clocks,
        // randomness, a caught panic.
        "healthy" => healthy(socket),
        _ => {
            let _ = writeln!(socket, "bad-stress");
            return;
        }
    }
    let _ = writeln!(socket, "stress-done");
}

fn recurse(n: u64) -> u64 {
    let frame = black_box([n; 512]);
    if n == 0 {
        0
    } else {
        recurse(black_box(n - 1)).wrapping_add(frame[7])
    }
}

fn healthy(socket: &mut std::fs::File) {
    let mut request = [0u8; 4];
    if socket.read_exact(&mut request).is_err() || &request != b"ping" {
        let _ = writeln!(socket, "no-ping");
        return;
    }
    let start = std::time::Instant::now();
    let mut big: Vec<u8> = Vec::with_capacity(1 << 20);
    for round in 0..4u8 {
        big.resize(64 << 20, round);
        big.truncate(1 << 10);
        big.shrink_to_fit();
    }
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &raw mut ts) };
    let mut random = [0u8; 16];
    // SAFETY: getrandom fills the local buffer.
    let got = unsafe { libc::getrandom(random.as_mut_ptr().cast(), random.len(), 0) };
    let caught = std::panic::catch_unwind(|| panic!("a script bug")).is_err();
    let _ = writeln!(
        socket,
        "pong elapsed_ok={} cpu_ok={} random={} caught={caught}",
        start.elapsed().as_secs() < 60,
        ts.tv_sec >= 0,
        got == 16
    );
}
