//! The inventory of a multi-host bench (`ringraft bench CONFIG --hosts HOSTS.toml`): which
//! machines exist, how the controller reaches each over SSH, where each keeps its files, and
//! what each runs. Checked twice before anything starts: its shape here ([`Inventory::validate`]),
//! then each host over SSH (`remote::preflight`). Errors name the host and the field.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Most hosts an inventory may list.
pub const HOSTS_MAX: usize = 64;
/// Most load processes one host may run in one bench.
pub const LOAD_PROCESSES_PER_HOST_MAX: usize = 16;

/// What a host does in a bench.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Runs one ringraft node (and, with `--compare etcd`, the etcd member of the same rank
    /// unless other hosts have the `etcd` role).
    Node,
    /// Runs one etcd member (never at the same time as ringraft's nodes).
    Etcd,
    /// Runs load processes.
    Load,
}

impl Role {
    fn parse(text: &str) -> Option<Role> {
        match text {
            "node" => Some(Role::Node),
            "etcd" => Some(Role::Etcd),
            "load" => Some(Role::Load),
            _ => None,
        }
    }
}

/// One host as written in the inventory file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Host {
    /// A short unique name, used in reports and errors.
    pub name: String,
    /// The address (IP or DNS name) other hosts and the controller use to reach its services.
    pub address: String,
    /// Where its services listen (an IP of the host, or 0.0.0.0); default: `address`.
    #[serde(default)]
    pub bind: Option<String>,
    /// SSH destination, `[user@]host`.
    pub ssh: String,
    /// SSH port (default: ssh's own, usually 22).
    #[serde(default)]
    pub ssh_port: Option<u16>,
    /// Private key for SSH (`ssh -i`).
    #[serde(default)]
    pub identity_file: Option<PathBuf>,
    /// Extra `ssh -o` options, e.g. "StrictHostKeyChecking=accept-new".
    #[serde(default)]
    pub ssh_options: Vec<String>,
    /// Absolute directory on the host for the binary, data, logs and results; created if missing.
    pub workdir: String,
    /// Where the node's and etcd's data live (default: `workdir`/data). Put it on the disk
    /// under test.
    #[serde(default)]
    pub data_dir: Option<String>,
    /// `node`, `etcd`, `load`.
    pub roles: Vec<String>,
    /// Load processes this host runs (default 1).
    #[serde(default = "one")]
    pub load_processes: usize,
    /// The etcd binary on this host (default: `etcd` from its PATH).
    #[serde(default)]
    pub etcd_binary: Option<String>,
}

fn one() -> usize {
    1
}

impl Host {
    /// Its roles, parsed (valid after [`Inventory::validate`]).
    pub fn has(&self, role: Role) -> bool {
        self.roles.iter().any(|r| Role::parse(r) == Some(role))
    }

    /// Where its services listen.
    pub fn bind_host(&self) -> &str {
        self.bind.as_deref().unwrap_or(&self.address)
    }

    /// Where its data lives.
    pub fn data_dir(&self) -> String {
        self.data_dir
            .clone()
            .unwrap_or_else(|| format!("{}/data", self.workdir.trim_end_matches('/')))
    }
}

/// The whole inventory.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inventory {
    /// Every host.
    pub hosts: Vec<Host>,
}

/// A host's place in the inventory, for errors.
fn at(host: &Host, field: &str, reason: impl std::fmt::Display) -> String {
    format!("inventory: host `{}`, field `{field}`: {reason}", host.name)
}

impl Inventory {
    /// Reads and validates an inventory file.
    pub fn from_file(path: &Path) -> Result<Inventory, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read inventory {}: {e}", path.display()))?;
        Inventory::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parses and validates inventory text.
    pub fn parse(text: &str) -> Result<Inventory, String> {
        let inventory: Inventory = toml::from_str(text).map_err(|e| e.to_string())?;
        inventory.validate()?;
        Ok(inventory)
    }

    /// Checks the inventory's shape; the error names the first bad host and field.
    pub fn validate(&self) -> Result<(), String> {
        if self.hosts.is_empty() {
            return Err("inventory: no hosts".into());
        }
        if self.hosts.len() > HOSTS_MAX {
            return Err(format!(
                "inventory: {} hosts, at most {HOSTS_MAX}",
                self.hosts.len()
            ));
        }
        let mut names = BTreeSet::new();
        let mut addresses = BTreeSet::new();
        for host in &self.hosts {
            let name_ok = !host.name.is_empty()
                && host
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
            if !name_ok {
                return Err(at(host, "name", "use letters, digits, '-', '_' or '.'"));
            }
            if !names.insert(host.name.as_str()) {
                return Err(at(host, "name", "another host has the same name"));
            }
            check_host_text(host, "address", &host.address)?;
            if let Some(bind) = &host.bind {
                check_host_text(host, "bind", bind)?;
            }
            if !addresses.insert(host.address.as_str()) {
                return Err(at(
                    host,
                    "address",
                    format!("`{}` is also another host's address", host.address),
                ));
            }
            if host.ssh.is_empty()
                || host.ssh.starts_with('-')
                || host.ssh.contains(char::is_whitespace)
            {
                return Err(at(host, "ssh", "expected [user@]host"));
            }
            for option in &host.ssh_options {
                if !option.contains('=') || option.starts_with('-') {
                    return Err(at(
                        host,
                        "ssh_options",
                        format!("`{option}`: expected Name=value (given to ssh as -o Name=value)"),
                    ));
                }
            }
            for (field, dir) in [
                ("workdir", Some(&host.workdir)),
                ("data_dir", host.data_dir.as_ref()),
            ] {
                if let Some(dir) = dir {
                    if !dir.starts_with('/') || dir.contains(['\'', '\n', '"', '$', '`', '\\']) {
                        return Err(at(
                            host,
                            field,
                            format!("`{dir}`: give an absolute path without quotes, $, ` or \\"),
                        ));
                    }
                }
            }
            if host.roles.is_empty() {
                return Err(at(host, "roles", "empty; give node, etcd and/or load"));
            }
            for role in &host.roles {
                if Role::parse(role).is_none() {
                    return Err(at(
                        host,
                        "roles",
                        format!("unknown role `{role}` (node, etcd or load)"),
                    ));
                }
            }
            if host.load_processes == 0 || host.load_processes > LOAD_PROCESSES_PER_HOST_MAX {
                return Err(at(
                    host,
                    "load_processes",
                    format!("must be in 1..={LOAD_PROCESSES_PER_HOST_MAX}"),
                ));
            }
            if let Some(bin) = &host.etcd_binary {
                if bin.contains(['\'', '\n', '"', '$', '`', '\\', ' ']) {
                    return Err(at(host, "etcd_binary", "a path without spaces or quotes"));
                }
            }
        }
        if self.with(Role::Node).is_empty() {
            return Err("inventory: no host has the `node` role".into());
        }
        if self.with(Role::Load).is_empty() {
            return Err("inventory: no host has the `load` role".into());
        }
        Ok(())
    }

    /// The hosts with `role`, in file order.
    pub fn with(&self, role: Role) -> Vec<&Host> {
        self.hosts.iter().filter(|h| h.has(role)).collect()
    }

    /// The hosts that run etcd members: those with the `etcd` role, else the node hosts.
    pub fn etcd_hosts(&self) -> Vec<&Host> {
        let etcd = self.with(Role::Etcd);
        if etcd.is_empty() {
            self.with(Role::Node)
        } else {
            etcd
        }
    }
}

/// A host name or IP without characters that would break a command line or an address.
fn check_host_text(host: &Host, field: &str, text: &str) -> Result<(), String> {
    let ok = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    if ok {
        Ok(())
    } else {
        Err(at(
            host,
            field,
            format!("`{text}` is not a host name or IP"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[[hosts]]
name = "n1"
address = "10.0.0.11"
ssh = "root@10.0.0.11"
workdir = "/srv/ringraft"
roles = ["node"]

[[hosts]]
name = "c1"
address = "10.0.0.21"
bind = "0.0.0.0"
ssh = "c1.example"
ssh_port = 2222
ssh_options = ["StrictHostKeyChecking=accept-new"]
workdir = "/srv/ringraft"
roles = ["load"]
load_processes = 2
"#;

    fn refused(text: &str) -> String {
        Inventory::parse(text).expect_err("must be refused")
    }

    #[test]
    fn a_good_inventory_parses() {
        let inv = Inventory::parse(GOOD).unwrap();
        assert_eq!(inv.with(Role::Node).len(), 1);
        assert_eq!(inv.with(Role::Load)[0].load_processes, 2);
        assert_eq!(inv.hosts[1].bind_host(), "0.0.0.0");
        assert_eq!(inv.hosts[0].data_dir(), "/srv/ringraft/data");
        assert_eq!(inv.etcd_hosts()[0].name, "n1");
    }

    #[test]
    fn an_unknown_role_is_refused_naming_host_and_field() {
        let e = refused(&GOOD.replace("roles = [\"node\"]", "roles = [\"nod\"]"));
        assert!(
            e.contains("host `n1`") && e.contains("`roles`") && e.contains("nod"),
            "{e}"
        );
    }

    #[test]
    fn two_hosts_with_one_address_are_refused() {
        let e = refused(&GOOD.replace("10.0.0.21\"\nbind", "10.0.0.11\"\nbind"));
        assert!(e.contains("host `c1`") && e.contains("`address`"), "{e}");
    }

    #[test]
    fn an_inventory_without_node_hosts_is_refused() {
        let e = refused(&GOOD.replace("roles = [\"node\"]", "roles = [\"load\"]"));
        assert!(e.contains("no host has the `node` role"), "{e}");
    }

    #[test]
    fn a_relative_workdir_or_unknown_field_is_refused() {
        let e = refused(&GOOD.replacen("/srv/ringraft", "srv", 1));
        assert!(e.contains("host `n1`") && e.contains("`workdir`"), "{e}");
        let e = refused(&GOOD.replace("ssh_port = 2222", "ssh_prot = 2222"));
        assert!(e.contains("ssh_prot"), "{e}");
        let e = refused(&GOOD.replace("load_processes = 2", "load_processes = 0"));
        assert!(
            e.contains("host `c1`") && e.contains("load_processes"),
            "{e}"
        );
    }
}

#[cfg(test)]
mod shipped {
    #[test]
    fn the_shipped_example_inventory_and_config_parse() {
        let inv =
            super::Inventory::from_file(std::path::Path::new("bench-configs/hosts.example.toml"))
                .unwrap();
        assert_eq!(inv.with(super::Role::Node).len(), 3);
        let config = crate::bench::BenchConfig::from_file(std::path::Path::new(
            "bench-configs/c7g-3node-1kb.toml",
        ))
        .unwrap();
        config.validate().unwrap();
        assert_eq!(config.nodes, inv.with(super::Role::Node).len());
    }
}
