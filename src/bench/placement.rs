//! Where a run put its work: each node's executors (how many, pinned on which cores) and the
//! load generator's threads, computed by the same rule the node itself follows
//! ([`crate::runtime::Plan`]), so that a report says what ran where without a user re-deriving
//! it from the settings.

use std::fmt::Write;

use serde::Serialize;

use super::config::BenchConfig;
use crate::runtime::placement::{allowed_cores, Plan};

/// The placement of one run.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Placement {
    /// One entry per node, node 1 first.
    pub nodes: Vec<NodePlacement>,
    /// Load generator threads per load process.
    pub load_threads: usize,
    /// The cores they are pinned on, round robin (empty: unpinned).
    pub load_cores: Vec<usize>,
    /// The cores the plans were computed against: this machine's (local) or each node host's.
    pub basis: String,
}

/// One node's executors.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct NodePlacement {
    /// Node id.
    pub node: u64,
    /// The host it runs on (multi-host runs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Its `cpus` setting as launched (none: every core it may use).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpus: Option<String>,
    /// Executors: the Raft executor first, then client executors.
    pub executors: usize,
    /// The cores they are pinned on, in executor order (empty: unpinned, the kernel places
    /// them).
    pub pinned_cores: Vec<usize>,
}

impl Placement {
    /// The placement of `config` on this machine.
    pub fn local(config: &BenchConfig) -> Placement {
        let allowed = allowed_cores();
        let basis = format!("this machine: cores {}", cores_text(&allowed));
        let settings = super::local_node_settings(config);
        Placement::with(config, &settings, basis, |_| (None, allowed.clone()))
    }

    /// The placement of `config` on node hosts: `(name, cores)` of node `i`'s host, and the
    /// settings each node was launched with.
    pub fn on_hosts(
        config: &BenchConfig,
        node_hosts: &[(String, usize)],
        settings: &[crate::settings::SettingsPatch],
    ) -> Placement {
        let basis = "each node host's cores (all of them allowed to the node; node hosts that are one machine, by boot id, share its cores)".to_string();
        Placement::with(config, settings, basis, |i| {
            let (name, cores) = node_hosts.get(i).cloned().unwrap_or_default();
            (Some(name), (0..cores.max(1)).collect())
        })
    }

    fn with(
        config: &BenchConfig,
        settings: &[crate::settings::SettingsPatch],
        basis: String,
        host_of: impl Fn(usize) -> (Option<String>, Vec<usize>),
    ) -> Placement {
        let nodes = settings
            .iter()
            .enumerate()
            .map(|(i, settings)| {
                let (host, allowed) = host_of(i);
                let plan = Plan::new(settings.cpus.as_ref(), &allowed);
                NodePlacement {
                    node: i as u64 + 1,
                    host,
                    cpus: settings.cpus.as_ref().map(|c| c.to_string()),
                    executors: plan.executors.len(),
                    pinned_cores: plan.executors.iter().flatten().copied().collect(),
                }
            })
            .collect();
        let load = config.load_placement();
        Placement {
            nodes,
            load_threads: load.count.max(1),
            load_cores: load.cores,
            basis,
        }
    }

    /// The report's "Placement" section.
    pub fn markdown(&self) -> String {
        let mut md = format!(
            "\n## Placement\n\nExecutors per node, by the rule the node follows (the Raft loop on the first, clients on the others; pinned only when at least two cores are named), against {}.\n\n",
            self.basis
        );
        for n in &self.nodes {
            let host = n
                .host
                .as_ref()
                .map_or(String::new(), |h| format!(" on {h}"));
            let cpus = n
                .cpus
                .as_ref()
                .map_or("every core".into(), |c| format!("cpus = {c}"));
            let placed = if n.pinned_cores.is_empty() {
                "unpinned".to_string()
            } else {
                format!(
                    "Raft loop pinned on core {}, clients on {}",
                    n.pinned_cores[0],
                    cores_text(&n.pinned_cores[1..])
                )
            };
            let _ = writeln!(
                md,
                "- node {}{host}: {} executor(s) ({cpus}), {placed}",
                n.node, n.executors
            );
        }
        let load = if self.load_cores.is_empty() {
            "unpinned".to_string()
        } else {
            format!(
                "pinned round robin on cores {}",
                cores_text(&self.load_cores)
            )
        };
        let _ = writeln!(
            md,
            "- load generator: {} thread(s) per process, {load}",
            self.load_threads
        );
        md
    }
}

/// `0,1,2` (or `none`).
fn cores_text(cores: &[usize]) -> String {
    if cores.is_empty() {
        return "none".into();
    }
    cores
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::Cpus;

    /// The shipped 3-node config with `extra` top-level keys.
    fn parse(extra: &str) -> BenchConfig {
        let shipped = include_str!("../../bench-configs/3node-1kb.toml");
        toml::from_str(&format!("{extra}\n{shipped}")).unwrap()
    }

    fn config(extra: &str) -> BenchConfig {
        let config = parse(extra);
        config.validate().unwrap();
        config
    }

    #[test]
    fn node_cpus_pin_each_node_on_its_own_cores_and_load_cpus_the_load() {
        let mut c = config("node_cpus = [\"2-3\", \"4-5\", \"6-7\"]\nload_cpus = \"0-1\"");
        c.load_threads = 2;
        let hosts: Vec<(String, usize)> = (1..=3).map(|i| (format!("h{i}"), 8)).collect();
        let settings = crate::bench::node_settings_by_node(&c, &|_| None);
        let p = Placement::on_hosts(&c, &hosts, &settings);
        let pinned: Vec<Vec<usize>> = p.nodes.iter().map(|n| n.pinned_cores.clone()).collect();
        assert_eq!(pinned, vec![vec![2, 3], vec![4, 5], vec![6, 7]]);
        assert_eq!(p.load_cores, vec![0, 1]);
        let md = p.markdown();
        assert!(md.contains("node 2 on h2: 2 executor(s) (cpus = 4,5), Raft loop pinned on core 4, clients on 5"), "{md}");
        assert!(
            md.contains("2 thread(s) per process, pinned round robin on cores 0,1"),
            "{md}"
        );
    }

    #[test]
    fn without_cores_named_a_local_node_gets_its_share_unpinned() {
        let c = config("");
        let p = Placement::local(&c);
        let share = (allowed_cores().len() / 3).max(1);
        for n in &p.nodes {
            assert_eq!(n.executors, share);
            assert!(n.pinned_cores.is_empty());
            assert_eq!(n.cpus, Some(Cpus::Count(share).to_string()));
        }
        assert!(p
            .markdown()
            .contains("load generator: 1 thread(s) per process, unpinned"));
    }

    #[test]
    fn bad_placements_are_refused_with_the_reason() {
        let e = parse("node_cpus = [\"0-1\"]").validate().unwrap_err();
        assert!(e.contains("node_cpus has 1 entries for 3 nodes"), "{e}");
        let e = parse("load_cpus = 2").validate().unwrap_err();
        assert!(e.contains("load_cpus = 2 is a count"), "{e}");
    }
}
