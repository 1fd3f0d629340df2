//! Every tunable node setting, declared once: its name, type, default, bound and help.
//!
//! The one table below ([`SETTINGS`], generated with [`Settings`] and [`SettingsPatch`]) is
//! where the node's TOML file, `ringraft node`'s flags, a bench config's `[node]` section and the
//! core's [`crate::core::Config`] defaults all come from, so that a setting has the same name and
//! the same default at every entry point. A flag is the name in kebab case (`tick_ms` is
//! `--tick-ms`). Adding a setting is one line here, plus the code that reads it (and, for a
//! setting of the Raft core, its field in `core::Config`).
//!
//! A node's identity and addresses (`id`, `members`, `data_dir`, listen addresses, the metrics
//! address, the emulation file, `cluster_id`) are not settings: they differ per node, and a bench
//! run assigns them itself. They live in `runtime::NodeConfig`.
//!
//! This module is pure data and parsing (no I/O), so that the core may take its defaults from it;
//! the command-line and serde entry points are in [`entry`].

pub mod entry;

use std::fmt;

use crate::limits;

/// The allowed values of a numeric setting. An unset optional setting is always allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bound {
    /// Any value of the type.
    Any,
    /// `min..=max`.
    Range {
        /// Smallest allowed.
        min: u64,
        /// Largest allowed.
        max: u64,
    },
    /// `min..=max` and a multiple of `align`.
    Aligned {
        /// Smallest allowed.
        min: u64,
        /// Largest allowed.
        max: u64,
        /// The value must be a multiple of this.
        align: u64,
    },
}

const fn range(min: u64, max: u64) -> Bound {
    Bound::Range { min, max }
}

impl Bound {
    /// Checks `value` (`None`: not a number, or unset) against the bound.
    pub fn check(&self, value: Option<u64>) -> Result<(), String> {
        let Some(v) = value else { return Ok(()) };
        let within = match *self {
            Bound::Any => true,
            Bound::Range { min, max } => (min..=max).contains(&v),
            Bound::Aligned { min, max, align } => (min..=max).contains(&v) && v % align == 0,
        };
        if within {
            Ok(())
        } else {
            Err(format!("{v} is outside {self}"))
        }
    }
}

impl fmt::Display for Bound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Bound::Any => f.write_str("any"),
            Bound::Range { min, max } => write!(f, "{min}..={max}"),
            Bound::Aligned { min, max, align } => write!(f, "{min}..={max}, a multiple of {align}"),
        }
    }
}

/// A type a setting may have: a whole number, a switch, or an optional one of those (unset by
/// default).
pub trait Value: Clone + PartialEq + fmt::Debug {
    /// What an entry point gives for it: the value itself, also for an optional setting.
    type Given: Clone + PartialEq + fmt::Debug + fmt::Display + serde::Serialize;
    /// True for a switch (`--strict-recovery` alone means true).
    const SWITCH: bool;
    /// Parses a value as written on the command line or rendered from TOML.
    fn parse(text: &str) -> Result<Self::Given, String>;
    /// Sets the setting to a given value.
    fn give(&mut self, given: Self::Given);
    /// The value when set.
    fn current(&self) -> Option<Self::Given>;
    /// A given value as a number, for its bound (`None` for a switch).
    fn number(given: &Self::Given) -> Option<u64>;
}

macro_rules! whole_number {
    ($($t:ty),*) => {$(
        impl Value for $t {
            type Given = $t;
            const SWITCH: bool = false;
            fn parse(text: &str) -> Result<$t, String> {
                text.trim()
                    .replace('_', "")
                    .parse()
                    .map_err(|_| format!("`{text}` is not a whole number in 0..={}", <$t>::MAX))
            }
            fn give(&mut self, given: $t) {
                *self = given;
            }
            fn current(&self) -> Option<$t> {
                Some(*self)
            }
            fn number(given: &$t) -> Option<u64> {
                Some(*given as u64)
            }
        }
    )*};
}
whole_number!(u32, u64, usize);

impl Value for bool {
    type Given = bool;
    const SWITCH: bool = true;
    fn parse(text: &str) -> Result<bool, String> {
        match text.trim() {
            "true" => Ok(true),
            "false" => Ok(false),
            other => Err(format!("`{other}` is not true or false")),
        }
    }
    fn give(&mut self, given: bool) {
        *self = given;
    }
    fn current(&self) -> Option<bool> {
        Some(*self)
    }
    fn number(_: &bool) -> Option<u64> {
        None
    }
}

impl Value for crate::runtime::Cpus {
    type Given = crate::runtime::Cpus;
    const SWITCH: bool = false;
    fn parse(text: &str) -> Result<Self, String> {
        // A TOML string arrives quoted.
        let text = text.trim();
        let text = text
            .strip_prefix('"')
            .and_then(|t| t.strip_suffix('"'))
            .unwrap_or(text);
        crate::runtime::Cpus::parse(text)
    }
    fn give(&mut self, given: Self) {
        *self = given;
    }
    fn current(&self) -> Option<Self> {
        Some(self.clone())
    }
    fn number(given: &Self) -> Option<u64> {
        // The bound is on a count; a list of cores is checked by its parser.
        match given {
            crate::runtime::Cpus::Count(n) => Some(*n as u64),
            crate::runtime::Cpus::List(_) => None,
        }
    }
}

impl<T: Value<Given = T> + fmt::Display + serde::Serialize> Value for Option<T> {
    type Given = T;
    const SWITCH: bool = T::SWITCH;
    fn parse(text: &str) -> Result<T, String> {
        T::parse(text)
    }
    fn give(&mut self, given: T) {
        *self = Some(given);
    }
    fn current(&self) -> Option<T> {
        self.clone()
    }
    fn number(given: &T) -> Option<u64> {
        T::number(given)
    }
}

/// A bad setting: names the field and what is wrong (its bound, its type, or an unknown name).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("setting `{field}`: {reason}")]
pub struct SettingError {
    /// The setting, as written (an unknown one too).
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

/// One row of the table: what the entry points and the README show.
#[derive(Clone, Copy, Debug)]
pub struct Info {
    /// The name in TOML files and bench configs; the flag is this in kebab case.
    pub name: &'static str,
    /// What it does (the doc comment of its row).
    pub help: &'static str,
    /// Its allowed values.
    pub bound: Bound,
    /// A switch: `--flag` alone means true.
    pub switch: bool,
}

impl Info {
    /// The command-line flag, without its dashes.
    pub fn flag(&self) -> String {
        self.name.replace('_', "-")
    }

    /// The default, as the entry points accept it (`none` for an unset optional setting).
    pub fn default_text(&self) -> String {
        Settings::default()
            .text(self.name)
            .expect("every row has a value")
    }

    /// The help text in one line.
    pub fn help_line(&self) -> String {
        self.help.split_whitespace().collect::<Vec<_>>().join(" ")
    }
}

/// Names that settings had before they were declared here, with their names now; an old name is
/// refused with a message naming the new one.
pub const RENAMED: &[(&str, &str)] = &[
    ("election_ticks", "election_timeout_ticks"),
    ("heartbeat_ticks", "heartbeat_interval_ticks"),
    ("snapshot_threshold", "snapshot_threshold_entries"),
];

macro_rules! settings {
    ($(
        $(#[doc = $doc:literal])+
        $name:ident: $ty:ty = $default:expr, $bound:expr;
    )+) => {
        /// Every tunable node setting, with its value.
        #[derive(Clone, Debug, PartialEq)]
        pub struct Settings {
            $( $(#[doc = $doc])+ pub $name: $ty, )+
        }

        impl Default for Settings {
            fn default() -> Settings {
                Settings { $( $name: $default, )+ }
            }
        }

        /// Settings given at one entry point (flags, a bench config's `[node]`): `None` leaves
        /// the value beneath (a file's, or the default).
        #[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
        pub struct SettingsPatch {
            $(
                $(#[doc = $doc])+
                #[serde(skip_serializing_if = "Option::is_none")]
                pub $name: Option<<$ty as Value>::Given>,
            )+
        }

        /// The table: every setting in declaration order.
        pub const SETTINGS: &[Info] = &[
            $( Info {
                name: stringify!($name),
                help: concat!($($doc, "\n"),+),
                bound: $bound,
                switch: <$ty as Value>::SWITCH,
            }, )+
        ];

        impl Settings {
            /// The value of setting `name` as text (`none` when unset); `None` for an unknown name.
            pub fn text(&self, name: &str) -> Option<String> {
                match name {
                    $( stringify!($name) => Some(
                        Value::current(&self.$name).map_or("none".to_string(), |v| v.to_string())
                    ), )+
                    _ => None,
                }
            }

            /// Checks every setting against its bound; the error names the first bad one.
            pub fn validate(&self) -> Result<(), SettingError> {
                $(
                    let number = Value::current(&self.$name).and_then(|v| <$ty as Value>::number(&v));
                    ($bound).check(number).map_err(|reason| SettingError {
                        field: stringify!($name).to_string(),
                        reason,
                    })?;
                )+
                Ok(())
            }
        }

        impl SettingsPatch {
            /// Sets `name` from text, checked against its type and bound.
            pub fn set_text(&mut self, name: &str, text: &str) -> Result<(), SettingError> {
                let bad = |reason: String| SettingError { field: name.to_string(), reason };
                match name {
                    $( stringify!($name) => {
                        let given = <$ty as Value>::parse(text).map_err(bad)?;
                        ($bound).check(<$ty as Value>::number(&given)).map_err(bad)?;
                        self.$name = Some(given);
                        Ok(())
                    } )+
                    _ => Err(unknown(name)),
                }
            }

            /// Writes every given setting over `settings`.
            pub fn apply(&self, settings: &mut Settings) {
                $(
                    if let Some(given) = &self.$name {
                        Value::give(&mut settings.$name, given.clone());
                    }
                )+
            }

            /// The given settings as (name, text), in declaration order.
            pub fn given(&self) -> Vec<(&'static str, String)> {
                let mut given = Vec::new();
                $(
                    if let Some(v) = &self.$name {
                        given.push((stringify!($name), v.to_string()));
                    }
                )+
                given
            }
        }
    };
}

fn unknown(name: &str) -> SettingError {
    let reason = match RENAMED.iter().find(|(old, _)| *old == name) {
        Some((_, new)) => format!("renamed; write `{new}`"),
        None => format!(
            "no such node setting (settings: {})",
            SETTINGS
                .iter()
                .map(|s| s.name)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    SettingError {
        field: name.to_string(),
        reason,
    }
}

/// The row of setting `name`.
pub fn info(name: &str) -> Option<&'static Info> {
    SETTINGS.iter().find(|s| s.name == name)
}

/// Checks a value of setting `name` against its bound, for code that holds the value outside
/// [`Settings`] (the core's `Config`). Panics on an unknown name: that is a typo in code.
pub fn check(name: &'static str, value: u64) -> Result<(), SettingError> {
    let row = info(name).unwrap_or_else(|| panic!("`{name}` is not in the settings table"));
    row.bound.check(Some(value)).map_err(|reason| SettingError {
        field: name.to_string(),
        reason,
    })
}

settings! {
    /// Wall time of one core tick, in milliseconds.
    tick_ms: u64 = 10, range(1, 10_000);
    /// Election timeout E in ticks; a follower campaigns after a random [E, 2E) ticks without a
    /// leader.
    election_timeout_ticks: u32 = 30, range(1, 1_000_000);
    /// Heartbeat interval of an idle leader, in ticks.
    heartbeat_interval_ticks: u32 = 3, range(1, 1_000_000);
    /// Round trip to the farthest peer, in milliseconds; when set, the tick, the heartbeat
    /// (about one RTT) and the election timeout (10 RTTs) are derived from it, as etcd's tuning
    /// guide advises; `heartbeat_ms` and `election_ms` still override them.
    rtt_ms: Option<u64> = None, range(1, 600_000);
    /// Election timeout in milliseconds (overrides `election_timeout_ticks`, rounded up to
    /// ticks).
    election_ms: Option<u64> = None, range(1, 3_600_000);
    /// Heartbeat interval in milliseconds (overrides `heartbeat_interval_ticks`, rounded up to
    /// ticks).
    heartbeat_ms: Option<u64> = None, range(1, 3_600_000);
    /// Pre-vote (thesis 9.6): a node whose election timeout fires first asks whether it could
    /// win, without bumping its term.
    pre_vote: bool = true, Bound::Any;
    /// Check-quorum (thesis 6.2): a leader that has not heard from a majority within an
    /// election timeout steps down.
    check_quorum: bool = true, Bound::Any;
    /// Most entries in one AppendEntries (one record batch).
    batch_entries_max: usize = 1024, range(1, limits::BATCH_ENTRIES_MAX as u64);
    /// Most payload bytes in one AppendEntries (one record batch).
    batch_bytes_max: usize = 1 << 20, range(1, limits::BATCH_BYTES_MAX as u64);
    /// Most AppendEntries in flight per follower (pipelining depth).
    inflight_msgs_max: usize = 64, range(1, limits::INFLIGHT_MSGS_MAX as u64);
    /// Most payload bytes in flight per follower (at least `batch_bytes_max`); size it to the
    /// bandwidth-delay product.
    inflight_bytes_max: usize = 64 << 20, range(1, limits::INFLIGHT_BYTES_MAX as u64);
    /// Most uncommitted entries the leader holds before refusing proposals (backpressure).
    uncommitted_entries_max: usize = 256 << 10, range(1, limits::UNCOMMITTED_ENTRIES_MAX as u64);
    /// Take a snapshot once this many applied entries follow the last one (0: never).
    snapshot_threshold_entries: u64 = 100_000, Bound::Any;
    /// And only once the log since the last snapshot holds this many times its bytes (thesis
    /// 5.1.3; 0: the entry count alone decides).
    snapshot_log_factor: u64 = 4, range(0, 1_000);
    /// But snapshot at the latest once the log since the last one holds this many payload bytes
    /// (its entries stay in memory until then).
    snapshot_log_bytes_max: u64 = 1 << 30, Bound::Any;
    /// Size of one InstallSnapshot chunk, in bytes.
    snapshot_chunk_bytes: usize = 256 << 10, range(1, limits::SNAPSHOT_CHUNK_BYTES_MAX as u64);
    /// Log segment size in bytes.
    segment_bytes: u64 = 64 << 20, Bound::Aligned {
        min: crate::log::SEGMENT_BYTES_MIN,
        max: crate::log::SEGMENT_BYTES_MAX,
        align: crate::log::BLOCK_BYTES as u64,
    };
    /// On a damaged record before the log's tail, refuse to start (naming file and offset)
    /// instead of keeping the valid prefix and fetching the rest back from the cluster.
    strict_recovery: bool = false, Bound::Any;
    /// Cores to run on, one executor each: a count (`4`) or cores (`"2-7"`, `"0,2,4"`; one
    /// core is `"3-3"`). The first runs the Raft loop, the others serve clients; pinned only
    /// when given as cores, at least two and all usable (none: as many unpinned executors as
    /// this process may use cores, so nodes sharing a machine never pile onto one core).
    cpus: Option<crate::runtime::Cpus> = None,
        range(1, crate::runtime::placement::EXECUTORS_MAX as u64);
    /// Independent Raft groups this node hosts (multi-raft): keys are hashed to groups
    /// (`kv::group_of`), each group has its own Raft loop, executor, log, hard state and
    /// snapshots (under `data_dir/group-N/` when more than one), and its own leader. Fixed when
    /// the cluster is created: every node must have the same count, and a data dir remembers
    /// it.
    groups: u32 = 1, range(1, crate::kv::GROUPS_MAX as u64);
    /// Spin this many microseconds before parking an idle executor (0: never; spinning is
    /// opt-in because benchmark machines are shared).
    spin_us: u64 = 0, range(0, 1_000_000);
    /// Memory glommio registers for I/O, per ring, in MiB (non-root users have small memlock
    /// limits, so keep it small).
    io_memory_mib: usize = 2, range(1, 1024);
    /// Requests one client connection may have in flight before the node stops reading from
    /// it.
    client_inflight_max: usize = 1024, range(1, 1 << 16);
    /// Milliseconds a client write may wait for commit before the node answers Timeout.
    request_timeout_ms: u64 = 5000, range(1, 3_600_000);
}

impl Settings {
    /// Every setting as a TOML line in declaration order; an unset optional one as a comment.
    pub fn to_toml(&self) -> String {
        let mut out = String::new();
        for row in SETTINGS {
            match self.text(row.name).as_deref() {
                Some("none") | None => out.push_str(&format!("# {} unset\n", row.name)),
                // A number or a switch as it is, anything else (a list of cores) as a string.
                Some(value)
                    if value.parse::<u64>().is_ok() || value == "true" || value == "false" =>
                {
                    out.push_str(&format!("{} = {value}\n", row.name))
                }
                Some(value) => out.push_str(&format!("{} = \"{value}\"\n", row.name)),
            }
        }
        out
    }
}

/// The README's table of settings (name, default, allowed values, what it does); a test keeps
/// the README's copy equal to it.
pub fn reference_markdown() -> String {
    let mut out = String::from(
        "| Setting (TOML, `[node]`) | Flag | Default | Allowed | What it does |\n|---|---|---|---|---|\n",
    );
    for s in SETTINGS {
        out.push_str(&format!(
            "| `{}` | `--{}` | {} | {} | {} |\n",
            s.name,
            s.flag(),
            s.default_text(),
            if s.switch {
                "true, false".to_string()
            } else {
                s.bound.to_string()
            },
            s.help_line()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_default_is_within_its_bound() {
        Settings::default().validate().unwrap();
    }

    #[test]
    fn a_bad_value_names_the_setting_and_its_bound() {
        let mut patch = SettingsPatch::default();
        let e = patch.set_text("tick_ms", "0").unwrap_err().to_string();
        assert!(e.contains("tick_ms") && e.contains("1..=10000"), "{e}");
        let e = patch.set_text("pre_vote", "yes").unwrap_err().to_string();
        assert!(e.contains("pre_vote") && e.contains("true or false"), "{e}");
        let e = patch
            .set_text("election_ticks", "3")
            .unwrap_err()
            .to_string();
        assert!(e.contains("election_timeout_ticks"), "{e}");
        let e = patch
            .set_text("segment_bytes", "5000")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("segment_bytes") && e.contains("multiple of 4096"),
            "{e}"
        );
        assert_eq!(patch, SettingsPatch::default(), "nothing bad was kept");
    }

    #[test]
    fn a_patch_sets_what_it_gives_and_nothing_else() {
        let mut patch = SettingsPatch::default();
        patch.set_text("rtt_ms", "150").unwrap();
        patch.set_text("strict_recovery", "true").unwrap();
        let mut s = Settings::default();
        patch.apply(&mut s);
        assert_eq!(s.rtt_ms, Some(150));
        assert!(s.strict_recovery);
        assert_eq!(s.tick_ms, Settings::default().tick_ms);
        assert_eq!(
            patch.given(),
            vec![
                ("rtt_ms", "150".to_string()),
                ("strict_recovery", "true".into())
            ]
        );
    }
}
