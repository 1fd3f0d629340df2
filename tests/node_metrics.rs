//! `/metrics` of real nodes under writes: the text parses strictly (and with Prometheus'
//! `promtool check metrics` where it is installed), counters and histograms move, and the leader
//! shows each follower's lag and last contact.

mod node_common;

use std::time::Duration;

use node_common::{client, run, wait_for_leader, wait_until, Cluster};
use ringraft::bench::scrape::{self, Exposition};

const WRITES: u64 = 300;

fn scrape_node(cluster: &Cluster, id: u64) -> (String, Exposition) {
    let text = scrape::fetch(cluster.metrics_addr(id), Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("node {id}: {e}"));
    let parsed = scrape::parse(&text).unwrap_or_else(|e| panic!("node {id}: {e}\n{text}"));
    (text, parsed)
}

fn get(e: &Exposition, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape::value(e, name, labels).unwrap_or_else(|| panic!("no sample {name} {labels:?}"))
}

/// Runs `promtool check metrics` on `text` when promtool is on PATH (Debian's `prometheus`
/// package, which `.ci/run` installs); says so when it is not.
fn promtool_check(text: &str) {
    use std::io::Write;
    let child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        eprintln!("promtool not installed: checked with ringraft's own strict parser only");
        return;
    };
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool runs");
    assert!(
        out.status.success(),
        "promtool check metrics refused the node's output:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn metrics_move_under_writes_and_parse() {
    let cluster = std::sync::Arc::new(Cluster::start(3, &[]));
    let addrs = cluster.client_addrs();
    let leader = run({
        let addrs = addrs.clone();
        move || async move {
            wait_for_leader(&addrs, Duration::from_secs(30))
                .await
                .node_id
        }
    });
    let (_, before) = scrape_node(&cluster, leader);
    let l = leader.to_string();
    let node = [("node", l.as_str())];
    assert_eq!(
        get(
            &before,
            "ringraft_role",
            &[("node", &l), ("role", "leader")]
        ),
        1.0
    );

    run({
        let addrs = addrs.clone();
        move || async move {
            let c = client(addrs);
            for i in 0..WRITES {
                c.put(format!("k{i}"), "v".repeat(100)).await.expect("put");
            }
        }
    });

    let (text, after) = scrape_node(&cluster, leader);
    let moved = |name: &str| get(&after, name, &node) - get(&before, name, &node);
    assert!(moved("ringraft_proposals_total") >= WRITES as f64, "{text}");
    assert!(
        moved("ringraft_commit_latency_seconds_count") >= WRITES as f64,
        "{text}"
    );
    assert!(
        moved("ringraft_log_write_latency_seconds_count") >= 1.0,
        "{text}"
    );
    assert!(
        moved("ringraft_append_entries_entries_count") >= 1.0,
        "{text}"
    );
    assert!(get(&after, "ringraft_commit_index", &node) >= WRITES as f64);
    for (name, kind) in &after.types {
        if kind == "counter" {
            assert!(
                name.ends_with("_total"),
                "counter {name} does not end in _total"
            );
        }
    }
    for peer in cluster.ids().into_iter().filter(|&id| id != leader) {
        let p = peer.to_string();
        let labels = [("node", l.as_str()), ("peer", p.as_str())];
        get(&after, "ringraft_follower_match_lag_entries", &labels);
        let since = get(&after, "ringraft_peer_last_contact_seconds", &labels);
        assert!(since >= 0.0, "last contact {since}");
        // A follower's own log writes and commit index move too (it may apply a little later).
        let id = peer;
        let want = WRITES as f64;
        let f = peer.to_string();
        run({
            let cluster = cluster.clone();
            move || async move {
                wait_until(
                    "a follower's commit index to reach the writes",
                    Duration::from_secs(30),
                    || {
                        let (_, e) = scrape_node(&cluster, id);
                        let commit = get(&e, "ringraft_commit_index", &[("node", &f)]);
                        let writes = get(
                            &e,
                            "ringraft_log_write_latency_seconds_count",
                            &[("node", &f)],
                        );
                        async move { (commit >= want && writes >= 1.0).then_some(()) }
                    },
                )
                .await
            }
        });
    }
    promtool_check(&text);
}

#[test]
fn metrics_server_refuses_other_requests() {
    use std::io::{Read, Write};
    let cluster = Cluster::start(1, &[]);
    let addr = cluster.metrics_addr(1);
    let ask = |request: &str| {
        let text = node_common_retry(|| {
            let mut s = std::net::TcpStream::connect(addr).ok()?;
            s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
            s.write_all(request.as_bytes()).ok()?;
            let mut out = String::new();
            s.read_to_string(&mut out).ok()?;
            Some(out)
        });
        text.lines().next().unwrap_or("").to_string()
    };
    assert_eq!(ask("GET /other HTTP/1.1\r\n\r\n"), "HTTP/1.1 404 Not Found");
    assert_eq!(
        ask("POST /metrics HTTP/1.1\r\n\r\n"),
        "HTTP/1.1 405 Method Not Allowed"
    );
    assert_eq!(ask("garbage\r\n\r\n"), "HTTP/1.1 400 Bad Request");
    let huge = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(10_000));
    assert_eq!(ask(&huge), "HTTP/1.1 431 Request Header Fields Too Large");
    assert_eq!(ask("GET /metrics HTTP/1.1\r\n\r\n"), "HTTP/1.1 200 OK");
}

/// Retries `f` every 20 ms for up to 30 s (the node may still be starting).
fn node_common_retry<T>(mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the metrics server never answered"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
