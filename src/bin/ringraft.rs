//! The `ringraft` command line: node, bench, tune, load, sim, log, disk-probe.
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// ringraft: a high-throughput, benchmark-oriented Raft.
#[derive(Parser)]
#[command(version, about)]
enum Cli {
    /// Run one Raft node (flags, or `--config node.toml`). SIGTERM/SIGINT stop it cleanly;
    /// SIGHUP re-reads its `--emulation` file (link emulation, scheduled partitions).
    Node(Box<NodeArgs>),
    /// Write a key through the cluster (for humans; use `load` for measurements).
    Put {
        /// Client addresses of the nodes, comma separated.
        #[arg(long, value_delimiter = ',', required = true)]
        cluster: Vec<ringraft::client::MemberAddr>,
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
    /// Read a key (linearizable unless `--stale`).
    Get {
        /// Client addresses of the nodes, comma separated.
        #[arg(long, value_delimiter = ',', required = true)]
        cluster: Vec<ringraft::client::MemberAddr>,
        /// The key.
        key: String,
        /// Read the local state machine of whichever node answers, possibly stale.
        #[arg(long)]
        stale: bool,
    },
    /// Show a node's role, term, indexes and counters.
    Stats {
        /// The node's client address.
        addr: std::net::SocketAddr,
    },
    /// Ask the leader at ADDR to hand leadership to node `--to` (Raft thesis 3.10); returns once
    /// it has stepped down. Exits 1 with the reason otherwise (not the leader: which node is;
    /// unknown id; a transfer already under way; timed out).
    TransferLeader {
        /// The leader's client address.
        addr: std::net::SocketAddr,
        /// The id of the node that should lead.
        #[arg(long)]
        to: u64,
    },
    /// Membership changes: list the members, add a node (as a learner that is promoted once it
    /// has caught up), promote a learner, remove a node. Requests go to the leader; a follower
    /// answers with the leader's address. One change at a time.
    #[command(subcommand, after_long_help = MEMBER_PROCEDURE)]
    Member(MemberCmd),
    /// Run a benchmark from bench-configs/*.toml (default: bench-configs/3node-1kb.toml, briefly):
    /// start the cluster(s), drive the load, write results/<config>/<timestamp>/report.{md,json},
    /// .hgrm percentile files and SVG plots. Each report also records the data disk (a 1 s
    /// fdatasync probe before the run) and the machine during every measured window (CPU busy,
    /// iowait, steal; the disk's busy share, MiB/s and flushes). With RINGRAFT_TRACE=1 the node
    /// logs keep a trace under results/.data (read it with scripts/trace-stages.py). Exits 0 when
    /// every check passes, 3 when a check FAILED (the report is still written), 1 when the run
    /// could not be made.
    Bench(BenchArgs),
    /// Sweep settings of a bench config over a grid (`--sweep KEY=V1,V2` per axis): run every
    /// point, print throughput, p50/p99 and elections, and name the best point under
    /// `--p99-max-ms`; writes results/<config>/tune-<timestamp>/tune.{md,json,svg}.
    Tune(TuneArgs),
    /// Drive load against a running ringraft cluster and report commits/s and latency percentiles.
    Load(Box<LoadArgs>),
    /// Run the deterministic simulator: one seed (`--seed`) or a sweep (`--seeds A..B`).
    Sim(ringraft::sim::cli::SimArgs),
    /// Inspect a node's log directory offline.
    #[command(subcommand)]
    Log(LogCmd),
    /// Time small writes, each followed by fdatasync, in a directory (the probe `bench` runs
    /// before every run): syncs/s, p50/p99/max and writes slower than 8 ms. On a shared VM the
    /// answer changes over the day; run it next to a benchmark to know which disk you measured.
    DiskProbe {
        /// Directory to probe (a scratch file is written there and deleted).
        #[arg(default_value = "results")]
        dir: PathBuf,
        /// Bytes per write (1 to 16 MiB).
        #[arg(long, default_value_t = ringraft::bench::disk::WRITE_BYTES)]
        bytes: usize,
        /// How long to probe, in seconds.
        #[arg(long, default_value_t = 4.0)]
        seconds: f64,
    },
    /// This host's facts as JSON (CPU, cores, kernel, memory; with --data-dir its disk), and
    /// with a window what it did during it (CPU, data disk, network): what `bench --hosts` runs
    /// on each host for its report.
    HostProbe {
        /// The data directory whose disk to probe and sample.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Start of the window to sample, Unix milliseconds.
        #[arg(long, requires = "window_ms")]
        window_start_unix_ms: Option<u64>,
        /// Length of the window, milliseconds.
        #[arg(long, requires = "window_start_unix_ms")]
        window_ms: Option<u64>,
        /// Node processes on this host whose threads' CPU to sample over the window, each as
        /// NODE_ID=PID, comma separated.
        #[arg(long, value_delimiter = ',', requires = "window_ms", value_parser = parse_node_pid)]
        node_pids: Vec<(u64, u32)>,
    },
}

/// The procedure `ringraft member --help` prints (also in the README, "Operations").
const MEMBER_PROCEDURE: &str = "\
Replace a node whose disk died (node 3 here, the cluster's leader at 127.0.0.1:8001):
  1. ringraft member remove 127.0.0.1:8001 3
     (the node is gone from the configuration; a majority of the rest keeps serving)
  2. start a fresh node with a NEW id and an empty data dir, in join mode:
     ringraft node --join --id 4 --data-dir /data/n4 \\
       --members 4=127.0.0.1:7004/127.0.0.1:8004
     (its own addresses are enough: it learns the others' from their connections)
  3. ringraft member add 127.0.0.1:8001 4 127.0.0.1:7004/127.0.0.1:8004
     (adds it as a learner, waits until it has caught up, then promotes it to voter;
      with --learner it stays a learner: promote it later with `member promote`)
  4. ringraft member list 127.0.0.1:8001   (4 is a voter, its lag near 0)
Grow a cluster: steps 2 to 4 for each new node. Shrink it: `member remove` each node
(removing the leader is fine: it steps down once the change is committed).
Remove before you add when replacing, so the cluster never counts a dead voter in a
larger majority; never run two changes at once (the second is refused).";

/// `ringraft member ...`
#[derive(Subcommand)]
enum MemberCmd {
    /// Print the members as the node at ADDR sees them: id, role (voter / learner, or joining /
    /// leaving while a change is under way), peer and client addresses, and when ADDR leads,
    /// each member's match index and lag behind the leader's log.
    List {
        /// A node's client address (the leader's, for match and lag).
        addr: std::net::SocketAddr,
    },
    /// Add node ID at PEER_ADDR/CLIENT_ADDR: as a learner, then (unless --learner) wait until it
    /// has caught up and promote it to voter. Start the node first with `ringraft node --join`.
    Add {
        /// The leader's client address.
        addr: std::net::SocketAddr,
        /// The new node's id (not a member now).
        id: u64,
        /// The new node's advertised addresses, PEER_ADDR/CLIENT_ADDR.
        addrs: String,
        /// Only add it as a learner (it receives the log, does not vote); promote it later.
        #[arg(long)]
        learner: bool,
        /// How long to wait for the learner to catch up before giving up on the promotion
        /// (it stays a learner).
        #[arg(long, default_value_t = 120)]
        catch_up_secs: u64,
    },
    /// Make learner ID a voter (refused until it has caught up).
    Promote {
        /// The leader's client address.
        addr: std::net::SocketAddr,
        /// The learner's id.
        id: u64,
    },
    /// Remove node ID (voter or learner). Removing the leader is allowed: it steps down once the
    /// change is committed and the others elect a new one.
    Remove {
        /// The leader's client address.
        addr: std::net::SocketAddr,
        /// The node's id.
        id: u64,
    },
}

/// `ringraft log ...`
#[derive(Subcommand)]
enum LogCmd {
    /// Check every segment and record; exit 0 when clean, 1 on corruption or when DIR holds
    /// no log, 2 on a torn tail.
    Verify {
        /// The log directory, or a node's data directory (its `log/` is used).
        dir: PathBuf,
    },
    /// Print entries [from, to) one per line.
    Dump {
        /// The log directory, or a node's data directory (its `log/` is used).
        dir: PathBuf,
        /// First index to print.
        #[arg(long, default_value_t = 1)]
        from: u64,
        /// One past the last index to print.
        #[arg(long, default_value_t = u64::MAX)]
        to: u64,
    },
}

/// The log directory `ringraft log` reads: `dir` itself when it holds segment files, else a
/// node's data directory's `log/`; an error when neither holds a log.
fn log_dir(dir: &std::path::Path) -> Result<PathBuf, String> {
    let has_segments = |d: &std::path::Path| -> Result<bool, String> {
        let entries =
            std::fs::read_dir(d).map_err(|e| format!("cannot read {}: {e}", d.display()))?;
        Ok(entries.flatten().any(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| ringraft::log::parse_segment_name(n).is_some())
        }))
    };
    if has_segments(dir)? {
        return Ok(dir.to_path_buf());
    }
    let inner = dir.join("log");
    if inner.is_dir() && has_segments(&inner)? {
        return Ok(inner);
    }
    Err(format!(
        "{} holds no log: no segment files (NNNNNNNNNNNNNNNNNNNN.seg) in it{}",
        dir.display(),
        if inner.is_dir() {
            format!(" or in {}", inner.display())
        } else {
            " and no log/ directory (give a node's data directory or its log/)".to_string()
        }
    ))
}

fn run_log(cmd: LogCmd) -> ExitCode {
    let dir = match &cmd {
        LogCmd::Verify { dir } | LogCmd::Dump { dir, .. } => log_dir(dir),
    };
    let dir = match dir {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("ringraft log: {e}");
            return ExitCode::from(1);
        }
    };
    match cmd {
        LogCmd::Verify { .. } => {
            let report = ringraft::log::verify(&dir);
            println!("{report}");
            if report.problem.is_some() {
                ExitCode::from(1)
            } else if report.torn_tail.is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            }
        }
        LogCmd::Dump { from, to, .. } => {
            match ringraft::log::dump(&dir, from, to, &mut std::io::stdout().lock()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("ringraft log dump: {e}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

/// `ringraft node`: a config file, or flags; flags given with a config file override it.
#[derive(clap::Args)]
struct NodeArgs {
    /// TOML file with the node's settings (see README, "Running a cluster").
    #[arg(long)]
    config: Option<PathBuf>,
    /// This node's id.
    #[arg(long)]
    id: Option<u64>,
    /// Every member as id=peer_addr/client_addr, comma separated, e.g.
    /// 1=127.0.0.1:7001/127.0.0.1:8001,2=127.0.0.1:7002/127.0.0.1:8002,... These are the
    /// advertised addresses (hosts may be DNS names, resolved at start and on each reconnect).
    #[arg(long)]
    members: Option<String>,
    /// Where this node listens for peers, e.g. 0.0.0.0:7001 (default: its advertised peer address).
    #[arg(long)]
    peer_listen: Option<std::net::SocketAddr>,
    /// Where this node listens for clients (default: its advertised client address).
    #[arg(long)]
    client_listen: Option<std::net::SocketAddr>,
    /// Where the log, hard state and snapshots live.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Cluster id; peers of other clusters are refused (default 1).
    #[arg(long)]
    cluster_id: Option<u64>,
    /// Link emulation file (TOML: per-peer delay, jitter, loss, bandwidth, partitions; see
    /// README, "Cross-region"). Applied to this node's outgoing peer messages; SIGHUP reloads it.
    #[arg(long)]
    emulation: Option<PathBuf>,
    /// Serve Prometheus metrics on http://ADDR/metrics (counters, latency histograms, role,
    /// term, indexes, per-follower lag).
    #[arg(long, value_name = "ADDR")]
    metrics_addr: Option<std::net::SocketAddr>,
    /// Join a running cluster as a new member: the data dir must be empty (refused otherwise);
    /// the node holds no configuration, does not campaign and waits until a leader adds it
    /// (`ringraft member add`) and sends it the log or a snapshot. `--members` names this node
    /// (its advertised addresses) and the current members (at least the leader that will add
    /// it: it answers only the nodes it knows until it has the configuration). Restart a node
    /// that joined WITHOUT --join: its data dir remembers that it joined.
    #[arg(long)]
    join: bool,
    /// Check the configuration, print the settings the node would run with (as TOML, after
    /// timing is derived from rtt_ms / election_ms / heartbeat_ms) and exit without starting.
    #[arg(long)]
    check_config: bool,
    /// The tunable settings (see README, "Reference"): one flag per setting, named as in the
    /// TOML file.
    #[command(flatten)]
    settings: ringraft::settings::SettingsPatch,
}

fn node_config(
    args: NodeArgs,
) -> Result<ringraft::runtime::NodeConfig, ringraft::runtime::NodeConfigError> {
    use ringraft::runtime::{parse_members, NodeConfig, NodeConfigError};
    let missing = |field: &'static str| NodeConfigError::Field {
        field,
        reason: "required (give it as a flag or in --config)".into(),
    };
    let mut config = match &args.config {
        Some(path) => NodeConfig::from_file(path)?,
        None => {
            let members =
                parse_members(args.members.as_deref().ok_or_else(|| missing("members"))?)?;
            NodeConfig::new(
                args.id.ok_or_else(|| missing("id"))?,
                members,
                args.data_dir.clone().ok_or_else(|| missing("data_dir"))?,
            )
        }
    };
    if let (Some(id), Some(_)) = (args.id, &args.config) {
        config.id = id;
    }
    if let (Some(dir), Some(_)) = (args.data_dir, &args.config) {
        config.data_dir = dir;
    }
    config.peer_listen_addr = args.peer_listen.or(config.peer_listen_addr);
    config.client_listen_addr = args.client_listen.or(config.client_listen_addr);
    config.cluster_id = args.cluster_id.unwrap_or(config.cluster_id);
    config.emulation_file = args.emulation.or(config.emulation_file);
    config.metrics_addr = args.metrics_addr.or(config.metrics_addr);
    config.join |= args.join;
    args.settings.apply(&mut config.settings);
    config.derive_timing();
    config.validate()?;
    Ok(config)
}

fn run_node(args: NodeArgs) -> ExitCode {
    let check_only = args.check_config;
    let config = match node_config(args) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("ringraft node: {e}");
            return ExitCode::from(2);
        }
    };
    if check_only {
        print!("{}", config.settings.to_toml());
        return ExitCode::SUCCESS;
    }
    match ringraft::runtime::run_node(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ringraft node: {e}");
            ExitCode::from(1)
        }
    }
}

/// A `NotLeader` answer from the node at `addr` as a message naming the node to ask instead.
fn ask_the_leader(
    addr: std::net::SocketAddr,
    e: ringraft::client::Error,
) -> ringraft::client::Error {
    use ringraft::client::Error;
    use ringraft::wire::ClientError;
    let Error::Server(ClientError::NotLeader {
        leader_hint,
        leader_addr,
        ..
    }) = e
    else {
        return e;
    };
    let message = match (leader_hint, leader_addr) {
        (Some(id), Some(at)) => {
            format!("the node at {addr} is not the leader; node {id} is, at {at}: ask it")
        }
        (Some(id), None) => format!("the node at {addr} is not the leader; node {id} is: ask it"),
        _ => format!("the node at {addr} is not the leader and knows no leader"),
    };
    Error::Server(ClientError::Refused { message })
}

/// `ringraft member ...`: one request each, except `add`, which waits for the learner to catch
/// up before it promotes it.
fn run_member(cmd: MemberCmd) -> ExitCode {
    use ringraft::wire::{MemberChange, MemberChangeKind};
    // A change answers once committed (and out of the joint configuration); the node itself
    // gives up after a few election timeouts, so wait longer than that here.
    let wait = Some(std::time::Duration::from_secs(30));
    let change = |kind, id, context: &str| MemberChange {
        kind,
        id,
        context: bytes::Bytes::copy_from_slice(context.as_bytes()),
    };
    match cmd {
        MemberCmd::List { addr } => {
            run_client_waiting(vec![addr.into()], wait, move |c| async move {
                let listing = c.member_list().await?;
                Ok(format_members(&listing))
            })
        }
        MemberCmd::Promote { addr, id } => {
            run_client_waiting(vec![addr.into()], wait, move |c| async move {
                c.member_change(change(MemberChangeKind::Promote, id, ""))
                    .await
                    .map(|index| format!("node {id} is a voter (configuration at entry {index})"))
                    .map_err(|e| ask_the_leader(addr, e))
            })
        }
        MemberCmd::Remove { addr, id } => {
            run_client_waiting(vec![addr.into()], wait, move |c| async move {
                c.member_change(change(MemberChangeKind::Remove, id, ""))
                    .await
                    .map(|index| {
                        format!("node {id} is no longer a member (configuration at entry {index})")
                    })
                    .map_err(|e| ask_the_leader(addr, e))
            })
        }
        MemberCmd::Add {
            addr,
            id,
            addrs,
            learner,
            catch_up_secs,
        } => run_client_waiting(vec![addr.into()], wait, move |c| async move {
            let index = c
                .member_change(change(MemberChangeKind::AddLearner, id, &addrs))
                .await
                .map_err(|e| ask_the_leader(addr, e))?;
            println!("node {id} added as a learner at {addrs} (configuration at entry {index})");
            if learner {
                return Ok(format!("node {id} stays a learner: promote it with `ringraft member promote {addr} {id}`"));
            }
            let deadline =
                std::time::Instant::now() + std::time::Duration::from_secs(catch_up_secs);
            let mut last_lag = None;
            loop {
                let listing = c.member_list().await.map_err(|e| ask_the_leader(addr, e))?;
                let lag = listing
                    .members
                    .iter()
                    .find(|m| m.id == id)
                    .and_then(|m| m.match_index)
                    .map(|m| listing.last_log_index.saturating_sub(m));
                if lag.is_some_and(|l| l <= ringraft::limits::PROMOTE_LAG_ENTRIES_MAX) {
                    match c
                        .member_change(change(MemberChangeKind::Promote, id, ""))
                        .await
                    {
                        Ok(index) => {
                            return Ok(format!(
                            "node {id} caught up and is a voter (configuration at entry {index})"
                        ))
                        }
                        // It fell behind again between the two requests: wait and retry.
                        Err(ringraft::client::Error::Server(
                            ringraft::wire::ClientError::Refused { message },
                        )) if message.contains("not caught up") => {}
                        Err(e) => return Err(ask_the_leader(addr, e)),
                    }
                }
                if std::time::Instant::now() > deadline {
                    return Err(ringraft::client::Error::Server(ringraft::wire::ClientError::Refused {
                        message: format!(
                            "node {id} did not catch up within {catch_up_secs} s (lag {}): it stays a learner; is it running (ringraft node --join)? promote it later with `ringraft member promote {addr} {id}`",
                            lag.map_or("unknown".into(), |l| format!("{l} entries"))
                        ),
                    }));
                }
                if lag != last_lag {
                    println!(
                        "node {id} catching up: {}",
                        lag.map_or("no entries acknowledged yet".into(), |l| format!(
                            "{l} entries behind"
                        ))
                    );
                    last_lag = lag;
                }
                glommio::timer::sleep(std::time::Duration::from_millis(200)).await;
            }
        }),
    }
}

/// `ringraft member list`: one line per member.
fn format_members(listing: &ringraft::wire::MemberListing) -> String {
    let leads = listing.leader_id == Some(listing.node_id);
    let mut out = format!(
        "node {}'s view: leader {}, configuration {}, commit index {}, last index {}\n",
        listing.node_id,
        listing
            .leader_id
            .map_or("unknown".into(), |l| l.to_string()),
        match listing.configuration_index {
            0 => "from --members (never changed)".to_string(),
            i => format!("at entry {i}"),
        },
        listing.commit_index,
        listing.last_log_index
    );
    out.push_str(&format!(
        "{:>4}  {:<16} {:<22} {:<22} {:>10} {:>8}",
        "id", "role", "peer_addr", "client_addr", "match", "lag"
    ));
    for m in &listing.members {
        let (matched, lag) = match m.match_index {
            Some(i) => (
                i.to_string(),
                listing.last_log_index.saturating_sub(i).to_string(),
            ),
            None => ("-".into(), "-".into()),
        };
        out.push_str(&format!(
            "\n{:>4}  {:<16} {:<22} {:<22} {:>10} {:>8}",
            m.id,
            m.role.to_string(),
            m.peer_addr.as_deref().unwrap_or("?"),
            m.client_addr.as_deref().unwrap_or("?"),
            matched,
            lag
        ));
    }
    if !leads {
        out.push_str("\n(match and lag are known only to the leader: ask it)");
    }
    out
}

/// Runs one client future on a small executor and prints its result.
fn run_client<F, Fut>(members: Vec<ringraft::client::MemberAddr>, f: F) -> ExitCode
where
    F: FnOnce(ringraft::client::Client) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<String, ringraft::client::Error>>,
{
    run_client_waiting(members, None, f)
}

/// [`run_client`] whose requests may wait `attempt_timeout` for their answer (the client's
/// default is made for writes, not for a membership change that waits on a joint commit).
fn run_client_waiting<F, Fut>(
    members: Vec<ringraft::client::MemberAddr>,
    attempt_timeout: Option<std::time::Duration>,
    f: F,
) -> ExitCode
where
    F: FnOnce(ringraft::client::Client) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<String, ringraft::client::Error>>,
{
    let client_id = ringraft::loadgen::process::random_session_id();
    let result = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(1 << 20)
        .spawn(move || async move {
            let mut options = ringraft::client::ClientOptions::new(members, client_id);
            if let Some(timeout) = attempt_timeout {
                options.attempt_timeout = timeout;
            }
            f(ringraft::client::Client::new(options)).await
        })
        .map_err(|e| e.to_string())
        .and_then(|h| h.join().map_err(|e| format!("{e:?}")));
    match result {
        Ok(Ok(text)) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Ok(Err(e)) => {
            eprintln!("ringraft: {e}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("ringraft: executor: {e}");
            ExitCode::from(1)
        }
    }
}

/// `ringraft bench`.
#[derive(clap::Args)]
struct BenchArgs {
    /// Config files; none runs bench-configs/3node-1kb.toml for a short 5 s measurement.
    configs: Vec<PathBuf>,
    /// Also run a real etcd cluster with the identical workload in the same run.
    #[arg(long, value_name = "etcd")]
    compare: Option<String>,
    /// Repeat each config N times and report the spread.
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// Which etcd members the load talks to: `spread` over all (etcd's benchmark tool; followers
    /// forward to the leader) or `leader` only (as ringraft's client does). Overrides the
    /// config's `etcd_route`; default spread.
    #[arg(long, value_enum)]
    etcd_route: Option<ringraft::bench::config::EtcdRoute>,
    /// Test hook for the harness's verdicts: send the ringraft load to closed ports, so that
    /// every ringraft request fails and a comparison must FAIL.
    #[arg(long, hide = true)]
    test_break_ringraft_writes: bool,
    /// Run on real hosts over SSH, as listed in this inventory (see
    /// bench-configs/hosts.example.toml); without it everything runs on this machine.
    #[arg(long, value_name = "HOSTS.toml")]
    hosts: Option<PathBuf>,
    #[command(flatten)]
    run: RunArgs,
}

/// What `bench` and `tune` share: how long each measurement runs and where results go.
#[derive(clap::Args)]
struct RunArgs {
    /// Measured seconds of each run (overrides the config).
    #[arg(long)]
    duration_s: Option<f64>,
    /// Warm-up seconds of each run (overrides the config).
    #[arg(long)]
    warmup_s: Option<f64>,
    /// Where results go.
    #[arg(long, default_value = "results")]
    results_dir: PathBuf,
    /// No progress lines while runs run (by default: one line updated every second on a
    /// terminal, a line every 5 s otherwise).
    #[arg(long)]
    quiet: bool,
}

/// `ringraft tune`.
#[derive(clap::Args)]
struct TuneArgs {
    /// The bench config to start from, e.g. bench-configs/cross-region-3.toml.
    config: PathBuf,
    /// One axis of the grid: KEY=V1,V2,... where KEY is a [node] setting (batch_entries_max,
    /// batch_bytes_max, election_ms, heartbeat_ms, rtt_ms, tick_ms, inflight_msgs_max,
    /// inflight_bytes_max, ...) or a dotted path (network.jitter_ms, workload.value_bytes).
    /// Repeat for a grid.
    #[arg(long, required = true, value_name = "KEY=V1,V2,...")]
    sweep: Vec<String>,
    /// The best point is the fastest with p99 at or below this bound (and no errors).
    #[arg(long)]
    p99_max_ms: Option<f64>,
    /// Run every point on real hosts over SSH, as listed in this inventory.
    #[arg(long, value_name = "HOSTS.toml")]
    hosts: Option<PathBuf>,
    #[command(flatten)]
    run: RunArgs,
}

fn run_tune(args: TuneArgs) -> ExitCode {
    use std::time::Duration;
    let sweeps = match args
        .sweep
        .iter()
        .map(|s| ringraft::bench::tune::parse_sweep(s))
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(sweeps) => sweeps,
        Err(e) => {
            eprintln!("ringraft tune: {e}");
            return ExitCode::from(2);
        }
    };
    let options = ringraft::bench::tune::TuneOptions {
        config: args.config,
        sweeps,
        p99_max_ms: args.p99_max_ms,
        results_dir: args.run.results_dir,
        duration: args.run.duration_s.map(Duration::from_secs_f64),
        warmup: args.run.warmup_s.map(Duration::from_secs_f64),
        progress: ringraft::loadgen::progress::Mode::detect(args.run.quiet),
        hosts: args.hosts,
    };
    match ringraft::bench::tune::run(&options) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ringraft tune: {e}");
            ExitCode::from(1)
        }
    }
}

fn run_bench(args: BenchArgs) -> ExitCode {
    use std::time::Duration;
    let quick = args.configs.is_empty();
    let configs = if quick {
        vec![ringraft::bench::default_config_path()]
    } else {
        args.configs
    };
    match args.compare.as_deref() {
        None | Some("etcd") => {}
        Some(other) => {
            eprintln!("ringraft bench: --compare {other}: only `etcd` is supported");
            return ExitCode::from(2);
        }
    }
    let options = ringraft::bench::BenchOptions {
        configs,
        compare_etcd: args.compare.is_some(),
        repeat: args.repeat,
        etcd_route: args.etcd_route,
        break_ringraft_writes: args.test_break_ringraft_writes,
        progress: ringraft::loadgen::progress::Mode::detect(args.run.quiet),
        hosts: args.hosts,
        results_dir: args.run.results_dir,
        duration: args
            .run
            .duration_s
            .or(quick.then_some(5.0))
            .map(Duration::from_secs_f64),
        warmup: args
            .run
            .warmup_s
            .or(quick.then_some(1.0))
            .map(Duration::from_secs_f64),
    };
    match ringraft::bench::run(&options) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e @ ringraft::bench::BenchError::ChecksFailed { .. }) => {
            eprintln!("ringraft bench: {e}");
            ExitCode::from(3)
        }
        Err(e) => {
            eprintln!("ringraft bench: {e}");
            ExitCode::from(1)
        }
    }
}

/// NODE_ID=PID.
fn parse_node_pid(s: &str) -> Result<(u64, u32), String> {
    let (id, pid) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` is not NODE_ID=PID"))?;
    let id = id.parse().map_err(|e| format!("node id in `{s}`: {e}"))?;
    let pid = pid.parse().map_err(|e| format!("pid in `{s}`: {e}"))?;
    Ok((id, pid))
}

fn run_host_probe(
    data_dir: Option<PathBuf>,
    window: Option<(u64, u64)>,
    node_pids: Vec<(u64, u32)>,
) -> ExitCode {
    use ringraft::bench::hostinfo::{sample_window, HostFacts, HostProbe};
    if let Some(dir) = &data_dir {
        if let Err(e) = std::fs::create_dir_all(dir) {
            eprintln!("ringraft host-probe: cannot create {}: {e}", dir.display());
            return ExitCode::from(1);
        }
    }
    let probe = match window {
        // A sampling run does not probe the disk: it would compete with the benchmark's writes.
        Some((start, ms)) => HostProbe {
            facts: HostFacts::detect(None),
            window: Some(sample_window(
                data_dir.as_deref().unwrap_or(std::path::Path::new("/")),
                start,
                std::time::Duration::from_millis(ms),
                node_pids,
            )),
        },
        None => HostProbe {
            facts: HostFacts::detect(data_dir.as_deref()),
            window: None,
        },
    };
    match serde_json::to_string(&probe) {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ringraft host-probe: {e}");
            ExitCode::from(1)
        }
    }
}

/// `ringraft load`.
#[derive(clap::Args)]
struct LoadArgs {
    /// Client addresses of the cluster's nodes, comma separated, each as ID=ADDR (leader hints
    /// name node ids, so a client given ids goes straight to the leader) or a bare ADDR.
    #[arg(long, value_delimiter = ',', required = true)]
    cluster: Vec<ringraft::client::MemberAddr>,
    /// What the cluster is: `ringraft`, or `etcd` (v3 gRPC API; needs a build with --features etcd).
    #[arg(long, default_value = "ringraft")]
    target: String,
    /// Connections (client sessions).
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Requests in flight per connection (closed loop).
    #[arg(long, default_value_t = 16)]
    inflight: usize,
    /// Open loop at this many requests per second (latency from intended send times).
    #[arg(long)]
    rate: Option<u64>,
    /// Value size in bytes.
    #[arg(long, default_value_t = 1024)]
    value_bytes: usize,
    /// Key size in bytes.
    #[arg(long, default_value_t = 16)]
    key_bytes: usize,
    /// Distinct keys.
    #[arg(long, default_value_t = 100_000)]
    key_space: u64,
    /// Fraction of reads, 0.0..=1.0.
    #[arg(long, default_value_t = 0.0)]
    read_ratio: f64,
    /// Serializable (local, possibly stale) reads instead of linearizable ones.
    #[arg(long)]
    stale_reads: bool,
    /// Warm-up seconds.
    #[arg(long, default_value_t = 2.0)]
    warmup_s: f64,
    /// Measured seconds.
    #[arg(long, default_value_t = 10.0)]
    duration_s: f64,
    /// Load threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Pin the load threads on these cores, round robin (`0-1`, `2,3`); by default they run
    /// wherever the kernel puts them. Keep them off the nodes' cores when measuring.
    #[arg(long, value_parser = parse_load_cpus)]
    cpus: Option<Vec<usize>>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Write the write-latency percentile distribution (.hgrm) here.
    #[arg(long)]
    hgrm: Option<PathBuf>,
    /// No progress lines while the load runs (by default: one line updated every second on a
    /// terminal, a line every 5 s otherwise).
    #[arg(long)]
    quiet: bool,
    /// Write the measured window's latency histograms here as an HdrHistogram interval log (V2,
    /// compressed), which `ringraft bench --hosts` adds up across load processes.
    #[arg(long)]
    hlog: Option<PathBuf>,
    /// The cluster's Raft groups (its nodes' `groups`): each request goes to the leader of its
    /// key's group, and the report counts writes per group.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=ringraft::kv::GROUPS_MAX as i64))]
    groups: u32,
    /// Seed of the key streams; give each load process of one run its own.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Start the load (its warm-up) at this wall-clock time, Unix milliseconds, so that load
    /// processes on several hosts start together.
    #[arg(long)]
    start_at_unix_ms: Option<u64>,
}

/// `--cpus` of `ringraft load`: cores by number (a count says nothing about where).
fn parse_load_cpus(text: &str) -> Result<Vec<usize>, String> {
    let cpus = ringraft::runtime::Cpus::parse(text)?;
    cpus.named_cores("--cpus").map(<[usize]>::to_vec)
}

fn run_load(args: LoadArgs) -> ExitCode {
    use ringraft::loadgen::{LoadReport, LoopMode, Workload};
    use std::time::Duration;
    let mode = match args.rate {
        Some(rate_per_s) => LoopMode::Open {
            rate_per_s,
            connections: args.connections,
        },
        None => LoopMode::Closed {
            connections: args.connections,
            inflight_per_connection: args.inflight,
        },
    };
    let mut workload = Workload {
        mode,
        key_bytes: args.key_bytes,
        value_bytes: args.value_bytes,
        key_space: args.key_space,
        read_ratio: args.read_ratio,
        linearizable_reads: !args.stale_reads,
        warmup: Duration::from_secs_f64(args.warmup_s),
        duration: Duration::from_secs_f64(args.duration_s),
        seed: args.seed,
        groups: args.groups,
    };
    if let Some(at) = args.start_at_unix_ms {
        // A start further ahead than this is a clock problem, not a plan.
        if let Err(e) = ringraft::loadgen::process::wait_until(at, Duration::from_secs(300)) {
            eprintln!("ringraft load: --start-at-unix-ms: {e}");
            return ExitCode::from(2);
        }
    }
    let started_unix_ms = ringraft::loadgen::process::unix_ms_now();
    if let Some(at) = args.start_at_unix_ms {
        // Started late: a shorter warm-up keeps the measured window where the others have it.
        let late = Duration::from_millis(started_unix_ms.saturating_sub(at));
        workload.warmup = workload.warmup.saturating_sub(late);
    }
    let window_start_unix_ms = started_unix_ms + workload.warmup.as_millis() as u64;
    use ringraft::loadgen::failure;
    let cluster_addrs: Vec<std::net::SocketAddr> = args.cluster.iter().map(|m| m.addr).collect();
    // What was asked is judged before anything is dialled: a misspelt target is the user's
    // error to hear about, not an unreachable cluster.
    if !matches!(args.target.as_str(), "ringraft" | "etcd") {
        eprintln!(
            "ringraft load: unknown target `{}` (ringraft or etcd)",
            args.target
        );
        return ExitCode::from(1);
    }
    let load_threads = ringraft::loadgen::LoadThreads {
        count: args.threads,
        cores: args.cpus.clone().unwrap_or_default(),
    };
    let live = std::sync::Arc::new(ringraft::loadgen::progress::Live::default());
    let window_start = std::time::Instant::now() + workload.warmup;
    let ringraft = args.target == "ringraft";
    let printer = ringraft::loadgen::progress::Printer::start(
        ringraft::loadgen::progress::Mode::detect(args.quiet),
        args.target.clone(),
        ringraft.then(|| live.clone()),
        window_start,
        window_start + workload.duration,
        ringraft.then(|| ringraft::bench::elections_of(cluster_addrs.clone())),
    );
    let result = match args.target.as_str() {
        "ringraft" => failure::check_reachable("ringraft", &cluster_addrs).and_then(|()| {
            ringraft::loadgen::ringraft_target::run(
                args.cluster.clone(),
                &workload,
                &load_threads,
                Some(live),
            )
        }),
        #[cfg(feature = "etcd")]
        "etcd" => failure::check_reachable("etcd", &cluster_addrs).and_then(|()| {
            ringraft::loadgen::etcd_target::run(cluster_addrs.clone(), &workload, &load_threads)
        }),
        #[cfg(not(feature = "etcd"))]
        "etcd" => Err(
            "this build has no etcd target: rebuild with `cargo build --release --features etcd` \
                       (needs protoc: scripts/install-etcd.sh)"
                .to_string(),
        ),
        other => unreachable!("target `{other}` was refused above"),
    };
    printer.stop();
    let recorder = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ringraft load: {e}");
            return ExitCode::from(1);
        }
    };
    let mut report = LoadReport::new(&args.target, &workload, &recorder);
    report.process = Some(ringraft::loadgen::process::LoadProcess {
        pid: std::process::id(),
        hostname: ringraft::loadgen::process::hostname(),
        seed: args.seed,
        started_unix_ms,
        window_start_unix_ms,
        sessions: recorder.sessions.clone(),
    });
    if let Some(path) = &args.hlog {
        let window_start_unix = Duration::from_millis(window_start_unix_ms);
        let histograms = ringraft::loadgen::hlog::WindowHistograms {
            writes: recorder.writes.clone(),
            reads: recorder.reads.clone(),
            window_start_unix,
            window: workload.duration,
        };
        let comments = [format!(
            "ringraft load: pid {} on {}, seed {}, {}; latency in microseconds",
            std::process::id(),
            ringraft::loadgen::process::hostname(),
            args.seed,
            workload.describe()
        )];
        if let Err(e) = ringraft::loadgen::hlog::write(path, &histograms, &comments) {
            eprintln!("ringraft load: {e}");
            return ExitCode::from(1);
        }
    }
    let succeeded = failure::check_any_success(&args.target, &cluster_addrs, &recorder);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        print!("{}", report.text());
    }
    if let Some(path) = args.hgrm {
        if let Err(e) = std::fs::write(&path, &report.write_hgrm) {
            eprintln!("ringraft load: cannot write {}: {e}", path.display());
            return ExitCode::from(1);
        }
    }
    match succeeded {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ringraft load: {e}");
            ExitCode::from(1)
        }
    }
}

fn main() -> ExitCode {
    match Cli::parse() {
        Cli::Log(cmd) => run_log(cmd),
        Cli::HostProbe {
            data_dir,
            window_start_unix_ms,
            window_ms,
            node_pids,
        } => run_host_probe(data_dir, window_start_unix_ms.zip(window_ms), node_pids),
        Cli::DiskProbe {
            dir,
            bytes,
            seconds,
        } => {
            let probed = std::fs::create_dir_all(&dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))
                .and_then(|()| {
                    let duration = std::time::Duration::try_from_secs_f64(seconds)
                        .map_err(|e| format!("--seconds {seconds}: {e}"))?;
                    ringraft::bench::disk::probe(&dir, bytes, duration)
                });
            match probed {
                Ok(p) => {
                    println!(
                        "{} B write + fdatasync in {}: {}",
                        bytes,
                        dir.display(),
                        p.figures()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("ringraft disk-probe: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Cli::Node(args) => run_node(*args),
        Cli::Bench(args) => run_bench(args),
        Cli::Tune(args) => run_tune(args),
        Cli::Load(args) => run_load(*args),
        Cli::Put {
            cluster,
            key,
            value,
        } => run_client(cluster, |c| async move {
            c.learn_groups().await?;
            c.put(key, value)
                .await
                .map(|index| format!("OK (log index {index})"))
        }),
        Cli::Get {
            cluster,
            key,
            stale,
        } => run_client(cluster, move |c| async move {
            c.learn_groups().await?;
            let value = if stale {
                match c
                    .call(ringraft::wire::Request::Get {
                        key: key.into(),
                        linearizable: false,
                    })
                    .await?
                {
                    ringraft::wire::Reply::Value(v) => Some(v),
                    _ => None,
                }
            } else {
                c.get(key).await?
            };
            Ok(value.map_or_else(
                || "(not found)".to_string(),
                |v| String::from_utf8_lossy(&v).into_owned(),
            ))
        }),
        Cli::TransferLeader { addr, to } => run_client(vec![addr.into()], move |c| async move {
            c.transfer_leader(to)
                .await
                .map(|()| format!("node at {addr} handed leadership to node {to}"))
                .map_err(|e| ask_the_leader(addr, e))
        }),
        Cli::Member(cmd) => run_member(cmd),
        Cli::Stats { addr } => run_client(vec![addr.into()], |c| async move {
            let groups = c.learn_groups().await?;
            let mut out = Vec::new();
            for group in 0..groups {
                let s = c.stats_of(group).await?;
                let head = if groups > 1 {
                    format!("group {group} of {groups}: ")
                } else {
                    String::new()
                };
                out.push(format!("{head}{}", stats_text(&s)));
            }
            Ok(out.join("\n\n"))
        }),
        Cli::Sim(args) => ExitCode::from(ringraft::sim::cli::main(args).clamp(0, 255) as u8),
    }
}

/// `ringraft stats`' lines for one group's figures.
fn stats_text(s: &ringraft::wire::NodeStats) -> String {
    format!(
        "node {} role {:?} term {} leader {:?}\ncommit_index {} applied_index {} last_log_index {}\nelections {} proposals {} snapshots {}\n\
                 invalid_peer_frames {} invalid_client_frames {} refused_handshakes {} dropped_peer_messages {}\n\
                 bytes_in {} bytes_out {} disk_syncs {} disk_jobs {}\ncampaigns {} transfer_elections {} emulated_drops {}\nvotes_withheld {} recovering_to {} awaiting_leadership {}",
                s.node_id, s.role, s.term, s.leader_id, s.commit_index, s.applied_index, s.last_log_index, s.elections, s.proposals, s.snapshots,
                s.invalid_peer_frames, s.invalid_client_frames, s.refused_handshakes, s.dropped_peer_messages,
                s.bytes_in, s.bytes_out, s.disk_syncs, s.disk_jobs, s.campaigns, s.transfer_elections, s.emulated_drops,
                s.votes_withheld, s.recovering_to.unwrap_or(0), s.awaiting_leadership
            )
}
