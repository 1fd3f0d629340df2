//! Two load processes with the same pid never share a client session: session ids are random
//! 64-bit numbers, not derived from the pid. Both processes run as pid 1 of their own pid
//! namespace (`unshare --pid --fork`, which needs root), against a one-node cluster.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn ringraft() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ringraft"))
}

fn free_port(from: u16) -> u16 {
    (from..17000)
        .find(|&p| TcpListener::bind(("127.0.0.1", p)).is_ok())
        .expect("a free port in 16000-16999")
}

fn unshare_works() -> bool {
    let ok = Command::new("unshare")
        .args(["--pid", "--fork", "true"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        if std::env::var_os("CI").is_some() {
            panic!("CI is set and `unshare --pid` does not work here (needs root and util-linux)");
        }
        eprintln!("SKIPPED load_sessions: `unshare --pid --fork` does not work here (needs root)");
    }
    ok
}

#[test]
fn two_load_processes_with_the_same_pid_never_share_a_session() {
    if !unshare_works() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let peer = free_port(16400);
    let client = free_port(peer + 1);
    let mut node = Command::new(ringraft())
        .args(["node", "--id", "1", "--members"])
        .arg(format!("1=127.0.0.1:{peer}/127.0.0.1:{client}"))
        .arg("--data-dir")
        .arg(dir.path().join("n1"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let run_load = || {
        Command::new("unshare")
            .args(["--pid", "--fork"])
            .arg(ringraft())
            .args(["load", "--cluster"])
            .arg(format!("1=127.0.0.1:{client}"))
            .args([
                "--connections",
                "8",
                "--inflight",
                "1",
                "--warmup-s",
                "0",
                "--duration-s",
                "0.5",
                "--json",
            ])
            .stderr(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap()
    };
    // The node elects itself; the load's client retries until it answers.
    let until = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", client)).is_err() {
        assert!(Instant::now() < until, "the node never listened");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (a, b) = (run_load(), run_load());
    let results: Vec<serde_json::Value> = [a, b]
        .into_iter()
        .map(|child| {
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success(), "a load process failed");
            serde_json::from_slice(&out.stdout).unwrap()
        })
        .collect();
    let _ = node.kill();
    let _ = node.wait();
    let pid = |r: &serde_json::Value| r["process"]["pid"].as_u64().unwrap();
    assert_eq!(pid(&results[0]), pid(&results[1]), "not the same pid");
    let sessions = |r: &serde_json::Value| -> Vec<u64> {
        r["process"]["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_u64().unwrap())
            .collect()
    };
    let (sa, sb) = (sessions(&results[0]), sessions(&results[1]));
    assert_eq!((sa.len(), sb.len()), (8, 8));
    let mut all: Vec<u64> = sa.iter().chain(&sb).copied().collect();
    assert!(all.iter().all(|&s| s != 0));
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), 16, "sessions shared: {sa:?} vs {sb:?}");
    // Both processes were answered.
    for r in &results {
        assert!(r["writes_per_s"].as_f64().unwrap() > 0.0, "{r}");
    }
}
