//! Saying what went wrong when a load run could not measure anything: the cluster could not be
//! reached, or not one operation succeeded. Both are errors naming the addresses, so that
//! `ringraft load` and `ringraft bench` exit non-zero instead of reporting 0 writes/s.

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::Recorder;

/// How long one connection attempt of the reachability check may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

fn list(addrs: &[SocketAddr]) -> String {
    addrs
        .iter()
        .map(SocketAddr::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Ok when at least one of `addrs` accepts a TCP connection; otherwise an error naming every
/// address and why each failed.
pub fn check_reachable(target: &str, addrs: &[SocketAddr]) -> Result<(), String> {
    if addrs.is_empty() {
        return Err(format!("no {target} addresses given"));
    }
    let mut failures = Vec::new();
    for addr in addrs {
        match TcpStream::connect_timeout(addr, CONNECT_TIMEOUT) {
            Ok(_) => return Ok(()),
            Err(e) => failures.push(format!("{addr}: {e}")),
        }
    }
    Err(format!(
        "cannot reach the {target} cluster: no address accepts a connection ({})",
        failures.join("; ")
    ))
}

/// Ok when at least one operation succeeded in the measured window; otherwise an error naming
/// the addresses and the failures seen.
pub fn check_any_success(
    target: &str,
    addrs: &[SocketAddr],
    recorder: &Recorder,
) -> Result<(), String> {
    // The histograms hold failed requests too (at their deadline), so count successes.
    if recorder.writes_ok + recorder.reads_ok > 0 {
        return Ok(());
    }
    let errors = if recorder.errors.is_empty() {
        "no answers at all".to_string()
    } else {
        recorder
            .errors
            .iter()
            .map(|(kind, n)| format!("{n} x {kind}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    Err(format!(
        "no operation succeeded against the {target} cluster at {} during the measured window ({errors})",
        list(addrs)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loadgen::OpKind;
    use std::time::Instant;

    #[test]
    fn an_empty_window_names_the_addresses_and_errors() {
        let addrs: Vec<SocketAddr> = vec![
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
        ];
        let start = Instant::now();
        let mut recorder = Recorder::new(start, Duration::from_secs(1));
        recorder.errors.insert("unavailable".into(), 7);
        let e = check_any_success("ringraft", &addrs, &recorder).unwrap_err();
        assert!(e.contains("127.0.0.1:1, 127.0.0.1:2"), "{e}");
        assert!(e.contains("7 x unavailable"), "{e}");
        // A failed write sits in the histogram too (at its deadline): still no success.
        recorder.record(OpKind::Write, start, start, Err("timeout".into()));
        assert!(!recorder.writes.is_empty());
        assert!(check_any_success("ringraft", &addrs, &recorder).is_err());
        recorder.record(OpKind::Write, start, start, Ok(()));
        assert!(check_any_success("ringraft", &addrs, &recorder).is_ok());
    }

    #[test]
    fn unreachable_addresses_are_named() {
        // Bind then drop: nothing listens there any more.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let e = check_reachable("etcd", &[port]).unwrap_err();
        assert!(e.contains(&port.to_string()), "{e}");
        let live = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(check_reachable("etcd", &[port, live.local_addr().unwrap()]).is_ok());
    }
}
