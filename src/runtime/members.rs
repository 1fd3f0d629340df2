//! The addresses of the members of the configuration in force, as the runtime needs them: where
//! the peer transport connects, whom it accepts, and which client address a leader hint names.
//!
//! A member's addresses come from its context in the configuration (`PEER_ADDR/CLIENT_ADDR`,
//! written when it was added with `ringraft member add`), else from this node's `--members`
//! (the bootstrap members carry no context). The table follows the configuration: the Raft loop
//! calls [`MemberTable::follow`] whenever the core's configuration changes (an entry appended or
//! truncated, a snapshot installed) and at start. It must never panic on a context read from the
//! log: a bad one is reported and that member is left without an address.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

use bytes::Bytes;

use super::config::{Address, Member};
use crate::core::{Membership, NodeId, MEMBER_CONTEXT_BYTES_MAX};

/// A member's context as the runtime writes it: `PEER_ADDR/CLIENT_ADDR`.
pub fn encode_context(peer_addr: &Address, client_addr: &Address) -> Bytes {
    Bytes::from(format!("{peer_addr}/{client_addr}"))
}

/// Reads `PEER_ADDR/CLIENT_ADDR` (from a request or from the log); the error says what is wrong.
pub fn parse_context(context: &[u8]) -> Result<(Address, Address), String> {
    if context.len() > MEMBER_CONTEXT_BYTES_MAX {
        return Err(format!(
            "{} bytes of addresses exceed the limit of {MEMBER_CONTEXT_BYTES_MAX}",
            context.len()
        ));
    }
    let text = std::str::from_utf8(context).map_err(|_| "addresses are not UTF-8".to_string())?;
    let (peer, client) = super::config::parse_address_pair(text)?;
    if peer == client {
        return Err(format!(
            "`{text}`: the peer and client addresses must differ"
        ));
    }
    Ok((peer, client))
}

/// The members' addresses, shared by the Raft loop (which updates it) and the peer listener
/// (which reads it) on the Raft executor.
pub struct MemberTable {
    me: NodeId,
    /// `--members`: the addresses of members whose configuration entry carries none.
    bootstrap: Vec<Member>,
    current: RefCell<BTreeMap<NodeId, Member>>,
    /// Every member of the configuration, addresses known or not: a member whose addresses
    /// only its own connection will announce must be let in.
    member_ids: RefCell<std::collections::BTreeSet<NodeId>>,
    /// True while the configuration is empty (a node started with `--join`, waiting to be
    /// added): any node of this cluster may connect, since it cannot know the leader yet.
    open: Cell<bool>,
    /// The leader this node knows of: accepted even when it is not in the configuration, since
    /// a leader being removed leads until the configuration without it commits.
    leader: Cell<Option<NodeId>>,
    /// The addresses peers announced in their handshakes (at most `CLUSTER_NODES_MAX`): the
    /// last resort for a member whose addresses neither the configuration nor `--members`
    /// gives, so that a node started knowing only its own addresses can answer a leader
    /// before it is added, and reach the bootstrap members (whose configuration entry carries
    /// no addresses) after a restart.
    announced: RefCell<BTreeMap<NodeId, Member>>,
    /// Bumped when an announcement adds or changes addresses: the Raft loop then follows the
    /// configuration again.
    announced_generation: Cell<u64>,
}

impl MemberTable {
    /// A table knowing only `--members`, until [`MemberTable::follow`] is called.
    pub fn new(me: NodeId, bootstrap: Vec<Member>) -> MemberTable {
        MemberTable {
            me,
            bootstrap,
            current: RefCell::new(BTreeMap::new()),
            member_ids: RefCell::new(Default::default()),
            open: Cell::new(true),
            leader: Cell::new(None),
            announced: RefCell::new(BTreeMap::new()),
            announced_generation: Cell::new(0),
        }
    }

    /// Rebuilds the table for `membership`; returns one warning per member without a usable
    /// address.
    pub fn follow(&self, membership: &Membership) -> Vec<String> {
        let mut table = BTreeMap::new();
        let mut warnings = Vec::new();
        for id in membership.members() {
            let from_context = membership.contexts.get(&id).map(|c| parse_context(c));
            let bootstrap = self.bootstrap.iter().find(|m| m.id == id);
            let member = match (from_context, bootstrap) {
                (Some(Ok((peer_addr, client_addr))), _) => Member {
                    id,
                    peer_addr,
                    client_addr,
                },
                (Some(Err(e)), Some(m)) => {
                    warnings.push(format!(
                        "member {id}: bad addresses in the configuration ({e}); using --members"
                    ));
                    m.clone()
                }
                (None, Some(m)) => m.clone(),
                (None, None) if self.announced.borrow().contains_key(&id) => {
                    self.announced.borrow()[&id].clone()
                }
                (Some(Err(e)), None) => {
                    warnings.push(format!(
                        "member {id}: bad addresses in the configuration ({e}) and none in \
                         --members: cannot reach it"
                    ));
                    continue;
                }
                (None, None) => {
                    if id != self.me {
                        warnings.push(format!(
                            "member {id}: no address in the configuration or in --members: \
                             cannot reach it (restart this node with it in --members)"
                        ));
                    }
                    continue;
                }
            };
            table.insert(id, member);
        }
        self.open.set(membership.is_empty());
        *self.member_ids.borrow_mut() = membership.members().into_iter().collect();
        *self.current.borrow_mut() = table;
        warnings
    }

    /// The addresses of member `id`, if it is a member and they are known.
    pub fn get(&self, id: NodeId) -> Option<Member> {
        self.current.borrow().get(&id).cloned()
    }

    /// Every member with known addresses, by id.
    pub fn all(&self) -> BTreeMap<NodeId, Member> {
        self.current.borrow().clone()
    }

    /// Notes the addresses node `id` (a peer whose handshake was accepted) announced; returns
    /// what is wrong with them, if anything (they are then ignored).
    pub fn announced_by(&self, id: NodeId, addresses: &str) -> Result<(), String> {
        if id == self.me {
            return Ok(());
        }
        let (peer_addr, client_addr) = parse_context(addresses.as_bytes())?;
        let member = Member {
            id,
            peer_addr,
            client_addr,
        };
        let mut announced = self.announced.borrow_mut();
        if announced.get(&id) == Some(&member) {
            return Ok(());
        }
        if announced.len() >= crate::limits::CLUSTER_NODES_MAX && !announced.contains_key(&id) {
            // Make room by forgetting a node that is no longer a member, if there is one.
            let members = self.member_ids.borrow();
            let gone = announced.keys().copied().find(|i| !members.contains(i));
            match gone {
                Some(gone) => {
                    announced.remove(&gone);
                }
                None => {
                    return Err(format!(
                        "more than {} nodes announced themselves; ignoring node {id}",
                        crate::limits::CLUSTER_NODES_MAX
                    ))
                }
            }
        }
        announced.insert(id, member);
        self.announced_generation
            .set(self.announced_generation.get() + 1);
        Ok(())
    }

    /// Counts announcements that added or changed addresses.
    pub fn announced_generation(&self) -> u64 {
        self.announced_generation.get()
    }

    /// The addresses peers announced while this node waits to be added.
    pub fn announced(&self) -> BTreeMap<NodeId, Member> {
        self.announced.borrow().clone()
    }

    /// Records the leader this node knows of.
    pub fn set_leader(&self, leader: Option<NodeId>) {
        self.leader.set(leader);
    }

    /// Whether a peer connection from node `id` is accepted: a member, the known leader, or
    /// anyone while this node waits to be added.
    pub fn accepts(&self, id: NodeId) -> bool {
        id != self.me
            && (self.open.get()
                || self.leader.get() == Some(id)
                || self.member_ids.borrow().contains(&id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contexts_are_checked_not_trusted() {
        let (p, c) = parse_context(b"127.0.0.1:7004/127.0.0.1:8004").unwrap();
        assert_eq!(
            (p.to_string(), c.to_string()),
            ("127.0.0.1:7004".into(), "127.0.0.1:8004".into())
        );
        for bad in [
            &b"127.0.0.1:7004"[..],
            b"127.0.0.1:7004/",
            b"a:1/a:1",
            b"\xff\xfe/x:1",
            b"host/other:2",
        ] {
            assert!(parse_context(bad).is_err(), "{bad:?}");
        }
        assert!(parse_context(&vec![b'a'; MEMBER_CONTEXT_BYTES_MAX + 1]).is_err());
    }

    #[test]
    fn the_table_follows_the_configuration() {
        let bootstrap = super::super::config::parse_members("1=a:1/a:2,2=b:1/b:2").unwrap();
        let table = MemberTable::new(1, bootstrap);
        assert!(table.accepts(9), "an empty table waits to be added");
        let mut m = Membership::from_voters([1, 2]);
        m = m
            .apply(&crate::core::ConfChange::AddLearner {
                id: 3,
                context: Bytes::from_static(b"c:1/c:2"),
            })
            .unwrap();
        assert!(table.follow(&m).is_empty());
        assert_eq!(table.get(3).unwrap().client_addr.to_string(), "c:2");
        assert!(table.accepts(3) && !table.accepts(9) && !table.accepts(1));
        m.contexts.insert(2, Bytes::from_static(b"garbage"));
        let warnings = table.follow(&m);
        assert!(warnings[0].contains("member 2"), "{warnings:?}");
        assert_eq!(table.get(2).unwrap().peer_addr.to_string(), "b:1");
    }

    #[test]
    fn announced_addresses_reach_members_nothing_else_names() {
        // Node 4 started knowing only itself: the bootstrap members' entry carries no
        // addresses, so only their announcements tell it where they are.
        let own = super::super::config::parse_members("4=d:1/d:2").unwrap();
        let table = MemberTable::new(4, own);
        let m = Membership::from_voters([1, 2])
            .apply(&crate::core::ConfChange::AddLearner {
                id: 4,
                context: Bytes::from_static(b"d:1/d:2"),
            })
            .unwrap();
        let warnings = table.follow(&m);
        assert!(
            warnings.iter().any(|w| w.contains("member 1")),
            "{warnings:?}"
        );
        assert!(table.get(1).is_none());
        assert!(
            table.accepts(1),
            "a member without addresses may connect to announce them"
        );
        assert!(table.announced_by(1, "a:1/a:2").is_ok());
        let generation = table.announced_generation();
        assert!(table.announced_by(1, "a:1/a:2").is_ok());
        assert_eq!(table.announced_generation(), generation, "nothing new");
        assert!(table.announced_by(2, "garbage").is_err());
        assert!(table.follow(&m).iter().all(|w| !w.contains("member 1")));
        assert_eq!(table.get(1).unwrap().peer_addr.to_string(), "a:1");
        assert!(table.get(2).is_none());
        // Bounded: a full table makes room only by forgetting non-members.
        for id in 10..10 + crate::limits::CLUSTER_NODES_MAX as u64 {
            let _ = table.announced_by(id, &format!("n{id}:1/n{id}:2"));
        }
        assert!(table.announced().len() <= crate::limits::CLUSTER_NODES_MAX);
        assert!(
            table.announced().contains_key(&1),
            "a member's announcement is kept"
        );
    }
}
