//! The HTTP listener: accepts connections, bounds how many are open and how long a client may take, and hands each
//! to hyper.
//!
//! What it guarantees, so that slow or idle clients cannot take the API away from others:
//! - **A cap.** At most [`HttpLimits::max_connections`] connections are open at once (TLS handshakes included).
//!   A connection beyond the cap is closed at once, never queued, and counted in
//!   `ccmart_connections_refused_total{listener="http"}`.
//! - **A header deadline.** A client has [`HttpLimits::header_timeout`] for its TLS handshake, then as long to send
//!   the headers of each request (hyper's `header_read_timeout`, which also bounds an idle kept-alive HTTP/1
//!   connection). A connection that has sent no request by then is dropped, whatever protocol it speaks; an
//!   HTTP/2 connection with no request in flight for that long is shut down gracefully.
//! - **A send deadline.** A response the client stops reading fails after [`HttpLimits::send_timeout`] without
//!   progress and its connection is closed, so an answer (and the query slot it holds until sent) cannot be kept
//!   by a client that never reads it.
//! - **Request bodies and handlers** are bounded by the router's body limit and request timeout.
//! - **Shutdown** stops accepting, lets open connections finish their requests, and waits for them at most
//!   [`SHUTDOWN_GRACE`].

use super::metrics::ApplianceMetrics;
use axum::body::{Body, HttpBody};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;
use tokio_rustls::rustls;
use tower::ServiceExt;

/// Default of `appliance.max_http_connections`.
pub const DEFAULT_MAX_HTTP_CONNECTIONS: usize = 256;
/// Default of `appliance.http_header_timeout_secs`.
pub const DEFAULT_HTTP_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default of `appliance.http_send_timeout_secs`.
pub const DEFAULT_HTTP_SEND_TIMEOUT: Duration = Duration::from_secs(60);
/// How long open connections may take to finish their requests once shutdown was asked.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// Refused connections are logged at most this often (with the count since the last line), so a flood does not
/// flood the log too.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// Connection limits of an HTTP listener (`[appliance]` in the configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Open connections at most; more are closed at once.
    pub max_connections: usize,
    /// Time for the TLS handshake, and then for the headers of each request.
    pub header_timeout: Duration,
    /// Time a write to the client may wait for the client to read (a response it does not read), then the
    /// connection is closed.
    pub send_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_connections: DEFAULT_MAX_HTTP_CONNECTIONS,
            header_timeout: DEFAULT_HTTP_HEADER_TIMEOUT,
            send_timeout: DEFAULT_HTTP_SEND_TIMEOUT,
        }
    }
}

/// `io` whose writes fail with `TimedOut` once one has waited `send_timeout` for the client to read.
pub(crate) fn with_send_deadline<IO>(io: IO, send_timeout: Duration) -> Pin<Box<tokio_io_timeout::TimeoutStream<IO>>>
where
    IO: AsyncRead + AsyncWrite,
{
    let mut stream = tokio_io_timeout::TimeoutStream::new(io);
    stream.set_write_timeout(Some(send_timeout));
    Box::pin(stream)
}

/// Serves `router` on `listener` (over TLS with `tls`) within `limits` until `shutdown` resolves.
pub async fn serve_router(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    tls: Option<Arc<rustls::ServerConfig>>,
    metrics: ApplianceMetrics,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let max = limits.max_connections.clamp(1, 1 << 20);
    let slots = Arc::new(Semaphore::new(max));
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut refusals = RefusalLog::default();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "HTTP: accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics.observe_connection_refused("http", "max_connections");
            refusals.refused(peer, "HTTP connection closed: appliance.max_http_connections reached", max);
            drop(tcp);
            continue;
        };
        let (router, acceptor, stop) = (router.clone(), acceptor.clone(), stop_rx.clone());
        tokio::spawn(async move {
            let _slot = slot;
            match acceptor {
                None => serve_connection(tcp, peer, router, limits, stop).await,
                Some(acceptor) => match tokio::time::timeout(limits.header_timeout, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => serve_connection(tls, peer, router, limits, stop).await,
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                },
            }
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Every connection holds a slot until it ends: all slots back means all connections ended.
    let ended = tokio::time::timeout(SHUTDOWN_GRACE, slots.acquire_many(max as u32)).await;
    if ended.is_err() {
        tracing::warn!(grace_secs = SHUTDOWN_GRACE.as_secs(), "HTTP: connections still open after shutdown; dropped");
    }
    Ok(())
}

/// Serves one accepted connection until it ends, the client is too slow or idle, or shutdown is asked.
async fn serve_connection<IO>(
    io: IO,
    peer: SocketAddr,
    router: Router,
    limits: HttpLimits,
    mut stop: watch::Receiver<bool>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::new());
    let service = ConnectionService { router, activity: activity.clone() };
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
    builder.http2().timer(TokioTimer::new()).keep_alive_interval(limits.header_timeout);
    let io = with_send_deadline(io, limits.send_timeout);
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    // Wakes when the connection may have idled too long: no request yet, or none in flight since.
    let idle_check = tokio::time::sleep(limits.header_timeout);
    tokio::pin!(idle_check);
    let mut shutting_down = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
                }
                return;
            }
            _ = &mut idle_check, if !shutting_down => {
                match activity.idle_deadline(limits.header_timeout) {
                    // Still busy, or idle for less than the timeout: look again later.
                    Some(later) if later > Instant::now() => idle_check.as_mut().reset(later),
                    None => idle_check.as_mut().reset(Instant::now() + limits.header_timeout),
                    Some(_) if activity.requests() == 0 => {
                        tracing::debug!(%peer, "HTTP: no request within the header timeout; connection closed");
                        return;
                    }
                    Some(_) => {
                        conn.as_mut().graceful_shutdown();
                        shutting_down = true;
                    }
                }
            }
            _ = stop.changed(), if !shutting_down => {
                conn.as_mut().graceful_shutdown();
                shutting_down = true;
            }
        }
    }
}

/// What one connection is doing: requests seen, requests in flight (until their response body is sent) and
/// since when it has been idle.
struct Activity {
    requests: AtomicU64,
    in_flight: AtomicUsize,
    idle_since: Mutex<Instant>,
}

impl Activity {
    fn new() -> Self {
        Activity { requests: AtomicU64::new(0), in_flight: AtomicUsize::new(0), idle_since: Mutex::new(Instant::now()) }
    }

    fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }

    /// When the connection will have been idle for `timeout`; `None` while a request is in flight.
    fn idle_deadline(&self, timeout: Duration) -> Option<Instant> {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return None;
        }
        Some(*self.idle_since.lock().unwrap_or_else(|e| e.into_inner()) + timeout)
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.requests.fetch_add(1, Ordering::SeqCst);
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(self.clone())
    }
}

/// One request in flight; dropped when its response body has been sent (or dropped).
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        *self.0.idle_since.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The router as a hyper service that tracks the connection's [`Activity`].
#[derive(Clone)]
struct ConnectionService {
    router: Router,
    activity: Arc<Activity>,
}

impl hyper::service::Service<hyper::Request<Incoming>> for ConnectionService {
    type Response = axum::response::Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, req: hyper::Request<Incoming>) -> Self::Future {
        let in_flight = self.activity.begin();
        let router = self.router.clone();
        Box::pin(async move {
            let response = router.oneshot(req.map(Body::new)).await?;
            Ok(response.map(|body| Body::new(TrackedBody { body, _in_flight: in_flight })))
        })
    }
}

/// A response body that keeps its request counted as in flight until it is sent.
struct TrackedBody {
    body: Body,
    _in_flight: InFlight,
}

impl HttpBody for TrackedBody {
    type Data = <Body as HttpBody>::Data;
    type Error = <Body as HttpBody>::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// Logs refused connections at most every [`REFUSAL_LOG_EVERY`].
#[derive(Default)]
pub(crate) struct RefusalLog {
    last: Option<Instant>,
    since_last: u64,
}

impl RefusalLog {
    pub(crate) fn refused(&mut self, peer: SocketAddr, what: &'static str, max: usize) {
        self.since_last += 1;
        if self.last.is_none_or(|t| t.elapsed() >= REFUSAL_LOG_EVERY) {
            tracing::warn!(%peer, max, refused = self.since_last, "{what}");
            self.last = Some(Instant::now());
            self.since_last = 0;
        }
    }
}
