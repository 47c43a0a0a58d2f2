//! A backend's prompt cache, as llama.cpp's (`--cache`), vLLM's prefix cache or Ollama's loaded
//! context behave for a conversation: a prompt that starts with messages the server processed
//! lately costs only its new part. Time to first token = [`FIRST_TOKEN_BASE`] +
//! [`PER_UNCACHED_TOKEN`] × uncached tokens, the shape measured on llama-cpp-python with
//! SmolLM2-135M on two cores (895 tokens cold: 3.6 s; warm: 0.05-0.5 s).

use std::collections::VecDeque;
use std::time::Duration;

use sha2::{Digest, Sha256};

/// Fixed cost of any request before its first token.
pub const FIRST_TOKEN_BASE: Duration = Duration::from_millis(40);
/// Prompt processing per token the cache does not hold.
pub const PER_UNCACHED_TOKEN: Duration = Duration::from_millis(4);
/// Prompts one backend keeps: several conversations, fewer than the load plays at once, so a
/// server that sees every conversation evicts them before they come back.
pub const PROMPTS_KEPT: usize = 6;

/// One message of a prompt as the cache sees it: what it says (hashed) and its length in tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Message {
    digest: [u8; 8],
    tokens: u32,
}

impl Message {
    /// `role` and `content` as sent; a token is about four bytes of English text.
    pub fn new(role: &str, content: &str) -> Self {
        let digest = Sha256::new()
            .chain_update(role.as_bytes())
            .chain_update([0])
            .chain_update(content.as_bytes())
            .finalize();
        Message {
            digest: digest[..8].try_into().expect("8 bytes"),
            tokens: content.len().div_ceil(4) as u32,
        }
    }
}

/// The prompts a backend processed last, most recent at the back.
#[derive(Default)]
pub struct PromptCache {
    prompts: VecDeque<Vec<Message>>,
}

impl PromptCache {
    /// Processes `prompt`: returns how many of its tokens were not cached (the longest prefix
    /// of whole messages shared with a kept prompt is), and keeps it in place of that prompt,
    /// evicting the least recently used beyond [`PROMPTS_KEPT`].
    pub fn process(&mut self, prompt: &[Message]) -> u32 {
        let total: u32 = prompt.iter().map(|m| m.tokens).sum();
        let best = self
            .prompts
            .iter()
            .enumerate()
            .map(|(at, kept)| (at, shared_tokens(kept, prompt)))
            .max_by_key(|(at, shared)| (*shared, *at));
        let cached = best.map_or(0, |(_, shared)| shared);
        if let Some((at, shared)) = best.filter(|(_, shared)| *shared > 0) {
            debug_assert!(shared <= total);
            self.prompts.remove(at);
        }
        if !prompt.is_empty() {
            self.prompts.push_back(prompt.to_vec());
            if self.prompts.len() > PROMPTS_KEPT {
                self.prompts.pop_front();
            }
        }
        total - cached
    }
}

/// Tokens in the messages `a` and `b` begin with alike.
fn shared_tokens(a: &[Message], b: &[Message]) -> u32 {
    a.iter()
        .zip(b)
        .take_while(|(x, y)| x == y)
        .map(|(x, _)| x.tokens)
        .sum()
}

/// Time to first token for a prompt with `uncached` tokens to process.
pub fn first_token_time(uncached: u32) -> Duration {
    FIRST_TOKEN_BASE + PER_UNCACHED_TOKEN * uncached
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn(system: &str, turns: usize) -> Vec<Message> {
        let mut prompt = vec![Message::new("system", system)];
        for n in 0..turns {
            prompt.push(Message::new("user", &format!("question {n}")));
            if n + 1 < turns {
                prompt.push(Message::new("assistant", &format!("answer {n}")));
            }
        }
        prompt
    }

    #[test]
    fn a_returning_conversation_pays_only_its_new_messages() {
        let mut cache = PromptCache::default();
        let system = "s".repeat(3200);
        assert_eq!(cache.process(&turn(&system, 1)), 800 + 3);
        // The kept prompt is the first three messages' prefix: the answer and the new question
        // are new.
        assert_eq!(cache.process(&turn(&system, 2)), 2 + 3);
    }

    #[test]
    fn the_least_recently_used_prompt_goes_first() {
        let mut cache = PromptCache::default();
        let systems: Vec<String> = (0..=PROMPTS_KEPT).map(|n| format!("system {n}")).collect();
        for system in &systems {
            cache.process(&turn(system, 1));
        }
        // The first was evicted by the fifth; the second is still there.
        assert_eq!(cache.process(&turn(&systems[1], 1)), 0);
        assert!(cache.process(&turn(&systems[0], 1)) > 0);
    }

    #[test]
    fn another_conversation_shares_nothing() {
        let mut cache = PromptCache::default();
        cache.process(&turn("one", 3));
        assert_eq!(
            cache.process(&turn("two", 1)),
            turn("two", 1).iter().map(|m| m.tokens).sum::<u32>()
        );
    }
}
