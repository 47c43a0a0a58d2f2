//! The virtual network between the harness's nodes.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};

use rand_chacha::ChaCha8Rng;
use rand_core::RngCore;

use crate::time::Instant;

/// Delay and loss on every link.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NetworkConfig {
    pub delay_ms_min: u64,
    pub delay_ms_max: u64,
    /// Probability that a message is lost, 0.0..=1.0.
    pub loss: f64,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            delay_ms_min: 1,
            delay_ms_max: 40,
            loss: 0.0,
        }
    }
}

/// What travels between node indices: heartbeats and their answers, and a task's dispatch,
/// acknowledgement and result (tasks are numbered by the harness).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Message {
    Probe { from: usize, to: usize, seq: u64 },
    Answer { from: usize, to: usize, seq: u64 },
    Task { from: usize, to: usize, task: u64 },
    Accepted { from: usize, to: usize, task: u64 },
    Result { from: usize, to: usize, task: u64 },
}

impl Message {
    fn link(&self) -> (usize, usize) {
        match *self {
            Message::Probe { from, to, .. }
            | Message::Answer { from, to, .. }
            | Message::Task { from, to, .. }
            | Message::Accepted { from, to, .. }
            | Message::Result { from, to, .. } => (from, to),
        }
    }
}

pub(super) struct Network {
    pub config: NetworkConfig,
    /// One-way cuts: messages from `.0` to `.1` are dropped.
    pub cut: BTreeSet<(usize, usize)>,
    /// (arrival, send order, message): the send order keeps equal arrivals in a fixed order.
    in_flight: BinaryHeap<Reverse<(Instant, u64, Message)>>,
    sent: u64,
}

impl Network {
    pub fn new(config: NetworkConfig) -> Self {
        Network {
            config,
            cut: BTreeSet::new(),
            in_flight: BinaryHeap::new(),
            sent: 0,
        }
    }

    /// Puts `message` on the wire at `now`, unless its link is cut or the dice lose it.
    pub fn send(&mut self, now: Instant, message: Message, rng: &mut ChaCha8Rng) {
        // Draw both numbers every time, so a cut does not shift the RNG stream of later sends.
        let lost = unit(rng) < self.config.loss;
        let span = self
            .config
            .delay_ms_max
            .saturating_sub(self.config.delay_ms_min)
            + 1;
        let delay_ms = self.config.delay_ms_min + rng.next_u64() % span;
        if lost || self.cut.contains(&message.link()) {
            return;
        }
        self.sent += 1;
        self.in_flight.push(Reverse((
            Instant::from_millis(now.as_millis() + delay_ms),
            self.sent,
            message,
        )));
    }

    pub fn next_arrival(&self) -> Option<Instant> {
        self.in_flight.peek().map(|Reverse((at, _, _))| *at)
    }

    /// The next message due at or before `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<Message> {
        if self.next_arrival()? > now {
            return None;
        }
        self.in_flight.pop().map(|Reverse((_, _, message))| message)
    }
}

pub(super) fn unit(rng: &mut ChaCha8Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}
