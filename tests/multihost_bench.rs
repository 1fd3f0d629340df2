//! `ringraft bench --hosts` against a real OpenSSH server: four "hosts" are the loopback
//! addresses 127.0.0.11-14 (on Linux the whole of 127/8 reaches `lo`), each with its own sshd
//! that this test starts on a port of that address, with a host key and a client key generated
//! in a temporary directory. Skipped, loudly, only where sshd cannot run; with `CI` set, a
//! missing sshd fails the test instead (`.ci/run` installs it: scripts/install-sshd.sh).
//! Built with the `etcd` feature (the second half of `.ci/run`), the tiny run also compares
//! with an etcd cluster started over SSH on the node hosts.

mod node_common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SSHD: &str = "/usr/sbin/sshd";
const HOSTS: [&str; 4] = ["127.0.0.11", "127.0.0.12", "127.0.0.13", "127.0.0.14"];

fn ringraft() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ringraft"))
}

/// sshd and ssh are present and we are root (sshd refuses to run its privilege separation
/// otherwise); else skip loudly, or fail under CI.
fn sshd_available() -> bool {
    let missing = if !Path::new(SSHD).exists() {
        Some("no /usr/sbin/sshd (Debian package openssh-server)")
    } else if Command::new("ssh").arg("-V").output().is_err() {
        Some("no ssh client")
    } else if unsafe { libc::geteuid() } != 0 {
        Some("not root: sshd cannot switch users")
    } else {
        None
    };
    match missing {
        None => true,
        Some(why) if std::env::var_os("CI").is_some() => {
            panic!("CI is set and sshd cannot run here: {why}; .ci/run should have installed it")
        }
        Some(why) => {
            eprintln!("SKIPPED multihost_bench: {why}. Run scripts/install-sshd.sh to run it.");
            false
        }
    }
}

/// A free TCP port in 16000-16999 on `host`. Each test starts its search 300 apart (16100,
/// 16400, 16700): a run uses its base port up to base + 100 + 2 x members (etcd), and one
/// test's etcd ports must not be the next test's node ports.
fn free_port(host: &str, from: u16) -> u16 {
    (from..17000)
        .find(|&p| TcpListener::bind((host, p)).is_ok())
        .expect("a free port in 16000-16999")
}

struct Sshd {
    child: Child,
    host: &'static str,
    port: u16,
}

impl Sshd {
    fn start(dir: &Path, host: &'static str, port: u16) -> Sshd {
        let config = dir.join(format!("sshd-{host}.conf"));
        std::fs::write(
            &config,
            format!(
                "ListenAddress {host}:{port}\nHostKey {dir}/host_key\nAuthorizedKeysFile {dir}/authorized_keys\n\
                 StrictModes no\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nUsePAM no\nPidFile none\nLogLevel ERROR\nMaxStartups 100\n",
                dir = dir.display()
            ),
        )
        .unwrap();
        std::fs::create_dir_all("/run/sshd").unwrap();
        let child = Command::new(SSHD)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join(format!("sshd-{host}.log"))).unwrap())
            .spawn()
            .expect("start sshd");
        let until = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect((host, port)).is_err() {
            assert!(
                Instant::now() < until,
                "sshd on {host}:{port} did not listen"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Sshd { child, host, port }
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop();
    }
}

fn keygen(path: &Path) {
    let ok = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen")
        .success();
    assert!(ok, "ssh-keygen failed");
}

fn inventory(dir: &Path, sshds: &[Sshd], tag: &str) -> PathBuf {
    let roles = [
        r#"["node"]"#,
        r#"["node"]"#,
        r#"["node", "load"]"#,
        r#"["load"]"#,
    ];
    let mut text = String::new();
    for (i, s) in sshds.iter().enumerate() {
        text.push_str(&format!(
            "[[hosts]]\nname = \"h{n}\"\naddress = \"{host}\"\nssh = \"root@{host}\"\nssh_port = {port}\n\
             identity_file = \"{dir}/client_key\"\n\
             ssh_options = [\"StrictHostKeyChecking=no\", \"UserKnownHostsFile=/dev/null\", \"LogLevel=ERROR\"]\n\
             workdir = \"{dir}/{tag}/h{n}\"\nroles = {roles}\n\n",
            n = i + 1,
            host = s.host,
            port = s.port,
            dir = dir.display(),
            roles = roles[i],
        ));
    }
    let path = dir.join(format!("hosts-{tag}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

fn bench_config(dir: &Path, base_port: u16) -> PathBuf {
    let text = format!(
        "name = \"multihost-tiny\"\ndescription = \"3 nodes on 3 loopback hosts, 2 load processes\"\n\
         nodes = 3\ntargets = [\"ringraft\"]\nload_threads = 1\nbase_port = {base_port}\n\n\
         [node]\ntick_ms = 10\nelection_timeout_ticks = 100\nheartbeat_interval_ticks = 5\n\n\
         [workload]\nkey_bytes = 16\nvalue_bytes = 256\nkey_space = 1000\nread_ratio = 0.0\n\
         linearizable_reads = true\nwarmup = 1000\nduration = 2000\nseed = 1\n\
         mode = {{ kind = \"closed\", connections = 4, inflight_per_connection = 4 }}\n"
    );
    let path = dir.join("multihost-tiny.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Processes whose command line mentions `dir` (anything a run started under its workdirs).
fn processes_under(dir: &Path) -> Vec<String> {
    let needle = dir.display().to_string();
    let me = std::process::id().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if !name.chars().all(|c| c.is_ascii_digit()) || name == me {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        // sshd's own command line names its config under the same temporary directory.
        if cmdline.contains(&needle) && !cmdline.starts_with(SSHD) && !cmdline.contains("sshd:") {
            found.push(format!("{name}: {cmdline}"));
        }
    }
    found
}

fn assert_nothing_left(dir: &Path) {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let left = processes_under(dir);
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < until, "processes left running: {left:#?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The tests of this file run one at a time: each picks free ports on the same four
/// addresses, and two at once could pick the same one.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

struct Setup {
    dir: tempfile::TempDir,
    sshds: Vec<Sshd>,
    _serial: std::sync::MutexGuard<'static, ()>,
}

fn setup() -> Option<Setup> {
    if !sshd_available() {
        return None;
    }
    let serial = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    keygen(&dir.path().join("host_key"));
    keygen(&dir.path().join("client_key"));
    std::fs::copy(
        dir.path().join("client_key.pub"),
        dir.path().join("authorized_keys"),
    )
    .unwrap();
    let sshds = HOSTS
        .iter()
        .map(|&h| {
            let port = free_port(h, 16022);
            Sshd::start(dir.path(), h, port)
        })
        .collect();
    Some(Setup {
        dir,
        sshds,
        _serial: serial,
    })
}

#[test]
fn a_tiny_bench_across_four_loopback_hosts_merges_two_load_processes() {
    let Some(Setup {
        dir,
        sshds,
        _serial,
    }) = setup()
    else {
        return;
    };
    let dir_path = dir.path();
    let inventory = inventory(dir_path, &sshds, "ok");
    let config = bench_config(dir_path, free_port("127.0.0.11", 16100));
    let results = dir_path.join("results");
    let with_etcd = cfg!(feature = "etcd") && node_common::etcd_available("multihost_bench");
    let mut bench = Command::new(ringraft());
    bench
        .arg("bench")
        .arg(&config)
        .arg("--hosts")
        .arg(&inventory)
        .arg("--results-dir")
        .arg(&results);
    if with_etcd {
        bench.args(["--compare", "etcd"]);
    }
    let out = bench.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The comparison's verdict is a benchmark's, not this test's (on a loaded 2-core machine
    // either side can be ahead in a 2 s run): a failed verdict (exit 3) is accepted, and
    // checked below to be the only failed check.
    let verdict_only = with_etcd && out.status.code() == Some(3);
    assert!(
        out.status.success() || verdict_only,
        "bench failed:\n{stderr}"
    );
    let run_dir = std::fs::read_dir(results.join("multihost-tiny"))
        .unwrap()
        .flatten()
        .next()
        .expect("a report directory")
        .path();
    let hosts: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("hosts.json")).unwrap())
            .unwrap();
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("report.json")).unwrap())
            .unwrap();
    let md = std::fs::read_to_string(run_dir.join("report.md")).unwrap();
    for check in report["checks"].as_array().unwrap() {
        let name = check["name"].as_str().unwrap();
        assert!(
            check["pass"] == true || name.starts_with("ringraft vs etcd"),
            "a check other than the comparison failed: {check}"
        );
    }
    if verdict_only {
        assert!(
            report["checks"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["pass"] == false),
            "exit 3 without a failed check"
        );
    }

    // The "hosts" are one machine (one boot id): its node hosts share its cores as a local
    // run's nodes do, and the report says so.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let share = (cores / 3).max(1);
    let placed = report["placement"]["nodes"].as_array().expect("placement");
    assert_eq!(placed.len(), 3, "{placed:?}");
    for node in placed {
        assert_eq!(node["cpus"], share.to_string(), "{node}");
        assert_eq!(node["executors"], share, "{node}");
    }
    assert!(md.contains("## Placement"), "{md}");

    // A section per host, with its facts and the measured window.
    for n in 1..=4 {
        assert!(
            md.contains(&format!("### h{n} (127.0.0.1{n}")),
            "no section for h{n}:\n{md}"
        );
    }
    let host_list = hosts["hosts"].as_array().unwrap();
    assert_eq!(host_list.len(), 4);
    for h in host_list {
        assert!(h["facts"]["cores"].as_u64().unwrap() >= 1);
        let targets = if with_etcd { 2 } else { 1 };
        assert_eq!(h["windows"].as_array().unwrap().len(), targets, "{h}");
    }

    // Nodes listened on and advertised their own host's address: each saw its two peers
    // connect from their hosts' addresses, never from 127.0.0.1.
    for (i, h) in host_list.iter().take(3).enumerate() {
        let lines: Vec<String> = h["peer_connections"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap().to_string())
            .collect();
        for (j, peer) in HOSTS.iter().take(3).enumerate() {
            if i == j {
                continue;
            }
            let expected = format!("peer {} connected from {peer}:", j + 1);
            assert!(
                lines.iter().any(|l| l.contains(&expected)),
                "node {} has no `{expected}` in {lines:?}",
                i + 1
            );
        }
        assert!(
            !lines.iter().any(|l| l.contains("from 127.0.0.1:")),
            "{lines:?}"
        );
    }

    // Per target, two load processes on two hosts; the merged count is the sum of theirs.
    let targets: &[&str] = if with_etcd {
        &["ringraft", "etcd"]
    } else {
        &["ringraft"]
    };
    let all = hosts["processes"].as_array().unwrap();
    assert_eq!(all.len(), 2 * targets.len(), "{all:?}");
    for target in targets {
        let processes: Vec<_> = all.iter().filter(|p| p["target"] == *target).collect();
        assert_eq!(processes.len(), 2, "{target}: {processes:?}");
        assert_ne!(processes[0]["host"], processes[1]["host"]);
        assert_ne!(processes[0]["seed"], processes[1]["seed"]);
        let sum: u64 = processes
            .iter()
            .map(|p| p["writes"].as_u64().unwrap())
            .sum();
        assert!(sum > 0, "{target}: no writes");
        let run = report["runs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["target"] == *target)
            .unwrap_or_else(|| panic!("no {target} run in {}", report["runs"]));
        let run = &run["report"];
        let merged = run["writes_per_s"].as_f64().unwrap() * 2.0;
        assert_eq!(
            merged.round() as u64,
            sum,
            "{target}: merged {merged} vs processes {sum}"
        );
        assert_eq!(
            run["errors"].as_object().map_or(0, |e| e.len()),
            0,
            "{target}: errors: {}",
            run["errors"]
        );
    }
    assert_eq!(
        run_dir.join("hlog").read_dir().unwrap().count(),
        2 * targets.len()
    );

    // Per-thread CPU of every node, sampled by the probes on the node hosts.
    let ringraft_run = report["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["target"] == "ringraft")
        .unwrap();
    let threads = ringraft_run["threads"]["threads"]
        .as_array()
        .unwrap_or_else(|| panic!("no per-thread CPU in {ringraft_run}"));
    for node in 1..=3u64 {
        assert!(
            threads.iter().any(|t| t["node"] == node),
            "no thread of node {node} in {threads:?}"
        );
    }
    assert!(md.contains("CPU per thread"), "{md}");
    assert_nothing_left(dir_path);
}

#[test]
fn a_host_whose_sshd_stops_half_way_fails_the_run_naming_it_and_leaves_nothing() {
    let Some(Setup {
        dir,
        mut sshds,
        _serial,
    }) = setup()
    else {
        return;
    };
    let dir_path = dir.path().to_path_buf();
    let inventory = inventory(&dir_path, &sshds, "fail");
    let config = bench_config(&dir_path, free_port("127.0.0.11", 16400));
    let results = dir_path.join("results-fail");
    let mut bench = Command::new(ringraft())
        .arg("bench")
        .arg(&config)
        .arg("--hosts")
        .arg(&inventory)
        .arg("--results-dir")
        .arg(&results)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Half way: once the nodes run (their logs say so), h4's sshd goes away, before the
    // controller starts the load there (the nodes' 1 s election timeout keeps it waiting).
    let node_log = dir_path.join("fail/h1/logs/node1.log");
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        if std::fs::read_to_string(&node_log).is_ok_and(|t| t.contains("serving peers")) {
            break;
        }
        assert!(Instant::now() < until, "the nodes never started");
        if bench.try_wait().unwrap().is_some() {
            let out = bench.wait_with_output().unwrap();
            panic!(
                "bench ended before the nodes started:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    sshds[3].stop();
    let out = bench.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "bench succeeded without h4:\n{stderr}"
    );
    assert!(
        stderr.contains("host `h4`") && stderr.contains("ssh refused"),
        "the error does not name h4 and the refusal:\n{stderr}"
    );
    // No report called complete.
    let reports = std::fs::read_dir(results.join("multihost-tiny"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().join("report.md").exists())
                .count()
        })
        .unwrap_or(0);
    assert_eq!(reports, 0, "a failed run wrote a report");
    assert_nothing_left(&dir_path);
}

#[test]
fn bad_inventories_are_refused_before_anything_starts() {
    let Some(Setup {
        dir,
        sshds,
        _serial,
    }) = setup()
    else {
        return;
    };
    let dir_path = dir.path();
    let config = bench_config(dir_path, free_port("127.0.0.11", 16700));
    let good = std::fs::read_to_string(inventory(dir_path, &sshds, "bad")).unwrap();
    let cases = [
        // An unreachable host: nothing listens on that port.
        (
            good.replacen(
                &format!("root@127.0.0.12\"\nssh_port = {}", sshds[1].port),
                "root@127.0.0.12\"\nssh_port = 16999",
                1,
            ),
            "host `h2`",
        ),
        // A working directory that cannot be created (under a regular file).
        (
            good.replacen(
                &format!("workdir = \"{}/bad/h3\"", dir_path.display()),
                &format!("workdir = \"{}/authorized_keys/h3\"", dir_path.display()),
                1,
            ),
            "host `h3`",
        ),
        (
            good.replacen("[\"load\"]", "[\"lod\"]", 1),
            "unknown role `lod`",
        ),
    ];
    for (i, (text, expected)) in cases.iter().enumerate() {
        let path = dir_path.join(format!("bad-{i}.toml"));
        std::fs::write(&path, text).unwrap();
        let out = Command::new(ringraft())
            .arg("bench")
            .arg(&config)
            .arg("--hosts")
            .arg(&path)
            .arg("--results-dir")
            .arg(dir_path.join("results-bad"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "case {i} was accepted");
        assert!(
            stderr.contains(expected),
            "case {i}: expected `{expected}` in:\n{stderr}"
        );
        assert!(
            !stderr.contains("start node"),
            "case {i} started something:\n{stderr}"
        );
    }
    assert_nothing_left(dir_path);
}
