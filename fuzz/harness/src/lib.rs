//! The logic of PiCloud's fuzz targets, as plain functions.
//!
//! Each target is a function from arbitrary bytes to `()` that panics when
//! an invariant breaks. The libFuzzer binaries in `fuzz/fuzz_targets/` call
//! these functions; `tests/replay.rs` calls them on every kept corpus and
//! regression input, so a plain `cargo test` keeps fixed crashes fixed
//! without an instrumented build. See `docs/fuzzing.md`.
//!
//! | target | function | what it attacks |
//! |---|---|---|
//! | `ipc_frames` | [`ipc::frames`] | the frame codec and both directions' messages, plus zygote control datagrams |
//! | `script` | [`script::run`] | compile + run under the workers' engine and limits, in process |
//! | `pool` | [`pool::PoolTarget::run`] | the same through a real zygote and confined workers |
//! | `http` | [`http::run`] | HTTP request → `ScriptRequest` and script response → HTTP |
//! | `routes` | [`routes::run`] | route pattern parsing, overlaps, path normalisation, the route table |
//! | `admin_body` | [`admin::run`] | admin API JSON bodies: decoding and validation |

pub mod admin;
pub mod http;
pub mod input;
pub mod ipc;
pub mod pool;
pub mod routes;
pub mod script;

/// Every target's name, as the fuzz binaries and the corpus directories spell it.
pub const TARGETS: [&str; 6] = [
    "ipc_frames",
    "script",
    "pool",
    "http",
    "routes",
    "admin_body",
];

/// Polls a future that never waits (in-memory bodies) to completion.
///
/// # Panics
/// When the future is pending: every future given here reads only memory.
pub fn ready<F: std::future::Future>(fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match fut.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(out) => out,
        std::task::Poll::Pending => panic!("an in-memory future was pending"),
    }
}
