//! Drives a real etcd cluster with the same [`Workload`] and the same [`OpGen`] streams as the
//! ringraft target, so both see identical keys and values byte for byte and are measured by the
//! same [`Recorder`]. Built only with the cargo feature `etcd` (the `etcd-client` crate needs
//! `protoc` to build; `scripts/install-etcd.sh` installs it).
//!
//! Semantics mirror `ringraft_target`:
//! * `threads` OS threads, each running a tokio current-thread runtime; connection `c` lives on
//!   thread `c % threads`.
//! * One etcd client per connection, each with its own gRPC (HTTP/2) channel to one member:
//!   connection `c` talks to endpoint `c % endpoints.len()`, as etcd's own `benchmark` tool
//!   spreads its clients. etcd followers forward proposals to the leader internally, so this is
//!   how etcd is meant to be used; ringraft's client instead finds the leader and sends there.
//! * Closed loop: `inflight_per_connection` tasks per client, each issuing the next request when
//!   its previous one returns; latency from the request's actual start.
//! * Open loop: a fixed schedule per connection, staggered across connections; latency is
//!   measured from each request's *intended* start (no coordinated omission).
//! * Warm-up is excluded by the recorder's window, not here.
//!
//! Writes are KV `Put`; reads are `Range` on one key, linearizable (etcd's default) unless the
//! workload asks for serializable reads. Requests retry under [`RetryPolicy::default`], exactly
//! as the ringraft target's do: the same attempts, per-attempt timeout, backoff
//! ([`crate::client::retry_backoff`]) and deadline, on the same classes of error (no leader,
//! timeout, overload, lost connection); anything else fails at once. A retried put of the same
//! key and value leaves the same state, so retrying hides no wrong answer; a request that still
//! fails is counted by a short, stable kind (see [`error_kind`]) and recorded at the deadline.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions, GetOptions, KvClient};
use tokio::sync::Semaphore;

use super::recorder::{OpKind, Recorder};
use super::retry::RetryPolicy;
use super::workload::{LoopMode, Op, OpGen, Workload};
use crate::client::retry_backoff;

/// The name of the load threads, before their number; the bench harness finds them by it to
/// report their CPU.
pub const THREAD_NAME_PREFIX: &str = "etcd-load-";

/// Requests an open-loop connection may have outstanding (same bound as the ringraft target);
/// beyond it, scheduled requests start late and are still measured from their intended time.
const OPEN_LOOP_INFLIGHT_MAX: usize = 4096;

/// How long opening a client's connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs `workload` against the etcd cluster whose client URLs are `endpoints`, with `threads`
/// load threads. Returns the merged recording of the measured window.
pub fn run(
    endpoints: Vec<SocketAddr>,
    workload: &Workload,
    load_threads: &crate::loadgen::LoadThreads,
) -> Result<Recorder, String> {
    workload.validate()?;
    if endpoints.is_empty() {
        return Err("no etcd endpoints given".into());
    }
    let threads = load_threads.count.max(1);
    let start = Instant::now();
    let window_start = start + workload.warmup;
    let mut handles = Vec::new();
    for thread in 0..threads {
        let (endpoints, workload) = (endpoints.clone(), workload.clone());
        let pinning = load_threads.clone();
        let handle = std::thread::Builder::new()
            .name(format!("{THREAD_NAME_PREFIX}{thread}"))
            .spawn(move || {
                pinning.pin_current(thread)?;
                run_thread(endpoints, workload, thread, threads, window_start)
            })
            .map_err(|e| format!("cannot start a load thread: {e}"))?;
        handles.push(handle);
    }
    let mut total = Recorder::new(window_start, workload.duration)
        .failing_at(RetryPolicy::default().request_timeout);
    let mut first_error = None;
    for handle in handles {
        match handle.join() {
            Ok(Ok(recorder)) => total.merge(&recorder),
            Ok(Err(e)) => first_error = first_error.or(Some(e)),
            Err(_) => first_error = first_error.or(Some("etcd load thread panicked".to_string())),
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(total),
    }
}

/// One load thread: its own current-thread runtime, its share of the connections.
fn run_thread(
    endpoints: Vec<SocketAddr>,
    workload: Workload,
    thread: usize,
    threads: usize,
    window_start: Instant,
) -> Result<Recorder, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a tokio runtime: {e}"))?;
    // A LocalSet lets the tasks of one thread share its recorder through Rc<RefCell<_>>, as the
    // glommio target does: nothing crosses threads until the final merge.
    let local = tokio::task::LocalSet::new();
    local.block_on(
        &runtime,
        drive_connections(endpoints, workload, thread, threads, window_start),
    )
}

async fn drive_connections(
    endpoints: Vec<SocketAddr>,
    workload: Workload,
    thread: usize,
    threads: usize,
    window_start: Instant,
) -> Result<Recorder, String> {
    let recorder = Rc::new(RefCell::new(
        Recorder::new(window_start, workload.duration)
            .failing_at(RetryPolicy::default().request_timeout),
    ));
    let end = window_start + workload.duration;
    let mut tasks = Vec::new();
    for connection in (thread..workload.connections()).step_by(threads) {
        let endpoint = endpoints[connection % endpoints.len()];
        let kv = connect(endpoint).await?;
        let gen = Rc::new(RefCell::new(OpGen::new(&workload, connection)));
        match workload.mode {
            LoopMode::Closed {
                inflight_per_connection,
                ..
            } => {
                for _ in 0..inflight_per_connection {
                    let (kv, gen, recorder, workload) =
                        (kv.clone(), gen.clone(), recorder.clone(), workload.clone());
                    tasks.push(tokio::task::spawn_local(async move {
                        let mut kv = kv;
                        while Instant::now() < end {
                            let op = gen.borrow_mut().next_op();
                            let started = Instant::now();
                            let (kind, result) = execute(&mut kv, op, &workload).await;
                            recorder
                                .borrow_mut()
                                .record(kind, started, Instant::now(), result);
                        }
                    }));
                }
            }
            LoopMode::Open { .. } => {
                let (first, interval) = workload
                    .open_loop_schedule(connection, window_start)
                    .expect("open loop");
                let (recorder, workload) = (recorder.clone(), workload.clone());
                tasks.push(tokio::task::spawn_local(open_loop(
                    kv, gen, recorder, workload, first, interval, end,
                )));
            }
        }
    }
    for task in tasks {
        task.await
            .map_err(|e| format!("etcd load task failed: {e}"))?;
    }
    Ok(Rc::try_unwrap(recorder)
        .ok()
        .expect("all tasks finished")
        .into_inner())
}

/// Opens one client with its own gRPC channel to `endpoint`. The channel connects lazily; the
/// first requests (in the warm-up) pay for it.
async fn connect(endpoint: SocketAddr) -> Result<KvClient, String> {
    let options = ConnectOptions::new()
        .with_timeout(RetryPolicy::default().attempt_timeout)
        .with_connect_timeout(CONNECT_TIMEOUT);
    let client = Client::connect([format!("http://{endpoint}")], Some(options))
        .await
        .map_err(|e| format!("cannot connect to etcd at {endpoint}: {e}"))?;
    Ok(client.kv_client())
}

async fn open_loop(
    kv: KvClient,
    gen: Rc<RefCell<OpGen>>,
    recorder: Rc<RefCell<Recorder>>,
    workload: Workload,
    first: Instant,
    interval: Duration,
    end: Instant,
) {
    let inflight = Arc::new(Semaphore::new(OPEN_LOOP_INFLIGHT_MAX));
    let mut intended = first;
    while intended < end {
        tokio::time::sleep_until(intended.into()).await;
        let Ok(permit) = inflight.clone().acquire_owned().await else {
            return;
        };
        let op = gen.borrow_mut().next_op();
        let (mut kv, recorder, workload) = (kv.clone(), recorder.clone(), workload.clone());
        let start = intended;
        // Detached: the permits below are how the loop knows every request has been answered.
        drop(tokio::task::spawn_local(async move {
            let (kind, result) = execute(&mut kv, op, &workload).await;
            recorder
                .borrow_mut()
                .record(kind, start, Instant::now(), result);
            // The recorder first: once the last permit is back the thread unwraps the Rc.
            drop(recorder);
            drop(permit);
        }));
        intended += interval;
    }
    // Wait for the stragglers: every permit back means every request answered.
    let _ = inflight.acquire_many(OPEN_LOOP_INFLIGHT_MAX as u32).await;
}

/// One request under the retry policy: retried on errors that a retry can fix, with the
/// ringraft client's backoff, within the policy's deadline.
async fn execute(kv: &mut KvClient, op: Op, workload: &Workload) -> (OpKind, Result<(), String>) {
    let kind = match op {
        Op::Write { .. } => OpKind::Write,
        Op::Read { .. } => OpKind::Read,
    };
    let policy = RetryPolicy::default();
    let retried = async {
        let mut last = String::from("no attempt made");
        for attempt in 0..policy.attempts_max {
            tokio::time::sleep(retry_backoff(attempt)).await;
            match attempt_once(kv, &op, workload).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    last = error_kind(e);
                    if !retryable(&last) {
                        return Err(last);
                    }
                }
            }
        }
        Err(last)
    };
    match tokio::time::timeout(policy.request_timeout, retried).await {
        Ok(result) => (kind, result),
        Err(_) => (kind, Err("timeout".into())),
    }
}

/// The error kinds the ringraft client retries too: no leader or member down, timeout, overload.
fn retryable(kind: &str) -> bool {
    matches!(kind, "unavailable" | "timeout" | "backpressure")
}

async fn attempt_once(
    kv: &mut KvClient,
    op: &Op,
    workload: &Workload,
) -> Result<(), etcd_client::Error> {
    match op {
        Op::Write { key, value } => kv.put(key.to_vec(), value.to_vec(), None).await.map(|_| ()),
        Op::Read { key } => {
            // etcd's Range is linearizable unless asked to be serializable.
            let options =
                (!workload.linearizable_reads).then(|| GetOptions::new().with_serializable());
            kv.get(key.to_vec(), options).await.map(|_| ())
        }
    }
}

/// A short, stable name for an etcd error, to count failures by kind. The names shared with
/// the ringraft target mean the same thing: `unavailable` (no leader, member or connection
/// down), `timeout`, `backpressure` (etcd's "too many requests"), `too_large`.
pub fn error_kind(e: etcd_client::Error) -> String {
    match e {
        etcd_client::Error::GRpcStatus(status) => {
            // The numeric codes are gRPC's own, fixed by its specification; `etcd-client` does
            // not re-export tonic's `Code` type to match on.
            match i32::from(status.code()) {
                GRPC_UNAVAILABLE => "unavailable".into(),
                GRPC_DEADLINE_EXCEEDED => "timeout".into(),
                GRPC_RESOURCE_EXHAUSTED => "backpressure".into(),
                GRPC_INVALID_ARGUMENT if status.message().contains("too large") => {
                    "too_large".into()
                }
                GRPC_CANCELLED => "cancelled".into(),
                _ => format!("grpc_{:?}", status.code()).to_lowercase(),
            }
        }
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => {
            "unavailable".into()
        }
        _ => "internal".into(),
    }
}

const GRPC_CANCELLED: i32 = 1;
const GRPC_INVALID_ARGUMENT: i32 = 3;
const GRPC_DEADLINE_EXCEEDED: i32 = 4;
const GRPC_RESOURCE_EXHAUSTED: i32 = 8;
const GRPC_UNAVAILABLE: i32 = 14;
