//! Batch rescoring: a file of declarations in, one assessment per
//! declaration out, in input order, on every core, in bounded memory.
//!
//! A pipeline of threads joined by bounded channels:
//! 1. a reader thread cuts the input into raw records (cheap, sequential);
//! 2. this thread takes a batch at a time and, on the rayon pool, decodes and
//!    validates it in parallel (deriving the party keys and declared value
//!    the split window needs while each declaration is in cache);
//! 3. a window thread observes the batch in input order (its signals depend
//!    on order) while this thread decodes the next one;
//! 4. back on this thread: scored in parallel; channels routed in input order
//!    (the allocator's cut-offs depend on order); serialised in parallel;
//! 5. a writer thread writes the serialised parts in order.
//!
//! The order-dependent steps run in input order, so a file rescored here gets
//! what a fresh service would answer to the same declarations streamed in the
//! same order. At most `QUEUE + 2` batches wait on the reader's side, two in
//! the window's hands and `QUEUE` on the writer's, whatever the file size.

pub mod output;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rayon::prelude::*;

use crate::domain::{Declaration, ReferenceData};
use crate::features::record::{LiveRead, RecordKeys};
use crate::features::window::SplitSignal;
use crate::io::{Framer, Input, IoError, RawRecord, RecordError, thread_cpu_time};
use crate::scoring::{Assessment, Router, Scorer, WindowInput, reasons};

pub use output::{ASSESSMENT_COLUMNS, Encoder, OutputWriter, Part};

/// Batches waiting between stages.
const QUEUE: usize = 2;

/// How a run is cut up, and where its scoring starts.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Records per pipeline step.
    pub batch_records: usize,
    /// Records per parallel task within a step.
    pub chunk_records: usize,
    /// Declarations lodged before this instant warm up the cross-declaration
    /// windows only: observed in input order, not scored, routed or written.
    /// A slice of a long history rescored with the days before it as
    /// warm-up gets the scores one pass over the whole history would give
    /// (docs/scale.md); `None` scores everything.
    pub score_from: Option<DateTime<Utc>>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            batch_records: 8192,
            chunk_records: 256,
            score_from: None,
        }
    }
}

/// Counts of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Summary {
    /// Records read, good and bad.
    pub records: u64,
    pub scored: u64,
    pub rejected: u64,
    /// Good declarations lodged before [`Options::score_from`]: observed only.
    pub warm_up: u64,
    /// Assessments by channel, in [`crate::domain::Channel::ROUTED`] order
    /// (green, yellow, red).
    pub channels: [u64; 3],
    pub elapsed: Duration,
    /// Input bytes read up to the end of the last batch finished (scored
    /// and handed to the writer): where a progress bar stands. Zero when
    /// the run is not given the reader's count.
    pub input_position: u64,
    /// Wall time of stage 2's steps, to see where a run spends it.
    pub stages: Stages,
    /// CPU time of stage 1, the reader thread: reading the file and cutting
    /// it into records (for Parquet and Arrow IPC, decompressing and
    /// decoding the column pages too, on the threads reading a Parquet
    /// file's row groups when there are several). What a run costs before a
    /// single declaration is decoded; `None` where the OS does not tell.
    pub reader_cpu: Option<Duration>,
    /// Of which the busiest thread's: the reader thread's own, or with
    /// several threads reading a Parquet file's row groups, each one's
    /// share of theirs if larger.
    pub busiest_reader_cpu: Option<Duration>,
    /// CPU time of the window thread, which observes every declaration in
    /// input order, and of the writer thread, which writes the output in
    /// order (for Parquet, encoding and compressing it too); `None` where
    /// the OS does not tell, or in a decode-only run.
    pub window_cpu: Option<Duration>,
    pub writer_cpu: Option<Duration>,
}

impl Summary {
    /// The stages that run on one thread whatever the cores, in CPU-µs a
    /// record: the reader (its busiest thread), the window thread, routing
    /// (its wall time: the pool waits) and the writer. `None` where a
    /// thread's CPU time is not known.
    pub fn one_thread_stages(&self) -> Option<OneThreadStages> {
        let per_record = |d: Duration| 1e6 * d.as_secs_f64() / self.records.max(1) as f64;
        Some(OneThreadStages {
            reader: per_record(self.busiest_reader_cpu?),
            window: per_record(self.window_cpu?),
            route: per_record(self.stages.route),
            writer: per_record(self.writer_cpu?),
        })
    }
}

/// [`Summary::one_thread_stages`]: CPU-µs a record of each stage that one
/// thread runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OneThreadStages {
    pub reader: f64,
    pub window: f64,
    pub route: f64,
    pub writer: f64,
}

impl OneThreadStages {
    /// Records a second that one process cannot pass however many cores it
    /// has: the slowest of these stages, each on a core of its own.
    pub fn ceiling_per_second(&self) -> f64 {
        let slowest = [self.reader, self.window, self.route, self.writer]
            .into_iter()
            .fold(0.0, f64::max);
        1e6 / slowest.max(f64::MIN_POSITIVE)
    }
}

/// Wall time spent in each step of stage 2, summed over batches.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Stages {
    /// Waiting for the reader.
    pub waiting_for_input: Duration,
    pub decode: Duration,
    /// Waiting for the split window's thread (which observes a batch while
    /// the next one is decoded).
    pub waiting_for_window: Duration,
    /// Channel routing (sequential, input order).
    pub route: Duration,
    pub score: Duration,
    pub encode: Duration,
    /// Waiting for the writer.
    pub waiting_for_output: Duration,
}

impl Summary {
    pub fn per_second(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// A failure that ends a run; bad records never do.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("reading: {0}")]
    Read(#[source] IoError),
    #[error("writing: {0}")]
    Write(#[source] IoError),
    #[error("reporting a rejected record: {0}")]
    Rejects(#[source] std::io::Error),
    #[error("the {0} thread stopped unexpectedly")]
    Thread(&'static str),
}

/// What the run does with each decoded declaration.
pub enum Work<'a> {
    /// Decode and validate only: the baseline a rescoring run is measured against.
    DecodeOnly,
    /// Score, route and write.
    Score(Box<Scoring<'a>>),
}

/// What scoring needs: a router (fresh for a rescoring run, so its windows
/// and capacity start empty as a fresh service's would).
pub struct Scoring<'a> {
    pub router: &'a Router,
    pub encoder: Encoder,
    pub output: OutputWriter,
}

/// Runs a file through the pipeline. `reject` hears every bad record, in
/// input order; `progress` hears the running counts after every batch.
/// `read_position` is the count of input bytes the framer has read (see
/// [`crate::io::open_framer`]), for [`Summary::input_position`].
pub fn run(
    framer: Framer<Input>,
    reference: &ReferenceData<'static>,
    work: Work<'_>,
    options: Options,
    read_position: Option<&AtomicU64>,
    reject: &mut dyn FnMut(&RecordError) -> std::io::Result<()>,
    progress: &mut dyn FnMut(&Summary),
) -> Result<Summary, BatchError> {
    let started = Instant::now();
    let batch_records = options.batch_records.max(1);
    std::thread::scope(|scope| {
        let (raw_tx, raw_rx) = mpsc::sync_channel::<RawBatch>(QUEUE);
        // The threads reading a Parquet file's row groups, if any, are
        // joined when the framer is dropped, at the end of reading.
        let helpers = framer.reader_threads_cpu();
        let reader = scope.spawn(move || {
            let read = read_batches(framer, batch_records, read_position, &raw_tx);
            let own = thread_cpu_time();
            (
                read,
                own.map(|own| (own + helpers.total(), own.max(helpers.per_thread()))),
            )
        });
        let mut summary = Summary::default();
        let result = match work {
            Work::DecodeOnly => {
                let mut clock = Instant::now();
                for (batch, position) in &raw_rx {
                    // The baseline decodes and validates, nothing more.
                    decode_step(
                        batch,
                        reference,
                        options,
                        |_, _| (),
                        &mut summary,
                        reject,
                        &mut clock,
                    )?;
                    summary.elapsed = started.elapsed();
                    summary.input_position = position;
                    progress(&summary);
                }
                Ok(())
            }
            Work::Score(scoring) => {
                let Scoring {
                    router,
                    encoder,
                    output,
                } = *scoring;
                let scorer = router.scorer();
                let (part_tx, part_rx) = mpsc::sync_channel::<Vec<Part>>(QUEUE);
                let writer =
                    scope.spawn(move || (write_parts(output, &part_rx), thread_cpu_time()));
                // The split window runs on its own thread, one batch behind
                // decoding: it is sequential by nature (a shard-parallel step
                // here measured no faster: the pool's other thread rarely
                // woke up in time to take part), and this way it overlaps
                // with decoding instead of stopping the pool.
                let (window_tx, window_rx) = mpsc::sync_channel::<Vec<Decoded>>(1);
                let (signals_tx, signals_rx) = mpsc::sync_channel::<Observed>(1);
                let window_scorer = Arc::clone(&scorer);
                let window = scope.spawn(move || {
                    observe_batches(router, &window_scorer, &window_rx, &signals_tx);
                    thread_cpu_time()
                });
                let mut stage = ScoreStage {
                    router,
                    scorer: &scorer,
                    encoder,
                    options,
                };
                let scored: Result<(), BatchError> = (|| {
                    let mut clock = Instant::now();
                    let mut observing = 0usize;
                    // Input positions of the batches decoded and not yet scored.
                    let mut positions = std::collections::VecDeque::with_capacity(2);
                    let mut score_next = |summary: &mut Summary, clock: &mut Instant| {
                        let observed = signals_rx.recv().map_err(|_| BatchError::Thread("window"));
                        lap(clock, &mut summary.stages.waiting_for_window);
                        let parts = stage.score(observed?, summary, clock)?;
                        // A closed writer reports its error below.
                        let sent = part_tx.send(parts).is_ok();
                        lap(clock, &mut summary.stages.waiting_for_output);
                        summary.elapsed = started.elapsed();
                        Ok::<bool, BatchError>(sent)
                    };
                    for (batch, position) in &raw_rx {
                        positions.push_back(position);
                        let decoded = decode_step(
                            batch,
                            reference,
                            options,
                            |line, d| {
                                let input = WindowInput::of(&d, reference.rates);
                                let record = scorer.record_keys(&d, &input.keys);
                                (line, Some(d), (input, record))
                            },
                            &mut summary,
                            reject,
                            &mut clock,
                        )?;
                        window_tx
                            .send(decoded)
                            .map_err(|_| BatchError::Thread("window"))?;
                        observing += 1;
                        if observing > 1 {
                            observing -= 1;
                            if !score_next(&mut summary, &mut clock)? {
                                return Ok(());
                            }
                            summary.input_position = positions.pop_front().unwrap_or_default();
                            progress(&summary);
                        }
                    }
                    drop(window_tx);
                    for _ in 0..observing {
                        if !score_next(&mut summary, &mut clock)? {
                            return Ok(());
                        }
                        summary.input_position = positions.pop_front().unwrap_or_default();
                        progress(&summary);
                    }
                    Ok(())
                })();
                drop(signals_rx);
                let observed = window.join().map_err(|_| BatchError::Thread("window"));
                drop(part_tx);
                let (written, writer_cpu) =
                    writer.join().map_err(|_| BatchError::Thread("writer"))?;
                summary.writer_cpu = writer_cpu;
                summary.window_cpu = observed.as_ref().ok().copied().flatten();
                scored.and(observed.map(|_| ())).and(written)
            }
        };
        // Unblock the reader if this stage stopped early, then collect it.
        drop(raw_rx);
        let (read, reader_cpu) = reader.join().map_err(|_| BatchError::Thread("reader"))?;
        summary.reader_cpu = reader_cpu.map(|(all, _)| all);
        summary.busiest_reader_cpu = reader_cpu.map(|(_, busiest)| busiest);
        result?;
        read?;
        summary.elapsed = started.elapsed();
        Ok(summary)
    })
}

/// A batch of records as cut, or the error that ended reading; with the
/// input bytes read when it was cut.
type RawBatch = (Result<Vec<RawRecord>, IoError>, u64);

/// Stage 1: cuts records and sends them a batch at a time.
fn read_batches(
    framer: Framer<Input>,
    batch_records: usize,
    read_position: Option<&AtomicU64>,
    tx: &mpsc::SyncSender<RawBatch>,
) -> Result<(), BatchError> {
    let position = || read_position.map_or(0, |p| p.load(Ordering::Relaxed));
    let mut batch = Vec::with_capacity(batch_records);
    for raw in framer {
        match raw {
            Ok(raw) => batch.push(raw),
            Err(e) => {
                // The consumer reports it; a closed channel means it has stopped.
                let _ = tx.send((Err(e), position()));
                return Ok(());
            }
        }
        if batch.len() == batch_records {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(batch_records));
            if tx.send((Ok(full), position())).is_err() {
                return Ok(());
            }
        }
    }
    if !batch.is_empty() {
        let _ = tx.send((Ok(batch), position()));
    }
    Ok(())
}

/// A decoded record as the scoring run keeps it: its first line, the
/// declaration, and what the run derives from it while it is hot in cache.
/// The declaration is `None` once scored: it is freed in the scoring task.
type Decoded = Result<(u64, Option<Declaration>, Keyed), RecordError>;

/// What the windows and the live record need of a declaration, derived on
/// the decoding pool where it is hot in cache.
type Keyed = (WindowInput, RecordKeys);

/// One batch of stage 2's first step: decoded and validated in parallel,
/// each good declaration handed to `keep` with its first line, counted, its
/// bad records reported, the time spent waiting for it and decoding it
/// recorded. What `keep` does not return is dropped in the task that
/// decoded it, on the thread that allocated it (a decode-only run keeps
/// nothing). Freed with its batch on this thread instead, each allocation
/// of a declaration was freed across threads, and a decode-only run took
/// 1.12–1.27× the CPU (README, Speed).
fn decode_step<T: Send>(
    batch: Result<Vec<RawRecord>, IoError>,
    reference: &ReferenceData<'static>,
    options: Options,
    keep: impl Fn(u64, Declaration) -> T + Sync + Send,
    summary: &mut Summary,
    reject: &mut dyn FnMut(&RecordError) -> std::io::Result<()>,
    clock: &mut Instant,
) -> Result<Vec<Result<T, RecordError>>, BatchError> {
    lap(clock, &mut summary.stages.waiting_for_input);
    let decoded: Vec<Result<T, RecordError>> = batch
        .map_err(BatchError::Read)?
        .into_par_iter()
        .with_min_len(options.chunk_records)
        .map(|raw| {
            let (line, example) = raw.decode(reference)?;
            Ok(keep(line, example.declaration))
        })
        .collect();
    tally(&decoded, summary, reject)?;
    lap(clock, &mut summary.stages.decode);
    Ok(decoded)
}

/// Counts a decoded batch and reports its bad records in order.
fn tally<T>(
    decoded: &[Result<T, RecordError>],
    summary: &mut Summary,
    reject: &mut dyn FnMut(&RecordError) -> std::io::Result<()>,
) -> Result<(), BatchError> {
    summary.records += decoded.len() as u64;
    for record in decoded {
        if let Err(e) = record {
            summary.rejected += 1;
            reject(e).map_err(BatchError::Rejects)?;
        }
    }
    Ok(())
}

/// A decoded batch, what the windows say about each of its records, in
/// order (`None` for a bad record), and whether each was read from shared
/// windows configured for the run (`false`: its own, Redis not reached).
type Observed = (
    Vec<Decoded>,
    Vec<Option<(SplitSignal, bool)>>,
    Vec<Option<LiveRead>>,
);

/// Declarations per round trip to shared windows: what a service's stream
/// sends in one (a whole batch of 8,192 would outlast the round trip's
/// deadline: Redis spends tens of µs on each).
const SHARED_ROUND_TRIP: usize = 256;

/// The windows' thread: observes each batch's good declarations in input
/// order (their signals depend on order) and passes the batch on. With
/// shared windows, one round trip per [`SHARED_ROUND_TRIP`] declarations
/// reads and updates them.
fn observe_batches(
    router: &Router,
    scorer: &Scorer,
    rx: &mpsc::Receiver<Vec<Decoded>>,
    tx: &mpsc::SyncSender<Observed>,
) {
    for mut decoded in rx {
        let signals = if router.shared_state().is_some() {
            let inputs: Vec<WindowInput> = decoded
                .iter()
                .filter_map(|r| r.as_ref().ok().map(|(_, _, (input, _))| input.clone()))
                .collect();
            let mut read = inputs.chunks(SHARED_ROUND_TRIP).flat_map(|chunk| {
                let read = router.observe_batch(chunk);
                read.signals.into_iter().map(move |s| (s, read.shared))
            });
            decoded
                .iter()
                .map(|r| r.as_ref().ok().and_then(|_| read.next()))
                .collect()
        } else {
            decoded
                .iter()
                .map(|r| {
                    let (_, _, (input, _)) = r.as_ref().ok()?;
                    Some((router.observe(input), true))
                })
                .collect()
        };
        // In input order too, one lock for the batch; the keys move into
        // what is read (the scoring step needs them no more). Bad records
        // read as `None`, so the answer lines up with the batch as it is
        // built: each read is about a kilobyte, and a batch's worth copied
        // into a second vector was fresh memory (page faults) every batch.
        let live = scorer.observe_live(decoded.iter_mut().map(|r| {
            let (_, d, (input, keys)) = r.as_mut().ok()?;
            Some((d.as_ref()?, &input.keys, std::mem::take(keys)))
        }));
        if tx.send((decoded, signals, live)).is_err() {
            return;
        }
    }
}

/// Stage 2 when scoring: holds the order-dependent state.
struct ScoreStage<'a> {
    router: &'a Router,
    scorer: &'a Scorer,
    encoder: Encoder,
    options: Options,
}

impl ScoreStage<'_> {
    fn score(
        &mut self,
        (mut decoded, splits, live): Observed,
        summary: &mut Summary,
        clock: &mut Instant,
    ) -> Result<Vec<Part>, BatchError> {
        // Each declaration is scored once, in place (records are about 1.5 KB
        // and moving them into the tasks was a fifth of a rescore's copying);
        // its id moves into the assessment.
        let scorer = self.scorer;
        let score_from = self.options.score_from;
        let good = splits.iter().filter(|s| s.is_some()).count();
        let mut assessments: Vec<Assessment> = decoded
            .par_iter_mut()
            .zip(splits)
            .zip(live.par_iter())
            .with_min_len(self.options.chunk_records)
            .filter_map(|((record, split), live)| {
                let ((_, slot, (input, _)), (split, shared_reached)) =
                    (record.as_mut().ok()?, split?);
                let d = slot.as_mut()?;
                let assessed = score_from
                    .is_none_or(|from| d.lodged_at >= from)
                    .then(|| scorer.score_taking_id(d, &input.keys, split, live.as_ref()));
                // Freed here, on the pool, rather than with the batch on
                // this thread: each of its allocations freed from another
                // thread than its own cost more (see `decode_step`).
                *slot = None;
                let mut a = assessed?;
                if !shared_reached {
                    a.reasons.push(reasons::windows_local_only());
                }
                Some(a)
            })
            .collect();
        // Freed before routing and encoding, which need only the assessments.
        drop((decoded, live));
        summary.warm_up += (good - assessments.len()) as u64;
        lap(clock, &mut summary.stages.score);
        // The channel allocator's cut-offs depend on order too.
        self.router.route(&mut assessments, |decision| {
            if let Some(i) = decision.channel.routed_index() {
                summary.channels[i] += 1;
            }
        });
        summary.scored += assessments.len() as u64;
        lap(clock, &mut summary.stages.route);
        let encoder = &self.encoder;
        let parts = assessments
            .into_par_iter()
            .chunks(self.options.chunk_records.max(1))
            .map(|chunk| encoder.encode(chunk))
            .collect::<Result<Vec<Part>, IoError>>()
            .map_err(BatchError::Write);
        lap(clock, &mut summary.stages.encode);
        parts
    }
}

/// Stage 3: writes parts in the order they come.
fn write_parts(mut output: OutputWriter, rx: &mpsc::Receiver<Vec<Part>>) -> Result<(), BatchError> {
    for parts in rx {
        for part in parts {
            output.write(part).map_err(BatchError::Write)?;
        }
    }
    output.finish().map_err(BatchError::Write)
}

/// Adds the time since `clock` to `total` and restarts the clock.
fn lap(clock: &mut Instant, total: &mut Duration) {
    let now = Instant::now();
    *total += now - *clock;
    *clock = now;
}
