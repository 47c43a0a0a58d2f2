//! The bounded memory of accepted signatures that makes a captured request useless.

use std::collections::{BTreeSet, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// Hashes a tag by its first eight bytes. Tags are HMAC outputs under the PSK (only
/// authenticated requests reach the cache), so they are already uniformly random and no peer
/// can aim them at one bucket; SipHash over them would be wasted work on the hot path.
#[derive(Default)]
struct TagHasher(u64);

impl Hasher for TagHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8).take(1) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 ^= u64::from_le_bytes(word);
        }
    }
}

type TagSet = HashSet<[u8; 32], BuildHasherDefault<TagHasher>>;

/// Remembers each accepted signature until its timestamp has left the window, after which the
/// window check alone refuses it. Bounded: when full of live entries it refuses new requests
/// (fails closed) rather than forgetting one that could then be replayed.
#[derive(Clone, Debug)]
pub struct ReplayCache {
    window_s: u64,
    entries_max: usize,
    seen: TagSet,
    by_timestamp: BTreeSet<(u64, [u8; 32])>,
}

/// What [`ReplayCache::insert`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Insert {
    /// New signature, now remembered.
    Fresh,
    /// Already accepted once; state unchanged.
    Replay,
    /// No room for a live entry; state unchanged.
    Full,
}

impl ReplayCache {
    pub fn new(window_s: u64, entries_max: usize) -> Self {
        assert!(entries_max > 0, "a replay cache needs room for one entry");
        ReplayCache {
            window_s,
            entries_max,
            seen: TagSet::default(),
            by_timestamp: BTreeSet::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Records `signature` (of a request stamped `timestamp`) as used at wall time `now_unix_s`.
    pub fn insert(&mut self, signature: [u8; 32], timestamp: u64, now_unix_s: u64) -> Insert {
        self.forget_expired(now_unix_s);
        if self.seen.contains(&signature) {
            return Insert::Replay;
        }
        if self.seen.len() >= self.entries_max {
            return Insert::Full;
        }
        self.seen.insert(signature);
        self.by_timestamp.insert((timestamp, signature));
        Insert::Fresh
    }

    /// Drops entries whose timestamp is more than the window behind `now_unix_s`: the window
    /// check refuses those before the cache is consulted.
    fn forget_expired(&mut self, now_unix_s: u64) {
        while let Some(&(timestamp, signature)) = self.by_timestamp.first() {
            if timestamp.saturating_add(self.window_s) >= now_unix_s {
                break;
            }
            self.by_timestamp.pop_first();
            self.seen.remove(&signature);
        }
        debug_assert_eq!(self.seen.len(), self.by_timestamp.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_within_window_and_forgets_after() {
        let mut cache = ReplayCache::new(30, 2);
        assert_eq!(cache.insert([1; 32], 100, 100), Insert::Fresh);
        assert_eq!(cache.insert([1; 32], 100, 130), Insert::Replay);
        assert_eq!(cache.insert([2; 32], 100, 130), Insert::Fresh);
        assert_eq!(cache.insert([3; 32], 130, 130), Insert::Full);
        assert_eq!(cache.insert([3; 32], 131, 131), Insert::Fresh);
        assert_eq!(cache.len(), 1);
    }
}
