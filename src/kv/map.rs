//! The key-value map: hash shards with keys stored inline, each shard shared copy-on-write.
//!
//! Why not a `BTreeMap<Arc<[u8]>, _>` (what this replaced): with 100k keys of 1 KiB values the
//! working set is far beyond the caches, and every one of the ~17 comparisons of a B-tree
//! descent followed a key pointer into a different heap block: a cache miss and, in a VM, a
//! nested-paging TLB miss each. Applying one put cost ~10 us and was three quarters of the
//! leader's Raft thread on `3node-1kb` (perf, 2-vCPU VM). A hash shard with the key inline in its
//! bucket touches one or two lines.
//!
//! Why shards: a snapshot clones the map so that serialization runs off the Raft loop. Cloning
//! one table of 100k entries on the loop (a reference count bump per value) stalls it for
//! milliseconds; cloning 256 `Arc`s does not. After a snapshot, the first write to each shard
//! copies that shard alone (`Arc::make_mut`): the cost is spread over many writes.
//!
//! Order is not kept: [`KvMap::sorted`] sorts on demand, so that snapshots stay canonical (the
//! same state gives the same bytes on every replica).

use std::borrow::Borrow;
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;

/// Number of shards (a power of two).
const SHARDS: usize = 256;

/// Keys up to this many bytes live inside the hash bucket; longer ones on the heap.
const INLINE_KEY_BYTES: usize = 30;

/// A key: inline when short (the common case), boxed otherwise. Hashes and compares as the
/// byte slice it holds, so the map can be queried with `&[u8]`.
#[derive(Clone)]
pub enum Key {
    /// `len` bytes at the start of `bytes`.
    Inline {
        len: u8,
        bytes: [u8; INLINE_KEY_BYTES],
    },
    /// A long key.
    Heap(Box<[u8]>),
}

impl Key {
    fn new(key: &[u8]) -> Key {
        if key.len() <= INLINE_KEY_BYTES {
            let mut bytes = [0u8; INLINE_KEY_BYTES];
            bytes[..key.len()].copy_from_slice(key);
            Key::Inline {
                len: key.len() as u8,
                bytes,
            }
        } else {
            Key::Heap(key.into())
        }
    }

    fn as_slice(&self) -> &[u8] {
        match self {
            Key::Inline { len, bytes } => &bytes[..*len as usize],
            Key::Heap(bytes) => bytes,
        }
    }
}

impl Borrow<[u8]> for Key {
    fn borrow(&self) -> &[u8] {
        self.as_slice()
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for Key {}

impl Hash for Key {
    // Must hash exactly as `[u8]` does: lookups hash the borrowed slice.
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_slice().hash(state)
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_slice())
    }
}

type Shard = HashMap<Key, Arc<[u8]>, RandomState>;

/// The map from keys to values. Cloning is O(shards) and shares every entry.
#[derive(Clone)]
pub struct KvMap {
    shards: Vec<Arc<Shard>>,
    /// Picks the shard. Random per process: replicas need not place keys alike, and a client
    /// cannot aim many keys at one shard.
    hasher: RandomState,
}

impl Default for KvMap {
    fn default() -> KvMap {
        let hasher = RandomState::new();
        KvMap {
            shards: (0..SHARDS)
                .map(|_| Arc::new(HashMap::with_hasher(hasher.clone())))
                .collect(),
            hasher,
        }
    }
}

impl KvMap {
    fn shard_of(&self, key: &[u8]) -> usize {
        // The shard's own table hashes with the same hasher and uses the low bits (bucket) and
        // the top 7 (the tag its SIMD probe filters on); take bits 40-47, used by neither. Taking
        // the top byte made every key of a shard share one tag, so each probe compared keys.
        (self.hasher.hash_one(key) >> 40) as usize % SHARDS
    }

    /// The value of `key`.
    pub fn get(&self, key: &[u8]) -> Option<&Arc<[u8]>> {
        self.shards[self.shard_of(key)].get(key)
    }

    /// Sets `key` to `value`.
    ///
    /// A value of the same length as the one it replaces is written over it in place when
    /// nothing else holds the old one (no snapshot in progress shares it): overwriting a key is
    /// the common put, and a fresh allocation plus the free of the old value cost ~40% of
    /// applying a 1 KiB put (perf, `3node-1kb`; a 1040-byte block is above glibc's thread cache,
    /// so both went through its bins). A shared value is never touched: the snapshot holding it
    /// must see the old bytes.
    pub fn insert(&mut self, key: &[u8], value: &[u8]) {
        let shard = self.shard_of(key);
        let shard = Arc::make_mut(&mut self.shards[shard]);
        match shard.get_mut(key) {
            Some(slot) => match Arc::get_mut(slot) {
                Some(old) if old.len() == value.len() => old.copy_from_slice(value),
                _ => *slot = Arc::from(value),
            },
            None => {
                shard.insert(Key::new(key), Arc::from(value));
            }
        }
    }

    /// Removes `key`.
    pub fn remove(&mut self, key: &[u8]) {
        let shard = self.shard_of(key);
        if self.shards[shard].contains_key(key) {
            Arc::make_mut(&mut self.shards[shard]).remove(key);
        }
    }

    /// Every entry, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &Arc<[u8]>)> {
        self.shards
            .iter()
            .flat_map(|s| s.iter().map(|(k, v)| (k.as_slice(), v)))
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.len()).sum()
    }

    /// True when no key is set.
    pub fn is_empty(&self) -> bool {
        self.shards.iter().all(|s| s.is_empty())
    }

    /// Every entry, in key order.
    pub fn sorted(&self) -> Vec<(&[u8], &Arc<[u8]>)> {
        let mut entries: Vec<(&[u8], &Arc<[u8]>)> = self.iter().collect();
        entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
        entries
    }
}

impl PartialEq for KvMap {
    fn eq(&self, other: &KvMap) -> bool {
        // Shard placement differs between maps (each has its own hasher): compare contents.
        self.len() == other.len()
            && self
                .shards
                .iter()
                .flat_map(|s| s.iter())
                .all(|(k, v)| other.get(k.as_slice()) == Some(v))
    }
}

impl Eq for KvMap {}

impl std::fmt::Debug for KvMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.sorted()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn value(s: &str) -> Arc<[u8]> {
        Arc::from(s.as_bytes())
    }

    #[test]
    fn behaves_like_an_ordered_map() {
        // A model check against BTreeMap over short (inline) and long (heap) keys.
        let mut map = KvMap::default();
        let mut model: BTreeMap<Vec<u8>, Arc<[u8]>> = BTreeMap::new();
        let mut x: u64 = 7;
        for i in 0..5000u64 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let len = [0usize, 1, 16, 30, 31, 100][(x >> 33) as usize % 6];
            let key: Vec<u8> = (0..len)
                .map(|j| ((x >> 40) as u8).wrapping_add(j as u8 % 3))
                .collect();
            if x.is_multiple_of(5) {
                map.remove(&key);
                model.remove(&key);
            } else {
                // Lengths 1-4: many overwrites are in place, the rest reallocate.
                let v = value(&i.to_string());
                map.insert(&key, &v);
                model.insert(key.clone(), v);
            }
            assert_eq!(map.get(&key), model.get(&key));
        }
        assert_eq!(map.len(), model.len());
        let sorted: Vec<(Vec<u8>, Arc<[u8]>)> = map
            .sorted()
            .into_iter()
            .map(|(k, v)| (k.to_vec(), v.clone()))
            .collect();
        let expected: Vec<(Vec<u8>, Arc<[u8]>)> = model.into_iter().collect();
        assert_eq!(sorted, expected);
    }

    #[test]
    fn clone_is_a_snapshot_writes_do_not_leak_into() {
        let mut map = KvMap::default();
        for i in 0..1000 {
            map.insert(format!("k{i}").as_bytes(), b"old");
        }
        let snapshot = map.clone();
        for i in 0..1000 {
            map.insert(format!("k{i}").as_bytes(), b"new");
        }
        map.remove(b"k0");
        assert_eq!(snapshot.len(), 1000);
        assert_eq!(snapshot.get(b"k0"), Some(&value("old")));
        assert_eq!(snapshot.get(b"k999"), Some(&value("old")));
        assert_eq!(map.get(b"k999"), Some(&value("new")));
        assert_eq!(map.get(b"k0"), None);
        assert_ne!(map, snapshot);
    }

    #[test]
    fn equality_ignores_placement() {
        let (mut a, mut b) = (KvMap::default(), KvMap::default());
        for i in 0..300 {
            a.insert(format!("k{i}").as_bytes(), b"v");
        }
        for i in (0..300).rev() {
            b.insert(format!("k{i}").as_bytes(), b"v");
        }
        assert_eq!(a, b);
        b.insert(b"k7", b"w");
        assert_ne!(a, b);
    }

    #[test]
    fn overwrites_in_place_only_what_no_clone_shares() {
        let mut map = KvMap::default();
        map.insert(b"k", b"aaa");
        let first = Arc::as_ptr(map.get(b"k").unwrap());
        map.insert(b"k", b"bbb");
        assert_eq!(
            Arc::as_ptr(map.get(b"k").unwrap()),
            first,
            "unshared: in place"
        );

        let snapshot = map.clone();
        map.insert(b"k", b"ccc");
        assert_eq!(snapshot.get(b"k"), Some(&value("bbb")));
        assert_eq!(map.get(b"k"), Some(&value("ccc")));
        assert_ne!(
            Arc::as_ptr(map.get(b"k").unwrap()),
            first,
            "shared: a new value"
        );

        map.insert(b"k", b"dddd");
        assert_eq!(
            map.get(b"k"),
            Some(&value("dddd")),
            "another length: a new value"
        );
        drop(snapshot);
        let now = Arc::as_ptr(map.get(b"k").unwrap());
        map.insert(b"k", b"eeee");
        assert_eq!(Arc::as_ptr(map.get(b"k").unwrap()), now);
        assert_eq!(map.get(b"k"), Some(&value("eeee")));
    }
}
