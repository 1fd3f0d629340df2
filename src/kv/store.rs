//! The key-value map, the client session table and the snapshot format.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::command::{CommandRef, DecodeError, OpRef, Reader};
use super::map::KvMap;

/// Most client sessions remembered; above it the least recently used session is evicted, and a
/// retry of that client's last write would apply again (thesis 6.3: bounded sessions trade
/// memory against how long a client may take to retry). Kept here rather than in `limits` because
/// only the state machine sees it, and it must be the same on every replica.
pub const SESSIONS_MAX: usize = 1024;

pub use crate::limits::SESSION_RESPONSES_MAX;

// "RKV2": version 2 records, per session, a floor and a window of (sequence, applied index,
// response).
const SNAPSHOT_MAGIC: u32 = 0x524b_5632;

/// What applying a command produced, as the client sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    /// A write (or noop) took effect.
    Ok,
    /// A read's result.
    Value(Option<Vec<u8>>),
}

/// The outcome of [`KvStore::apply`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApplyResult {
    /// Applied for the first time.
    Applied(Response),
    /// A retry of the client's latest request: not applied again; here is the first answer and
    /// the log index at which the request was first applied (the client must see the same
    /// result as if its first attempt had been answered).
    Duplicate {
        /// The first attempt's response.
        response: Response,
        /// The index of the entry that applied it.
        applied_index: u64,
    },
    /// At or below the session's floor: its response was forgotten (more than
    /// [`SESSION_RESPONSES_MAX`] later writes of the session applied since); ignored.
    Stale {
        /// The session's floor: every sequence up to it is forgotten.
        forgotten_upto: u64,
    },
    /// The entry is not a valid command; it changes nothing (every replica decides the same).
    Invalid(DecodeError),
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Session {
    /// Sequences up to here are forgotten: their retries are stale.
    floor: u64,
    /// Applied sequences above `floor`: the response and the index of the entry that applied it.
    /// Never empty; at most [`SESSION_RESPONSES_MAX`].
    recent: Recent,
    last_used_index: u64,
}

/// A session's remembered responses, in sequence order: a ring sized once for
/// [`SESSION_RESPONSES_MAX`] (plus the one being added), so that remembering a response on
/// every write allocates nothing once a session exists (a B-tree insert and pop per write did).
/// Sequences mostly arrive in order; a retry that lands out of order is placed by binary search.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Recent(VecDeque<(u64, (Response, u64))>);

impl Recent {
    fn new() -> Recent {
        Recent(VecDeque::with_capacity(SESSION_RESPONSES_MAX + 1))
    }

    fn position(&self, sequence: u64) -> Result<usize, usize> {
        self.0.binary_search_by_key(&sequence, |(s, _)| *s)
    }

    fn get(&self, sequence: &u64) -> Option<&(Response, u64)> {
        let at = self.position(*sequence).ok()?;
        self.0.get(at).map(|(_, v)| v)
    }

    /// Remembers `value` for `sequence`, replacing an earlier one for it.
    fn insert(&mut self, sequence: u64, value: (Response, u64)) {
        match self.position(sequence) {
            Ok(at) => self.0[at].1 = value,
            Err(at) if at == self.0.len() => self.0.push_back((sequence, value)),
            Err(at) => self.0.insert(at, (sequence, value)),
        }
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn pop_first(&mut self) -> Option<(u64, (Response, u64))> {
        self.0.pop_front()
    }

    fn last_key_value(&self) -> Option<(&u64, &(Response, u64))> {
        self.0.back().map(|(s, v)| (s, v))
    }
}

impl<'a> IntoIterator for &'a Recent {
    type Item = (&'a u64, &'a (Response, u64));
    type IntoIter = std::iter::Map<
        std::collections::vec_deque::Iter<'a, (u64, (Response, u64))>,
        fn(&'a (u64, (Response, u64))) -> (&'a u64, &'a (Response, u64)),
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(s, v)| (s, v))
    }
}

/// Why a snapshot could not be restored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RestoreError {
    /// The snapshot is shorter than its header and checksum.
    #[error("snapshot of {0} bytes is too short")]
    TooShort(usize),
    /// The checksum does not match: the snapshot is damaged.
    #[error("snapshot CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Crc {
        /// The CRC in the snapshot.
        stored: u32,
        /// The CRC of its bytes.
        computed: u32,
    },
    /// Not a key-value snapshot of this version.
    #[error("bad snapshot magic {0:#010x}")]
    BadMagic(u32),
    /// A field is malformed.
    #[error("snapshot body: {0}")]
    Decode(#[from] DecodeError),
    /// Keys or sessions are not strictly increasing, or the session table is too large.
    #[error("snapshot is not canonical: {0}")]
    NotCanonical(&'static str),
}

/// The replicated key-value state machine. Commands must be applied in log order on every
/// replica; everything here is deterministic, so replicas that apply the same log agree.
///
/// Cloning shares keys and values (reference counted, no copy, no allocation per key): that is
/// how a snapshot is taken without stopping the Raft loop for the whole serialization. Clone,
/// then call [`KvStore::snapshot`] on the clone on another thread.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KvStore {
    map: KvMap,
    sessions: BTreeMap<u64, Session>,
    /// (last_used_index, client_id): the eviction order.
    session_lru: BTreeSet<(u64, u64)>,
    applied_index: u64,
}

impl KvStore {
    /// An empty store at index 0.
    pub fn new() -> KvStore {
        KvStore::default()
    }

    /// The index of the last applied entry (or of the restored snapshot).
    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }

    /// The value of `key`.
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.map.get(key).map(|value| value.as_ref())
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when no key is set.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Number of client sessions held.
    pub fn sessions_len(&self) -> usize {
        self.sessions.len()
    }

    /// Records that the entry at `index` carried no command (a leader's noop entry).
    pub fn apply_empty(&mut self, index: u64) {
        self.advance(index);
    }

    /// Applies the command in the entry at `index`.
    ///
    /// # Panics
    /// If `index` is not above the applied index: applying out of order is a driver bug.
    pub fn apply(&mut self, index: u64, data: &[u8]) -> ApplyResult {
        self.advance(index);
        let command = match CommandRef::decode(data) {
            Ok(command) => command,
            Err(error) => return ApplyResult::Invalid(error),
        };
        if command.client_id == 0 {
            return ApplyResult::Applied(self.execute(command.op));
        }
        if let Some(session) = self.sessions.get(&command.client_id) {
            if let Some((response, applied_index)) = session.recent.get(&command.sequence) {
                let (response, applied_index) = (response.clone(), *applied_index);
                self.touch(command.client_id, index);
                return ApplyResult::Duplicate {
                    response,
                    applied_index,
                };
            }
            if command.sequence <= session.floor {
                return ApplyResult::Stale {
                    forgotten_upto: session.floor,
                };
            }
        }
        let response = self.execute(command.op);
        self.remember(command.client_id, command.sequence, response.clone(), index);
        ApplyResult::Applied(response)
    }

    fn advance(&mut self, index: u64) {
        assert!(
            index > self.applied_index,
            "apply out of order: index {index} after {}",
            self.applied_index
        );
        self.applied_index = index;
    }

    fn execute(&mut self, op: OpRef<'_>) -> Response {
        match op {
            OpRef::Put { key, value } => {
                self.map.insert(key, value);
                Response::Ok
            }
            OpRef::Delete { key } => {
                self.map.remove(key);
                Response::Ok
            }
            OpRef::Get { key } => Response::Value(self.map.get(key).map(|value| value.to_vec())),
            OpRef::Noop => Response::Ok,
        }
    }

    fn touch(&mut self, client_id: u64, index: u64) {
        let session = self.sessions.get_mut(&client_id).expect("session exists");
        self.session_lru
            .remove(&(session.last_used_index, client_id));
        session.last_used_index = index;
        self.session_lru.insert((index, client_id));
    }

    fn remember(&mut self, client_id: u64, sequence: u64, response: Response, index: u64) {
        let session = self.sessions.entry(client_id).or_insert_with(|| Session {
            floor: 0,
            recent: Recent::new(),
            last_used_index: 0,
        });
        self.session_lru
            .remove(&(session.last_used_index, client_id));
        session.last_used_index = index;
        session.recent.insert(sequence, (response, index));
        while session.recent.len() > SESSION_RESPONSES_MAX {
            let (forgotten, _) = session
                .recent
                .pop_first()
                .expect("over the bound, so not empty");
            session.floor = session.floor.max(forgotten);
        }
        self.session_lru.insert((index, client_id));
        while self.sessions.len() > SESSIONS_MAX {
            let (_, evicted) = self
                .session_lru
                .pop_first()
                .expect("lru tracks every session");
            self.sessions.remove(&evicted);
        }
        debug_assert_eq!(self.sessions.len(), self.session_lru.len());
    }

    /// Serializes the whole state (map, sessions, applied index) with a trailing CRC32.
    pub fn snapshot(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.snapshot_bytes());
        self.snapshot_into(&mut out);
        out
    }

    /// The length of [`KvStore::snapshot`], without serializing: lets a caller size its buffer
    /// once (growing a buffer of tens of megabytes by doubling copies it each time) and refuse
    /// a state too large before writing any of it.
    pub fn snapshot_bytes(&self) -> usize {
        let map_bytes: usize = self
            .map
            .iter()
            .map(|(k, v)| 4 + k.len() + 4 + v.len())
            .sum();
        let session_bytes: usize = self
            .sessions
            .values()
            .map(|session| {
                let responses: usize = (&session.recent)
                    .into_iter()
                    .map(|(_, (response, _))| match response {
                        Response::Value(Some(value)) => 8 + 8 + 1 + 4 + value.len(),
                        _ => 8 + 8 + 1,
                    })
                    .sum();
                8 * 4 + responses
            })
            .sum();
        4 + 8 + 8 + map_bytes + 8 + session_bytes + 4
    }

    /// Appends [`KvStore::snapshot`]'s bytes to `out` ([`KvStore::snapshot_bytes`] of them)
    /// and returns the CRC32 of all of them (trailing CRC included), so that a caller who
    /// checksums the snapshot as a whole need not read it again.
    pub fn snapshot_into(&self, out: &mut impl SnapshotSink) -> u32 {
        let start = out.bytes().len();
        // Keys in order: the same state gives the same bytes on every replica.
        let entries = self.map.sorted();
        out.put(&SNAPSHOT_MAGIC.to_le_bytes());
        out.put(&self.applied_index.to_le_bytes());
        out.put(&(self.map.len() as u64).to_le_bytes());
        for (key, value) in entries {
            put_field(out, key);
            put_field(out, value);
        }
        out.put(&(self.sessions.len() as u64).to_le_bytes());
        for (client_id, session) in &self.sessions {
            out.put(&client_id.to_le_bytes());
            out.put(&session.floor.to_le_bytes());
            out.put(&session.last_used_index.to_le_bytes());
            out.put(&(session.recent.len() as u64).to_le_bytes());
            for (sequence, (response, applied_index)) in &session.recent {
                out.put(&sequence.to_le_bytes());
                out.put(&applied_index.to_le_bytes());
                match response {
                    Response::Ok => out.put(&[0]),
                    Response::Value(None) => out.put(&[1]),
                    Response::Value(Some(value)) => {
                        out.put(&[2]);
                        put_field(out, value);
                    }
                }
            }
        }
        // One pass over the whole body: hashing field by field took the CRC's slow path for
        // every 4-byte length (twice the CRC's share of a profile).
        let body = &out.bytes()[start..];
        let body_len = body.len() as u64;
        let crc = crc32fast::hash(body);
        out.put(&crc.to_le_bytes());
        let mut whole = crc32fast::Hasher::new_with_initial_len(crc, body_len);
        whole.update(&crc.to_le_bytes());
        whole.finalize()
    }

    /// Replaces the whole state with a snapshot taken by [`KvStore::snapshot`]. On error the
    /// store is unchanged.
    pub fn restore(&mut self, bytes: &[u8]) -> Result<(), RestoreError> {
        *self = KvStore::decode_snapshot(bytes)?;
        Ok(())
    }

    /// Decodes a snapshot into a new store.
    pub fn decode_snapshot(bytes: &[u8]) -> Result<KvStore, RestoreError> {
        if bytes.len() < 4 + 8 + 8 + 8 + 4 {
            return Err(RestoreError::TooShort(bytes.len()));
        }
        let (body, crc_bytes) = bytes.split_at(bytes.len() - 4);
        let stored = u32::from_le_bytes(crc_bytes.try_into().expect("4 bytes"));
        let computed = crc32fast::hash(body);
        if stored != computed {
            return Err(RestoreError::Crc { stored, computed });
        }
        let mut reader = Reader {
            bytes: body,
            offset: 0,
        };
        let magic = reader.u32()?;
        if magic != SNAPSHOT_MAGIC {
            return Err(RestoreError::BadMagic(magic));
        }
        let mut store = KvStore {
            applied_index: reader.u64()?,
            ..KvStore::default()
        };
        let keys = reader.u64()?;
        let mut previous: Option<&[u8]> = None;
        for _ in 0..keys {
            let key = reader.field_ref()?;
            let value = reader.field_ref()?;
            if previous.is_some_and(|last| last >= key) {
                return Err(RestoreError::NotCanonical("keys not strictly increasing"));
            }
            previous = Some(key);
            store.map.insert(key, value);
        }
        let sessions = reader.u64()?;
        if sessions > SESSIONS_MAX as u64 {
            return Err(RestoreError::NotCanonical(
                "more sessions than SESSIONS_MAX",
            ));
        }
        for _ in 0..sessions {
            let client_id = reader.u64()?;
            let floor = reader.u64()?;
            let last_used_index = reader.u64()?;
            let responses = reader.u64()?;
            if responses == 0 || responses > SESSION_RESPONSES_MAX as u64 {
                return Err(RestoreError::NotCanonical(
                    "session response count out of range",
                ));
            }
            let mut recent = Recent::new();
            for _ in 0..responses {
                let sequence = reader.u64()?;
                let applied_index = reader.u64()?;
                let response = match reader.take(1)?[0] {
                    0 => Response::Ok,
                    1 => Response::Value(None),
                    2 => Response::Value(Some(reader.field()?)),
                    _ => return Err(RestoreError::NotCanonical("unknown response tag")),
                };
                if sequence <= floor
                    || recent
                        .last_key_value()
                        .is_some_and(|(last, _)| *last >= sequence)
                {
                    return Err(RestoreError::NotCanonical(
                        "session sequences not increasing above the floor",
                    ));
                }
                recent.insert(sequence, (response, applied_index));
            }
            if store
                .sessions
                .last_key_value()
                .is_some_and(|(last, _)| *last >= client_id)
            {
                return Err(RestoreError::NotCanonical(
                    "sessions not strictly increasing",
                ));
            }
            store.sessions.insert(
                client_id,
                Session {
                    floor,
                    recent,
                    last_used_index,
                },
            );
            store.session_lru.insert((last_used_index, client_id));
        }
        if reader.offset != body.len() {
            return Err(RestoreError::Decode(DecodeError::Trailing(
                body.len() - reader.offset,
            )));
        }
        Ok(store)
    }
}

/// Where a snapshot is serialized: a `Vec`, or a buffer the caller keeps between snapshots.
pub trait SnapshotSink {
    /// Appends `bytes`.
    fn put(&mut self, bytes: &[u8]);
    /// Everything it holds.
    fn bytes(&self) -> &[u8];
}

impl SnapshotSink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }

    fn bytes(&self) -> &[u8] {
        self
    }
}

fn put_field(out: &mut impl SnapshotSink, field: &[u8]) {
    out.put(&(field.len() as u32).to_le_bytes());
    out.put(field);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::{Command, Op};

    fn put(client_id: u64, sequence: u64, key: &str, value: &str) -> Vec<u8> {
        Command {
            client_id,
            sequence,
            op: Op::Put {
                key: key.into(),
                value: value.into(),
            },
        }
        .encode()
    }

    #[test]
    fn applies_put_delete_get_in_order() {
        let mut kv = KvStore::new();
        assert_eq!(
            kv.apply(1, &put(1, 1, "a", "x")),
            ApplyResult::Applied(Response::Ok)
        );
        assert_eq!(kv.get(b"a"), Some(&b"x"[..]));
        let get = Command {
            client_id: 2,
            sequence: 1,
            op: Op::Get { key: b"a".to_vec() },
        }
        .encode();
        assert_eq!(
            kv.apply(2, &get),
            ApplyResult::Applied(Response::Value(Some(b"x".to_vec())))
        );
        let delete = Command {
            client_id: 1,
            sequence: 2,
            op: Op::Delete { key: b"a".to_vec() },
        }
        .encode();
        assert_eq!(kv.apply(3, &delete), ApplyResult::Applied(Response::Ok));
        assert_eq!(kv.get(b"a"), None);
        kv.apply_empty(4);
        assert_eq!(kv.applied_index(), 4);
    }

    #[test]
    #[should_panic(expected = "apply out of order")]
    fn panics_on_out_of_order_apply() {
        let mut kv = KvStore::new();
        kv.apply(2, &put(1, 1, "a", "x"));
        kv.apply(2, &put(1, 2, "a", "y"));
    }

    #[test]
    fn retried_write_applies_once_and_returns_first_result() {
        let mut kv = KvStore::new();
        assert_eq!(
            kv.apply(1, &put(5, 1, "a", "x")),
            ApplyResult::Applied(Response::Ok)
        );
        assert_eq!(
            kv.apply(2, &put(6, 1, "a", "y")),
            ApplyResult::Applied(Response::Ok)
        );
        // Client 5 retries its first write after client 6 overwrote the key: no effect.
        assert_eq!(
            kv.apply(3, &put(5, 1, "a", "x")),
            ApplyResult::Duplicate {
                response: Response::Ok,
                applied_index: 1
            }
        );
        assert_eq!(kv.get(b"a"), Some(&b"y"[..]));
        assert_eq!(
            kv.apply(4, &put(5, 2, "a", "z")),
            ApplyResult::Applied(Response::Ok)
        );
        // A pipelining client's retry of an older write, after a later one applied: still the
        // first answer, and still no effect.
        assert_eq!(
            kv.apply(5, &put(5, 1, "a", "x")),
            ApplyResult::Duplicate {
                response: Response::Ok,
                applied_index: 1
            }
        );
        assert_eq!(kv.get(b"a"), Some(&b"z"[..]));
    }

    #[test]
    fn pipelined_writes_apply_in_any_order_and_each_once() {
        let mut kv = KvStore::new();
        assert_eq!(
            kv.apply(1, &put(5, 3, "c", "3")),
            ApplyResult::Applied(Response::Ok)
        );
        assert_eq!(
            kv.apply(2, &put(5, 1, "a", "1")),
            ApplyResult::Applied(Response::Ok)
        );
        assert_eq!(
            kv.apply(3, &put(5, 2, "b", "2")),
            ApplyResult::Applied(Response::Ok)
        );
        for (index, sequence) in [(4, 1), (5, 3), (6, 2)] {
            let retry = put(5, sequence, "a", "retry");
            assert!(matches!(
                kv.apply(index, &retry),
                ApplyResult::Duplicate { .. }
            ));
        }
        assert_eq!(kv.get(b"a"), Some(&b"1"[..]));
    }

    #[test]
    fn forgotten_sequences_are_stale_never_applied_twice() {
        let mut kv = KvStore::new();
        let n = SESSION_RESPONSES_MAX as u64 + 10;
        for sequence in 1..=n {
            assert_eq!(
                kv.apply(sequence, &put(5, sequence, "k", "v")),
                ApplyResult::Applied(Response::Ok)
            );
        }
        assert_eq!(
            kv.apply(n + 1, &put(5, 10, "k", "retry")),
            ApplyResult::Stale { forgotten_upto: 10 }
        );
        assert!(matches!(
            kv.apply(n + 2, &put(5, 11, "k", "retry")),
            ApplyResult::Duplicate {
                applied_index: 11,
                ..
            }
        ));
        assert_eq!(kv.get(b"k"), Some(&b"v"[..]));
        let restored = KvStore::decode_snapshot(&kv.snapshot()).unwrap();
        assert_eq!(restored, kv);
    }

    #[test]
    fn invalid_entry_changes_nothing() {
        let mut kv = KvStore::new();
        kv.apply(1, &put(1, 1, "a", "x"));
        assert!(matches!(kv.apply(2, &[9, 9]), ApplyResult::Invalid(_)));
        assert_eq!(kv.get(b"a"), Some(&b"x"[..]));
        assert_eq!(kv.applied_index(), 2);
    }

    #[test]
    fn session_table_is_bounded_and_evicts_least_recently_used() {
        let mut kv = KvStore::new();
        let mut index = 0;
        for client in 1..=SESSIONS_MAX as u64 + 10 {
            index += 1;
            kv.apply(index, &put(client, 1, "k", "v"));
            if client == 5 {
                continue;
            }
            // Keep client 1 fresh: it must survive eviction.
            index += 1;
            kv.apply(index, &put(1, 1, "k", "v"));
        }
        assert_eq!(kv.sessions_len(), SESSIONS_MAX);
        index += 1;
        assert!(matches!(
            kv.apply(index, &put(1, 1, "k", "v")),
            ApplyResult::Duplicate {
                response: Response::Ok,
                ..
            }
        ));
        // Client 2 was the least recently used and is gone: its retry applies again.
        index += 1;
        assert_eq!(
            kv.apply(index, &put(2, 1, "k", "v")),
            ApplyResult::Applied(Response::Ok)
        );
    }

    #[test]
    fn snapshot_round_trips_map_sessions_and_index() {
        let mut kv = KvStore::new();
        kv.apply(1, &put(1, 1, "a", "x"));
        kv.apply(2, &put(2, 7, "b", "y"));
        let get = Command {
            client_id: 3,
            sequence: 1,
            op: Op::Get { key: b"a".to_vec() },
        }
        .encode();
        kv.apply(3, &get);
        let bytes = kv.snapshot();
        // A Get's remembered response carries a value: the announced size counts it.
        assert_eq!(kv.snapshot_bytes(), bytes.len());
        let mut restored = KvStore::new();
        restored.restore(&bytes).unwrap();
        assert_eq!(restored, kv);
        assert_eq!(restored.applied_index(), 3);
        assert_eq!(
            restored.apply(4, &put(2, 7, "b", "z")),
            ApplyResult::Duplicate {
                response: Response::Ok,
                applied_index: 2
            }
        );
        let first_get = ApplyResult::Duplicate {
            response: Response::Value(Some(b"x".to_vec())),
            applied_index: 3,
        };
        assert_eq!(restored.apply(5, &get), first_get);
    }

    #[test]
    fn restore_rejects_damage_and_keeps_state() {
        let mut kv = KvStore::new();
        kv.apply(1, &put(1, 1, "a", "x"));
        let good = kv.snapshot();
        let mut target = KvStore::new();
        target.apply(1, &put(9, 1, "z", "z"));
        let before = target.clone();
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x40;
            assert!(target.restore(&bad).is_err(), "flip at {i} accepted");
        }
        assert_eq!(target.restore(&good[..10]), Err(RestoreError::TooShort(10)));
        assert_eq!(target, before);
    }

    #[test]
    fn remembered_responses_stay_in_sequence_order_whatever_the_arrival_order() {
        let mut recent = Recent::new();
        for sequence in [5u64, 2, 9, 7, 2] {
            recent.insert(sequence, (Response::Ok, sequence * 10));
        }
        let order: Vec<u64> = (&recent).into_iter().map(|(s, _)| *s).collect();
        assert_eq!(order, vec![2, 5, 7, 9]);
        assert_eq!(recent.get(&7), Some(&(Response::Ok, 70)));
        assert_eq!(recent.get(&3), None);
        assert_eq!(recent.pop_first().map(|(s, _)| s), Some(2));
        assert_eq!(recent.last_key_value().map(|(s, _)| *s), Some(9));
        assert_eq!(recent.len(), 3);
    }
}
