//! Failures that say what happened: each case exits non-zero with a message naming its cause,
//! and the ones the harness can see before running refuse before anything runs.

use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Output};
use std::time::Duration;

use bytes::Bytes;
use ringraft::core::{Entry, EntryKind};
use ringraft::log::{Log, LogOptions};

fn ringraft(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ringraft"))
        .args(args)
        .output()
        .expect("run ringraft")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A loopback address nothing listens on.
fn dead_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind")
}

#[test]
fn load_against_an_unreachable_cluster_names_the_addresses() {
    let (a, b) = (dead_addr(), dead_addr());
    let cluster = format!("{a},{b}");
    let out = ringraft(&[
        "load",
        "--cluster",
        &cluster,
        "--warmup-s",
        "0",
        "--duration-s",
        "1",
    ]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("cannot reach")
            && err.contains(&a.to_string())
            && err.contains(&b.to_string()),
        "{err}"
    );
}

#[test]
fn load_with_no_successful_write_names_the_addresses() {
    // Accepts connections and never answers: reachable, but not one write can succeed.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let holder = std::thread::spawn({
        let stop = stop.clone();
        move || {
            listener.set_nonblocking(true).expect("nonblocking");
            let mut held = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => held.push(stream),
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        }
    });
    let out = ringraft(&[
        "load",
        "--cluster",
        &addr.to_string(),
        "--connections",
        "1",
        "--inflight",
        "1",
        "--warmup-s",
        "0",
        "--duration-s",
        "1",
    ]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("no operation succeeded") && err.contains(&addr.to_string()),
        "{err}"
    );
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    holder.join().expect("holder thread");
}

#[cfg(not(feature = "etcd"))]
#[test]
fn compare_etcd_without_the_feature_fails_before_running() {
    let results = tempfile::tempdir().expect("tempdir");
    let dir = results.path().join("r");
    let out = ringraft(&[
        "bench",
        "tests/data/tiny-bench.toml",
        "--compare",
        "etcd",
        "--results-dir",
        dir.to_str().expect("utf-8"),
    ]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("without the `etcd` feature"), "{err}");
    // Refused before anything ran: no cluster started, nothing written.
    assert!(!err.contains("elections during the run"), "{err}");
    assert!(!dir.exists(), "a refused bench wrote {}", dir.display());
}

#[test]
fn compare_etcd_on_an_emulated_network_is_refused() {
    let results = tempfile::tempdir().expect("tempdir");
    let dir = results.path().join("r");
    let out = ringraft(&[
        "bench",
        "tests/data/tiny-cross-region.toml",
        "--compare",
        "etcd",
        "--results-dir",
        dir.to_str().expect("utf-8"),
    ]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("[network]") && err.contains("like for like"),
        "{err}"
    );
    assert!(!dir.exists(), "a refused bench wrote {}", dir.display());
}

#[test]
fn log_verify_finds_the_log_in_a_data_directory_and_refuses_a_directory_without_one() {
    let data = tempfile::tempdir().expect("tempdir");
    {
        let (mut log, _) =
            Log::open(&data.path().join("log"), LogOptions::default()).expect("open");
        let entries: Vec<Entry> = (1..=5)
            .map(|index| Entry {
                term: 1,
                index,
                kind: EntryKind::Normal,
                data: Bytes::from_static(b"x"),
                record: None,
            })
            .collect();
        log.append(&entries).expect("append");
    }
    let dir = data.path().to_str().expect("utf-8");
    let out = ringraft(&["log", "verify", dir]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(text.contains("indexes 1..=5"), "{text}");

    let empty = tempfile::tempdir().expect("tempdir");
    let out = ringraft(&["log", "verify", empty.path().to_str().expect("utf-8")]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("holds no log"), "{err}");
}
