//! Launches a real, durable etcd cluster on loopback for comparison runs, and tears it down.
//!
//! This file only starts processes and speaks a few lines of HTTP/1.1 to etcd's client port, so
//! it needs no feature and no protoc; the load itself comes from `loadgen::etcd_target` (cargo
//! feature `etcd`). The etcd binary is Debian's `etcd-server` package
//! (`scripts/install-etcd.sh`).
//!
//! What it must never do: turn off fsync (`--unsafe-no-fsync`) or otherwise make etcd less
//! durable than ringraft, reuse a data directory from an earlier run, or report a cluster as
//! ready before it has a leader and has committed a write.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Message when no etcd binary can be found.
pub const ETCD_MISSING: &str =
    "etcd not found: run scripts/install-etcd.sh (installs Debian's etcd-server)";

/// Members a comparison cluster has unless told otherwise.
pub const MEMBERS_DEFAULT: usize = 3;

/// How long a fresh cluster may take to elect a leader and commit a first write.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long members get to exit after SIGTERM before they are killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// Interval between readiness probes.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Timeout of one HTTP probe (connect, send and read).
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// How a cluster is started. `EtcdOptions::new` gives etcd's own defaults for everything that is
/// not an address or a directory.
#[derive(Clone, Debug)]
pub struct EtcdOptions {
    /// Members (1..=9).
    pub members: usize,
    /// Member `i` keeps its data in `data_root/etcd-i` (wiped first) and logs to
    /// `data_root/etcd-i.log`.
    pub data_root: PathBuf,
    /// Member `i` serves clients on `base_port + 2i` and peers on `base_port + 2i + 1`.
    pub base_port: u16,
    /// `--heartbeat-interval` in ms; `None` keeps etcd's default (100 ms).
    pub heartbeat_interval_ms: Option<u32>,
    /// `--election-timeout` in ms; `None` keeps etcd's default (1000 ms).
    pub election_timeout_ms: Option<u32>,
    /// The etcd binary; `None` looks for `etcd` on `PATH`, then `/usr/bin/etcd`.
    pub binary: Option<PathBuf>,
    /// How long to wait for a leader and a committed write.
    pub ready_timeout: Duration,
}

impl EtcdOptions {
    /// etcd's defaults for `members` members under `data_root` from `base_port`.
    pub fn new(members: usize, data_root: &Path, base_port: u16) -> EtcdOptions {
        EtcdOptions {
            members,
            data_root: data_root.to_path_buf(),
            base_port,
            heartbeat_interval_ms: None,
            election_timeout_ms: None,
            binary: None,
            ready_timeout: READY_TIMEOUT,
        }
    }
}

/// A running etcd cluster on 127.0.0.1. Dropping it stops every member (SIGTERM, then SIGKILL
/// after a short deadline) and waits for them; the data directories are left for inspection.
pub struct EtcdCluster {
    members: Vec<Member>,
    version: String,
    settings: Vec<(String, String)>,
}

struct Member {
    name: String,
    client_addr: SocketAddr,
    log_path: PathBuf,
    child: Child,
}

impl EtcdCluster {
    /// Starts `members` members with etcd's default timing under `data_root` from `base_port`
    /// and waits until the cluster has a leader and has committed a write.
    pub fn start(members: usize, data_root: &Path, base_port: u16) -> Result<EtcdCluster, String> {
        EtcdCluster::start_with(&EtcdOptions::new(members, data_root, base_port))
    }

    /// Starts a cluster as `options` say, and waits until it is ready.
    pub fn start_with(options: &EtcdOptions) -> Result<EtcdCluster, String> {
        if options.members == 0 || options.members > 9 {
            return Err(format!(
                "etcd members must be in 1..=9, got {}",
                options.members
            ));
        }
        let last_port = options.base_port as usize + 2 * options.members - 1;
        if options.base_port == 0 || last_port > u16::MAX as usize {
            return Err(format!(
                "etcd ports {}..={last_port} are out of range",
                options.base_port
            ));
        }
        let binary = match &options.binary {
            Some(path) if path.is_file() => path.clone(),
            Some(path) => {
                return Err(format!(
                    "{ETCD_MISSING} ({} does not exist)",
                    path.display()
                ))
            }
            None => find_etcd().ok_or_else(|| ETCD_MISSING.to_string())?,
        };
        let version_text = etcd_version_text(&binary)?;
        let version =
            version_field(&version_text, "etcd Version:").unwrap_or_else(|| "unknown".into());
        std::fs::create_dir_all(&options.data_root)
            .map_err(|e| format!("cannot create {}: {e}", options.data_root.display()))?;
        let layout = Layout::new(options);
        layout.check_ports_free()?;

        let mut cluster = EtcdCluster {
            members: Vec::new(),
            version,
            settings: Vec::new(),
        };
        cluster.settings = layout.settings(options, &binary, &version_text);
        for i in 0..options.members {
            // Pushed one by one so that Drop stops the ones already started if a later one fails.
            cluster.members.push(layout.spawn_member(&binary, i)?);
        }
        cluster.wait_ready(Instant::now() + options.ready_timeout)?;
        cluster.check_fsync()?;
        Ok(cluster)
    }

    /// The client URLs' addresses, member 0 first.
    pub fn client_endpoints(&self) -> Vec<SocketAddr> {
        self.members.iter().map(|m| m.client_addr).collect()
    }

    /// The client address of the member that leads now, asked of every member through the JSON
    /// gateway's `/v3/maintenance/status` (each answers its own id and the leader's).
    pub fn leader_endpoint(&self) -> Result<SocketAddr, String> {
        let mut statuses = Vec::new();
        for member in &self.members {
            let (status, body) = http(member.client_addr, "POST", "/v3/maintenance/status", "{}")?;
            if status != 200 {
                return Err(format!(
                    "status of etcd member {}: HTTP {status} {}",
                    member.name,
                    body.trim()
                ));
            }
            statuses.push((member.client_addr, body));
        }
        leader_of(&statuses)
    }

    /// etcd's version, from `etcd --version` (e.g. "3.4.23").
    pub fn version(&self) -> String {
        self.version.clone()
    }

    /// What the cluster was started with, as (name, value) pairs for the report.
    pub fn settings(&self) -> Vec<(String, String)> {
        self.settings.clone()
    }

    /// Polls until every member reports healthy (it sees a leader and a quorum read through Raft
    /// succeeds) and a write through member 0's JSON gateway is committed.
    fn wait_ready(&mut self, deadline: Instant) -> Result<(), String> {
        loop {
            self.check_alive()?;
            let Err(last_problem) = self.probe_ready() else {
                return Ok(());
            };
            if Instant::now() >= deadline {
                return Err(format!(
                    "etcd cluster not ready within its deadline: {last_problem}; logs: {}",
                    self.members
                        .iter()
                        .map(|m| m.log_path.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    fn probe_ready(&self) -> Result<(), String> {
        for member in &self.members {
            let (status, body) = http(member.client_addr, "GET", "/health", "")?;
            if status != 200 || !body.contains("\"health\":\"true\"") {
                return Err(format!(
                    "{} not healthy: HTTP {status} {}",
                    member.name,
                    body.trim()
                ));
            }
        }
        // The gateway takes base64: key "ringraft-ready", value "1". A committed put answers 200
        // with a response header carrying the new revision.
        let put = r#"{"key":"cmluZ3JhZnQtcmVhZHk=","value":"MQ=="}"#;
        let (status, body) = http(self.members[0].client_addr, "POST", "/v3/kv/put", put)?;
        if status != 200 || !body.contains("\"revision\"") {
            return Err(format!(
                "first write not accepted: HTTP {status} {}",
                body.trim()
            ));
        }
        Ok(())
    }

    /// Reads every member's own startup log for how it syncs its WAL (see [`fsync_from_log`]),
    /// refuses a member that runs without fsync, and puts etcd's own word in the settings.
    fn check_fsync(&mut self) -> Result<(), String> {
        let mut seen = Vec::new();
        for member in &self.members {
            let text = std::fs::read_to_string(&member.log_path)
                .map_err(|e| format!("cannot read {}: {e}", member.log_path.display()))?;
            let fsync =
                fsync_from_log(&text).map_err(|e| format!("etcd member {}: {e}", member.name))?;
            if !fsync.on {
                return Err(format!(
                    "etcd member {} runs without fsync ({}); a comparison needs it durable",
                    member.name, fsync.evidence
                ));
            }
            seen.push(fsync.evidence);
        }
        seen.dedup();
        let value = format!("on, from each member's startup log: {}", seen.join("; "));
        match self.settings.iter_mut().find(|(k, _)| k == "fsync") {
            Some((_, v)) => *v = value,
            None => self.settings.push(("fsync".into(), value)),
        }
        Ok(())
    }

    /// Fails, with the end of its log, if a member has exited (bad flag, port taken, ...).
    fn check_alive(&mut self) -> Result<(), String> {
        for member in &mut self.members {
            if let Ok(Some(status)) = member.child.try_wait() {
                return Err(format!(
                    "etcd member {} exited ({status}); end of {}:\n{}",
                    member.name,
                    member.log_path.display(),
                    log_tail(&member.log_path)
                ));
            }
        }
        Ok(())
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for member in &self.members {
            // SAFETY: kill(2) on a child we spawned and have not yet reaped, so the pid is ours.
            unsafe {
                libc::kill(member.child.id() as libc::pid_t, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        for member in &mut self.members {
            while matches!(member.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if matches!(member.child.try_wait(), Ok(None)) {
                let _ = member.child.kill();
            }
            let _ = member.child.wait();
        }
    }
}

/// Names, addresses and paths of every member, derived from the options.
struct Layout {
    names: Vec<String>,
    client_ports: Vec<u16>,
    peer_ports: Vec<u16>,
    data_root: PathBuf,
    token: String,
    timing: Vec<String>,
}

impl Layout {
    fn new(options: &EtcdOptions) -> Layout {
        let names = (0..options.members).map(|i| format!("etcd-{i}")).collect();
        let client_ports = (0..options.members)
            .map(|i| options.base_port + 2 * i as u16)
            .collect();
        let peer_ports = (0..options.members)
            .map(|i| options.base_port + 2 * i as u16 + 1)
            .collect();
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let token = format!("ringraft-bench-{}-{nanos}", std::process::id());
        let mut timing = Vec::new();
        if let Some(ms) = options.heartbeat_interval_ms {
            timing.push(format!("--heartbeat-interval={ms}"));
        }
        if let Some(ms) = options.election_timeout_ms {
            timing.push(format!("--election-timeout={ms}"));
        }
        Layout {
            names,
            client_ports,
            peer_ports,
            data_root: options.data_root.clone(),
            token,
            timing,
        }
    }

    fn initial_cluster(&self) -> String {
        self.names
            .iter()
            .zip(&self.peer_ports)
            .map(|(n, p)| format!("{n}=http://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// A port already taken would make a member exit, or worse, let an unrelated process answer
    /// the readiness probe.
    fn check_ports_free(&self) -> Result<(), String> {
        for port in self.client_ports.iter().chain(&self.peer_ports) {
            TcpListener::bind(("127.0.0.1", *port))
                .map_err(|e| format!("etcd port {port} on 127.0.0.1 is not free: {e}"))?;
        }
        Ok(())
    }

    fn spawn_member(&self, binary: &Path, i: usize) -> Result<Member, String> {
        let name = &self.names[i];
        let data_dir = self.data_root.join(name);
        if data_dir.exists() {
            // Only ever our own member directory: a stale one would make `--initial-cluster-state
            // new` a lie (etcd would restart the old member instead).
            std::fs::remove_dir_all(&data_dir)
                .map_err(|e| format!("cannot clear {}: {e}", data_dir.display()))?;
        }
        let log_path = self.data_root.join(format!("{name}.log"));
        let log = std::fs::File::create(&log_path)
            .map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
        let log_err = log
            .try_clone()
            .map_err(|e| format!("cannot reopen {}: {e}", log_path.display()))?;
        let client_url = format!("http://127.0.0.1:{}", self.client_ports[i]);
        let peer_url = format!("http://127.0.0.1:{}", self.peer_ports[i]);
        let mut command = Command::new(binary);
        command
            .arg(format!("--name={name}"))
            .arg(format!("--data-dir={}", data_dir.display()))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster={}", self.initial_cluster()))
            .arg("--initial-cluster-state=new")
            .arg(format!("--initial-cluster-token={}", self.token))
            .arg("--logger=zap")
            .arg("--log-outputs=stderr")
            .args(&self.timing)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        // etcd reads any ETCD_* variable as a flag; an inherited one would silently change the
        // cluster under test.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("ETCD_") {
                command.env_remove(key);
            }
        }
        let child = command
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let client_addr = SocketAddr::from(([127, 0, 0, 1], self.client_ports[i]));
        Ok(Member {
            name: name.clone(),
            client_addr,
            log_path,
            child,
        })
    }

    fn settings(
        &self,
        options: &EtcdOptions,
        binary: &Path,
        version_text: &str,
    ) -> Vec<(String, String)> {
        let or_default = |v: Option<u32>, default: &str| {
            v.map(|ms| ms.to_string())
                .unwrap_or_else(|| format!("{default} (etcd default)"))
        };
        let mut settings = vec![
            ("etcd_binary".to_string(), binary.display().to_string()),
            (
                "etcd_version".to_string(),
                version_field(version_text, "etcd Version:").unwrap_or_default(),
            ),
            (
                "etcd_go_version".to_string(),
                version_field(version_text, "Go Version:").unwrap_or_default(),
            ),
            ("members".to_string(), options.members.to_string()),
            (
                "client_urls".to_string(),
                self.client_ports
                    .iter()
                    .map(|p| format!("http://127.0.0.1:{p}"))
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            ("initial_cluster".to_string(), self.initial_cluster()),
            ("initial_cluster_state".to_string(), "new".to_string()),
            ("initial_cluster_token".to_string(), self.token.clone()),
            (
                "data_root".to_string(),
                self.data_root.display().to_string(),
            ),
            (
                "heartbeat_interval_ms".to_string(),
                or_default(options.heartbeat_interval_ms, "100"),
            ),
            (
                "election_timeout_ms".to_string(),
                or_default(options.election_timeout_ms, "1000"),
            ),
        ];
        // Everything below is etcd's default, stated because it shapes the result.
        for (name, value) in [
            (
                "write_acknowledged_after",
                "commit and apply on the serving member",
            ),
            ("snapshot_count", "100000 (etcd default)"),
            ("quota_backend_bytes", "2 GiB (etcd default)"),
            ("auto_compaction", "off (etcd default)"),
            ("transport", "plain HTTP/2 gRPC on loopback, no TLS"),
        ] {
            settings.push((name.to_string(), value.to_string()));
        }
        settings
    }
}

/// Whether an etcd member syncs its WAL, as its own startup log (zap JSON lines) shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedFsync {
    /// WAL writes are fdatasynced (etcd's default).
    pub on: bool,
    /// What in the log says so.
    pub evidence: String,
}

/// Reads how an etcd member syncs its WAL from its startup log. etcd 3.5 and later log their
/// command line (`"msg":"Running: "` with `args`) and any `ETCD_*` variable they took as a flag;
/// `--unsafe-no-fsync` (or `ETCD_UNSAFE_NO_FSYNC`) there turns fsync off. etcd 3.4 has no such
/// switch at all: its "starting an etcd server" line and version are the evidence. A log that
/// shows neither is an error: nothing is assumed.
pub fn fsync_from_log(text: &str) -> Result<LoggedFsync, String> {
    let mut version = None;
    let mut command_line = None;
    for line in text.lines() {
        let Ok(json) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        match json["msg"].as_str() {
            Some("starting an etcd server") => {
                version = json["etcd-version"].as_str().map(str::to_string);
            }
            Some("Running: ") => {
                let args: Vec<String> = json["args"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                command_line = Some(args);
            }
            _ => {}
        }
        if json["variable-name"].as_str() == Some("ETCD_UNSAFE_NO_FSYNC")
            && json["variable-value"].as_str() != Some("false")
        {
            return Ok(LoggedFsync {
                on: false,
                evidence: "the log shows ETCD_UNSAFE_NO_FSYNC taken from the environment".into(),
            });
        }
    }
    let version = version.ok_or(
        "its log has no \"starting an etcd server\" line: cannot tell how it syncs its WAL",
    )?;
    if let Some(args) = command_line {
        let off = args.iter().any(|a| {
            a == "--unsafe-no-fsync" || a == "--unsafe-no-fsync=true" || a == "-unsafe-no-fsync"
        });
        let evidence = if off {
            format!("etcd {version} was started with --unsafe-no-fsync")
        } else {
            format!("etcd {version}'s logged command line has no --unsafe-no-fsync")
        };
        return Ok(LoggedFsync { on: !off, evidence });
    }
    let major_minor: Vec<u32> = version
        .split('.')
        .take(2)
        .filter_map(|p| p.parse().ok())
        .collect();
    if major_minor.len() == 2 && (major_minor[0], major_minor[1]) <= (3, 4) {
        return Ok(LoggedFsync {
            on: true,
            evidence: format!(
                "etcd {version} logged its start; 3.4 has no switch to turn fsync off"
            ),
        });
    }
    Err(format!(
        "etcd {version} did not log its command line: cannot tell whether --unsafe-no-fsync is set"
    ))
}

/// `etcd` on `PATH`, else Debian's `/usr/bin/etcd`.
pub fn find_etcd() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("etcd"))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| Some(PathBuf::from("/usr/bin/etcd")).filter(|p| p.is_file()))
}

fn etcd_version_text(binary: &Path) -> Result<String, String> {
    let output = Command::new(binary)
        .arg("--version")
        .env_remove("ETCD_VERSION")
        .output()
        .map_err(|e| format!("cannot run {} --version: {e}", binary.display()))?;
    if !output.status.success() {
        return Err(format!(
            "{} --version failed: {}",
            binary.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The value after `label` on the line that starts with it, trimmed.
fn version_field(text: &str, label: &str) -> Option<String> {
    text.lines()
        .find_map(|line| line.strip_prefix(label))
        .map(|v| v.trim().to_string())
}

/// One HTTP/1.1 request with `Connection: close`; returns the status code and the body. etcd's
/// client port serves both gRPC and HTTP/1.1 (`/health`, the `/v3/...` JSON gateway).
pub(crate) fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT)
        .map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(PROBE_TIMEOUT))
        .map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(PROBE_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("send to {addr}: {e}"))?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .map_err(|e| format!("read from {addr}: {e}"))?;
    let response = String::from_utf8_lossy(&response);
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad HTTP response from {addr}"))?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// Which of the members' status answers (client address, JSON body) comes from the leader: the
/// one whose own id (`header.member_id`) is the `leader` every member names.
fn leader_of(statuses: &[(SocketAddr, String)]) -> Result<SocketAddr, String> {
    let mut leader_id = None;
    let mut ids = Vec::new();
    for (addr, body) in statuses {
        let json: serde_json::Value = serde_json::from_str(body)
            .map_err(|e| format!("etcd status from {addr} is not JSON ({e}): {body}"))?;
        let field = |v: &serde_json::Value| v.as_str().map(str::to_string);
        let (Some(id), Some(leader)) =
            (field(&json["header"]["member_id"]), field(&json["leader"]))
        else {
            return Err(format!(
                "etcd status from {addr} lacks member_id or leader: {body}"
            ));
        };
        if leader == "0" {
            return Err(format!("etcd member at {addr} knows no leader yet"));
        }
        if leader_id.get_or_insert_with(|| leader.clone()) != &leader {
            return Err(format!(
                "etcd members disagree on the leader ({} vs {leader}): an election is under way",
                leader_id.unwrap_or_default()
            ));
        }
        ids.push((id, *addr));
    }
    let leader = leader_id.ok_or("no etcd member answered")?;
    ids.iter()
        .find(|(id, _)| *id == leader)
        .map(|(_, addr)| *addr)
        .ok_or_else(|| format!("etcd leader {leader} is none of the members asked"))
}

/// The last lines of a member's log, for error messages.
fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_leader_is_the_member_whose_id_every_member_names() {
        let addr = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
        let status = |id: &str, leader: &str| {
            format!(
                r#"{{"header":{{"cluster_id":"1","member_id":"{id}"}},"version":"3.4.23","leader":"{leader}"}}"#
            )
        };
        let statuses = vec![
            (addr(1), status("11", "22")),
            (addr(2), status("22", "22")),
            (addr(3), status("33", "22")),
        ];
        assert_eq!(leader_of(&statuses), Ok(addr(2)));
        let split = vec![(addr(1), status("11", "22")), (addr(2), status("22", "33"))];
        assert!(leader_of(&split).unwrap_err().contains("disagree"));
        let none = vec![(addr(1), status("11", "0"))];
        assert!(leader_of(&none).unwrap_err().contains("no leader"));
        let gone = vec![(addr(1), status("11", "99"))];
        assert!(leader_of(&gone)
            .unwrap_err()
            .contains("none of the members"));
        assert!(leader_of(&[(addr(1), "<html>".to_string())])
            .unwrap_err()
            .contains("not JSON"));
    }

    #[test]
    fn fsync_is_read_from_etcds_own_log() {
        let start = |v: &str| {
            format!(
                r#"{{"level":"info","msg":"starting an etcd server","etcd-version":"{v}","name":"x"}}"#
            )
        };
        let running = |args: &str| {
            format!(r#"{{"level":"info","msg":"Running: ","args":["etcd","--name","x"{args}]}}"#)
        };
        let on = fsync_from_log(&start("3.4.23")).unwrap();
        assert!(on.on && on.evidence.contains("3.4.23"), "{on:?}");
        let text = format!("{}\n{}", running(""), start("3.5.1"));
        assert!(fsync_from_log(&text).unwrap().on);
        let text = format!("{}\n{}", running(r#","--unsafe-no-fsync""#), start("3.5.1"));
        let off = fsync_from_log(&text).unwrap();
        assert!(
            !off.on && off.evidence.contains("--unsafe-no-fsync"),
            "{off:?}"
        );
        let env = r#"{"level":"info","msg":"recognized and used environment variable","variable-name":"ETCD_UNSAFE_NO_FSYNC","variable-value":"true"}"#;
        assert!(
            !fsync_from_log(&format!("{env}\n{}", start("3.5.1")))
                .unwrap()
                .on
        );
        // A 3.5 log without its command line, or no start line at all: no guess.
        assert!(fsync_from_log(&start("3.5.1")).is_err());
        assert!(fsync_from_log("not json\n").is_err());
    }

    #[test]
    fn version_fields_parse() {
        let text = "etcd Version: 3.4.23\nGit SHA: Not provided\nGo Version: go1.19.8\n";
        assert_eq!(
            version_field(text, "etcd Version:").as_deref(),
            Some("3.4.23")
        );
        assert_eq!(
            version_field(text, "Go Version:").as_deref(),
            Some("go1.19.8")
        );
    }

    #[test]
    fn layout_assigns_ports_pairwise() {
        let layout = Layout::new(&EtcdOptions::new(3, Path::new("/tmp/x"), 23000));
        assert_eq!(layout.client_ports, vec![23000, 23002, 23004]);
        assert_eq!(layout.peer_ports, vec![23001, 23003, 23005]);
        assert_eq!(layout.initial_cluster(), "etcd-0=http://127.0.0.1:23001,etcd-1=http://127.0.0.1:23003,etcd-2=http://127.0.0.1:23005");
    }

    #[test]
    fn missing_binary_is_a_clear_error() {
        let mut options = EtcdOptions::new(1, Path::new("/tmp/ringraft-etcd-missing"), 23100);
        options.binary = Some(PathBuf::from("/nonexistent/etcd"));
        let err = EtcdCluster::start_with(&options).err().expect("must fail");
        assert!(err.starts_with(ETCD_MISSING), "{err}");
    }
}
