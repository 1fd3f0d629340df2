//! Every node setting of the one settings table is reachable, under the same name and with the
//! same default, from `ringraft node`'s flags, a node's TOML file and a bench config's `[node]`
//! (as the bench launcher hands it to node processes); a bad value is refused naming the
//! setting at each of them; the README lists the table as it is.

use std::path::{Path, PathBuf};
use std::process::Command;

use ringraft::bench::BenchConfig;
use ringraft::runtime::NodeConfig;
use ringraft::settings::{self, Bound, Info, Settings, SettingsPatch, SETTINGS};

const MEMBERS: &str = "1=127.0.0.1:7001/127.0.0.1:8001";

/// `ringraft node --check-config` with `flags`: the effective settings it prints, or its error.
fn node_check(dir: &Path, flags: &[String]) -> Result<String, String> {
    let out = Command::new(env!("CARGO_BIN_EXE_ringraft"))
        .args(["node", "--id", "1", "--members", MEMBERS, "--data-dir"])
        .arg(dir.join("data"))
        .arg("--check-config")
        .args(flags)
        .output()
        .expect("run ringraft");
    if out.status.success() {
        Ok(String::from_utf8(out.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn node_file(dir: &Path, extra: &str) -> Result<NodeConfig, String> {
    let path = dir.join("node.toml");
    std::fs::write(
        &path,
        format!(
            "id = 1\ndata_dir = {:?}\n{extra}\n\
             [[members]]\nid = 1\npeer_addr = \"127.0.0.1:7001\"\nclient_addr = \"127.0.0.1:8001\"\n",
            dir.join("data").display().to_string()
        ),
    )
    .unwrap();
    NodeConfig::from_file(&path).map_err(|e| e.to_string())
}

fn bench_config(dir: &Path, node: &str) -> Result<BenchConfig, String> {
    let path = dir.join("bench.toml");
    std::fs::write(
        &path,
        format!(
            "name = \"reach\"\nnodes = 3\n\n[node]\n{node}\n\n[workload]\nkey_bytes = 16\n\
             value_bytes = 64\nkey_space = 100\nread_ratio = 0.0\nlinearizable_reads = true\n\
             warmup = 100\nduration = 1000\nseed = 1\n\
             mode = {{ kind = \"closed\", connections = 1, inflight_per_connection = 1 }}\n"
        ),
    )
    .unwrap();
    BenchConfig::from_file(&path)
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ringraft-settings-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The line `--check-config` prints for `name` (`name = value`, or `# name unset`).
fn line_of<'a>(printed: &'a str, name: &str) -> &'a str {
    printed
        .lines()
        .find(|l| l.starts_with(&format!("{name} = ")) || *l == format!("# {name} unset"))
        .unwrap_or_else(|| panic!("`{name}` missing from --check-config output:\n{printed}"))
}

/// A value of `row` other than its default that a node accepts on its own (so that timing
/// relationships between settings hold), chosen from the bound: no per-setting case here.
fn other_value(row: &Info) -> String {
    let default = row.default_text();
    let candidates: Vec<String> = if row.switch {
        vec![(default != "true").to_string()]
    } else {
        let (min, max, align) = match row.bound {
            Bound::Any => (0, u64::MAX, 1),
            Bound::Range { min, max } => (min, max, 1),
            Bound::Aligned { min, max, align } => (min, max, align),
        };
        let d: Option<u64> = default.parse().ok();
        let mut c = Vec::new();
        if let Some(d) = d {
            c.extend([
                d.saturating_mul(2),
                d.saturating_add(align),
                d.saturating_sub(align),
            ]);
        }
        c.extend([min, min.saturating_add(align), 1000, max]);
        c.into_iter()
            .filter(|v| row.bound.check(Some(*v)).is_ok() && Some(*v) != d)
            .map(|v| v.to_string())
            .collect()
    };
    candidates
        .into_iter()
        .find(|v| {
            let mut patch = SettingsPatch::default();
            patch.set_text(row.name, v).unwrap();
            let members = ringraft::runtime::parse_members(MEMBERS).unwrap();
            let mut node = NodeConfig::new(1, members, PathBuf::from("d"));
            patch.apply(&mut node.settings);
            node.derive_timing();
            node.validate().is_ok()
        })
        .unwrap_or_else(|| panic!("no valid non-default value for `{}`", row.name))
}

/// A value outside the bound (or of the wrong kind), and what the error must say besides the
/// setting's name.
fn bad_value(row: &Info) -> (String, String) {
    if row.switch {
        return ("maybe".into(), "true or false".into());
    }
    match row.bound {
        Bound::Range { max, .. } | Bound::Aligned { max, .. } if max < i64::MAX as u64 => {
            ((max + 1).to_string(), row.bound.to_string())
        }
        _ => ("-1".into(), "not a whole number".into()),
    }
}

#[test]
fn every_setting_is_reachable_by_its_name_from_cli_toml_and_bench_config() {
    let dir = scratch("reach");
    for row in SETTINGS {
        let value = other_value(row);
        let flag = format!("--{}", row.flag());
        assert_eq!(flag, format!("--{}", row.name.replace('_', "-")));

        // The command line.
        let printed = node_check(&dir, &[flag.clone(), value.clone()])
            .unwrap_or_else(|e| panic!("{flag} {value}: {e}"));
        assert_eq!(
            line_of(&printed, row.name),
            format!("{} = {value}", row.name)
        );

        // A node's TOML file, under the same name.
        let config = node_file(&dir, &format!("{} = {value}", row.name))
            .unwrap_or_else(|e| panic!("{} = {value} in a node file: {e}", row.name));
        assert_eq!(
            config.settings.text(row.name).unwrap(),
            value,
            "{}",
            row.name
        );

        // A bench config's [node], under the same name, through the flags the launcher gives
        // each node process.
        let bench = bench_config(&dir, &format!("{} = {value}", row.name))
            .unwrap_or_else(|e| panic!("{} = {value} in a bench config: {e}", row.name));
        let flags = ringraft::bench::effective_node_settings(&bench).flags();
        assert!(flags.contains(&flag), "{flags:?}");
        let printed = node_check(&dir, &flags).unwrap_or_else(|e| panic!("{flags:?}: {e}"));
        assert_eq!(
            line_of(&printed, row.name),
            format!("{} = {value}", row.name)
        );
    }
}

#[test]
fn defaults_agree_at_every_entry_point_and_in_the_core() {
    let dir = scratch("defaults");
    let defaults = Settings::default();

    // The command line with no setting given.
    let printed = node_check(&dir, &[]).unwrap();
    assert_eq!(printed, defaults.to_toml());

    // A node file with no setting.
    assert_eq!(node_file(&dir, "").unwrap().settings, defaults);

    // A bench config with an empty [node]: no flag is passed, and the nodes' view is the
    // defaults.
    let bench = bench_config(&dir, "").unwrap();
    assert!(ringraft::bench::effective_node_settings(&bench)
        .flags()
        .is_empty());
    assert_eq!(ringraft::bench::node_timing(&bench).settings, defaults);

    // The core's own defaults are the node's.
    let core = ringraft::core::Config::new(1, vec![1]);
    let text = |name: &str| defaults.text(name).unwrap();
    for (name, value) in [
        ("election_timeout_ticks", core.election_timeout_ticks as u64),
        (
            "heartbeat_interval_ticks",
            core.heartbeat_interval_ticks as u64,
        ),
        ("batch_entries_max", core.batch_entries_max as u64),
        ("batch_bytes_max", core.batch_bytes_max as u64),
        ("inflight_msgs_max", core.inflight_msgs_max as u64),
        ("inflight_bytes_max", core.inflight_bytes_max as u64),
        (
            "snapshot_threshold_entries",
            core.snapshot_threshold_entries,
        ),
        ("snapshot_log_factor", core.snapshot_log_factor),
        ("snapshot_log_bytes_max", core.snapshot_log_bytes_max),
        ("snapshot_chunk_bytes", core.snapshot_chunk_bytes as u64),
        (
            "uncommitted_entries_max",
            core.uncommitted_entries_max as u64,
        ),
    ] {
        assert_eq!(text(name), value.to_string(), "core default of {name}");
    }
    assert_eq!(text("pre_vote"), core.pre_vote.to_string());
    assert_eq!(text("check_quorum"), core.check_quorum.to_string());
    // And the node's core config is built from its settings.
    let node = node_file(&dir, "").unwrap().core_config();
    assert_eq!(node.election_timeout_ticks, core.election_timeout_ticks);
    assert_eq!(node.snapshot_log_factor, core.snapshot_log_factor);
}

#[test]
fn a_bad_value_is_refused_naming_the_setting_at_every_entry_point() {
    let dir = scratch("bad");
    for row in SETTINGS {
        let (value, says) = bad_value(row);
        let flag = format!("--{}", row.flag());
        // `--flag=-1`: a value that starts with a dash must be joined to its flag.
        let e = node_check(&dir, &[format!("{flag}={value}")]).unwrap_err();
        assert!(
            e.contains(&flag) && e.contains(row.name) && e.contains(&says),
            "{flag} {value}: {e}"
        );
        let literal = if row.switch {
            format!("\"{value}\"")
        } else {
            value.clone()
        };
        let line = format!("{} = {literal}", row.name);
        let e = node_file(&dir, &line).unwrap_err();
        assert!(e.contains(row.name) && e.contains(&says), "{line}: {e}");
        let e = bench_config(&dir, &line).unwrap_err();
        assert!(e.contains(row.name) && e.contains(&says), "{line}: {e}");
    }
    // A name from before the table is refused with the name to write now.
    for (old, new) in settings::RENAMED {
        let e = node_file(&dir, &format!("{old} = 1")).unwrap_err();
        assert!(e.contains(old) && e.contains(new), "{e}");
        let e = bench_config(&dir, &format!("{old} = 1")).unwrap_err();
        assert!(e.contains(old) && e.contains(new), "{e}");
    }
    // A relationship between settings is checked before a bench starts any node.
    let e = bench_config(
        &dir,
        "election_timeout_ticks = 3\nheartbeat_interval_ticks = 3",
    )
    .unwrap_err();
    assert!(e.contains("election_timeout_ticks"), "{e}");
}

#[test]
fn the_readme_lists_every_setting_as_the_table_declares_it() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let table = settings::reference_markdown();
    assert!(
        readme.contains(&table),
        "README.md's settings table differs from the one declaration (src/settings); paste this \
         under \"Node settings\":\n\n{table}"
    );
}
