//! The key → id index of a window.
//!
//! A window's keys live in `states`, indexed by id. Looking a key up used to go through a map
//! of its own (`HashMap<CompactString, KeyId>`, 32 bytes per entry, 330 kB for 10 000 keys),
//! and the probe's read of the entry was the hot path's largest single cost: a cache miss per
//! event and window, after which adding the event missed again on the key's state. The index
//! keeps only the hash and the id (8 bytes per entry: 10 000 keys fit in 150 kB, in L2) and
//! confirms a match by comparing the name held in the key's state, which the caller reads next
//! anyway: one miss instead of two.

use std::hash::BuildHasher;

use hashbrown::HashTable;
use warden_detect::KeyId;

use super::KeyState;

/// Ids by key, holding `hash32 << 32 | id` per key; names are compared in `states`.
#[derive(Clone, Default)]
pub(super) struct KeyIndex {
    table: HashTable<u64>,
    /// Seeded per process, so that keys chosen by clients cannot be made to collide.
    hasher: foldhash::fast::RandomState,
}

impl std::fmt::Debug for KeyIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyIndex")
            .field("len", &self.table.len())
            .finish()
    }
}

/// The 32 bits of a key's hash kept in the table.
fn short(hash: u64) -> u32 {
    (hash ^ (hash >> 32)) as u32
}

/// The table's hash of an entry: the kept bits in both halves, so that the bucket (low bits)
/// and the control tag (top 7 bits) both come from them.
fn spread(short: u32) -> u64 {
    (u64::from(short) << 32) | u64::from(short)
}

fn entry_id(e: u64) -> KeyId {
    e as u32
}

fn entry_short(e: u64) -> u32 {
    (e >> 32) as u32
}

impl KeyIndex {
    fn short_hash(&self, key: &str) -> u32 {
        short(self.hasher.hash_one(key))
    }

    /// The id of `key` among `states`.
    #[inline]
    pub(super) fn get(&self, key: &str, states: &[Option<KeyState>]) -> Option<KeyId> {
        let h = self.short_hash(key);
        self.table
            .find(spread(h), |&e| {
                entry_short(e) == h
                    && states
                        .get(entry_id(e) as usize)
                        .and_then(Option::as_ref)
                        .is_some_and(|k| k.name == key)
            })
            .map(|&e| entry_id(e))
    }

    /// Index `key` as `id` (the caller checked it is not indexed yet).
    pub(super) fn insert(&mut self, key: &str, id: KeyId) {
        let h = self.short_hash(key);
        self.table
            .insert_unique(spread(h), (u64::from(h) << 32) | u64::from(id), |&e| {
                spread(entry_short(e))
            });
    }

    /// Forget `key`, indexed as `id`.
    pub(super) fn remove(&mut self, key: &str, id: KeyId) {
        let h = self.short_hash(key);
        if let Ok(e) = self
            .table
            .find_entry(spread(h), |&e| entry_short(e) == h && entry_id(e) == id)
        {
            e.remove();
        }
    }

    pub(super) fn len(&self) -> usize {
        self.table.len()
    }

    /// Bytes of the table (entries and control bytes).
    pub(super) fn bytes(&self) -> usize {
        self.table.capacity() * (std::mem::size_of::<u64>() + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(name: &str) -> Option<KeyState> {
        Some(KeyState {
            name: name.into(),
            ..KeyState::default()
        })
    }

    /// Inserts, lookups and removals agree with a `HashMap`, ids reused included.
    #[test]
    fn agrees_with_a_map() {
        let mut index = KeyIndex::default();
        let mut states: Vec<Option<KeyState>> = Vec::new();
        let mut map = std::collections::HashMap::new();
        let mut free: Vec<KeyId> = Vec::new();
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        for step in 0..20_000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let key = format!("dev-{}", x % 3000);
            match (map.get(&key).copied(), x % 3) {
                (Some(id), 0) => {
                    index.remove(&key, id);
                    states[id as usize] = None;
                    map.remove(&key);
                    free.push(id);
                }
                (None, _) => {
                    let id = match free.pop() {
                        Some(id) => {
                            states[id as usize] = state(&key);
                            id
                        }
                        None => {
                            states.push(state(&key));
                            (states.len() - 1) as KeyId
                        }
                    };
                    index.insert(&key, id);
                    map.insert(key.clone(), id);
                }
                _ => {}
            }
            assert_eq!(
                index.get(&key, &states),
                map.get(&key).copied(),
                "step {step}"
            );
            assert_eq!(index.len(), map.len());
        }
        for (k, id) in &map {
            assert_eq!(index.get(k, &states), Some(*id));
        }
        assert_eq!(index.get("absent", &states), None);
    }

    /// An entry whose hash matches but whose state holds another name is not a match.
    #[test]
    fn equal_hashes_are_told_apart_by_name() {
        let mut index = KeyIndex::default();
        let states = vec![state("dev-a"), state("dev-b")];
        // `dev-b`'s id filed under `dev-a`'s hash, as a full collision would be.
        let ha = index.short_hash("dev-a");
        index
            .table
            .insert_unique(spread(ha), (u64::from(ha) << 32) | 1, |&e| {
                spread(entry_short(e))
            });
        assert_eq!(index.get("dev-a", &states), None);
        index.insert("dev-a", 0);
        assert_eq!(index.get("dev-a", &states), Some(0));
        assert_eq!(index.get("dev-b", &states), None);
        index.remove("dev-a", 0);
        assert_eq!(index.get("dev-a", &states), None);
        assert_eq!(index.len(), 1);
    }
}
