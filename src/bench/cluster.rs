//! Launching a ringraft cluster of `ringraft node` processes on loopback for a bench run:
//! fresh data directories on the local disk, a wait for a leader, and teardown that cannot be
//! forgotten (Drop kills; children also die with the bench process, via PR_SET_PDEATHSIG).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::core::Role;
use crate::netem::{Emulation, Partition, Topology};
use crate::settings::SettingsPatch;
use crate::wire::{self, ClientRequest, FrameDecoder, FrameType, NodeStats, Reply, Request};

/// Offset from `base_port` of the first node's metrics port.
pub const METRICS_PORT_OFFSET: u16 = 40;
const _: () = assert!(METRICS_PORT_OFFSET as usize >= 2 * crate::limits::CLUSTER_NODES_MAX);
const _: () = assert!(METRICS_PORT_OFFSET as usize + crate::limits::CLUSTER_NODES_MAX <= 100);

/// A running cluster.
pub struct Cluster {
    children: Vec<Option<Child>>,
    /// Client addresses, by node (node id = position + 1).
    pub client_addrs: Vec<SocketAddr>,
    /// Where each node serves `/metrics`, by node (`base_port + 40 + position`: above every
    /// peer and client port of the largest cluster, below etcd's `base_port + 100`).
    pub metrics_addrs: Vec<SocketAddr>,
    members: String,
    data_root: PathBuf,
    /// Each node's settings, by node (they differ only where `node_cpus` names cores).
    settings: Vec<SettingsPatch>,
    /// Each node's link emulation, when the run emulates a network or isolates nodes.
    emulations: Option<Vec<Emulation>>,
}

impl Cluster {
    /// Starts `nodes` nodes with data under `data_root` (created fresh) and ports from
    /// `base_port`, and waits until one is leader. With `network`, each node delays its own
    /// messages as the topology says; with `emulate`, each node gets an emulation file even
    /// without a topology (so that partitions can be scheduled).
    pub fn start(
        nodes: usize,
        data_root: &Path,
        base_port: u16,
        settings: &[SettingsPatch],
        network: Option<&Topology>,
        emulate: bool,
    ) -> Result<Cluster, String> {
        let _ = std::fs::remove_dir_all(data_root);
        std::fs::create_dir_all(data_root)
            .map_err(|e| format!("cannot create {}: {e}", data_root.display()))?;
        let mut members = Vec::new();
        let mut client_addrs = Vec::new();
        let mut metrics_addrs = Vec::new();
        for i in 0..nodes {
            metrics_addrs.push(([127, 0, 0, 1], base_port + METRICS_PORT_OFFSET + i as u16).into());
            let peer: SocketAddr = ([127, 0, 0, 1], base_port + 2 * i as u16).into();
            let client: SocketAddr = ([127, 0, 0, 1], base_port + 2 * i as u16 + 1).into();
            members.push(format!("{}={peer}/{client}", i + 1));
            client_addrs.push(client);
        }
        let mut cluster = Cluster {
            children: (0..nodes).map(|_| None).collect(),
            client_addrs,
            metrics_addrs,
            members: members.join(","),
            data_root: data_root.to_path_buf(),
            settings: settings.to_vec(),
            emulations: None,
        };
        if network.is_some() || emulate {
            let seed = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64);
            let emulations = (1..=nodes as u64)
                .map(|id| match network {
                    // Partitions of the topology are scheduled when the load starts.
                    Some(t) => Emulation {
                        partitions: Vec::new(),
                        ..t.emulation_for(id, 0, seed)
                    },
                    None => Emulation::default(),
                })
                .collect();
            cluster.emulations = Some(emulations);
            cluster.write_emulations()?;
        }
        for id in 1..=nodes as u64 {
            cluster.start_node(id)?;
        }
        // Cross-region elections take several round trips; give them time.
        let wait = Duration::from_secs(30)
            + Duration::from_millis(20 * network.map_or(0.0, |t| t.rtt_max_ms()) as u64);
        cluster.wait_for_leader(wait)?;
        Ok(cluster)
    }

    fn emulation_path(&self, id: u64) -> PathBuf {
        self.data_root.join(format!("node{id}.emulation.toml"))
    }

    fn write_emulations(&self) -> Result<(), String> {
        for (i, e) in self.emulations.iter().flatten().enumerate() {
            let path = self.emulation_path(i as u64 + 1);
            let text = toml::to_string(e).map_err(|e| e.to_string())?;
            // Write then rename, so that a node reloading never reads half a file.
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, text)
                .and_then(|()| std::fs::rename(&tmp, &path))
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        }
        Ok(())
    }

    /// Replaces every node's partition schedule (times after `epoch_unix_ms`) and makes the
    /// running nodes reload it (SIGHUP). Nodes apply it within one tick.
    pub fn schedule_partitions(
        &mut self,
        epoch_unix_ms: u64,
        partitions: &[Partition],
    ) -> Result<(), String> {
        let Some(emulations) = &mut self.emulations else {
            return Err("this cluster was started without link emulation".into());
        };
        for e in emulations.iter_mut() {
            e.epoch_unix_ms = epoch_unix_ms;
            e.partitions = partitions.to_vec();
        }
        self.write_emulations()?;
        for child in self.children.iter().flatten() {
            // SAFETY: sending a signal to our own child process.
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGHUP);
            }
        }
        Ok(())
    }

    /// Client addresses with their node ids, for a client that follows leader hints.
    pub fn client_members(&self) -> Vec<crate::client::MemberAddr> {
        self.client_addrs
            .iter()
            .enumerate()
            .map(|(i, &addr)| crate::client::MemberAddr {
                id: Some(i as u64 + 1),
                addr,
            })
            .collect()
    }

    /// Stats of every node that answers, by node id (node id = position + 1).
    pub fn all_stats(&self, timeout: Duration) -> Vec<Option<NodeStats>> {
        self.all_group_stats(0, timeout)
    }

    /// Every node's stats of Raft group `group`, by node id order (`None` where it did not
    /// answer in time).
    pub fn all_group_stats(&self, group: u32, timeout: Duration) -> Vec<Option<NodeStats>> {
        self.client_addrs
            .iter()
            .map(|&addr| stats_of(addr, group, timeout).ok())
            .collect()
    }

    /// (Re)starts node `id`.
    pub fn start_node(&mut self, id: u64) -> Result<(), String> {
        let exe = local_binary()?;
        let dir = self.data_root.join(format!("node{id}"));
        // Appended to: a node restarted by a failover drill keeps what it logged before.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data_root.join(format!("node{id}.log")))
            .map_err(|e| e.to_string())?;
        let mut cmd = Command::new(exe);
        cmd.arg("node")
            .arg("--id")
            .arg(id.to_string())
            .arg("--members")
            .arg(&self.members)
            .arg("--data-dir")
            .arg(&dir)
            .arg("--metrics-addr")
            .arg(self.metrics_addrs[(id - 1) as usize].to_string());
        cmd.args(self.settings[(id - 1) as usize].flags());
        if self.emulations.is_some() {
            cmd.arg("--emulation").arg(self.emulation_path(id));
        }
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log);
        // SAFETY: prctl is async-signal-safe; it only asks the kernel to kill the child when
        // its parent dies, so a killed bench leaves no nodes behind.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start node {id}: {e}"))?;
        self.children[(id - 1) as usize] = Some(child);
        Ok(())
    }

    /// (node id, pid) of every node running now.
    pub fn pids(&self) -> Vec<(u64, u32)> {
        (1..=self.children.len() as u64)
            .filter_map(|id| self.pid(id).map(|pid| (id, pid)))
            .collect()
    }

    /// The process id of node `id`, while it runs.
    pub fn pid(&self, id: u64) -> Option<u32> {
        self.children[(id - 1) as usize].as_ref().map(Child::id)
    }

    /// Kills node `id` with SIGKILL (a crash).
    pub fn kill_node(&mut self, id: u64) {
        if let Some(mut child) = self.children[(id - 1) as usize].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Asks node `id` to stop with SIGTERM: a leader hands its leadership over, then exits.
    pub fn signal_stop(&self, id: u64) {
        if let Some(pid) = self.pid(id) {
            // SAFETY: kill(2) on a child this process started and has not reaped yet.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGTERM);
            }
        }
    }

    /// Waits up to `grace` for node `id` to exit by itself, then kills it; returns whether it
    /// exited by itself.
    pub fn reap(&mut self, id: u64, grace: Duration) -> bool {
        let Some(mut child) = self.children[(id - 1) as usize].take() else {
            return true;
        };
        let until = Instant::now() + grace;
        while Instant::now() < until {
            if let Ok(Some(_)) = child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    /// Polls until exactly one node reports itself leader; returns its id.
    pub fn wait_for_leader(&self, deadline: Duration) -> Result<u64, String> {
        let until = Instant::now() + deadline;
        while Instant::now() < until {
            let leaders: Vec<u64> = self
                .client_addrs
                .iter()
                .filter_map(|&addr| stats(addr, Duration::from_millis(500)).ok())
                .filter(|s| s.role == Role::Leader)
                .map(|s| s.node_id)
                .collect();
            if leaders.len() == 1 {
                return Ok(leaders[0]);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!(
            "no leader within {deadline:?}; see the node logs in {}",
            self.data_root.display()
        ))
    }

    /// The data directory root.
    pub fn data_root(&self) -> &Path {
        &self.data_root
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in self.children.iter_mut().flatten() {
            // SIGTERM lets nodes finish their in-flight syncs; then make sure.
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
            }
        }
        let until = Instant::now() + Duration::from_secs(5);
        for child in self.children.iter_mut().flatten() {
            while Instant::now() < until && matches!(child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// This `ringraft` binary: the running executable, or (in tests) the one built next to it.
pub fn local_binary() -> Result<PathBuf, String> {
    let exe =
        std::env::current_exe().map_err(|e| format!("cannot find the ringraft binary: {e}"))?;
    if exe.file_name().is_some_and(|n| n == "ringraft") {
        Ok(exe)
    } else {
        ringraft_binary()
    }
}

/// The `ringraft` binary next to the current executable (tests run from target/*/deps).
fn ringraft_binary() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    for dir in exe.ancestors().skip(1).take(3) {
        let candidate = dir.join("ringraft");
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err("cannot find the ringraft binary next to this executable".into())
}

/// One blocking Stats request to the node at `addr` (its group 0).
pub fn stats(addr: SocketAddr, timeout: Duration) -> Result<NodeStats, String> {
    stats_of(addr, 0, timeout)
}

/// One blocking Stats request for group `group` of the node at `addr`.
pub fn stats_of(addr: SocketAddr, group: u32, timeout: Duration) -> Result<NodeStats, String> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let mut fbb = flatbuffers::FlatBufferBuilder::new();
    let request = ClientRequest::new(1, 0, 1, group, Request::Stats);
    let mut frame = Vec::new();
    wire::write_frame(
        FrameType::ClientRequest,
        wire::encode_client_request(&request, &mut fbb),
        &mut frame,
    )
    .map_err(|e| e.to_string())?;
    stream.write_all(&frame).map_err(|e| e.to_string())?;
    let mut decoder = FrameDecoder::with_bounds(
        crate::limits::FRAME_BYTES_MAX,
        crate::limits::CLIENT_RECEIVE_BUFFER_BYTES,
    );
    loop {
        if let Some(frame) = decoder.next_frame().map_err(|e| e.to_string())? {
            let response = wire::decode_client_response(
                frame
                    .body_of(FrameType::ClientResponse)
                    .map_err(|e| e.to_string())?,
            )
            .map_err(|e| e.to_string())?;
            return match response.result {
                Ok(Reply::Stats(stats)) => Ok(stats),
                other => Err(format!("unexpected stats answer {other:?}")),
            };
        }
        let n = stream
            .read(decoder.read_space())
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed".into());
        }
        decoder.mark_read(n);
    }
}
