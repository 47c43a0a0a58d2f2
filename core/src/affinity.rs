//! Session affinity: the turns of one conversation go to the node that has its history cached.
//!
//! Each turn of a chat resends the whole history; an inference server that has just processed
//! it keeps it (llama.cpp's prompt cache, vLLM's prefix cache, Ollama's loaded context), so the
//! next turn on the same server starts at a fraction of the cost, and on another server pays for
//! the whole prompt again. The seed's rule (lowest load × latency) spreads turns and throws that
//! away.
//!
//! A request carries an [`AffinityKey`] (the door derives it from a session header, OpenAI's
//! `prompt_cache_key` or `user`, else the conversation's opening). Among the nodes that may take
//! the task, the key prefers one by rendezvous hashing (highest `weight(key, node)` first), so a
//! node that leaves moves only its own keys and the others stay put; and a node whose load is
//! over `load_factor` × the candidates' mean is passed over while another is within it
//! (consistent hashing with bounded loads), so a hot conversation cannot pile onto one server.

use crate::node::NodeId;

/// A conversation's identity, hashed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AffinityKey(pub u64);

impl AffinityKey {
    /// The key of `bytes` (a session id, or a conversation's opening).
    pub fn of(bytes: &[u8]) -> Self {
        AffinityKey(mix(fnv1a(bytes)))
    }

    /// How much this key wants `node`: the node with the highest weight is its home.
    pub fn weight(self, node: &NodeId) -> u64 {
        mix(self.0 ^ fnv1a(node.as_str().as_bytes()))
    }
}

/// FNV-1a, 64 bits: stable across builds and machines, as every node must agree on a key's home.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// splitmix64's finalizer: spreads FNV's output over all 64 bits.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// One node that may take the task, with its load (in-flight tasks per core, counting this one).
#[derive(Clone, Debug, PartialEq)]
pub struct Loaded<'a> {
    pub id: &'a NodeId,
    pub load: f64,
}

/// `candidates` in the order `key` prefers them: first those within `load_factor` × the mean
/// load, by descending weight; then those over it, by descending weight.
pub fn affinity_order<'a>(
    key: AffinityKey,
    candidates: &[Loaded<'a>],
    load_factor: f64,
) -> Vec<&'a NodeId> {
    if candidates.is_empty() {
        return Vec::new();
    }
    let mean = candidates.iter().map(|c| c.load).sum::<f64>() / candidates.len() as f64;
    let bound = mean * load_factor;
    let mut ranked: Vec<(bool, u64, &NodeId)> = candidates
        .iter()
        .map(|c| (c.load > bound, key.weight(c.id), c.id))
        .collect();
    // Within the bound first; then the highest weight; ids break the (2^-64) ties.
    ranked.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)).then(a.2.cmp(b.2)));
    ranked.into_iter().map(|(_, _, id)| id).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(names: &[&str]) -> Vec<NodeId> {
        names.iter().map(|n| NodeId::new(*n).unwrap()).collect()
    }

    #[test]
    fn keys_spread_over_nodes_and_stay_put() {
        let nodes = ids(&["hetzner", "zombie-pc", "backup"]);
        let idle: Vec<Loaded> = nodes.iter().map(|id| Loaded { id, load: 0.5 }).collect();
        let mut homes = std::collections::BTreeMap::new();
        for n in 0..300u32 {
            let key = AffinityKey::of(&n.to_le_bytes());
            let first = affinity_order(key, &idle, 1.5)[0].clone();
            assert_eq!(affinity_order(key, &idle, 1.5)[0], &first, "stable");
            *homes.entry(first).or_insert(0) += 1;
        }
        // Each node is home to a fair share (100 expected).
        assert!(homes.values().all(|n| (60..=140).contains(n)), "{homes:?}");
    }

    #[test]
    fn a_node_over_the_bound_is_passed_over() {
        let nodes = ids(&["a", "b"]);
        let key = (0..u32::MAX)
            .map(|n| AffinityKey::of(&n.to_le_bytes()))
            .find(|k| {
                affinity_order(
                    *k,
                    &[
                        Loaded {
                            id: &nodes[0],
                            load: 1.0,
                        },
                        Loaded {
                            id: &nodes[1],
                            load: 1.0,
                        },
                    ],
                    1.5,
                )[0] == &nodes[0]
            })
            .unwrap();
        let busy = [
            Loaded {
                id: &nodes[0],
                load: 2.0,
            },
            Loaded {
                id: &nodes[1],
                load: 0.5,
            },
        ];
        assert_eq!(affinity_order(key, &busy, 1.5), [&nodes[1], &nodes[0]]);
        let within = [
            Loaded {
                id: &nodes[0],
                load: 1.5,
            },
            Loaded {
                id: &nodes[1],
                load: 0.5,
            },
        ];
        assert_eq!(affinity_order(key, &within, 1.5), [&nodes[0], &nodes[1]]);
    }

    #[test]
    fn hashes_are_fixed_across_builds() {
        // Every node must agree on a key's home: the hash may never change silently.
        assert_eq!(AffinityKey::of(b"chat-1").0, AffinityKey::of(b"chat-1").0);
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
