//! The service's memory budget for what clients make it hold: requests
//! being scored, answers not yet handed to the transport, the transport's
//! own per-stream send buffer, and result uploads until their commit.
//!
//! One semaphore counts KiB across every connection:
//! - each `ScoreDeclarations` stream reserves its transport buffers when it
//!   opens ([`MemoryBudget::open_stream`]); with the budget full a new
//!   stream is refused RESOURCE_EXHAUSTED, never queued;
//! - each batch of a stream takes its requests' bytes and an estimate of its
//!   answers' bytes before it is scored, and gives them back once the
//!   transport has taken the last answer. When the budget is spent the
//!   stream waits before reading more: its client is slowed through HTTP/2
//!   flow control (backpressure), nothing is dropped;
//! - unary calls take their request's bytes for the call; uploads take
//!   their results' bytes as they arrive and are refused (nothing stored)
//!   when the budget cannot grow.
//!
//! A client that never reads holds at most one batch of answers. When the
//! budget is more than half spent, the answers of a stream whose client has
//! taken none for `stalled_after` are dropped and the stream ends
//! RESOURCE_EXHAUSTED, so that slow readers cannot starve everyone else
//! (the client resends: scoring is idempotent by declaration id).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::pb;

/// What the transport may hold for one stream whose client does not read:
/// hyper's HTTP/2 send buffer (400 KiB of data a stream, in chunks of
/// tonic's encode buffer that can keep up to twice their size allocated)
/// and the rest of the stream's state. Measured, not derived: 200 streams
/// nobody reads grew the server by 1.4 MiB each, of which the budget had
/// counted 0.75 MiB with a reservation of 448 KiB (`cargo bench --bench
/// hostile`).
pub const STREAM_RESERVATION_KIB: u32 = 1024;
/// Bytes an answer is counted for before it exists: a scored declaration's
/// answer encodes to 1–2 KiB with its reasons and takes about twice that
/// in memory, strings and vectors included.
pub const ANSWER_ESTIMATE_BYTES: usize = 4096;
/// Default budget. The process also holds the model and the
/// cross-declaration windows (90–250 MiB), and allocations the budget
/// does not see (HTTP/2 receive windows, allocator slack: about half as
/// much again as the budget in `cargo bench --bench hostile`): 160 MiB keeps
/// the whole server under 512 MiB.
pub const DEFAULT_BUDGET_MIB: u32 = 160;
/// Default time a stream may leave its answers unread while memory is short.
pub const DEFAULT_STALLED_AFTER: Duration = Duration::from_secs(30);

/// Why the budget refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BudgetError {
    #[error(
        "the server's memory budget ({budget_mib} MiB) is spent: no new stream now; retry with backoff or on another replica"
    )]
    NoStream { budget_mib: u32 },
    #[error(
        "the server's memory budget ({budget_mib} MiB) cannot hold this upload ({held_kib} KiB so far): nothing was stored; retry later or split it"
    )]
    Upload { budget_mib: u32, held_kib: u32 },
}

/// The shared budget.
#[derive(Debug)]
pub struct MemoryBudget {
    permits: Arc<Semaphore>,
    total_kib: u32,
    stalled_after: Duration,
    /// Streams with answers, for [`MemoryBudget::reap_stalled`].
    streams: Mutex<Vec<Weak<Unsent>>>,
}

fn kib(bytes: usize) -> u32 {
    u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX)
}

impl MemoryBudget {
    pub fn new(total_bytes: usize, stalled_after: Duration) -> Self {
        // At least room for two streams and the quarter kept for calls.
        let total_kib = kib(total_bytes).max(STREAM_RESERVATION_KIB * 3);
        metrics::gauge!("parcel_risk_memory_budget_bytes").set(f64::from(total_kib) * 1024.0);
        Self {
            permits: Arc::new(Semaphore::new(total_kib as usize)),
            total_kib,
            stalled_after,
            streams: Mutex::new(Vec::new()),
        }
    }

    fn budget_mib(&self) -> u32 {
        self.total_kib / 1024
    }

    /// KiB in use now.
    pub fn used_kib(&self) -> u32 {
        self.total_kib
            .saturating_sub(u32::try_from(self.permits.available_permits()).unwrap_or(u32::MAX))
    }

    /// Reserves a new stream's transport buffers, or refuses it.
    /// A quarter of the budget stays for batches and unary calls, so that
    /// open streams alone never block every call.
    pub fn open_stream(self: &Arc<Self>) -> Result<OpenStream, BudgetError> {
        let kept = self.total_kib / 4;
        let room = u32::try_from(self.permits.available_permits()).unwrap_or(u32::MAX);
        let reserved = if room >= STREAM_RESERVATION_KIB + kept {
            Arc::clone(&self.permits)
                .try_acquire_many_owned(STREAM_RESERVATION_KIB)
                .ok()
        } else {
            None
        };
        match reserved {
            Some(reservation) => {
                let unsent = Arc::new(Unsent::default());
                let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
                streams.retain(|s| s.strong_count() > 0);
                streams.push(Arc::downgrade(&unsent));
                Ok(OpenStream {
                    _reservation: reservation,
                    unsent,
                })
            }
            None => {
                metrics::counter!("parcel_risk_memory_refusals_total", "what" => "stream")
                    .increment(1);
                Err(BudgetError::NoStream {
                    budget_mib: self.budget_mib(),
                })
            }
        }
    }

    /// Takes `bytes` from the budget, waiting while it is spent. A share is
    /// at most the quarter that stream reservations leave free, so that it
    /// can always be had once other batches and calls end (the semaphore
    /// serves waiters in order: a share that could never be granted would
    /// block every call behind it).
    pub async fn take(&self, bytes: usize) -> OwnedSemaphorePermit {
        let want = kib(bytes).clamp(1, self.total_kib / 4);
        if let Ok(permit) = Arc::clone(&self.permits).try_acquire_many_owned(want) {
            return permit;
        }
        metrics::counter!("parcel_risk_memory_waits_total").increment(1);
        Arc::clone(&self.permits)
            .acquire_many_owned(want)
            .await
            .expect("the budget's semaphore is never closed")
    }

    /// A share of nothing, for work that must go on without the budget
    /// (answering what a stream received when the server shuts down).
    pub fn nothing(&self) -> OwnedSemaphorePermit {
        Arc::clone(&self.permits)
            .try_acquire_many_owned(0)
            .expect("the budget's semaphore is never closed")
    }

    /// Grows an upload's share by `bytes`, or refuses it at once (an upload
    /// waiting on other uploads could wait for ever).
    pub fn grow_upload(
        &self,
        held: &mut Option<OwnedSemaphorePermit>,
        bytes: usize,
    ) -> Result<(), BudgetError> {
        let held_kib = held.as_ref().map_or(0, |p| p.num_permits() as u32);
        // Counted by whole KiB of the running total, not per result.
        let want = kib(bytes).saturating_sub(held_kib);
        if want == 0 {
            return Ok(());
        }
        match Arc::clone(&self.permits).try_acquire_many_owned(want) {
            Ok(more) => {
                match held {
                    Some(p) => p.merge(more),
                    None => *held = Some(more),
                }
                Ok(())
            }
            Err(_) => {
                metrics::counter!("parcel_risk_memory_refusals_total", "what" => "upload")
                    .increment(1);
                Err(BudgetError::Upload {
                    budget_mib: self.budget_mib(),
                    held_kib,
                })
            }
        }
    }

    /// When more than half of the budget is in use, drops the answers of
    /// streams whose client has taken none for `stalled_after`; returns how
    /// many streams were cut. Called about once a second.
    pub fn reap_stalled(&self, now: Instant) -> usize {
        metrics::gauge!("parcel_risk_memory_budget_used_bytes")
            .set(f64::from(self.used_kib()) * 1024.0);
        if self.used_kib() * 2 <= self.total_kib {
            return 0;
        }
        let streams: Vec<Arc<Unsent>> = {
            let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
            streams.retain(|s| s.strong_count() > 0);
            streams.iter().filter_map(Weak::upgrade).collect()
        };
        let mut cut = 0;
        for stream in streams {
            let dropped = stream.drop_if_stalled(now, self.stalled_after);
            if dropped > 0 {
                cut += 1;
                metrics::counter!("parcel_risk_streams_stalled_total").increment(1);
                tracing::warn!(
                    answers_dropped = dropped,
                    stalled_seconds = self.stalled_after.as_secs(),
                    "a stream's client read none of its answers while memory was short; stream ended"
                );
            }
        }
        if cut > 0 {
            metrics::gauge!("parcel_risk_memory_budget_used_bytes")
                .set(f64::from(self.used_kib()) * 1024.0);
        }
        cut
    }
}

/// A stream's place in the budget: its transport reservation and its
/// answers not yet taken.
#[derive(Debug)]
pub struct OpenStream {
    _reservation: OwnedSemaphorePermit,
    pub unsent: Arc<Unsent>,
}

/// The answers of one stream not yet handed to the transport, with the
/// budget they hold.
#[derive(Debug, Default)]
pub struct Unsent {
    inner: Mutex<UnsentInner>,
}

#[derive(Debug, Default)]
struct UnsentInner {
    answers: VecDeque<pb::ScoreDeclarationsResponse>,
    /// The batch's share, given back with its last answer.
    held: Option<OwnedSemaphorePermit>,
    /// When the client last took an answer (or the batch was queued).
    last_taken: Option<Instant>,
    /// Answers dropped because the client did not read them.
    dropped: usize,
}

/// What the stream hands to the transport next.
#[derive(Debug, PartialEq)]
pub enum Next {
    Answer(Box<pb::ScoreDeclarationsResponse>),
    /// This many answers were dropped: the client did not read them.
    Dropped(usize),
    Empty,
}

impl Unsent {
    fn lock(&self) -> std::sync::MutexGuard<'_, UnsentInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a scored batch with the budget it holds.
    pub fn queue(
        &self,
        answers: impl IntoIterator<Item = pb::ScoreDeclarationsResponse>,
        held: OwnedSemaphorePermit,
        now: Instant,
    ) {
        let mut inner = self.lock();
        inner.answers.extend(answers);
        match &mut inner.held {
            Some(p) => p.merge(held),
            None => inner.held = Some(held),
        }
        inner.last_taken = Some(now);
    }

    /// The next answer; the batch's budget goes back with its last one.
    pub fn next(&self, now: Instant) -> Next {
        let mut inner = self.lock();
        if inner.dropped > 0 {
            return Next::Dropped(std::mem::take(&mut inner.dropped));
        }
        match inner.answers.pop_front() {
            Some(answer) => {
                inner.last_taken = Some(now);
                if inner.answers.is_empty() {
                    inner.held = None;
                }
                Next::Answer(Box::new(answer))
            }
            None => {
                inner.held = None;
                Next::Empty
            }
        }
    }

    fn drop_if_stalled(&self, now: Instant, stalled_after: Duration) -> usize {
        let mut inner = self.lock();
        let stalled = inner
            .last_taken
            .is_some_and(|t| now.saturating_duration_since(t) >= stalled_after);
        if !stalled || inner.answers.is_empty() {
            return 0;
        }
        let n = inner.answers.len();
        inner.answers.clear();
        inner.answers.shrink_to_fit();
        inner.held = None;
        inner.dropped += n;
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(id: &str) -> pb::ScoreDeclarationsResponse {
        pb::ScoreDeclarationsResponse {
            declaration_id: id.into(),
            outcome: None,
        }
    }

    #[tokio::test]
    async fn a_batch_holds_its_share_until_its_last_answer_is_taken() {
        let budget = Arc::new(MemoryBudget::new(4 << 20, Duration::from_secs(30)));
        let stream = budget.open_stream().expect("room");
        assert_eq!(budget.used_kib(), STREAM_RESERVATION_KIB);
        let held = budget.take(100 * 1024).await;
        let now = Instant::now();
        stream.unsent.queue([answer("a"), answer("b")], held, now);
        assert_eq!(budget.used_kib(), STREAM_RESERVATION_KIB + 100);
        assert!(matches!(stream.unsent.next(now), Next::Answer(a) if a.declaration_id == "a"));
        assert_eq!(budget.used_kib(), STREAM_RESERVATION_KIB + 100);
        assert!(matches!(stream.unsent.next(now), Next::Answer(a) if a.declaration_id == "b"));
        assert_eq!(budget.used_kib(), STREAM_RESERVATION_KIB);
        assert_eq!(stream.unsent.next(now), Next::Empty);
        drop(stream);
        assert_eq!(budget.used_kib(), 0);
    }

    #[tokio::test]
    async fn a_full_budget_refuses_new_streams_and_makes_batches_wait() {
        // The smallest budget: two stream reservations and the quarter kept
        // for batches and calls.
        let budget = Arc::new(MemoryBudget::new(0, Duration::from_secs(30)));
        let first = budget.open_stream().expect("room for one");
        let second = budget.open_stream().expect("room for two");
        assert!(matches!(
            budget.open_stream(),
            Err(BudgetError::NoStream { .. })
        ));
        // The kept quarter still serves calls.
        let call = tokio::time::timeout(Duration::from_millis(50), budget.take(64 * 1024)).await;
        assert!(call.is_ok(), "calls get the quarter streams cannot take");
        drop(call);
        drop(second);
        // Shares of a quarter each until the budget is spent.
        let mut shares = Vec::new();
        while budget.used_kib() < budget.total_kib {
            let room = (budget.total_kib - budget.used_kib()).min(budget.total_kib / 4);
            shares.push(budget.take(room as usize * 1024).await);
        }
        let held = shares.pop().expect("a share");
        // Spent: the next batch waits until the first one's answers are taken.
        let waiting = tokio::time::timeout(Duration::from_millis(50), budget.take(1024)).await;
        assert!(
            waiting.is_err(),
            "a batch must wait while the budget is spent"
        );
        let now = Instant::now();
        first.unsent.queue([answer("x")], held, now);
        let _ = first.unsent.next(now);
        let got = tokio::time::timeout(Duration::from_secs(1), budget.take(1024)).await;
        assert!(got.is_ok(), "the share came back with the last answer");
    }

    #[tokio::test]
    async fn a_stream_nobody_reads_is_cut_only_when_memory_is_short() {
        let budget = Arc::new(MemoryBudget::new(8 << 20, Duration::from_secs(30)));
        let stream = budget.open_stream().expect("room");
        let start = Instant::now();
        let small = budget.take(64 * 1024).await;
        stream
            .unsent
            .queue([answer("a"), answer("b")], small, start);
        let later = start + Duration::from_secs(60);
        // Plenty of memory: a slow reader keeps its answers.
        assert_eq!(budget.reap_stalled(later), 0);
        // Short of memory: its answers are dropped, its share given back.
        let big = [budget.take(2 << 20).await, budget.take(2 << 20).await];
        assert_eq!(budget.reap_stalled(start + Duration::from_secs(10)), 0);
        assert_eq!(budget.reap_stalled(later), 1);
        assert_eq!(budget.used_kib(), STREAM_RESERVATION_KIB + 4 * 1024);
        assert_eq!(stream.unsent.next(later), Next::Dropped(2));
        assert_eq!(stream.unsent.next(later), Next::Empty);
        drop(big);
    }

    #[test]
    fn an_upload_grows_until_the_budget_refuses_it() {
        let budget = MemoryBudget::new(2 << 20, Duration::from_secs(30));
        let mut held = None;
        budget.grow_upload(&mut held, 1000).expect("room");
        budget.grow_upload(&mut held, 1 << 20).expect("room");
        assert_eq!(budget.used_kib(), 1024);
        let err = budget.grow_upload(&mut held, 4 << 20).expect_err("over");
        assert!(err.to_string().contains("nothing was stored"), "{err}");
        drop(held);
        assert_eq!(budget.used_kib(), 0);
    }
}
