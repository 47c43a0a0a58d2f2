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
///
/// The room is shared fairly among signers (each node, and the `allowed_clients` together):
/// every signer is guaranteed `entries_max / (2 × signers)` entries, and may use more only
/// while the others' guarantees stay free. One signer that floods the cache with valid
/// requests is then refused (`replay_cache_full`) while everyone else goes on, where a single
/// shared pool made the node refuse every signer for the rest of the window.
#[derive(Clone, Debug)]
pub struct ReplayCache {
    window_s: u64,
    entries_max: usize,
    guaranteed: usize,
    held: Vec<usize>,
    seen: TagSet,
    by_timestamp: BTreeSet<(u64, [u8; 32], usize)>,
}

/// What [`ReplayCache::insert`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Insert {
    /// New signature, now remembered.
    Fresh,
    /// Already accepted once; state unchanged.
    Replay,
    /// No room for a live entry of this signer; state unchanged.
    Full,
}

impl ReplayCache {
    /// A cache of `entries_max` entries shared by `signers` signers (numbered from 0).
    pub fn new(window_s: u64, entries_max: usize, signers: usize) -> Self {
        assert!(entries_max > 0, "a replay cache needs room for one entry");
        let signers = signers.max(1);
        ReplayCache {
            window_s,
            entries_max,
            guaranteed: (entries_max / (2 * signers)).max(1),
            held: vec![0; signers],
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

    /// Shares the room among `signers` signers from now on (a reload changed the node set).
    /// Every remembered signature stays, so nothing accepted before can be replayed after. An
    /// entry keeps its signer number where it still exists, else counts as the clients'; the
    /// numbers follow the node list, so for at most one window the shares may be charged to a
    /// neighbour in it: fairness is approximate until then, safety is not.
    pub fn reshare(&mut self, signers: usize) {
        let signers = signers.max(1);
        self.guaranteed = (self.entries_max / (2 * signers)).max(1);
        self.held = vec![0; signers];
        self.by_timestamp = std::mem::take(&mut self.by_timestamp)
            .into_iter()
            .map(|(timestamp, tag, signer)| (timestamp, tag, signer.min(signers - 1)))
            .collect();
        for (_, _, signer) in &self.by_timestamp {
            self.held[*signer] += 1;
        }
    }

    /// Remembers an authenticated request, or says why it must be refused.
    pub fn remember(
        &mut self,
        request: &super::Authenticated,
        now_unix_s: u64,
    ) -> Result<(), super::Rejection> {
        match self.insert(request.tag, request.timestamp, now_unix_s, request.signer) {
            Insert::Fresh => Ok(()),
            Insert::Replay => Err(super::Rejection::Replay),
            Insert::Full => Err(super::Rejection::ReplayCacheFull),
        }
    }

    /// Records `signature` (of a request stamped `timestamp`, by `signer`) as used at wall
    /// time `now_unix_s`. A signer number out of range counts as the last (the clients').
    pub fn insert(
        &mut self,
        signature: [u8; 32],
        timestamp: u64,
        now_unix_s: u64,
        signer: usize,
    ) -> Insert {
        let signer = signer.min(self.held.len() - 1);
        self.forget_expired(now_unix_s);
        if self.seen.contains(&signature) {
            return Insert::Replay;
        }
        if !self.has_room_for(signer) {
            return Insert::Full;
        }
        self.seen.insert(signature);
        self.by_timestamp.insert((timestamp, signature, signer));
        self.held[signer] += 1;
        Insert::Fresh
    }

    /// Within its guarantee a signer always has room (the others never take it); beyond it,
    /// only what is left after every other signer's unused guarantee.
    fn has_room_for(&self, signer: usize) -> bool {
        let free = self.entries_max.saturating_sub(self.seen.len());
        if self.held[signer] < self.guaranteed {
            return free > 0;
        }
        let owed: usize = self
            .held
            .iter()
            .enumerate()
            .filter(|(other, _)| *other != signer)
            .map(|(_, held)| self.guaranteed.saturating_sub(*held))
            .sum();
        free > owed
    }

    /// Drops entries whose timestamp is more than the window behind `now_unix_s`: the window
    /// check refuses those before the cache is consulted.
    fn forget_expired(&mut self, now_unix_s: u64) {
        while let Some(&(timestamp, signature, signer)) = self.by_timestamp.first() {
            if timestamp.saturating_add(self.window_s) >= now_unix_s {
                break;
            }
            self.by_timestamp.pop_first();
            self.seen.remove(&signature);
            self.held[signer] -= 1;
        }
        debug_assert_eq!(self.seen.len(), self.by_timestamp.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reshare_keeps_every_signature() {
        let mut cache = ReplayCache::new(30, 100, 4);
        for signer in 0..4 {
            assert_eq!(
                cache.insert([signer as u8; 32], 100, 100, signer),
                Insert::Fresh
            );
        }
        cache.reshare(2);
        for signer in 0..4 {
            assert_eq!(
                cache.insert([signer as u8; 32], 100, 101, 0),
                Insert::Replay
            );
        }
        assert_eq!(cache.held, [1, 3]);
        cache.reshare(5);
        assert_eq!(cache.insert([9; 32], 100, 101, 4), Insert::Fresh);
        // The window still empties it.
        assert_eq!(cache.insert([10; 32], 140, 140, 0), Insert::Fresh);
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn remembers_within_window_and_forgets_after() {
        let mut cache = ReplayCache::new(30, 2, 1);
        assert_eq!(cache.insert([1; 32], 100, 100, 0), Insert::Fresh);
        assert_eq!(cache.insert([1; 32], 100, 130, 0), Insert::Replay);
        assert_eq!(cache.insert([2; 32], 100, 130, 0), Insert::Fresh);
        assert_eq!(cache.insert([3; 32], 130, 130, 0), Insert::Full);
        assert_eq!(cache.insert([3; 32], 131, 131, 0), Insert::Fresh);
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn one_flooding_signer_does_not_lock_out_the_others() {
        // 4 signers (3 nodes + clients), 2000 entries: 250 guaranteed each.
        let mut cache = ReplayCache::new(30, 2000, 4);
        let tag = |signer: usize, i: usize| {
            let mut tag = [0u8; 32];
            tag[..8].copy_from_slice(&(i as u64).to_le_bytes());
            tag[8] = signer as u8;
            tag
        };
        let accepted = (0..4000)
            .filter(|i| cache.insert(tag(2, *i), 100, 100, 2) == Insert::Fresh)
            .count();
        assert_eq!(
            accepted,
            2000 - 3 * 250,
            "the flooder keeps out of the others' share"
        );
        for signer in [0, 1, 3] {
            for i in 0..250 {
                assert_eq!(
                    cache.insert(tag(signer, i), 100, 100, signer),
                    Insert::Fresh
                );
            }
            assert_eq!(
                cache.insert(tag(signer, 999), 100, 100, signer),
                Insert::Full
            );
        }
        assert_eq!(cache.len(), 2000);
        // After the window the flooder's entries go, and every share with them.
        assert_eq!(cache.insert(tag(0, 5000), 131, 131, 0), Insert::Fresh);
        assert_eq!(cache.len(), 1);
    }
}
