//! Starts a real 3-member etcd cluster with `bench::etcd::EtcdCluster`, writes through one member
//! and reads through another over etcd's JSON gateway, checks from etcd's own startup logs that
//! every member syncs its WAL, and checks that dropping the cluster stops every member. Skipped,
//! with a notice, where etcd is not installed (`scripts/install-etcd.sh`), except under CI,
//! where that fails.

mod node_common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use ringraft::bench::etcd::{fsync_from_log, EtcdCluster};

#[test]
fn three_members_start_serve_and_stop() {
    if !node_common::etcd_available("etcd_launch") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let base_port = node_common::free_port_block(6);
    let cluster = EtcdCluster::start(3, dir.path(), base_port).unwrap_or_else(|e| panic!("{e}"));
    let endpoints = cluster.client_endpoints();
    assert_eq!(endpoints.len(), 3);
    assert!(
        cluster.version().starts_with("3."),
        "version {}",
        cluster.version()
    );
    // Durability, from what each member logged about itself (not what the launcher meant to
    // start): the harness refuses a cluster without fsync, and reports etcd's own evidence.
    for i in 0..3 {
        let log = std::fs::read_to_string(dir.path().join(format!("etcd-{i}.log"))).unwrap();
        let fsync = fsync_from_log(&log).unwrap_or_else(|e| panic!("member {i}: {e}"));
        assert!(fsync.on, "member {i}: {}", fsync.evidence);
        assert!(fsync.evidence.contains(&cluster.version()), "{fsync:?}");
    }
    let settings = cluster.settings();
    assert!(
        settings
            .iter()
            .any(|(k, v)| k == "fsync" && v.contains("startup log")),
        "{settings:?}"
    );
    eprintln!("etcd {} settings: {settings:?}", cluster.version());

    // Put "etcd-launch" = "hello" through member 1, read it linearizably through member 2.
    let (status, body) = http(
        endpoints[1],
        "POST",
        "/v3/kv/put",
        r#"{"key":"ZXRjZC1sYXVuY2g=","value":"aGVsbG8="}"#,
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = http(
        endpoints[2],
        "POST",
        "/v3/kv/range",
        r#"{"key":"ZXRjZC1sYXVuY2g="}"#,
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""value":"aGVsbG8=""#), "read back: {body}");

    // The leader is found by asking every member, and it is one of them.
    let leader = cluster.leader_endpoint().unwrap_or_else(|e| panic!("{e}"));
    assert!(endpoints.contains(&leader), "{leader} not in {endpoints:?}");

    // Every member's log exists in the data root.
    for i in 0..3 {
        assert!(dir.path().join(format!("etcd-{i}.log")).is_file());
    }

    drop(cluster);
    for addr in &endpoints {
        assert!(
            TcpStream::connect_timeout(addr, Duration::from_millis(200)).is_err(),
            "{addr} still serving after drop"
        );
        TcpListener::bind(addr).unwrap_or_else(|e| panic!("{addr} not released after drop: {e}"));
    }
}

fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}
