//! Which cores a node runs on: the `cpus` setting, and the plan of executors it gives.
//!
//! A node runs one executor per core it is given. The first is the Raft executor (the Raft loop,
//! the peer transport, the ticker and the disk task on its io_uring); the others serve client
//! connections. Executors are pinned only when at least two cores are named (a list, not a count
//! or the default: several nodes sharing a machine would all pin their Raft executors on its
//! first core) and every one of them is a core this process may run on: one pinned core would only forbid the kernel to move the
//! node off a busy core, and a core the process may not use cannot be pinned. Otherwise the same
//! executors run unpinned and share whatever cores there are, which is what keeps a small machine
//! (or a test running three nodes on two cores) working.

use serde::{Deserialize, Serialize, Serializer};

/// Most executors one node runs (one per core).
pub const EXECUTORS_MAX: usize = 256;

/// The cores a node is given.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "CpusText")]
pub enum Cpus {
    /// This many cores: the first ones this process may use.
    Count(usize),
    /// These cores, by number, in this order (the first runs the Raft loop).
    List(Vec<usize>),
}

impl std::fmt::Display for Cpus {
    /// The text [`Cpus::parse`] reads back: a count, or cores (one core as a range of one).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cpus::Count(n) => write!(f, "{n}"),
            Cpus::List(cores) if cores.len() == 1 => write!(f, "{0}-{0}", cores[0]),
            Cpus::List(cores) => {
                let text: Vec<String> = cores.iter().map(usize::to_string).collect();
                f.write_str(&text.join(","))
            }
        }
    }
}

impl Serialize for Cpus {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Cpus::Count(n) => serializer.serialize_u64(*n as u64),
            Cpus::List(_) => serializer.serialize_str(&self.to_string()),
        }
    }
}

/// `cpus = 4` or `cpus = "2-7"` in a TOML file.
#[derive(Deserialize)]
#[serde(untagged)]
enum CpusText {
    Count(usize),
    Text(String),
}

impl TryFrom<CpusText> for Cpus {
    type Error = String;
    fn try_from(value: CpusText) -> Result<Cpus, String> {
        match value {
            CpusText::Count(n) => Cpus::count(n),
            CpusText::Text(text) => Cpus::parse(&text),
        }
    }
}

impl Cpus {
    fn count(n: usize) -> Result<Cpus, String> {
        if n == 0 || n > EXECUTORS_MAX {
            return Err(format!(
                "a count of cores must be in 1..={EXECUTORS_MAX}, not {n}"
            ));
        }
        Ok(Cpus::Count(n))
    }

    /// The cores named one by one; a count names none, and is refused with `what` (the
    /// setting's name) for what must say where, not how many.
    pub fn named_cores(&self, what: &str) -> Result<&[usize], String> {
        match self {
            Cpus::List(cores) => Ok(cores),
            Cpus::Count(n) => Err(format!(
                "{what} = {n} is a count; name the cores (e.g. \"0-1\", or \"3-3\" for core 3 \
                 alone)"
            )),
        }
    }

    /// Parses a count (`4`) or a list of cores and ranges (`2-7`, `0,2,4`, `1-2,6`); a single
    /// core is a range of one (`3-3`), since a bare number is a count.
    pub fn parse(text: &str) -> Result<Cpus, String> {
        let text = text.trim();
        if let Ok(n) = text.parse::<usize>() {
            return Cpus::count(n);
        }
        let number = |s: &str| {
            s.trim()
                .parse::<usize>()
                .map_err(|_| format!("`{text}`: `{}` is not a core number", s.trim()))
        };
        let mut cores = Vec::new();
        for item in text.split(',').filter(|s| !s.trim().is_empty()) {
            let (first, last) = match item.split_once('-') {
                Some((a, b)) => (number(a)?, number(b)?),
                None => (number(item)?, number(item)?),
            };
            if first > last {
                return Err(format!("`{text}`: range {first}-{last} runs backwards"));
            }
            if last - first >= EXECUTORS_MAX {
                return Err(format!(
                    "`{text}`: at most {EXECUTORS_MAX} cores may be given"
                ));
            }
            for core in first..=last {
                if cores.contains(&core) {
                    return Err(format!("`{text}`: core {core} is given twice"));
                }
                cores.push(core);
            }
        }
        if cores.is_empty() {
            return Err(format!(
                "`{text}` gives no core: write a count (4) or cores (2-7, 0,2,4)"
            ));
        }
        if cores.len() > EXECUTORS_MAX {
            return Err(format!(
                "`{text}`: at most {EXECUTORS_MAX} cores may be given"
            ));
        }
        Ok(Cpus::List(cores))
    }
}

/// Where each executor of a node runs: one entry per executor, the Raft executor first; `Some`
/// is the core it is pinned on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The executors' cores (all `Some` or all `None`).
    pub executors: Vec<Option<usize>>,
}

impl Plan {
    /// The plan for `cpus` (none: every core in `allowed`) on a process allowed to run on
    /// `allowed` (sorted).
    pub fn new(cpus: Option<&Cpus>, allowed: &[usize]) -> Plan {
        // Only cores named one by one are pinned: a count, or the default, says how many
        // executors, not where; several nodes on one machine (a local benchmark, the tests)
        // would otherwise all pin their Raft executors on the first core.
        let cores: Vec<usize> = match cpus {
            None => {
                return Plan {
                    executors: vec![None; allowed.len().max(1)],
                }
            }
            Some(Cpus::Count(n)) => {
                return Plan {
                    executors: vec![None; *n],
                }
            }
            Some(Cpus::List(list)) => list.clone(),
        };
        let cores = if cores.is_empty() { vec![0] } else { cores };
        let pinned = cores.len() >= 2 && cores.iter().all(|c| allowed.contains(c));
        Plan {
            executors: cores
                .into_iter()
                .map(|c| if pinned { Some(c) } else { None })
                .collect(),
        }
    }

    /// Whether the executors are pinned.
    pub fn pinned(&self) -> bool {
        self.executors.first().is_some_and(Option::is_some)
    }

    /// The cores of the executors that serve clients (empty when unpinned).
    pub fn client_cores(&self) -> Vec<usize> {
        self.executors.iter().skip(1).flatten().copied().collect()
    }
}

/// The cores this process may run on (`sched_getaffinity`), sorted; empty if the kernel will
/// not say.
pub fn allowed_cores() -> Vec<usize> {
    // SAFETY: `set` is a plain bit set the kernel fills; its size is passed with it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_lists_and_ranges_parse() {
        assert_eq!(Cpus::parse("4"), Ok(Cpus::Count(4)));
        assert_eq!(Cpus::parse("2-5"), Ok(Cpus::List(vec![2, 3, 4, 5])));
        assert_eq!(Cpus::parse("0,2, 4"), Ok(Cpus::List(vec![0, 2, 4])));
        assert_eq!(Cpus::parse("1-2,6"), Ok(Cpus::List(vec![1, 2, 6])));
        assert_eq!(Cpus::parse("3-3"), Ok(Cpus::List(vec![3])));
        for (bad, says) in [
            ("0", "1..="),
            ("", "gives no core"),
            ("5-2", "backwards"),
            ("1,x", "`x` is not a core number"),
            ("1-2,2", "core 2 is given twice"),
            ("0-100000", "at most"),
        ] {
            let e = Cpus::parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn toml_takes_a_count_or_a_string() {
        #[derive(Deserialize)]
        struct T {
            cpus: Cpus,
        }
        let t: T = toml::from_str("cpus = 3").unwrap();
        assert_eq!(t.cpus, Cpus::Count(3));
        let t: T = toml::from_str("cpus = \"2-3\"").unwrap();
        assert_eq!(t.cpus, Cpus::List(vec![2, 3]));
        let e = toml::from_str::<T>("cpus = \"3-1\"")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("backwards"), "{e}");
    }

    #[test]
    fn pinned_only_with_two_available_cores_named() {
        let allowed = [0, 1, 2, 3];
        let plan = |cpus: Option<Cpus>| Plan::new(cpus.as_ref(), &allowed).executors;
        // The default and a count say how many executors, never where.
        assert_eq!(plan(None), vec![None; 4]);
        assert_eq!(plan(Some(Cpus::Count(2))), vec![None, None]);
        assert_eq!(plan(Some(Cpus::Count(1))), vec![None]);
        assert_eq!(plan(Some(Cpus::List(vec![3]))), vec![None]);
        assert_eq!(plan(Some(Cpus::List(vec![3, 1]))), vec![Some(3), Some(1)]);
        // A core the process may not use: the same executors, unpinned.
        assert_eq!(plan(Some(Cpus::List(vec![2, 7]))), vec![None, None]);
        assert_eq!(plan(Some(Cpus::Count(6))), vec![None; 6]);
        let p = Plan::new(Some(&Cpus::List(vec![3, 1, 2])), &allowed);
        assert!(p.pinned());
        assert_eq!(p.client_cores(), vec![1, 2]);
        assert_eq!(Plan::new(None, &[]).executors, vec![None]);
    }
}
