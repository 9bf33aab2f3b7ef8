//! PostgreSQL-protocol connections: how many, from whom, for how long, and how often a client may guess a password.
//!
//! pgwire's own `process_socket` gives a client 60 s to log in and no limit afterwards, so 64 idle sockets could
//! lock every login out for a minute and 64 idle sessions for good. This module runs the connection loop itself
//! (the same dispatch as pgwire's, through its public `negotiate_tls`, `process_message` and `process_error`) and
//! adds:
//! - **Logging in** (TLS, startup, password) must finish within [`ConnectionLimits::startup_timeout`]. At most
//!   `max_connections` connections may be logging in at once; when all are taken, the oldest one of the client
//!   address with the most of them is closed to make room, so a flood of idle sockets delays no real login.
//! - **Sessions** (logged-in connections): at most `max_connections` in total and `max_connections_per_client` per
//!   client address; a login beyond them is refused with SQLSTATE 53300.
//! - **Idle sessions** that send nothing for [`ConnectionLimits::idle_session_timeout`] between statements are
//!   closed with SQLSTATE 57P05 (a statement that runs, and the rows it sends, are bounded by the query limits).
//! - **Messages and rows**: a frontend message may announce at most
//!   [`framing::MAX_FRONTEND_MESSAGE_BYTES`](super::framing::MAX_FRONTEND_MESSAGE_BYTES) (SQLSTATE 54000 and the
//!   connection is closed after its header); rows the client stops reading fail after
//!   [`ConnectionLimits::send_timeout`] without progress and the session is closed.
//! - **Login throttling**: after `max_login_failures` failed logins from one address within
//!   `login_failure_window`, its logins are refused (SQLSTATE 53300, without looking at the password) until the
//!   window has passed; a successful login clears the address's count.

use super::framing::MessageSizeCap;
use super::{PgFrontend, PgStatement};
use crate::serve::listener::RefusalLog;
use datafusion_postgres::pgwire;
use futures::{SinkExt, StreamExt};
use pgwire::api::{ClientInfo, ErrorHandler, PgWireConnectionState, PgWireServerHandlers};
use pgwire::error::{ErrorInfo, PgWireError};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use pgwire::tokio::server::{negotiate_tls, process_error, process_message};
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::codec::{Framed, FramedParts};

/// Default of `pgwire.max_connections_per_client`.
pub const DEFAULT_MAX_CONNECTIONS_PER_CLIENT: usize = 32;
/// Default of `pgwire.startup_timeout_secs`.
pub const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(10);
/// Default of `pgwire.idle_session_timeout_secs`.
pub const DEFAULT_IDLE_SESSION_TIMEOUT: Duration = Duration::from_secs(600);
/// Default of `pgwire.max_login_failures`.
pub const DEFAULT_MAX_LOGIN_FAILURES: u32 = 5;
/// Default of `pgwire.login_failure_window_secs`.
pub const DEFAULT_LOGIN_FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Default of `pgwire.send_timeout_secs`.
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(60);
/// Client addresses whose failed logins are remembered at most; beyond that, expired ones are forgotten first and
/// a new address is not tracked until there is room (memory stays bounded under a flood from many addresses).
const MAX_TRACKED_ADDRESSES: usize = 10_000;
/// How long a closing message (the reason a connection is closed) may take to reach a client that does not read.
const FAREWELL_TIMEOUT: Duration = Duration::from_secs(1);

/// Limits of the PostgreSQL-protocol listener (`[pgwire]` in the configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Sessions at most, and connections logging in at most (besides).
    pub max_connections: usize,
    /// Sessions per client address at most.
    pub max_connections_per_client: usize,
    /// Time from accept to a completed login.
    pub startup_timeout: Duration,
    /// Longest wait for a session's next message; `None`: no limit.
    pub idle_session_timeout: Option<Duration>,
    /// Failed logins from one address within `login_failure_window` that lock it out for the rest of the window.
    pub max_login_failures: u32,
    /// See `max_login_failures`.
    pub login_failure_window: Duration,
    /// Time a write to the client may wait for the client to read (rows it does not read), then the session is
    /// closed.
    pub send_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: super::DEFAULT_PGWIRE_MAX_CONNECTIONS,
            max_connections_per_client: DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
            startup_timeout: DEFAULT_STARTUP_TIMEOUT,
            idle_session_timeout: Some(DEFAULT_IDLE_SESSION_TIMEOUT),
            max_login_failures: DEFAULT_MAX_LOGIN_FAILURES,
            login_failure_window: DEFAULT_LOGIN_FAILURE_WINDOW,
            send_timeout: DEFAULT_SEND_TIMEOUT,
        }
    }
}

/// What a connection's login consults: the address's failures and the session slots.
pub(super) struct LoginGate {
    pub(super) peer: IpAddr,
    pub(super) throttle: Arc<LoginThrottle>,
    pub(super) sessions: Arc<Sessions>,
    /// The session slot, once logged in; released when the connection ends.
    pub(super) slot: Mutex<Option<SessionSlot>>,
}

impl LoginGate {
    /// Refuses a login attempt from a locked-out address.
    pub(super) fn check_throttle(&self) -> Result<(), PgWireError> {
        match self.throttle.locked_for(self.peer, Instant::now()) {
            None => Ok(()),
            Some(wait) => Err(fatal(
                "53300",
                format!(
                    "too many failed logins from {}: logins from this address are refused for {} more s \
                     (pgwire.max_login_failures within pgwire.login_failure_window_secs)",
                    self.peer,
                    wait.as_secs().max(1)
                ),
            )),
        }
    }

    /// Takes a session slot for a connection that just authenticated.
    pub(super) fn open_session(&self) -> Result<(), PgWireError> {
        let slot = self.sessions.open(self.peer).map_err(|full| {
            let message = match full {
                SessionsFull::Total(n) => {
                    format!("sorry, too many clients already: {n} sessions are open (pgwire.max_connections)")
                }
                SessionsFull::Client(n) => format!(
                    "too many sessions from {}: it has {n} open (pgwire.max_connections_per_client); close one",
                    self.peer
                ),
            };
            fatal("53300", message)
        })?;
        *self.slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(slot);
        Ok(())
    }
}

/// A FATAL error: the client is told, then the connection closes.
fn fatal(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new("FATAL".into(), code.into(), message)))
}

/// Failed logins per client address within a window.
pub(super) struct LoginThrottle {
    max_failures: u32,
    window: Duration,
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl LoginThrottle {
    pub(super) fn new(max_failures: u32, window: Duration) -> Self {
        LoginThrottle { max_failures: max_failures.max(1), window, failures: Mutex::new(HashMap::new()) }
    }

    /// How much longer `peer` is locked out at `now`; `None` when it may try.
    pub(super) fn locked_for(&self, peer: IpAddr, now: Instant) -> Option<Duration> {
        let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let (count, since) = failures.get(&peer)?;
        let ends = *since + self.window;
        (*count >= self.max_failures && ends > now).then(|| ends - now)
    }

    /// Counts a failed login of `peer` at `now` (the window starts at the first failure).
    pub(super) fn failed(&self, peer: IpAddr, now: Instant) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if failures.len() >= MAX_TRACKED_ADDRESSES && !failures.contains_key(&peer) {
            failures.retain(|_, (_, since)| *since + self.window > now);
            if failures.len() >= MAX_TRACKED_ADDRESSES {
                return;
            }
        }
        let entry = failures.entry(peer).or_insert((0, now));
        if entry.1 + self.window <= now {
            *entry = (0, now);
        }
        entry.0 = entry.0.saturating_add(1);
    }

    /// A successful login clears `peer`'s failures.
    pub(super) fn succeeded(&self, peer: IpAddr) {
        self.failures.lock().unwrap_or_else(|e| e.into_inner()).remove(&peer);
    }
}

/// Open sessions, in total and per client address.
pub(super) struct Sessions {
    max_total: usize,
    max_per_client: usize,
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// Which session limit is reached (with its value).
#[derive(Debug, PartialEq, Eq)]
pub(super) enum SessionsFull {
    Total(usize),
    Client(usize),
}

impl Sessions {
    pub(super) fn new(max_total: usize, max_per_client: usize) -> Arc<Self> {
        Arc::new(Sessions { max_total, max_per_client, open: Mutex::new((0, HashMap::new())) })
    }

    pub(super) fn open(self: &Arc<Self>, peer: IpAddr) -> Result<SessionSlot, SessionsFull> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.0 >= self.max_total {
            return Err(SessionsFull::Total(open.0));
        }
        let mine = open.1.get(&peer).copied().unwrap_or(0);
        if mine >= self.max_per_client {
            return Err(SessionsFull::Client(mine));
        }
        open.0 += 1;
        open.1.insert(peer, mine + 1);
        Ok(SessionSlot { sessions: self.clone(), peer })
    }
}

/// One open session; its slot is released when dropped.
pub(super) struct SessionSlot {
    sessions: Arc<Sessions>,
    peer: IpAddr,
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        let mut open = self.sessions.open.lock().unwrap_or_else(|e| e.into_inner());
        open.0 = open.0.saturating_sub(1);
        if let Some(n) = open.1.get_mut(&self.peer) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.1.remove(&self.peer);
            }
        }
    }
}

/// Logins waiting for a session slot: a counter and (ticket, client address, wake-up) in arrival order.
type WaitingLogins = (u64, VecDeque<(u64, IpAddr, oneshot::Sender<()>)>);

/// Connections logging in: at most `max`; a new one beyond closes the oldest of the address with the most.
struct Pending {
    max: usize,
    queue: Mutex<WaitingLogins>,
}

impl Pending {
    fn new(max: usize) -> Arc<Self> {
        Arc::new(Pending { max: max.max(1), queue: Mutex::new((0, VecDeque::new())) })
    }

    /// Registers a new connection from `peer`; the receiver resolves when it is closed to make room. Returns whether
    /// an older connection was closed for it.
    fn enter(self: &Arc<Self>, peer: IpAddr) -> (PendingSlot, oneshot::Receiver<()>, bool) {
        let (tx, rx) = oneshot::channel();
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let mut evicted = false;
        if q.1.len() >= self.max {
            let mut counts: HashMap<IpAddr, usize> = HashMap::new();
            for (_, ip, _) in q.1.iter() {
                *counts.entry(*ip).or_default() += 1;
            }
            let busiest = counts.into_iter().max_by_key(|(_, n)| *n).map(|(ip, _)| ip);
            if let Some(i) = busiest.and_then(|b| q.1.iter().position(|(_, ip, _)| *ip == b)) {
                if let Some((_, _, victim)) = q.1.remove(i) {
                    let _ = victim.send(());
                    evicted = true;
                }
            }
        }
        q.0 += 1;
        let id = q.0;
        q.1.push_back((id, peer, tx));
        (PendingSlot { pending: self.clone(), id }, rx, evicted)
    }
}

/// A connection logging in; leaves the pending set when dropped.
struct PendingSlot {
    pending: Arc<Pending>,
    id: u64,
}

impl Drop for PendingSlot {
    fn drop(&mut self) {
        let mut q = self.pending.queue.lock().unwrap_or_else(|e| e.into_inner());
        q.1.retain(|(id, _, _)| *id != self.id);
    }
}

/// Accepts PostgreSQL connections on `listener` within `limits` until `shutdown` completes, each optionally
/// upgraded to TLS when the client asks (`sslmode=require`).
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    frontend: PgFrontend,
    limits: ConnectionLimits,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let frontend = Arc::new(frontend);
    let acceptor = tls.map(pgwire::tokio::TlsAcceptor::from);
    let pending = Pending::new(limits.max_connections);
    let sessions = Sessions::new(limits.max_connections, limits.max_connections_per_client);
    let throttle = Arc::new(LoginThrottle::new(limits.max_login_failures, limits.login_failure_window));
    let mut evictions = RefusalLog::default();
    tokio::pin!(shutdown);
    loop {
        let (socket, peer) = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "PostgreSQL protocol: accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let (pending_slot, evicted, made_room) = pending.enter(peer.ip());
        if made_room {
            frontend.metrics.observe_connection_refused("pgwire", "startup_evicted");
            evictions.refused(
                peer,
                "PostgreSQL protocol: too many connections logging in; closed the oldest to make room",
                limits.max_connections,
            );
        }
        let gate = Arc::new(LoginGate {
            peer: peer.ip(),
            throttle: throttle.clone(),
            sessions: sessions.clone(),
            slot: Mutex::new(None),
        });
        let frontend = frontend.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let metrics = frontend.metrics.clone();
            metrics.observe_pg_connections(1.0);
            let started = Instant::now();
            let deadline = started + limits.startup_timeout;
            let login = Arc::new(super::ConnectionLogin { shared: frontend.startup.clone(), gate });
            let outcome =
                run_connection(socket, peer, &frontend, acceptor, login, limits, deadline, pending_slot, evicted).await;
            if let Err(e) = outcome {
                tracing::debug!(%peer, error = %e, "PostgreSQL protocol connection ended with an error");
            }
            metrics.observe_pg_connections(-1.0);
        });
    }
}

/// One connection from accept to close: TLS and login within the startup deadline (or until closed to make
/// room), then statements until the client leaves or idles past the idle-session timeout.
#[allow(clippy::too_many_arguments)]
async fn run_connection(
    socket: tokio::net::TcpStream,
    peer: SocketAddr,
    frontend: &Arc<PgFrontend>,
    acceptor: Option<pgwire::tokio::TlsAcceptor>,
    login: Arc<super::ConnectionLogin>,
    limits: ConnectionLimits,
    deadline: Instant,
    pending_slot: PendingSlot,
    mut evicted: oneshot::Receiver<()>,
) -> std::io::Result<()> {
    let negotiated = tokio::select! {
        n = tokio::time::timeout_at(deadline, negotiate_tls::<PgStatement>(socket, acceptor)) => n,
        _ = &mut evicted => {
            tracing::debug!(%peer, "PostgreSQL protocol: closed while logging in, to make room");
            return Ok(());
        }
    };
    let socket = match negotiated {
        Ok(Ok(Some(s))) => s,
        // A direct TLS handshake without TLS configured.
        Ok(Ok(None)) => return Ok(()),
        Ok(Err(e)) => return Err(e),
        Err(_) => {
            tracing::debug!(%peer, "PostgreSQL protocol: TLS negotiation did not finish within the startup timeout");
            return Ok(());
        }
    };
    // Every message from here on is bounded in size when its header arrives (see `framing`).
    let parts = socket.into_parts();
    let io = crate::serve::listener::with_send_deadline(parts.io, limits.send_timeout);
    let capped = match MessageSizeCap::new(io, &parts.read_buf) {
        Ok(capped) => capped,
        Err(too_large) => {
            tracing::debug!(%peer, error = %too_large, "PostgreSQL protocol: first message too large");
            return Ok(());
        }
    };
    let mut capped_parts = FramedParts::new(capped, parts.codec);
    capped_parts.read_buf = parts.read_buf;
    capped_parts.write_buf = parts.write_buf;
    let mut socket = Framed::from_parts(capped_parts);
    // The front end is both query handlers (the trait's accessors hide the statement type the codec needs).
    let (simple, extended) = (frontend.clone(), frontend.clone());
    let copy = frontend.copy_handler();
    let cancel = frontend.cancel_handler();
    let errors = frontend.error_handler();
    let mut pending_slot = Some(pending_slot);
    loop {
        let logging_in = matches!(
            socket.state(),
            PgWireConnectionState::AwaitingStartup | PgWireConnectionState::AuthenticationInProgress
        );
        let message = if logging_in {
            tokio::select! {
                m = socket.next() => m,
                _ = tokio::time::sleep_until(deadline) => {
                    let seconds = limits.startup_timeout.as_secs();
                    farewell(&mut socket, "08006", format!(
                        "canceling authentication due to timeout: log in within {seconds} s (pgwire.startup_timeout_secs)"
                    )).await;
                    return Ok(());
                }
                _ = &mut evicted => {
                    farewell(&mut socket, "53300", "too many connections are logging in; this one was closed to \
                        make room, try again".into()).await;
                    return Ok(());
                }
            }
        } else {
            // Logged in: the session holds a session slot now, not a place among those logging in.
            pending_slot.take();
            match limits.idle_session_timeout {
                None => socket.next().await,
                Some(idle) => match tokio::time::timeout(idle, socket.next()).await {
                    Ok(m) => m,
                    Err(_) => {
                        frontend.metrics.observe_connection_refused("pgwire", "idle_session_timeout");
                        farewell(
                            &mut socket,
                            "57P05",
                            format!(
                                "terminating connection due to idle-session timeout: no statement for {} s \
                             (pgwire.idle_session_timeout_secs)",
                                idle.as_secs()
                            ),
                        )
                        .await;
                        return Ok(());
                    }
                },
            }
        };
        let message = match message {
            Some(Ok(m)) => m,
            Some(Err(PgWireError::IoError(e))) if MessageSizeCap::<()>::refusal(&e).is_some() => {
                frontend.metrics.observe_connection_refused("pgwire", "message_too_large");
                farewell(&mut socket, "54000", e.to_string()).await;
                return Ok(());
            }
            Some(Err(e)) => return Err(std::io::Error::other(e)),
            None => return Ok(()),
        };
        // The client is leaving: some clients wait for the server to close after Terminate.
        if matches!(message, PgWireFrontendMessage::Terminate(_)) {
            return Ok(());
        }
        let is_extended_query = match socket.state() {
            PgWireConnectionState::CopyInProgress(extended) => extended,
            _ => message.is_extended_query(),
        };
        let result = process_message(
            message,
            &mut socket,
            login.clone(),
            simple.clone(),
            extended.clone(),
            copy.clone(),
            cancel.clone(),
        )
        .await;
        if let Err(mut e) = result {
            errors.on_error(&socket, &mut e);
            process_error(&mut socket, e, is_extended_query).await?;
        }
    }
}

/// Tells the client why its connection closes (FATAL with `code`), within [`FAREWELL_TIMEOUT`].
async fn farewell<S>(socket: &mut S, code: &str, message: String)
where
    S: futures::Sink<PgWireBackendMessage> + Unpin,
{
    let info = ErrorInfo::new("FATAL".into(), code.into(), message);
    let _ = tokio::time::timeout(FAREWELL_TIMEOUT, socket.send(PgWireBackendMessage::ErrorResponse(info.into()))).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_locks_an_address_after_the_failures_for_the_rest_of_the_window() {
        let t = LoginThrottle::new(3, Duration::from_secs(60));
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let t0 = Instant::now();
        for i in 0..2 {
            t.failed(a, t0 + Duration::from_secs(i));
        }
        assert_eq!(t.locked_for(a, t0 + Duration::from_secs(2)), None, "two failures do not lock");
        t.failed(a, t0 + Duration::from_secs(2));
        assert_eq!(t.locked_for(a, t0 + Duration::from_secs(10)), Some(Duration::from_secs(50)));
        assert_eq!(t.locked_for(b, t0 + Duration::from_secs(10)), None, "other addresses are not affected");
        assert_eq!(t.locked_for(a, t0 + Duration::from_secs(60)), None, "the lock ends with the window");
        t.failed(a, t0 + Duration::from_secs(61));
        assert_eq!(t.locked_for(a, t0 + Duration::from_secs(62)), None, "a new window starts from zero");
        t.failed(a, t0 + Duration::from_secs(62));
        t.succeeded(a);
        t.failed(a, t0 + Duration::from_secs(63));
        assert_eq!(t.locked_for(a, t0 + Duration::from_secs(63)), None, "a success clears the count");
    }

    #[test]
    fn sessions_are_bounded_in_total_and_per_client() {
        let s = Sessions::new(3, 2);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let a1 = s.open(a).unwrap();
        let _a2 = s.open(a).unwrap();
        assert_eq!(s.open(a).err(), Some(SessionsFull::Client(2)));
        let _b1 = s.open(b).unwrap();
        assert_eq!(s.open(b).err(), Some(SessionsFull::Total(3)));
        drop(a1);
        s.open(b).expect("a closed session frees its slot");
    }

    #[test]
    fn a_full_pending_set_closes_the_oldest_of_the_busiest_address() {
        let p = Pending::new(3);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let (_b1, mut rb1, _) = p.enter(b);
        let (_a1, mut ra1, _) = p.enter(a);
        let (_a2, mut ra2, _) = p.enter(a);
        let (_new, _, made_room) = p.enter(b);
        assert!(made_room);
        assert!(ra1.try_recv().is_ok(), "the oldest of the address with the most is closed");
        assert!(ra2.try_recv().is_err() && rb1.try_recv().is_err(), "the others stay");
        drop(_a2);
        let (_x, _, made_room) = p.enter(a);
        assert!(!made_room, "a connection that logged in (or left) frees its place");
    }
}
