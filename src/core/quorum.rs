//! Configurations and the quorum arithmetic over them, in one place (thesis 4.3).
//!
//! A configuration is a set of voters, plus, while a change is under way, the set of voters it
//! is leaving (the joint configuration C_old,new: every decision needs a majority of *both*
//! sets), plus learners, which receive the log and never vote, campaign or count toward any
//! majority. Every question "does a quorum agree?" — commitment, elections, check-quorum,
//! ReadIndex rounds — is asked here and nowhere else.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use super::types::NodeId;
use crate::limits;

/// Encoding version of [`Membership::encode`].
const MEMBERSHIP_VERSION: u8 = 1;
/// Most bytes of opaque context one member may carry (the runtime's addresses).
pub const MEMBER_CONTEXT_BYTES_MAX: usize = 1024;

/// One configuration of the cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Membership {
    /// The voters (C_new while joint).
    pub voters: BTreeSet<NodeId>,
    /// Non-empty only while joint: the voters being left (C_old).
    pub outgoing: BTreeSet<NodeId>,
    /// Members that receive the log and never vote.
    pub learners: BTreeSet<NodeId>,
    /// Opaque per-member data carried with the configuration (the runtime keeps each member's
    /// addresses here, so that a configuration restored from a snapshot still knows them).
    pub contexts: BTreeMap<NodeId, Bytes>,
}

/// Outcome of an election so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VoteResult {
    /// A majority of every voter set granted.
    Won,
    /// Some voter set can no longer yield a majority.
    Lost,
    /// Neither yet.
    Pending,
}

/// One membership change: add as learner first, then promote, so that a new voter never
/// joins with an empty log and stalls commitment while it catches up (thesis 4.2.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfChange {
    /// A new non-voting member; `context` is kept with it (e.g. its addresses).
    AddLearner {
        /// The new member.
        id: NodeId,
        /// Opaque data kept with the member.
        context: Bytes,
    },
    /// A learner becomes a voter, through a joint configuration.
    Promote(NodeId),
    /// A member leaves; a voter leaves through a joint configuration.
    Remove(NodeId),
}

/// Why a membership change was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfChangeError {
    /// Only the leader takes changes; retry at `leader` if known.
    #[error("not the leader (leader hint: {leader:?})")]
    NotLeader {
        /// The leader this node knows of.
        leader: Option<NodeId>,
    },
    /// One change at a time: the previous one is not committed (or still joint).
    #[error("a membership change is in progress; retry once it is committed")]
    ChangeInProgress,
    /// A new leader takes changes only once an entry of its term is committed.
    #[error("the leader has not committed an entry of its term yet; retry shortly")]
    LeaderNotReady,
    /// A leadership transfer is under way.
    #[error("leadership transfer in progress")]
    TransferInProgress,
    /// The id is 0.
    #[error("node id must not be 0")]
    ZeroId,
    /// The node is not a member.
    #[error("node {0} is not a member")]
    UnknownMember(NodeId),
    /// The node is already a member.
    #[error("node {0} is already a member")]
    AlreadyMember(NodeId),
    /// Only learners can be promoted.
    #[error("node {0} is already a voter")]
    AlreadyVoter(NodeId),
    /// A cluster needs at least one voter.
    #[error("node {0} is the last voter")]
    LastVoter(NodeId),
    /// More members than `limits::CLUSTER_NODES_MAX`.
    #[error("more than {0} members")]
    TooManyMembers(usize),
    /// The member's context is larger than `MEMBER_CONTEXT_BYTES_MAX`.
    #[error("member context of {0} bytes exceeds the limit")]
    ContextTooLarge(usize),
}

impl Membership {
    /// A simple configuration of `voters` (the bootstrap configuration).
    pub fn from_voters(voters: impl IntoIterator<Item = NodeId>) -> Membership {
        Membership {
            voters: voters.into_iter().collect(),
            ..Membership::default()
        }
    }

    /// True for no member at all: a node waiting to be added.
    pub fn is_empty(&self) -> bool {
        self.voters.is_empty() && self.outgoing.is_empty() && self.learners.is_empty()
    }
    /// True while joint (C_old,new).
    pub fn is_joint(&self) -> bool {
        !self.outgoing.is_empty()
    }
    /// Whether `id` votes in this configuration (in either half while joint).
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.contains(&id) || self.outgoing.contains(&id)
    }
    /// Whether `id` is a member (voter or learner).
    pub fn is_member(&self, id: NodeId) -> bool {
        self.is_voter(id) || self.learners.contains(&id)
    }
    /// Every voter of either half, sorted.
    pub fn all_voters(&self) -> BTreeSet<NodeId> {
        self.voters.union(&self.outgoing).copied().collect()
    }
    /// Every member, sorted.
    pub fn members(&self) -> BTreeSet<NodeId> {
        let mut all = self.all_voters();
        all.extend(self.learners.iter().copied());
        all
    }

    /// The highest value a majority of every voter set has reached, given each voter's value
    /// (`None`: nothing known). Used for the commit index (values are match indexes) and for
    /// ReadIndex rounds. With no voter at all, 0.
    pub fn quorum_value(&self, value: impl Fn(NodeId) -> Option<u64>) -> u64 {
        if self.voters.is_empty() && self.outgoing.is_empty() {
            return 0;
        }
        let incoming = majority_value(&self.voters, &value);
        if self.is_joint() {
            incoming.min(majority_value(&self.outgoing, &value))
        } else {
            incoming
        }
    }

    /// The election's outcome given the votes received so far (`true`: granted).
    pub fn vote_result(&self, votes: &BTreeMap<NodeId, bool>) -> VoteResult {
        let incoming = majority_vote(&self.voters, votes);
        let outgoing = if self.is_joint() {
            majority_vote(&self.outgoing, votes)
        } else {
            VoteResult::Won
        };
        match (incoming, outgoing) {
            (VoteResult::Won, VoteResult::Won) => VoteResult::Won,
            (VoteResult::Lost, _) | (_, VoteResult::Lost) => VoteResult::Lost,
            _ => VoteResult::Pending,
        }
    }

    /// The configuration after `change`: a joint one when a voter set changes.
    pub fn apply(&self, change: &ConfChange) -> Result<Membership, ConfChangeError> {
        if self.is_joint() {
            return Err(ConfChangeError::ChangeInProgress);
        }
        let mut next = self.clone();
        match change {
            ConfChange::AddLearner { id, context } => {
                let id = nonzero(*id)?;
                if self.is_member(id) {
                    return Err(ConfChangeError::AlreadyMember(id));
                }
                if self.members().len() >= limits::CLUSTER_NODES_MAX {
                    return Err(ConfChangeError::TooManyMembers(limits::CLUSTER_NODES_MAX));
                }
                if context.len() > MEMBER_CONTEXT_BYTES_MAX {
                    return Err(ConfChangeError::ContextTooLarge(context.len()));
                }
                next.learners.insert(id);
                if !context.is_empty() {
                    next.contexts.insert(id, context.clone());
                }
            }
            ConfChange::Promote(id) => {
                let id = nonzero(*id)?;
                if self.is_voter(id) {
                    return Err(ConfChangeError::AlreadyVoter(id));
                }
                if !next.learners.remove(&id) {
                    return Err(ConfChangeError::UnknownMember(id));
                }
                next.outgoing = self.voters.clone();
                next.voters.insert(id);
            }
            ConfChange::Remove(id) => {
                let id = nonzero(*id)?;
                if next.learners.remove(&id) {
                    next.contexts.remove(&id);
                } else if self.voters.contains(&id) {
                    if self.voters.len() == 1 {
                        return Err(ConfChangeError::LastVoter(id));
                    }
                    next.outgoing = self.voters.clone();
                    next.voters.remove(&id);
                    next.contexts.remove(&id);
                } else {
                    return Err(ConfChangeError::UnknownMember(id));
                }
            }
        }
        Ok(next)
    }

    /// C_new of a joint configuration (thesis 4.3: appended once C_old,new is committed).
    pub fn leave_joint(&self) -> Membership {
        let mut next = self.clone();
        next.outgoing.clear();
        next.contexts
            .retain(|id, _| self.voters.contains(id) || self.learners.contains(id));
        next
    }

    /// Checks a decoded configuration.
    pub fn validate(&self) -> Result<(), &'static str> {
        let all = self.members();
        if all.contains(&0) {
            return Err("node id 0 in a configuration");
        }
        if all.len() > limits::CLUSTER_NODES_MAX + 1 {
            return Err("more members than limits::CLUSTER_NODES_MAX");
        }
        if self.learners.iter().any(|l| self.is_voter(*l)) {
            return Err("a node is both voter and learner");
        }
        if !self.is_empty() && self.voters.is_empty() {
            return Err("a configuration without voters");
        }
        if self.contexts.keys().any(|id| !all.contains(id)) {
            return Err("context of a node that is not a member");
        }
        Ok(())
    }

    /// The bytes a configuration entry (and a snapshot) carries.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![MEMBERSHIP_VERSION];
        for set in [&self.voters, &self.outgoing, &self.learners] {
            out.push(set.len() as u8);
            for id in set {
                out.extend_from_slice(&id.to_le_bytes());
            }
        }
        out.push(self.contexts.len() as u8);
        for (id, context) in &self.contexts {
            out.extend_from_slice(&id.to_le_bytes());
            out.extend_from_slice(&(context.len() as u32).to_le_bytes());
            out.extend_from_slice(context);
        }
        out
    }

    /// Reads what [`Membership::encode`] wrote; names what is wrong otherwise.
    pub fn decode(bytes: &[u8]) -> Result<Membership, &'static str> {
        let mut r = Reader(bytes);
        if r.u8()? != MEMBERSHIP_VERSION {
            return Err("unknown configuration encoding version");
        }
        let mut sets: [BTreeSet<NodeId>; 3] = Default::default();
        for set in sets.iter_mut() {
            for _ in 0..r.u8()? {
                set.insert(r.u64()?);
            }
        }
        let mut contexts = BTreeMap::new();
        for _ in 0..r.u8()? {
            let id = r.u64()?;
            let len = r.u32()? as usize;
            if len > MEMBER_CONTEXT_BYTES_MAX {
                return Err("member context too large");
            }
            contexts.insert(id, Bytes::copy_from_slice(r.take(len)?));
        }
        if !r.0.is_empty() {
            return Err("trailing bytes after a configuration");
        }
        let [voters, outgoing, learners] = sets;
        let m = Membership {
            voters,
            outgoing,
            learners,
            contexts,
        };
        m.validate()?;
        Ok(m)
    }
}

fn nonzero(id: NodeId) -> Result<NodeId, ConfChangeError> {
    if id == 0 {
        Err(ConfChangeError::ZeroId)
    } else {
        Ok(id)
    }
}

/// The value that a majority of `set` has reached: the (n/2+1)-th largest.
fn majority_value(set: &BTreeSet<NodeId>, value: &impl Fn(NodeId) -> Option<u64>) -> u64 {
    if set.is_empty() {
        return u64::MAX; // An empty half agrees with anything; the other half decides.
    }
    let mut values: Vec<u64> = set.iter().map(|&id| value(id).unwrap_or(0)).collect();
    values.sort_unstable_by(|a, b| b.cmp(a));
    values[set.len() / 2]
}

fn majority_vote(set: &BTreeSet<NodeId>, votes: &BTreeMap<NodeId, bool>) -> VoteResult {
    let quorum = set.len() / 2 + 1;
    let (mut yes, mut no) = (0, 0);
    for id in set {
        match votes.get(id) {
            Some(true) => yes += 1,
            Some(false) => no += 1,
            None => {}
        }
    }
    if yes >= quorum {
        VoteResult::Won
    } else if set.len() - no < quorum {
        VoteResult::Lost
    } else {
        VoteResult::Pending
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        if self.0.len() < n {
            return Err("configuration truncated");
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, &'static str> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, &'static str> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn u64(&mut self) -> Result<u64, &'static str> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[NodeId]) -> BTreeSet<NodeId> {
        ids.iter().copied().collect()
    }

    #[test]
    fn joint_commit_needs_a_majority_of_both_halves() {
        let m = Membership::from_voters([1, 2, 3])
            .apply(&ConfChange::AddLearner {
                id: 4,
                context: Bytes::new(),
            })
            .unwrap()
            .apply(&ConfChange::Promote(4))
            .unwrap();
        assert!(m.is_joint());
        assert_eq!(m.outgoing, set(&[1, 2, 3]));
        assert_eq!(m.voters, set(&[1, 2, 3, 4]));
        // 1 and 2 hold index 7: a majority of C_old, not of C_new (needs 3 of 4).
        let acked = |id| match id {
            1 | 2 => Some(7),
            _ => Some(2),
        };
        assert_eq!(m.quorum_value(acked), 2);
        // With 4 too, both majorities hold 7.
        let acked = |id| match id {
            1 | 2 | 4 => Some(7),
            _ => Some(2),
        };
        assert_eq!(m.quorum_value(acked), 7);
        // 2, 3 and 4 hold 9 (3 of 4 in C_new, 2 of 3 in C_old): committed.
        let acked = |id| if id == 1 { None } else { Some(9) };
        assert_eq!(m.quorum_value(acked), 9);
    }

    #[test]
    fn joint_election_needs_both_majorities() {
        let mut m = Membership::from_voters([1, 2, 3]);
        m.outgoing = set(&[1, 2, 3]);
        m.voters = set(&[1, 2]);
        let votes: BTreeMap<NodeId, bool> = [(3, true), (1, true)].into();
        assert_eq!(m.vote_result(&votes), VoteResult::Pending);
        let votes: BTreeMap<NodeId, bool> = [(3, true), (1, true), (2, false)].into();
        assert_eq!(m.vote_result(&votes), VoteResult::Lost);
        let votes: BTreeMap<NodeId, bool> = [(1, true), (2, true)].into();
        assert_eq!(m.vote_result(&votes), VoteResult::Won);
    }

    #[test]
    fn learners_never_count() {
        let m = Membership::from_voters([1, 2, 3])
            .apply(&ConfChange::AddLearner {
                id: 4,
                context: Bytes::new(),
            })
            .unwrap();
        assert!(!m.is_joint(), "adding a learner changes no voter set");
        let acked = |id| if id == 1 || id == 4 { Some(5) } else { None };
        assert_eq!(m.quorum_value(acked), 0);
        let votes: BTreeMap<NodeId, bool> = [(1, true), (4, true)].into();
        assert_eq!(m.vote_result(&votes), VoteResult::Pending);
    }

    #[test]
    fn changes_are_checked() {
        let m = Membership::from_voters([1]);
        assert_eq!(
            m.apply(&ConfChange::Remove(1)),
            Err(ConfChangeError::LastVoter(1))
        );
        assert_eq!(
            m.apply(&ConfChange::Promote(2)),
            Err(ConfChangeError::UnknownMember(2))
        );
        assert_eq!(
            m.apply(&ConfChange::Promote(1)),
            Err(ConfChangeError::AlreadyVoter(1))
        );
        let add1 = ConfChange::AddLearner {
            id: 1,
            context: Bytes::new(),
        };
        assert_eq!(m.apply(&add1), Err(ConfChangeError::AlreadyMember(1)));
        let joint = Membership::from_voters([1, 2])
            .apply(&ConfChange::Remove(2))
            .unwrap();
        assert_eq!(
            joint.apply(&ConfChange::Remove(1)),
            Err(ConfChangeError::ChangeInProgress)
        );
        assert_eq!(joint.leave_joint(), Membership::from_voters([1]));
    }

    #[test]
    fn encoding_round_trips_and_rejects_garbage() {
        let m = Membership::from_voters([1, 2, 3])
            .apply(&ConfChange::AddLearner {
                id: 9,
                context: Bytes::from_static(b"127.0.0.1:1/127.0.0.1:2"),
            })
            .unwrap()
            .apply(&ConfChange::Promote(9))
            .unwrap();
        let bytes = m.encode();
        assert_eq!(Membership::decode(&bytes), Ok(m));
        assert_eq!(
            Membership::decode(&bytes[..bytes.len() - 1]),
            Err("configuration truncated")
        );
        assert_eq!(
            Membership::decode(&[7]),
            Err("unknown configuration encoding version")
        );
    }
}
