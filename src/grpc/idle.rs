//! Idle-connection reaping: a connection with no call open for the idle
//! timeout is closed, so that clients that connect and then make no calls
//! do not hold connection slots for ever. (Dead peers are found sooner by
//! the HTTP/2 keepalive pings, silent sockets by the handshake timeout; a
//! live client that answers pings but makes no calls is what this is for.)
//!
//! Each accepted connection has an [`Activity`]: the calls open on it and
//! when the last one ended. The per-call layer (`rpc_metrics`) finds it by
//! the peer address the transport puts in every request (one lookup per
//! call, not per message) and holds it busy until the call's response body
//! is gone; the connection's reads end it (EOF) once it has been idle long
//! enough.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

// tokio's clock, which its timers use.
use tokio::time::Instant;

use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

/// Default idle timeout.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(600);

/// One connection's calls.
#[derive(Debug)]
pub struct Activity {
    open_calls: AtomicUsize,
    /// Milliseconds since the registry's epoch when a call last ended (or
    /// the connection was accepted).
    last_active_ms: AtomicU64,
    epoch: Instant,
}

impl Activity {
    fn millis(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    /// When the connection may be closed if nothing happens before; None
    /// while a call is open.
    pub fn idle_deadline(&self, timeout: Duration) -> Option<Instant> {
        if self.open_calls.load(Ordering::Acquire) > 0 {
            return None;
        }
        let last = Duration::from_millis(self.last_active_ms.load(Ordering::Acquire));
        Some(self.epoch + last + timeout)
    }

    fn begin(self: &Arc<Self>) -> CallGuard {
        self.open_calls.fetch_add(1, Ordering::AcqRel);
        CallGuard(Arc::clone(self))
    }
}

/// Holds a connection busy while a call is open.
#[derive(Debug)]
pub struct CallGuard(Arc<Activity>);

impl Drop for CallGuard {
    fn drop(&mut self) {
        let now = self.0.millis(Instant::now());
        self.0.last_active_ms.fetch_max(now, Ordering::AcqRel);
        self.0.open_calls.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The open connections by peer address.
#[derive(Debug)]
pub struct Connections {
    by_peer: Mutex<HashMap<SocketAddr, Weak<Activity>>>,
    epoch: Instant,
}

impl Default for Connections {
    fn default() -> Self {
        Self {
            by_peer: Mutex::new(HashMap::new()),
            epoch: Instant::now(),
        }
    }
}

impl Connections {
    /// A new connection from `peer`, idle from now.
    pub fn accepted(self: &Arc<Self>, peer: SocketAddr) -> Registered {
        let activity = Arc::new(Activity {
            open_calls: AtomicUsize::new(0),
            last_active_ms: AtomicU64::new(0),
            epoch: self.epoch,
        });
        activity
            .last_active_ms
            .store(activity.millis(Instant::now()), Ordering::Release);
        self.lock().insert(peer, Arc::downgrade(&activity));
        Registered {
            activity,
            peer,
            connections: Arc::downgrade(self),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, Weak<Activity>>> {
        self.by_peer.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn find(&self, peer: SocketAddr) -> Option<Arc<Activity>> {
        self.lock().get(&peer).and_then(Weak::upgrade)
    }
}

/// A connection's entry in [`Connections`], removed when it closes.
#[derive(Debug)]
pub struct Registered {
    pub activity: Arc<Activity>,
    peer: SocketAddr,
    connections: Weak<Connections>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        if let Some(connections) = self.connections.upgrade() {
            let mut map = connections.lock();
            // A new connection from the same port may have replaced it.
            if map
                .get(&self.peer)
                .is_some_and(|w| std::ptr::eq(w.as_ptr(), Arc::as_ptr(&self.activity)))
            {
                map.remove(&self.peer);
            }
        }
    }
}

/// The peer address the transport puts in every request.
fn peer<B>(request: &http::Request<B>) -> Option<SocketAddr> {
    let extensions = request.extensions();
    extensions
        .get::<TlsConnectInfo<TcpConnectInfo>>()
        .and_then(|t| t.get_ref().remote_addr())
        .or_else(|| extensions.get::<TcpConnectInfo>()?.remote_addr())
}

impl Connections {
    /// Marks the connection of `request` busy until the guard is dropped
    /// (with the call's response body: see `rpc_metrics`).
    pub fn busy<B>(&self, request: &http::Request<B>) -> Option<CallGuard> {
        peer(request).and_then(|p| self.find(p)).map(|a| a.begin())
    }
}

/// The reading side of a connection's idle check: polled from the
/// connection's `poll_read`, it says when to end the connection.
#[derive(Debug)]
pub struct IdleCheck {
    registered: Registered,
    timeout: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl IdleCheck {
    pub fn new(registered: Registered, timeout: Duration) -> Self {
        let first = registered
            .activity
            .idle_deadline(timeout)
            .unwrap_or_else(|| Instant::now() + timeout);
        Self {
            registered,
            timeout,
            timer: Box::pin(tokio::time::sleep_until(first)),
        }
    }

    /// Ready(()) once the connection has had no call open for the timeout;
    /// otherwise pending, with a wake-up at the next possible deadline.
    pub fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            if self.timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let now = Instant::now();
            match self.registered.activity.idle_deadline(self.timeout) {
                Some(deadline) if deadline <= now => return Poll::Ready(()),
                Some(deadline) => self.timer.as_mut().reset(deadline),
                // Busy: look again a timeout from now.
                None => self.timer.as_mut().reset(now + self.timeout),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_connection_is_idle_only_with_no_call_open_for_the_timeout() {
        let connections = Arc::new(Connections::default());
        let peer: SocketAddr = "127.0.0.1:4000".parse().expect("addr");
        let registered = connections.accepted(peer);
        let activity = Arc::clone(&registered.activity);
        let timeout = Duration::from_millis(200);
        let mut check = IdleCheck::new(registered, timeout);
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(check.poll_idle(&mut cx).is_pending());
        // A call opens: never idle while it lasts.
        let call = connections.find(peer).expect("registered").begin();
        tokio::time::sleep(timeout * 2).await;
        assert!(check.poll_idle(&mut cx).is_pending());
        drop(call);
        tokio::time::sleep(timeout / 2).await;
        assert!(check.poll_idle(&mut cx).is_pending());
        tokio::time::sleep(timeout).await;
        assert!(check.poll_idle(&mut cx).is_ready());
        assert_eq!(activity.open_calls.load(Ordering::Acquire), 0);
        // Closed: the registry forgets it.
        drop(check);
        assert!(connections.find(peer).is_none());
    }
}
