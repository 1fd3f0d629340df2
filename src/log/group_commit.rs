//! Group commit: [`LogWriter`], a thread that owns a [`Log`] and turns every append that arrives
//! while a write + fdatasync is in flight into the *next* single aligned write and single
//! fdatasync.
//!
//! The queue in front of it is bounded by batches and by bytes ([`LogWriterOptions`]);
//! [`LogWriter::try_append`] refuses with [`AppendError::Backpressure`] when it is full and
//! [`LogWriter::append`] waits for room. Durability comes back two ways: a [`Ticket`] that any
//! thread can wait on ([`LogWriter::wait_durable`]), and a coalesced watermark for a poll loop
//! ([`LogWriter::poll_persisted`]), which is how a glommio executor can drive it later without
//! blocking: poll after each tick, or wake on an eventfd (not built yet).
//!
//! Truncation, purging and reads go through the same queue, so they are ordered with the
//! appends around them: a read sees every append queued before it.
//!
//! # Correctness
//!
//! An append is durable only when its ticket is reported durable or when a [`Persisted`] at or
//! past its last index (with the same term) is returned. A ticket is never reported durable
//! unless its write and the fdatasync after it both completed. If the writer fails, every waiter
//! gets an error and nothing more is accepted: the node must stop.

use std::collections::VecDeque;
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use crate::core::{Entry, Index, Term};
use crate::log::error::StorageError;
use crate::log::record::{encode_records, EncodeError, EncodedRecord, RECORD_BYTES_MAX};
use crate::log::segmented::Log;

/// Bounds of the writer's queue and of one group write.
#[derive(Clone, Debug)]
pub struct LogWriterOptions {
    /// Most encoded bytes waiting in the queue (a single append larger than this is still
    /// accepted into an empty queue).
    pub queue_bytes_max: usize,
    /// Most appends waiting in the queue.
    pub queue_batches_max: usize,
    /// Most bytes gathered into one write (one append larger than this is written alone).
    pub group_bytes_max: usize,
}

impl Default for LogWriterOptions {
    fn default() -> LogWriterOptions {
        LogWriterOptions { queue_bytes_max: 4 * RECORD_BYTES_MAX, queue_batches_max: 4096, group_bytes_max: 4 << 20 }
    }
}

/// The log is durable up to this entry (index, term).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Persisted {
    /// Index and term of the last durable entry appended through the writer.
    pub upto: (Index, Term),
}

/// Identifies one queued operation; operations complete in ticket order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ticket(u64);

/// Why an append was not queued.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// The queue is full; retry after some completions, or use [`LogWriter::append`].
    #[error("log writer queue full ({queued_batches} batches, {queued_bytes} bytes); retry later")]
    Backpressure {
        /// Appends waiting.
        queued_batches: usize,
        /// Bytes waiting.
        queued_bytes: usize,
    },
    /// The entries do not continue the log (as queued so far).
    #[error("append starts at index {found}, the queued log continues at {expected}")]
    NotContiguous {
        /// Expected first index.
        expected: Index,
        /// Given first index.
        found: Index,
    },
    /// The entries cannot be encoded.
    #[error("cannot encode entries: {0}")]
    Encode(#[from] EncodeError),
    /// The writer has failed or is shutting down.
    #[error("log writer stopped: {0}")]
    Stopped(String),
}

type Reply<T> = SyncSender<Result<T, StorageError>>;

enum Op {
    Append { records: Vec<EncodedRecord>, bytes: usize, upto: (Index, Term) },
    Truncate { from: Index, reply: Reply<()> },
    Purge { upto: Index, reply: Reply<()> },
    Read { from: Index, to: Index, max_bytes: usize, reply: Reply<Vec<Entry>> },
}

struct Request {
    seq: u64,
    op: Op,
}

struct State {
    queue: VecDeque<Request>,
    queued_bytes: usize,
    queued_batches: usize,
    /// Ticket of the next request (tickets start at 1).
    next_seq: u64,
    /// Every request with a ticket at or below this has completed.
    done_seq: u64,
    /// Index the next append must start at, counting queued appends.
    next_index: Index,
    persisted: Option<Persisted>,
    persisted_version: u64,
    polled_version: u64,
    failed: Option<String>,
    stopping: bool,
}

struct Shared {
    state: Mutex<State>,
    work: Condvar,
    space: Condvar,
    done: Condvar,
    options: LogWriterOptions,
    record_bytes_max: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock can only come from the writer, whose guard records the
        // failure; the state itself stays consistent, so keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The group-commit writer. Share it between threads by reference or `Arc`.
pub struct LogWriter {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<Log>>,
}

impl LogWriter {
    /// Starts the writer thread, which owns `log` until [`LogWriter::shutdown`].
    pub fn start(log: Log, options: LogWriterOptions) -> Result<LogWriter, StorageError> {
        if options.queue_batches_max == 0 || options.queue_bytes_max == 0 || options.group_bytes_max == 0 {
            return Err(StorageError::Options("log writer bounds must be positive".into()));
        }
        let state = State {
            queue: VecDeque::new(),
            queued_bytes: 0,
            queued_batches: 0,
            next_seq: 1,
            done_seq: 0,
            next_index: log.last_index() + 1,
            persisted: log.last_term().map(|term| Persisted { upto: (log.last_index(), term) }),
            persisted_version: 0,
            polled_version: 0,
            failed: None,
            stopping: false,
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            work: Condvar::new(),
            space: Condvar::new(),
            done: Condvar::new(),
            record_bytes_max: log.options().record_bytes_max(),
            options,
        });
        let for_thread = shared.clone();
        let thread = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || run(for_thread, log))
            .map_err(|e| StorageError::io("spawning the log writer thread", "", e))?;
        Ok(LogWriter { shared, thread: Some(thread) })
    }

    /// Queues `entries` (which must continue the queued log) if there is room, else returns
    /// [`AppendError::Backpressure`]. Encoding happens on the caller's thread.
    pub fn try_append(&self, entries: &[Entry]) -> Result<Ticket, AppendError> {
        self.enqueue(entries, false)
    }

    /// Like [`LogWriter::try_append`] but waits for room in the queue.
    pub fn append(&self, entries: &[Entry]) -> Result<Ticket, AppendError> {
        self.enqueue(entries, true)
    }

    fn enqueue(&self, entries: &[Entry], block: bool) -> Result<Ticket, AppendError> {
        let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
            return Err(AppendError::Encode(EncodeError::Empty));
        };
        let records = encode_records(entries, self.shared.record_bytes_max)?;
        let bytes = records.iter().map(|r| r.bytes().len()).sum();
        let options = &self.shared.options;
        let mut st = self.shared.lock();
        loop {
            check_running(&st)?;
            if first.index != st.next_index {
                return Err(AppendError::NotContiguous { expected: st.next_index, found: first.index });
            }
            let room = st.queued_batches < options.queue_batches_max
                && (st.queued_bytes + bytes <= options.queue_bytes_max || st.queued_batches == 0);
            if room {
                break;
            }
            if !block {
                return Err(AppendError::Backpressure { queued_batches: st.queued_batches, queued_bytes: st.queued_bytes });
            }
            st = self.shared.space.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        st.next_index = last.index + 1;
        st.queued_bytes += bytes;
        st.queued_batches += 1;
        Ok(self.push(st, Op::Append { records, bytes, upto: (last.index, last.term) }))
    }

    fn push(&self, mut st: MutexGuard<'_, State>, op: Op) -> Ticket {
        let seq = st.next_seq;
        st.next_seq += 1;
        st.queue.push_back(Request { seq, op });
        drop(st);
        self.shared.work.notify_one();
        Ticket(seq)
    }

    /// Waits until the operation of `ticket` (and every one before it) completed.
    pub fn wait_durable(&self, ticket: Ticket) -> Result<(), StorageError> {
        let mut st = self.shared.lock();
        loop {
            if st.done_seq >= ticket.0 {
                return Ok(());
            }
            if let Some(why) = &st.failed {
                return Err(StorageError::WriterFailed(why.clone()));
            }
            st = self.shared.done.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// The newest durability watermark if it changed since the last call (one consumer).
    pub fn poll_persisted(&self) -> Option<Persisted> {
        let mut st = self.shared.lock();
        if st.persisted_version == st.polled_version {
            return None;
        }
        st.polled_version = st.persisted_version;
        st.persisted
    }

    /// The newest durability watermark.
    pub fn persisted(&self) -> Option<Persisted> {
        self.shared.lock().persisted
    }

    /// Index the next append must start at (counting queued appends).
    pub fn next_index(&self) -> Index {
        self.shared.lock().next_index
    }

    fn control<T>(&self, op: impl FnOnce(Reply<T>) -> Op, next_index: impl FnOnce(Index) -> Index) -> Result<T, StorageError> {
        let (reply, answer) = sync_channel(1);
        let mut st = self.shared.lock();
        check_running(&st).map_err(|e| StorageError::WriterFailed(e.to_string()))?;
        st.next_index = next_index(st.next_index);
        // Control requests are not counted against the bounds: each one blocks its caller until
        // answered, so there are at most as many as there are calling threads.
        self.push(st, op(reply));
        answer.recv().unwrap_or_else(|_| Err(StorageError::WriterFailed("log writer stopped before answering".into())))
    }

    /// Deletes entries `from..`, after every append queued before it; durable on return.
    pub fn truncate_suffix(&self, from: Index) -> Result<(), StorageError> {
        self.control(|reply| Op::Truncate { from, reply }, |next| next.min(from.max(1)))
    }

    /// Purges whole segments at or below `upto` (see [`Log::purge_prefix`]).
    pub fn purge_prefix(&self, upto: Index) -> Result<(), StorageError> {
        self.control(|reply| Op::Purge { upto, reply }, |next| if upto >= next { upto + 1 } else { next })
    }

    /// Reads `[from, to)` (see [`Log::read`]), after every append queued before it.
    pub fn read(&self, from: Index, to: Index, max_bytes: usize) -> Result<Vec<Entry>, StorageError> {
        self.control(|reply| Op::Read { from, to, max_bytes, reply }, |next| next)
    }

    /// Completes everything queued, stops the thread and hands the log back.
    pub fn shutdown(mut self) -> Result<Log, StorageError> {
        self.stop().ok_or_else(|| StorageError::WriterFailed("log writer thread panicked".into()))
    }

    fn stop(&mut self) -> Option<Log> {
        self.shared.lock().stopping = true;
        self.shared.work.notify_all();
        self.shared.space.notify_all();
        self.thread.take().and_then(|t| t.join().ok())
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

fn check_running(st: &State) -> Result<(), AppendError> {
    if let Some(why) = &st.failed {
        return Err(AppendError::Stopped(why.clone()));
    }
    if st.stopping {
        return Err(AppendError::Stopped("shutting down".into()));
    }
    Ok(())
}

/// Marks the writer failed if its thread unwinds, so that no waiter waits forever.
struct FailGuard(Arc<Shared>);

impl Drop for FailGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut st = self.0.lock();
            st.failed = Some("log writer thread panicked (see its message on stderr)".into());
            st.queue.clear(); // drops reply senders: control callers wake with an error
            drop(st);
            self.0.done.notify_all();
            self.0.space.notify_all();
        }
    }
}

fn run(shared: Arc<Shared>, mut log: Log) -> Log {
    let _guard = FailGuard(shared.clone());
    while let Some(group) = next_group(&shared) {
        execute(&shared, &mut log, group);
    }
    log
}

/// Takes the next group: consecutive appends up to `group_bytes_max`, or one other request.
/// Returns `None` once stopping and drained.
fn next_group(shared: &Shared) -> Option<Vec<Request>> {
    let mut st = shared.lock();
    while st.queue.is_empty() && !st.stopping {
        st = shared.work.wait(st).unwrap_or_else(|e| e.into_inner());
    }
    let mut group = Vec::new();
    let mut group_bytes = 0;
    while let Some(front) = st.queue.front() {
        let bytes = match &front.op {
            Op::Append { bytes, .. } => *bytes,
            _ if group.is_empty() => 0,
            _ => break,
        };
        if !group.is_empty() && group_bytes + bytes > shared.options.group_bytes_max {
            break;
        }
        let Some(request) = st.queue.pop_front() else { break };
        let is_append = matches!(request.op, Op::Append { .. });
        if is_append {
            st.queued_bytes -= bytes;
            st.queued_batches -= 1;
        }
        group_bytes += bytes;
        group.push(request);
        if !is_append {
            break;
        }
    }
    drop(st);
    shared.space.notify_all();
    (!group.is_empty()).then_some(group)
}

fn execute(shared: &Shared, log: &mut Log, group: Vec<Request>) {
    let last_seq = group.last().map_or(0, |r| r.seq);
    let failed = shared.lock().failed.clone();
    let mut appends: Vec<EncodedRecord> = Vec::new();
    let mut upto = None;
    let mut error = None;
    for request in group {
        match request.op {
            Op::Append { records, upto: u, .. } => {
                appends.extend(records);
                upto = Some(u);
            }
            // A failed truncate or purge leaves the queued next index unknown: stop the writer.
            Op::Truncate { from, reply } => error = error.or(answer(reply, &failed, || log.truncate_suffix(from))),
            Op::Purge { upto, reply } => error = error.or(answer(reply, &failed, || log.purge_prefix(upto))),
            Op::Read { from, to, max_bytes, reply } => {
                answer(reply, &failed, || log.read(from, to, max_bytes));
            }
        }
    }
    if failed.is_none() && !appends.is_empty() {
        if let Err(e) = log.append_records(&appends) {
            error = Some(e.to_string());
        }
    }
    let mut st = shared.lock();
    match error {
        Some(why) => st.failed = Some(why),
        None if failed.is_none() => {
            st.done_seq = last_seq;
            if let Some(upto) = upto {
                st.persisted = Some(Persisted { upto });
                st.persisted_version += 1;
            }
        }
        None => {}
    }
    drop(st);
    shared.done.notify_all();
}

/// Runs `op` unless the writer failed, sends the result, and returns its error message if any.
fn answer<T>(reply: Reply<T>, failed: &Option<String>, op: impl FnOnce() -> Result<T, StorageError>) -> Option<String> {
    let result = match failed {
        Some(why) => Err(StorageError::WriterFailed(why.clone())),
        None => op(),
    };
    let error = match (&result, failed) {
        (Err(e), None) => Some(e.to_string()),
        _ => None,
    };
    let _ = reply.send(result);
    error
}
