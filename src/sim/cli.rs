//! `ringraft sim`: replay one seed or sweep a range, print totals, exit non-zero on a violation.

use super::{run, SimConfig, SimReport};

/// A bug to plant in the core, to check that the simulator catches it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PlantedBug {
    /// Commit entries of earlier terms by counting replicas (paper Figure 8; random faults
    /// rarely reach that schedule, which `tests/testdata/figure_8.txt` plays out).
    CommitPreviousTerm,
    /// Let a node that lost acknowledged entries vote and campaign at once (the abstain rule
    /// of protocol-aware recovery, off).
    NoAbstain,
    /// While joint, commit once a majority of C_old holds an entry, ignoring C_new (use with
    /// `--membership`).
    JointSingleMajority,
}

/// Arguments of `ringraft sim`.
#[derive(clap::Args, Debug, Clone)]
pub struct SimArgs {
    /// Replay exactly this seed.
    #[arg(long, conflicts_with = "seeds")]
    pub seed: Option<u64>,
    /// Sweep a range of seeds, `A..B` (B exclusive).
    #[arg(long)]
    pub seeds: Option<String>,
    /// Cluster size.
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// Raft groups on every node, sharing its disk, links and crashes; keys are routed to
    /// groups as a node routes them.
    #[arg(long, default_value_t = 1)]
    pub groups: usize,
    /// Steps (ticks of 10 ms simulated time) of the faulty phase.
    #[arg(long, default_value_t = 2000)]
    pub steps: u64,
    /// Plant a bug in the core.
    #[arg(long, value_enum)]
    pub bug: Option<PlantedBug>,
    /// Liveness only requires a leader and answered clients, not that every follower catches up
    /// with the leader's commit index (which is checked by default).
    #[arg(long)]
    pub lax_liveness: bool,
    /// Print the whole trace of each run (use with one seed).
    #[arg(long)]
    pub full_trace: bool,
    /// Random faults at several times the default rates, tiny snapshots, eight clients.
    #[arg(long)]
    pub stress: bool,
    /// Membership changes (add learner, promote, remove) at random moments, among every other
    /// fault class; the cluster starts with three voters and the other nodes wait to be added.
    #[arg(long)]
    pub membership: bool,
    /// Print the trace of every failing seed (default: the first three).
    #[arg(long)]
    pub all_traces: bool,
}

fn parse_range(text: &str) -> Result<(u64, u64), String> {
    let (a, b) = text
        .split_once("..")
        .ok_or_else(|| format!("--seeds {text}: expected A..B"))?;
    let a = a
        .trim()
        .parse::<u64>()
        .map_err(|e| format!("--seeds start: {e}"))?;
    let b = b
        .trim()
        .parse::<u64>()
        .map_err(|e| format!("--seeds end: {e}"))?;
    if b <= a {
        return Err(format!("--seeds {text}: the range is empty"));
    }
    Ok((a, b))
}

/// Runs the subcommand; returns the process exit code.
pub fn main(args: SimArgs) -> i32 {
    let (first, end) = match (&args.seeds, args.seed) {
        (Some(range), _) => match parse_range(range) {
            Ok(range) => range,
            Err(error) => {
                eprintln!("error: {error}");
                return 2;
            }
        },
        (None, Some(seed)) => (seed, seed + 1),
        (None, None) => (0, 1),
    };
    if !(1..=crate::limits::CLUSTER_NODES_MAX).contains(&args.nodes) {
        eprintln!(
            "error: --nodes must be in 1..={}",
            crate::limits::CLUSTER_NODES_MAX
        );
        return 2;
    }
    if !(1..=crate::kv::GROUPS_MAX as usize).contains(&args.groups) {
        eprintln!(
            "error: --groups must be in 1..={}",
            crate::kv::GROUPS_MAX as usize
        );
        return 2;
    }
    let total = end - first;
    let progress_every = (total / 10).max(1);
    let mut totals = SimReport::default();
    let mut failed: Vec<u64> = Vec::new();
    for seed in first..end {
        let bug = args.bug == Some(PlantedBug::CommitPreviousTerm);
        let bug_no_abstain = args.bug == Some(PlantedBug::NoAbstain);
        let mut config = SimConfig::new(seed, args.nodes, args.steps);
        config.groups = args.groups;
        config.bug_commit_previous_term = bug;
        config.bug_no_abstain = bug_no_abstain;
        config.bug_joint_single_majority = args.bug == Some(PlantedBug::JointSingleMajority);
        config.membership_changes = args.membership;
        config.full_trace = args.full_trace;
        config.strict_liveness = !args.lax_liveness;
        if args.stress {
            config.faults = super::Faults::stress();
            config.clients = 8;
        }
        let result = run(config);
        let full_trace = match &result {
            Ok(report) => report.full_trace.clone(),
            Err(violation) => violation.report.full_trace.clone(),
        };
        if let Some(trace) = full_trace {
            println!("--- full trace of seed {seed} ---\n{trace}--- end of trace ---");
        }
        match result {
            Ok(report) => totals.accumulate(&report),
            Err(violation) => {
                totals.accumulate(&violation.report);
                if args.all_traces || failed.len() < 3 {
                    println!("FAIL {violation}");
                } else {
                    println!(
                        "FAIL seed {}: {}: {}",
                        violation.seed, violation.property, violation.detail
                    );
                }
                failed.push(seed);
            }
        }
        let done = seed - first + 1;
        if total > 1 && (done % progress_every == 0 || done == total) {
            eprintln!("sim: {done}/{total} seeds, {} violations", failed.len());
        }
    }
    println!(
        "seeds {first}..{end} nodes {} groups {} steps {}: crashes {} (torn writes {}, damaged tails {}, damaged middles {}), lost writes {}, most disk-faulty nodes at once {}, votes withheld {}, restarts {}, partitions {}, messages {}, drops {}, duplicates {}, \
         elections {} (terms with a leader {}), commits {}{}, snapshots taken {} installed {}, transfers {} (completed to a campaign {}), membership changes {} (promotions {}, voter removals {}, joint commits {}), \
         writes acked {} indeterminate {}, retries deduplicated {}, reads {}, linearizability unknown {}, \
         longest liveness phase {} ms, violations {}",
        args.nodes,
        args.groups,
        args.steps,
        totals.crashes,
        totals.torn_writes,
        totals.damaged_tails,
        totals.damaged_middles,
        totals.lost_writes,
        totals.disk_faulty_nodes_max,
        totals.votes_withheld,
        totals.restarts,
        totals.partitions,
        totals.messages,
        totals.drops,
        totals.duplicates,
        totals.elections,
        totals.leader_terms,
        totals.commits,
        if args.groups > 1 {
            format!(" (by group {:?})", totals.group_commits)
        } else {
            String::new()
        },
        totals.snapshots_taken,
        totals.snapshots_installed,
        totals.transfers,
        totals.transfer_elections,
        totals.membership_changes,
        totals.promotions,
        totals.voter_removals,
        totals.joint_commits,
        totals.writes_acknowledged,
        totals.writes_indeterminate,
        totals.session_duplicates,
        totals.reads,
        totals.linearizability_unknown,
        totals.liveness_us / 1000,
        failed.len()
    );
    if args.bug == Some(PlantedBug::CommitPreviousTerm) && failed.is_empty() {
        println!(
            "hint: random faults rarely reach Figure 8's schedule; tests/testdata/figure_8.txt plays it out"
        );
    }
    if failed.is_empty() {
        0
    } else {
        let seeds: Vec<String> = failed.iter().map(u64::to_string).collect();
        println!("failing seeds: {}", seeds.join(" "));
        1
    }
}
