//! A node's settings: from `--config node.toml` or command-line flags, validated with errors that
//! name the field.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use crate::core::{self, NodeId};
use crate::settings::{SettingError, Settings};

/// A host and port as others reach it: an IP address or a DNS name, kept as written and resolved
/// each time it is used, so that a name that moves to another address is followed on reconnect.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct Address {
    text: String,
}

impl Address {
    /// Checks the `host:port` shape (an IPv6 host in brackets); does not resolve.
    pub fn parse(text: &str) -> Result<Address, String> {
        let text = text.trim();
        let (host, port) = text
            .rsplit_once(':')
            .ok_or_else(|| format!("`{text}` is not host:port"))?;
        if host.is_empty() {
            return Err(format!("`{text}` has no host"));
        }
        if port.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(format!("`{text}`: `{port}` is not a port (1-65535)"));
        }
        if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
            return Err(format!(
                "`{text}`: write an IPv6 host in brackets, [::1]:7001"
            ));
        }
        Ok(Address {
            text: text.to_string(),
        })
    }

    /// The host part (a name or an IP, brackets removed).
    pub fn host(&self) -> &str {
        let host = self.text.rsplit_once(':').map_or("", |(h, _)| h);
        host.trim_start_matches('[').trim_end_matches(']')
    }

    /// Resolves the address now (a DNS lookup for a name: this blocks).
    pub fn resolve(&self) -> std::io::Result<SocketAddr> {
        use std::net::ToSocketAddrs;
        let mut addrs: Vec<SocketAddr> = self.text.to_socket_addrs()?.collect();
        // Prefer IPv4 when a name has both: listeners given as IPs are usually IPv4.
        addrs.sort_by_key(|a| a.is_ipv6());
        addrs.into_iter().next().ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{} resolves to no address", self.text),
            )
        })
    }
}

impl TryFrom<String> for Address {
    type Error = String;
    fn try_from(text: String) -> Result<Address, String> {
        Address::parse(&text)
    }
}

impl From<SocketAddr> for Address {
    fn from(addr: SocketAddr) -> Address {
        Address {
            text: addr.to_string(),
        }
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// One cluster member's advertised addresses: where the other members and clients reach it.
/// Where it listens may differ (`peer_listen_addr`, `client_listen_addr` of its own config):
/// behind NAT, on a multi-homed host, or listening on 0.0.0.0.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Member {
    /// Its node id (non-zero, unique).
    pub id: NodeId,
    /// Where peers reach it (IP or DNS name, with port).
    pub peer_addr: Address,
    /// Where clients reach it (IP or DNS name, with port); leader hints carry it.
    pub client_addr: Address,
}

/// Everything `ringraft node` needs: this node's identity and addresses, and its
/// [`Settings`](crate::settings::Settings) (the one table of tunable settings, also flattened
/// into the TOML file). Field names are those of the TOML file.
#[derive(Clone, Debug, Deserialize)]
pub struct NodeConfig {
    /// This node's id; must be one of `members`.
    pub id: NodeId,
    /// Identifies the cluster: peers from another cluster are refused at the handshake.
    #[serde(default = "default_cluster_id")]
    pub cluster_id: u64,
    /// Every member, this node included.
    pub members: Vec<Member>,
    /// Where the log, hard state and snapshots live.
    pub data_dir: PathBuf,
    /// Start as a new member of a running cluster (`ringraft node --join`): with an empty data
    /// directory (refused otherwise), no configuration, no campaign, until a leader adds it
    /// (`ringraft member add`). `members` then needs to name only this node; the others it
    /// names give the addresses of bootstrap members, whose configuration carries none.
    #[serde(default)]
    pub join: bool,
    /// Where this node listens for peers (e.g. 0.0.0.0:7001); default: its member entry's
    /// `peer_addr`, resolved at start. When it names one IP, outgoing peer connections leave
    /// from that IP too, so that peers see the address this node was given.
    #[serde(default)]
    pub peer_listen_addr: Option<SocketAddr>,
    /// Where this node listens for clients; default: its member entry's `client_addr`,
    /// resolved at start.
    #[serde(default)]
    pub client_listen_addr: Option<SocketAddr>,
    /// Link emulation file (see `netem::Emulation`); reloaded on SIGHUP.
    #[serde(default)]
    pub emulation_file: Option<PathBuf>,
    /// Where to serve Prometheus metrics on `GET /metrics` (none: not served).
    #[serde(default)]
    pub metrics_addr: Option<SocketAddr>,
    /// The tunable settings. Every other key of the file must be one of them (the settings'
    /// deserializer refuses unknown keys, naming them, which is why this struct cannot say
    /// `deny_unknown_fields` itself: serde does not combine it with `flatten`).
    #[serde(flatten)]
    pub settings: Settings,
    /// The Raft group a group's executor runs (0 for the node as configured): the runtime sets
    /// it, with `data_dir`, on the copy of the config each group's executor is given.
    #[serde(skip)]
    pub group: u32,
}

/// A node's settings read as its own fields (`config.tick_ms`), as the runtime has always read
/// them: the identity fields and the settings are one configuration to the code that runs it.
impl std::ops::Deref for NodeConfig {
    type Target = Settings;
    fn deref(&self) -> &Settings {
        &self.settings
    }
}

impl std::ops::DerefMut for NodeConfig {
    fn deref_mut(&mut self) -> &mut Settings {
        &mut self.settings
    }
}

fn default_cluster_id() -> u64 {
    1
}

/// What is wrong with a node's configuration.
#[derive(Debug, thiserror::Error)]
pub enum NodeConfigError {
    /// The TOML file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML is malformed or names an unknown field.
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (names the field and line).
        message: String,
    },
    /// A field has a bad value.
    #[error("config field `{field}`: {reason}")]
    Field {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A setting is outside its bound.
    #[error(transparent)]
    Setting(#[from] SettingError),
    /// The core rejected the derived Raft settings.
    #[error("raft settings: {0}")]
    Core(#[from] core::ConfigError),
}

impl NodeConfig {
    /// Reads and validates a TOML file.
    pub fn from_file(path: &std::path::Path) -> Result<NodeConfig, NodeConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| NodeConfigError::Read {
            path: path.into(),
            source,
        })?;
        let mut config: NodeConfig = toml::from_str(&text).map_err(|e| NodeConfigError::Parse {
            path: path.into(),
            message: e.to_string(),
        })?;
        config.derive_timing();
        config.validate()?;
        Ok(config)
    }

    /// A config with defaults for everything but identity, members and data directory.
    pub fn new(id: NodeId, members: Vec<Member>, data_dir: PathBuf) -> NodeConfig {
        let text = format!(
            "id = {id}\ndata_dir = {:?}\nmembers = []\n",
            data_dir.display().to_string()
        );
        let mut config: NodeConfig = toml::from_str(&text).expect("defaults parse");
        config.members = members;
        config
    }

    /// Turns `rtt_ms`, `heartbeat_ms` and `election_ms` into ticks. Call after every field is
    /// set (file and flags) and before `validate`.
    pub fn derive_timing(&mut self) {
        let s = &mut self.settings;
        if let Some(rtt) = s.rtt_ms {
            // Ten ticks per RTT: fine enough that the randomized timeout spreads candidates.
            s.tick_ms = (rtt / 10).max(1);
            s.heartbeat_interval_ticks = (rtt.div_ceil(s.tick_ms)).max(1) as u32;
            s.election_timeout_ticks = 10 * s.heartbeat_interval_ticks;
        }
        // Both come from bounded settings, but clamp rather than wrap: the core then names
        // whichever is out of range.
        let ticks = |ms: u64, tick_ms: u64| ms.div_ceil(tick_ms).clamp(1, u32::MAX as u64) as u32;
        if let Some(ms) = s.heartbeat_ms {
            s.heartbeat_interval_ticks = ticks(ms, s.tick_ms);
        }
        if let Some(ms) = s.election_ms {
            s.election_timeout_ticks = ticks(ms, s.tick_ms);
        }
    }

    /// The election timeout's lower end in milliseconds (it is randomized in [E, 2E)).
    pub fn election_timeout_ms(&self) -> u64 {
        self.election_timeout_ticks as u64 * self.tick_ms
    }

    /// Warnings about timing that will not work on the links this node is given: an election
    /// timeout under 10 RTTs (etcd's tuning guide), or a heartbeat slower than half of it.
    /// `emulated_rtt_ms` is the largest RTT the link emulation implies, if any.
    pub fn timing_warnings(&self, emulated_rtt_ms: Option<f64>) -> Vec<String> {
        let mut warnings = Vec::new();
        let rtt = match (self.rtt_ms.map(|r| r as f64), emulated_rtt_ms) {
            (Some(a), Some(b)) => Some((a.max(b), "configured and emulated")),
            (Some(a), None) => Some((a, "configured (rtt_ms)")),
            (None, Some(b)) => Some((b, "emulated")),
            (None, None) => None,
        };
        let election = self.election_timeout_ms() as f64;
        if let Some((rtt, source)) = rtt {
            if election < 10.0 * rtt {
                warnings.push(format!(
                    "election timeout {election:.0} ms is below 10 x the {source} round trip of {rtt:.0} ms ({:.0} ms): expect spurious elections; set rtt_ms = {rtt:.0} to derive safe timing",
                    10.0 * rtt
                ));
            }
        }
        let heartbeat = (self.heartbeat_interval_ticks as u64 * self.tick_ms) as f64;
        if 2.0 * heartbeat > election {
            warnings.push(format!(
                "heartbeat interval {heartbeat:.0} ms is more than half the election timeout {election:.0} ms: one late heartbeat starts an election"
            ));
        }
        warnings
    }

    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), NodeConfigError> {
        let field = |field: &'static str, reason: &str| {
            Err(NodeConfigError::Field {
                field,
                reason: reason.to_string(),
            })
        };
        if self.members.iter().all(|m| m.id != self.id) {
            return field("id", &format!("{} is not among `members`", self.id));
        }
        self.settings.validate()?;
        let mut addrs: Vec<&Address> = self
            .members
            .iter()
            .flat_map(|m| [&m.peer_addr, &m.client_addr])
            .collect();
        addrs.sort();
        if addrs.windows(2).any(|w| w[0] == w[1]) {
            return field("members", "two listeners share an address");
        }
        if let (Some(peer), Some(client)) = (self.peer_listen_addr, self.client_listen_addr) {
            if peer == client {
                return field(
                    "client_listen_addr",
                    "the same as peer_listen_addr; give each its own port",
                );
            }
        }
        if self.join && self.groups > 1 {
            return field(
                "join",
                &format!(
                    "--join is not supported with groups = {} (membership changes reach \
                     group 0 only); add nodes to a cluster of one group",
                    self.groups
                ),
            );
        }
        self.core_config().validate()?;
        Ok(())
    }

    /// Where group `group`'s log, hard state and snapshots live: the data dir itself with one
    /// group (the layout of a node before groups), `data_dir/group-N/` with several.
    pub fn group_dir(&self, group: u32) -> PathBuf {
        if self.groups <= 1 {
            self.data_dir.clone()
        } else {
            self.data_dir.join(format!("group-{group}"))
        }
    }

    /// The core's configuration derived from this one. A joining node has no bootstrap voters:
    /// its configuration comes from the leader only.
    pub fn core_config(&self) -> core::Config {
        let voters = if self.join {
            Vec::new()
        } else {
            self.members.iter().map(|m| m.id).collect()
        };
        let mut c = core::Config::from_settings(self.id, voters, &self.settings);
        // Seeded from wall-clock entropy: a real node wants different timeouts on every start;
        // determinism is the simulator's business.
        c.seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        c
    }

    /// Where this node listens for peers: `peer_listen_addr`, else its advertised address
    /// resolved now.
    pub fn peer_listen(&self) -> std::io::Result<SocketAddr> {
        match self.peer_listen_addr {
            Some(addr) => Ok(addr),
            None => self.own_member()?.peer_addr.resolve(),
        }
    }

    /// Where this node listens for clients: `client_listen_addr`, else its advertised address
    /// resolved now.
    pub fn client_listen(&self) -> std::io::Result<SocketAddr> {
        match self.client_listen_addr {
            Some(addr) => Ok(addr),
            None => self.own_member()?.client_addr.resolve(),
        }
    }

    fn own_member(&self) -> std::io::Result<&Member> {
        self.member(self.id).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("node {} is not among the members", self.id),
            )
        })
    }

    /// The member entry of node `id`.
    pub fn member(&self, id: NodeId) -> Option<&Member> {
        self.members.iter().find(|m| m.id == id)
    }
}

/// Reads `PEER_ADDR/CLIENT_ADDR`, the form a member's two addresses take in `--members` and in
/// a membership change's context.
pub fn parse_address_pair(text: &str) -> Result<(Address, Address), String> {
    let (peer, client) = text
        .split_once('/')
        .ok_or_else(|| format!("`{text}` is not PEER_ADDR/CLIENT_ADDR"))?;
    let peer = Address::parse(peer).map_err(|e| format!("peer address: {e}"))?;
    let client = Address::parse(client).map_err(|e| format!("client address: {e}"))?;
    Ok((peer, client))
}

/// Parses `--members 1=127.0.0.1:7001/127.0.0.1:8001,2=...` (id=peer_addr/client_addr; a host
/// may be a DNS name).
pub fn parse_members(text: &str) -> Result<Vec<Member>, NodeConfigError> {
    let bad = |reason: String| NodeConfigError::Field {
        field: "members",
        reason,
    };
    text.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|item| {
            let (id, addrs) = item
                .split_once('=')
                .ok_or_else(|| bad(format!("`{item}`: expected id=peer_addr/client_addr")))?;
            let id: NodeId = id
                .trim()
                .parse()
                .map_err(|_| bad(format!("`{id}` is not a node id")))?;
            let (peer_addr, client_addr) =
                parse_address_pair(addrs).map_err(|e| bad(format!("member {id}: {e}")))?;
            Ok(Member {
                id,
                peer_addr,
                client_addr,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_keep_names_and_check_their_shape() {
        let a = Address::parse("node-1.example:7001").unwrap();
        assert_eq!(a.host(), "node-1.example");
        assert_eq!(Address::parse("[::1]:7001").unwrap().host(), "::1");
        assert!(Address::parse("7001").is_err());
        assert!(Address::parse("host:0").is_err());
        assert!(Address::parse(":7001").is_err());
        assert!(Address::parse("::1:7001").is_err());
        assert_eq!(
            Address::parse("localhost:7001")
                .unwrap()
                .resolve()
                .unwrap()
                .port(),
            7001
        );
    }

    #[test]
    fn listen_addresses_default_to_the_advertised_ones() {
        let members =
            parse_members("1=127.0.0.1:7001/127.0.0.1:8001,2=localhost:7002/localhost:8002")
                .unwrap();
        let mut config = NodeConfig::new(1, members, PathBuf::from("d"));
        config.validate().unwrap();
        assert_eq!(
            config.peer_listen().unwrap(),
            "127.0.0.1:7001".parse().unwrap()
        );
        config.peer_listen_addr = Some("0.0.0.0:7001".parse().unwrap());
        config.client_listen_addr = Some("0.0.0.0:7001".parse().unwrap());
        let e = config.validate().unwrap_err().to_string();
        assert!(e.contains("client_listen_addr"), "{e}");
        config.client_listen_addr = Some("0.0.0.0:8001".parse().unwrap());
        config.validate().unwrap();
        assert_eq!(
            config.client_listen().unwrap(),
            "0.0.0.0:8001".parse().unwrap()
        );
        let e = parse_members("1=127.0.0.1:7001/127.0.0.1:x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("member 1") && e.contains("not a port"), "{e}");
    }
}
