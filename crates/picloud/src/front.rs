//! The HTTP front: accepts TCP connections and speaks HTTP/1.1 on them with
//! hyper, before anything reaches the routers.
//!
//! Invariants:
//! - A client must send a request's head within the header read timeout of
//!   the connection being accepted or of its previous response (slowloris;
//!   the same bound closes idle keep-alive connections). Heads with too many
//!   headers or too many bytes get hyper's `431` and the connection closes.
//! - A request body must arrive in full within the body read timeout of
//!   being first read; past it the read fails (`408` on the data plane) and
//!   the connection closes.
//! - A response write that makes no progress for the write timeout (a client
//!   that stopped reading) closes the connection.
//! - Each listener holds at most `max_connections` connections. Past that
//!   a few more are answered `503` + `Retry-After` with the JSON error body
//!   and closed; past those, they are closed at once. Nothing waits in a
//!   queue of ours.
//! - [`limit_in_flight`] caps invocations on the data plane across all
//!   connections: past it, `503` + `Retry-After`, before the body is read.
//! - Graceful shutdown: the listener closes, idle connections close, and the
//!   future returns once every request in flight has been answered.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::IntoResponse;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use orchestrator_core::error::RequestError;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tower::ServiceExt as _;

/// Rejections counted by `reason` (`connections`, `in_flight`).
pub const REJECTED: &str = "picloud_http_rejected_total";

/// Connections past the cap that still get a `503` (the rest are closed at
/// once), and how long one may take to send its request head.
const OVERFLOW_ANSWERS: usize = 64;
const OVERFLOW_HEADER_TIMEOUT: Duration = Duration::from_secs(2);

/// hyper's own default; setting it explicitly moves the header array to the heap.
const HYPER_DEFAULT_MAX_HEADERS: usize = 100;

/// Connection-level limits, the same for every listener.
#[derive(Debug, Clone, Copy)]
pub struct FrontConfig {
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
    pub max_headers: usize,
    pub max_header_bytes: usize,
    pub max_connections: usize,
    pub write_timeout: Duration,
}

/// Serves `app` on `listener` until `shutdown` resolves, then finishes the
/// requests in flight and returns.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    config: FrontConfig,
    shutdown: impl Future<Output = ()>,
) {
    let connections = Arc::new(Semaphore::new(config.max_connections));
    let overflow = Arc::new(Semaphore::new(OVERFLOW_ANSWERS));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(&e).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        if let Ok(permit) = Arc::clone(&connections).try_acquire_owned() {
            let app = app.clone();
            let body_timeout = config.body_read_timeout;
            // Set once a request's body is dropped before its end.
            let unread = Arc::new(AtomicBool::new(false));
            let io = ConnIo::new(
                TokioIo::new(stream),
                config.write_timeout,
                Arc::clone(&unread),
            );
            let service = hyper::service::service_fn(move |request| {
                let unread = Arc::clone(&unread);
                let request = to_router(request, peer, body_timeout, Arc::clone(&unread));
                let answered = app.clone().oneshot(request);
                async move {
                    let mut response = answered.await?;
                    // hyper closes a connection whose request body was left
                    // unread (a 413 on the announced length, a 503, a 408)
                    // without saying so; a client that pooled it would send
                    // its next request into the closing connection. (A body
                    // hyper manages to drain after all costs one reconnect.)
                    if unread.load(Ordering::Relaxed) {
                        response
                            .headers_mut()
                            .insert(header::CONNECTION, HeaderValue::from_static("close"));
                    }
                    Ok::<_, Infallible>(response)
                }
            });
            let conn = connection(&config).serve_connection(io, service);
            let conn = graceful.watch(conn);
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                drop(permit);
            });
        } else {
            metrics::counter!(REJECTED, "reason" => "connections").increment(1);
            match Arc::clone(&overflow).try_acquire_owned() {
                Ok(permit) => {
                    tokio::spawn(turn_away(stream, permit));
                }
                Err(_) => drop(stream),
            }
        }
    }
    drop(listener);
    graceful.shutdown().await;
}

/// The HTTP/1 settings of one accepted connection.
fn connection(config: &FrontConfig) -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .max_header_size(config.max_header_bytes);
    if config.max_headers != HYPER_DEFAULT_MAX_HEADERS {
        builder.max_headers(config.max_headers);
    }
    builder
}

/// The request as the router wants it: the peer address for `ConnectInfo`,
/// the body behind its deadline; `unread` is set if the body is dropped
/// before its end.
fn to_router(
    request: hyper::Request<Incoming>,
    peer: SocketAddr,
    body_timeout: Duration,
    unread: Arc<AtomicBool>,
) -> Request {
    let mut request = request.map(|body| Body::new(DeadlineBody::new(body, body_timeout, unread)));
    request.extensions_mut().insert(ConnectInfo(peer));
    request
}

/// Answers one request on a connection past the cap with a `503`, then closes.
async fn turn_away(stream: TcpStream, permit: OwnedSemaphorePermit) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(OVERFLOW_HEADER_TIMEOUT)
        .keep_alive(false);
    let answer = hyper::service::service_fn(|_: hyper::Request<Incoming>| async {
        let mut response = RequestError::Unavailable(
            "the server is at its connection limit; retry shortly".into(),
        )
        .into_response();
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        Ok::<_, Infallible>(response)
    });
    let _ = builder.serve_connection(TokioIo::new(stream), answer).await;
    drop(permit);
}

/// Descriptors kept for everything but client connections: workers' pipes,
/// the database pool, log and data files.
const OTHER_DESCRIPTORS: u64 = 512;

/// Raises the soft limit on open files toward what `listeners` listeners of
/// `max_connections` each need (up to the hard limit), and warns when even
/// the hard limit is short: past it `accept` fails instead of answering `503`.
pub fn ensure_descriptors(max_connections: usize, listeners: usize) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let per_listener = u64::try_from(max_connections).unwrap_or(u64::MAX);
    let listeners = u64::try_from(listeners).unwrap_or(u64::MAX);
    let needed = per_listener
        .saturating_mul(listeners)
        .saturating_add(OTHER_DESCRIPTORS);
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    if soft >= needed {
        return;
    }
    let raised = needed.min(hard);
    let soft = match setrlimit(Resource::RLIMIT_NOFILE, raised, hard) {
        Ok(()) => raised,
        Err(_) => soft,
    };
    if soft < needed {
        tracing::warn!(
            open_files = soft,
            needed,
            "the open-file limit is below what PICLOUD_MAX_CONNECTIONS needs; \
             raise it (e.g. LimitNOFILE= in a systemd unit) or lower the cap"
        );
    }
}

/// As `axum::serve` and hyper before it: a peer that gave up before its
/// connection was accepted is nothing; anything else (out of descriptors)
/// is logged and accepting pauses for a second instead of spinning.
async fn accept_failed(e: &std::io::Error) {
    use std::io::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accepting a connection failed");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// Caps the invocations in flight on `data_plane` (`/api/execute/...` and
/// `/exec...`; health checks are never turned away).
pub fn limit_in_flight(data_plane: Router, max: usize) -> Router {
    let slots = Arc::new(Semaphore::new(max));
    data_plane.layer(axum::middleware::from_fn(
        move |request: Request, next: Next| {
            let slots = Arc::clone(&slots);
            async move {
                if !is_invocation(request.uri().path()) {
                    return next.run(request).await;
                }
                let Ok(_slot) = slots.try_acquire_owned() else {
                    metrics::counter!(REJECTED, "reason" => "in_flight").increment(1);
                    return RequestError::Unavailable(
                        "too many invocations in flight; retry shortly".into(),
                    )
                    .into_response();
                };
                next.run(request).await
            }
        },
    ))
}

fn is_invocation(path: &str) -> bool {
    path.starts_with("/api/execute/") || path == "/exec" || path.starts_with("/exec/")
}

/// A request body that fails with an [`std::io::ErrorKind::TimedOut`] error unless it has been read
/// to its end within `timeout` of its first read.
struct DeadlineBody {
    body: Incoming,
    timeout: Duration,
    deadline: Option<Pin<Box<Sleep>>>,
    unread: Arc<AtomicBool>,
}

impl Drop for DeadlineBody {
    fn drop(&mut self) {
        if !hyper::body::Body::is_end_stream(&self.body) {
            self.unread.store(true, Ordering::Relaxed);
        }
    }
}

impl DeadlineBody {
    fn new(body: Incoming, timeout: Duration, unread: Arc<AtomicBool>) -> Self {
        Self {
            body,
            timeout,
            deadline: None,
            unread,
        }
    }
}

impl hyper::body::Body for DeadlineBody {
    type Data = hyper::body::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.body).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(std::io::Error::other)));
        }
        let timeout = this.timeout;
        let deadline = this
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(Instant::now() + timeout)));
        ready!(deadline.as_mut().poll(cx));
        Poll::Ready(Some(Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!(
                "the request body did not arrive within {} ms",
                timeout.as_millis()
            ),
        ))))
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// How long, and how many bytes, a closing connection keeps reading a
/// request body it left unread, so the client can read the answer instead
/// of a reset (nginx's lingering close).
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 32 * 1024 * 1024;

/// A client connection as hyper sees it, with two guards: a write that
/// makes no progress for `write_timeout` (the client stopped reading) fails
/// with `TimedOut`; and closing after a request body was left unread
/// lingers, reading and discarding what the client still sends.
struct ConnIo<T> {
    io: T,
    write_timeout: Duration,
    stalled: Option<Pin<Box<Sleep>>>,
    unread: Arc<AtomicBool>,
    lingering: Option<Lingering>,
}

struct Lingering {
    until: Pin<Box<Sleep>>,
    drained: usize,
}

impl<T> ConnIo<T> {
    fn new(io: T, write_timeout: Duration, unread: Arc<AtomicBool>) -> Self {
        Self {
            io,
            write_timeout,
            stalled: None,
            unread,
            lingering: None,
        }
    }

    /// Passes a finished write through; after `Pending`, waits out the deadline.
    fn watch<R>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<std::io::Result<R>>,
    ) -> Poll<std::io::Result<R>> {
        if polled.is_ready() {
            self.stalled = None;
            return polled;
        }
        let timeout = self.write_timeout;
        let deadline = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        ready!(deadline.as_mut().poll(cx));
        Poll::Ready(Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the client stopped reading the response",
        )))
    }
}

impl<T: hyper::rt::Read + Unpin> ConnIo<T> {
    /// Reads and discards until the client closes, or the linger's time or
    /// bytes run out.
    fn poll_linger(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(linger) = self.lingering.as_mut() else {
            return Poll::Ready(());
        };
        let mut scratch = [std::mem::MaybeUninit::<u8>::uninit(); 8192];
        while linger.drained < LINGER_BYTES && linger.until.as_mut().poll(cx).is_pending() {
            let mut buf = hyper::rt::ReadBuf::uninit(&mut scratch);
            match Pin::new(&mut self.io).poll_read(cx, buf.unfilled()) {
                Poll::Ready(Ok(())) if !buf.filled().is_empty() => {
                    linger.drained += buf.filled().len();
                }
                Poll::Ready(_) => break,
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(())
    }
}

impl<T: hyper::rt::Read + Unpin> hyper::rt::Read for ConnIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<T: hyper::rt::Read + hyper::rt::Write + Unpin> hyper::rt::Write for ConnIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write(cx, buf);
        this.watch(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.watch(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_flush(cx);
        this.watch(cx, polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.lingering.is_none() {
            let polled = Pin::new(&mut this.io).poll_shutdown(cx);
            ready!(this.watch(cx, polled))?;
            if !this.unread.load(Ordering::Relaxed) {
                return Poll::Ready(Ok(()));
            }
            this.lingering = Some(Lingering {
                until: Box::pin(tokio::time::sleep(LINGER)),
                drained: 0,
            });
        }
        ready!(this.poll_linger(cx));
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_open_file_limit_is_raised_toward_the_caps() {
        use nix::sys::resource::{Resource, getrlimit, setrlimit};
        let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        let low = hard.min(256);
        setrlimit(Resource::RLIMIT_NOFILE, low, hard).unwrap();
        ensure_descriptors(1024, 2);
        let (raised, _) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        setrlimit(Resource::RLIMIT_NOFILE, soft, hard).unwrap();
        assert_eq!(raised, hard.min(2 * 1024 + OTHER_DESCRIPTORS));
    }

    #[test]
    fn invocations_are_the_data_plane_routes_only() {
        for path in ["/api/execute/abc", "/exec", "/exec/", "/exec/a/b"] {
            assert!(is_invocation(path), "{path}");
        }
        for path in [
            "/healthz",
            "/readyz",
            "/execute",
            "/exec-x",
            "/api/admin/scripts",
        ] {
            assert!(!is_invocation(path), "{path}");
        }
    }
}
