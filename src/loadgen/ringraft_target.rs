//! Drives a ringraft cluster with the client library, on glommio executors (one per load
//! thread; connections are spread over them). Requests retry under [`RetryPolicy::default`], the
//! policy the etcd target uses too.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use glommio::{LocalExecutorBuilder, Placement};

use super::progress::{Live, PUBLISH_INTERVAL};
use super::recorder::{OpKind, Recorder};
use super::retry::RetryPolicy;
use super::workload::{LoopMode, Op, OpGen, Workload};
use crate::client::{Client, Error, MemberAddr};
use crate::wire::{ClientError, Request};

/// The name of the load threads (the kernel shows it with a number added, `load-1`); the bench
/// harness finds them by it to report their CPU.
pub const THREAD_NAME: &str = "load";

/// Requests an open-loop connection may have outstanding; beyond it, the schedule's requests
/// still start late and are measured from their intended time.
const OPEN_LOOP_INFLIGHT_MAX: usize = 4096;

/// Runs `workload` against the cluster at `members` with `threads` load threads.
/// With `live`, each thread publishes its recording there as it goes (see `progress`).
pub fn run(
    members: Vec<MemberAddr>,
    workload: &Workload,
    threads: &crate::loadgen::LoadThreads,
    live: Option<Arc<Live>>,
) -> Result<Recorder, String> {
    workload.validate()?;
    let start = Instant::now();
    let window_start = start + workload.warmup;
    let mut handles = Vec::new();
    let count = threads.count.max(1);
    for thread in 0..count {
        let (members, workload, live) = (members.clone(), workload.clone(), live.clone());
        let placement = match threads.core_of(thread) {
            Some(core) => Placement::Fixed(core),
            None => Placement::Unbound,
        };
        let handle = LocalExecutorBuilder::new(placement)
            .name(THREAD_NAME)
            .io_memory(1 << 20)
            .spawn(move || async move {
                run_thread(members, workload, thread, count, window_start, live).await
            })
            .map_err(|e| format!("cannot start a load thread: {e}"))?;
        handles.push(handle);
    }
    let mut total = Recorder::new(window_start, workload.duration)
        .failing_at(RetryPolicy::default().request_timeout);
    for handle in handles {
        let recorder = handle
            .join()
            .map_err(|e| format!("load thread failed: {e:?}"))?;
        total.merge(&recorder);
    }
    Ok(total)
}

async fn run_thread(
    members: Vec<MemberAddr>,
    workload: Workload,
    thread: usize,
    threads: usize,
    window_start: Instant,
    live: Option<Arc<Live>>,
) -> Recorder {
    let policy = RetryPolicy::default();
    let recorder = Rc::new(RefCell::new(
        Recorder::new(window_start, workload.duration).failing_at(policy.request_timeout),
    ));
    let end = window_start + workload.duration;
    let done = Rc::new(std::cell::Cell::new(false));
    let publisher = live.map(|live| {
        let (recorder, done) = (recorder.clone(), done.clone());
        glommio::spawn_local(async move {
            while !done.get() {
                glommio::timer::sleep(PUBLISH_INTERVAL).await;
                live.publish(thread, &recorder.borrow());
            }
        })
    });
    let mut tasks = Vec::new();
    for connection in (thread..workload.connections()).step_by(threads) {
        // Random, not derived from the pid: load processes on several hosts (or in containers)
        // share pids, and two sessions with one id would have their writes deduplicated as
        // retries of each other.
        let client_id = super::process::random_session_id();
        recorder.borrow_mut().sessions.push(client_id);
        let mut options = policy.client_options(members.clone(), client_id);
        options.groups = workload.groups;
        options.members.rotate_left(connection % members.len());
        let client = Client::new(options);
        let gen = Rc::new(RefCell::new(OpGen::new(&workload, connection)));
        match workload.mode {
            LoopMode::Closed {
                inflight_per_connection,
                ..
            } => {
                for _ in 0..inflight_per_connection {
                    let (client, gen, recorder, workload) = (
                        client.clone(),
                        gen.clone(),
                        recorder.clone(),
                        workload.clone(),
                    );
                    tasks.push(glommio::spawn_local(async move {
                        while Instant::now() < end {
                            let op = gen.borrow_mut().next_op();
                            let group = group_of_op(&op, workload.groups);
                            let started = Instant::now();
                            let (kind, result) = execute(&client, op, &workload).await;
                            record(&recorder, kind, group, &workload, started, result);
                        }
                    }));
                }
            }
            LoopMode::Open { .. } => {
                let (first, interval) = workload
                    .open_loop_schedule(connection, window_start)
                    .expect("open loop");
                let (recorder, workload) = (recorder.clone(), workload.clone());
                tasks.push(glommio::spawn_local(open_loop(
                    client, gen, recorder, workload, first, interval, end,
                )));
            }
        }
    }
    for task in tasks {
        task.await;
    }
    done.set(true);
    if let Some(publisher) = publisher {
        publisher.await;
    }
    Rc::try_unwrap(recorder)
        .ok()
        .expect("all tasks finished")
        .into_inner()
}

async fn open_loop(
    client: Client,
    gen: Rc<RefCell<OpGen>>,
    recorder: Rc<RefCell<Recorder>>,
    workload: Workload,
    first: Instant,
    interval: Duration,
    end: Instant,
) {
    let inflight = Rc::new(glommio::sync::Semaphore::new(OPEN_LOOP_INFLIGHT_MAX as u64));
    let mut intended = first;
    while intended < end {
        let now = Instant::now();
        if intended > now {
            glommio::timer::sleep(intended - now).await;
        }
        let Ok(permit) = inflight.acquire_static_permit(1).await else {
            return;
        };
        let op = gen.borrow_mut().next_op();
        let group = group_of_op(&op, workload.groups);
        let (client, recorder, workload) = (client.clone(), recorder.clone(), workload.clone());
        let start = intended;
        glommio::spawn_local(async move {
            let (kind, result) = execute(&client, op, &workload).await;
            record(&recorder, kind, group, &workload, start, result);
            drop(permit);
        })
        .detach();
        intended += interval;
    }
    // Wait for the stragglers: every permit back means every request answered.
    let _ = inflight.acquire(OPEN_LOOP_INFLIGHT_MAX as u64).await;
}

/// The group of an operation's key.
fn group_of_op(op: &Op, groups: u32) -> u32 {
    match op {
        Op::Write { key, .. } | Op::Read { key } => crate::kv::group_of(key, groups),
    }
}

/// Records an outcome, and a successful write also in its group's count.
fn record(
    recorder: &RefCell<Recorder>,
    kind: OpKind,
    group: u32,
    workload: &Workload,
    start: Instant,
    result: Result<(), String>,
) {
    let mut recorder = recorder.borrow_mut();
    if kind == OpKind::Write && result.is_ok() {
        recorder.record_group_write(start, group, workload.groups);
    }
    recorder.record(kind, start, Instant::now(), result);
}

/// One request under the policy (the client keeps its deadline, see
/// [`RetryPolicy::client_options`]); running out of it is a `timeout` failure.
async fn execute(client: &Client, op: Op, workload: &Workload) -> (OpKind, Result<(), String>) {
    match op {
        Op::Write { key, value } => (
            OpKind::Write,
            client.put(key, value).await.map(|_| ()).map_err(error_kind),
        ),
        Op::Read { key } => {
            let request = Request::Get {
                key,
                linearizable: workload.linearizable_reads,
            };
            (
                OpKind::Read,
                client.call(request).await.map(|_| ()).map_err(error_kind),
            )
        }
    }
}

/// A short, stable name for an error, to count failures by kind.
pub fn error_kind(e: Error) -> String {
    match e {
        Error::Unavailable { .. } => "unavailable".into(),
        Error::TimedOut { .. } => "timeout".into(),
        Error::Server(ClientError::NotLeader { .. }) => "not_leader".into(),
        Error::Server(ClientError::Timeout) => "timeout".into(),
        Error::Server(ClientError::Backpressure) => "backpressure".into(),
        Error::Server(ClientError::TooLarge { .. }) => "too_large".into(),
        Error::Server(ClientError::Internal { message }) => {
            format!("internal: {}", message.chars().take(60).collect::<String>())
        }
        Error::Server(ClientError::Refused { message }) => {
            format!("refused: {}", message.chars().take(60).collect::<String>())
        }
    }
}
