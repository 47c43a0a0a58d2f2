//! The membership state machine.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use super::peer::{Outstanding, Peer};
use super::{Load, MembershipEvent, PeerState, PeerView, Probe};
use crate::node::NodeId;
use crate::time::Instant;

/// Heartbeat timing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MembershipConfig {
    /// Time between probes to one peer, and how long a probe may wait for its answer.
    pub interval: Duration,
    /// Consecutive misses that make a peer Offline.
    pub misses_max: u32,
}

impl Default for MembershipConfig {
    fn default() -> Self {
        MembershipConfig {
            interval: Duration::from_secs(10),
            misses_max: 3,
        }
    }
}

/// What became of a heartbeat answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// It answered the outstanding probe: the peer is Online.
    Counted,
    /// Not for the outstanding probe (late, duplicate, unknown peer): nothing changed.
    Stale,
}

/// Weight of a new RTT sample in the moving average (TCP's SRTT uses 1/8 too).
const RTT_GAIN: f64 = 0.125;

/// Tracks every peer of one node. See the [module docs](super) for the rule.
#[derive(Clone, Debug)]
pub struct Membership {
    config: MembershipConfig,
    peers: BTreeMap<NodeId, Peer>,
    next_seq: u64,
    now: Instant,
    probes: VecDeque<Probe>,
    events: VecDeque<MembershipEvent>,
}

impl Membership {
    /// Starts tracking `peers`, probing each at once.
    pub fn new(
        config: MembershipConfig,
        peers: impl IntoIterator<Item = NodeId>,
        now: Instant,
    ) -> Self {
        assert!(config.misses_max > 0, "misses_max must be at least 1");
        assert!(!config.interval.is_zero(), "interval must be positive");
        Membership {
            config,
            peers: peers.into_iter().map(|id| (id, Peer::new(now))).collect(),
            next_seq: 1,
            now,
            probes: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    pub fn config(&self) -> MembershipConfig {
        self.config
    }

    /// The earliest time [`Self::handle_timeout`] has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.peers.values().map(Peer::deadline).min()
    }

    /// Counts misses whose deadline has passed and sends the probes that are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.advance(now);
        let ids: Vec<NodeId> = self.peers.keys().cloned().collect();
        for id in ids {
            self.expire_probe(&id, now);
            let due = self.peers[&id].next_probe_at <= now;
            if due {
                self.send_probe(&id, now);
            }
        }
    }

    /// Feeds the answer to probe `seq` from `peer`, received at `now`; the RTT sample is the
    /// time since the probe was handed out, in whole milliseconds. Drivers that can time the
    /// exchange itself use [`Self::handle_timed_answer`].
    pub fn handle_answer(&mut self, now: Instant, peer: &NodeId, seq: u64, load: Load) -> Answer {
        let sent_at = self
            .peers
            .get(peer)
            .and_then(|p| p.outstanding)
            .map(|o| o.sent_at);
        let rtt = sent_at.map_or(Duration::ZERO, |at| self.now.max(now).saturating_since(at));
        self.handle_timed_answer(now, peer, seq, load, rtt)
    }

    /// Like [`Self::handle_answer`], with the RTT sample measured by the driver: from the
    /// probe's write to its answer on an established connection, at sub-millisecond resolution.
    /// A probe that had to open a connection first would otherwise put the QUIC handshake into
    /// the average, where a 1/8 gain keeps it for dozens of intervals.
    pub fn handle_timed_answer(
        &mut self,
        now: Instant,
        peer: &NodeId,
        seq: u64,
        load: Load,
        rtt: Duration,
    ) -> Answer {
        let now = self.advance(now);
        // A probe whose deadline has passed is a miss, whatever order the driver saw things in.
        self.expire_probe(peer, now);
        let Some(state) = self.peers.get_mut(peer) else {
            return Answer::Stale;
        };
        let Some(outstanding) = state.outstanding.filter(|o| o.seq == seq) else {
            return Answer::Stale;
        };
        state.outstanding = None;
        state.misses = 0;
        state.load = Some(load);
        // The sample cannot exceed what the machine itself saw pass (a driver's clock error).
        let seen = now.saturating_since(outstanding.sent_at) + Duration::from_millis(1);
        let sample_ms = rtt.min(seen).as_secs_f64() * 1000.0;
        let old_ms = state.rtt_ms;
        let new_ms = old_ms.map_or(sample_ms, |old| old + RTT_GAIN * (sample_ms - old));
        state.rtt_ms = Some(new_ms);
        let came_online = state.state != PeerState::Online;
        state.state = PeerState::Online;
        if came_online {
            self.events
                .push_back(MembershipEvent::NodeOnline { node: peer.clone() });
        }
        if old_ms.map(|ms| ms.round() as u64) != Some(new_ms.round() as u64) {
            self.events.push_back(MembershipEvent::LatencyChanged {
                node: peer.clone(),
                latency_ms: new_ms.round() as u64,
            });
        }
        Answer::Counted
    }

    /// A task call to `peer` failed at the connection level; see the module docs.
    pub fn handle_task_failure(&mut self, now: Instant, peer: &NodeId) {
        let now = self.advance(now);
        let interval = self.config.interval;
        let Some(state) = self.peers.get_mut(peer) else {
            return;
        };
        if state.state == PeerState::Offline {
            return;
        }
        let counts = state.evidence_at.is_none_or(|at| now >= at + interval);
        if counts {
            state.evidence_at = Some(now);
            self.count_miss(peer);
        }
        if self.peers[peer].outstanding.is_none() {
            self.send_probe(peer, now);
        }
    }

    /// This node sent a task to `peer`; selection counts it as load until it ends.
    pub fn handle_dispatch(&mut self, peer: &NodeId) {
        if let Some(state) = self.peers.get_mut(peer) {
            state.dispatched += 1;
        }
    }

    /// A task sent to `peer` ended (any outcome).
    pub fn handle_dispatch_done(&mut self, peer: &NodeId) {
        if let Some(state) = self.peers.get_mut(peer) {
            state.dispatched = state.dispatched.saturating_sub(1);
        }
    }

    /// A reload changed the peer set or the timing: peers not in `peers` are forgotten (their
    /// outstanding probe with them), new ones are probed at once, and the others keep their
    /// state, so a reload never makes a healthy peer look new or missed. A shorter interval
    /// applies from each peer's next probe on.
    pub fn handle_reconfigure(
        &mut self,
        now: Instant,
        config: MembershipConfig,
        peers: impl IntoIterator<Item = NodeId>,
    ) {
        assert!(config.misses_max > 0, "misses_max must be at least 1");
        assert!(!config.interval.is_zero(), "interval must be positive");
        let now = self.advance(now);
        self.config = config;
        let wanted: std::collections::BTreeSet<NodeId> = peers.into_iter().collect();
        let gone: Vec<NodeId> = self
            .peers
            .keys()
            .filter(|id| !wanted.contains(*id))
            .cloned()
            .collect();
        for node in gone {
            self.peers.remove(&node);
            self.probes.retain(|probe| probe.peer != node);
            self.events.push_back(MembershipEvent::NodeLeft { node });
        }
        for node in wanted {
            if let std::collections::btree_map::Entry::Vacant(slot) = self.peers.entry(node) {
                let node = slot.key().clone();
                slot.insert(Peer::new(now));
                self.events.push_back(MembershipEvent::NodeJoined { node });
            }
        }
        let latest = now + config.interval;
        for peer in self.peers.values_mut() {
            if let Some(outstanding) = &mut peer.outstanding {
                outstanding.deadline = outstanding.deadline.min(latest);
            }
            peer.next_probe_at = peer.next_probe_at.min(latest);
        }
    }

    /// The next heartbeat to send, if any.
    pub fn poll_probe(&mut self) -> Option<Probe> {
        self.probes.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<MembershipEvent> {
        self.events.pop_front()
    }

    pub fn peer(&self, id: &NodeId) -> Option<PeerView> {
        self.peers.get(id).map(Peer::view)
    }

    /// Every peer, in node id order.
    pub fn peers(&self) -> impl Iterator<Item = (&NodeId, PeerView)> {
        self.peers.iter().map(|(id, peer)| (id, peer.view()))
    }

    /// Time only moves forward: an earlier `now` is taken as the latest one seen.
    fn advance(&mut self, now: Instant) -> Instant {
        self.now = self.now.max(now);
        self.now
    }

    fn expire_probe(&mut self, peer: &NodeId, now: Instant) {
        let Some(state) = self.peers.get_mut(peer) else {
            return;
        };
        if state.outstanding.is_some_and(|o| o.deadline <= now) {
            state.outstanding = None;
            self.count_miss(peer);
        }
    }

    fn count_miss(&mut self, peer: &NodeId) {
        let misses_max = self.config.misses_max;
        let state = self
            .peers
            .get_mut(peer)
            .expect("caller checked the peer exists");
        state.misses = state.misses.saturating_add(1);
        self.events.push_back(MembershipEvent::ProbeMissed {
            node: peer.clone(),
            misses: state.misses,
        });
        if state.misses >= misses_max && state.state != PeerState::Offline {
            state.state = PeerState::Offline;
            self.events
                .push_back(MembershipEvent::NodeOffline { node: peer.clone() });
        }
    }

    fn send_probe(&mut self, peer: &NodeId, now: Instant) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let interval = self.config.interval;
        let state = self
            .peers
            .get_mut(peer)
            .expect("caller checked the peer exists");
        debug_assert!(state.outstanding.is_none(), "one probe per peer at a time");
        state.outstanding = Some(Outstanding {
            seq,
            sent_at: now,
            deadline: now + interval,
        });
        state.next_probe_at = now + interval;
        self.probes.push_back(Probe {
            peer: peer.clone(),
            seq,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> NodeId {
        NodeId::new(s).unwrap()
    }

    fn at(s: u64) -> Instant {
        Instant::from_millis(s * 1000)
    }

    fn drain_probes(m: &mut Membership) -> Vec<Probe> {
        std::iter::from_fn(|| m.poll_probe()).collect()
    }

    fn drain_events(m: &mut Membership) -> Vec<MembershipEvent> {
        std::iter::from_fn(|| m.poll_event()).collect()
    }

    #[test]
    fn a_reconfigure_adds_and_forgets_peers_and_keeps_the_others_as_they_were() {
        let (b, c, d) = (id("b"), id("c"), id("d"));
        let mut m = Membership::new(MembershipConfig::default(), [b.clone(), c.clone()], at(0));
        m.handle_timeout(at(0));
        for probe in drain_probes(&mut m) {
            m.handle_answer(at(1), &probe.peer, probe.seq, Load::default());
        }
        drain_events(&mut m);
        // c leaves, d joins; b stays online with its latency and is not probed early.
        m.handle_reconfigure(at(2), MembershipConfig::default(), [b.clone(), d.clone()]);
        assert_eq!(
            drain_events(&mut m),
            [
                MembershipEvent::NodeLeft { node: c.clone() },
                MembershipEvent::NodeJoined { node: d.clone() }
            ]
        );
        assert!(m.peer(&c).is_none());
        assert_eq!(m.peer(&b).unwrap().state, PeerState::Online);
        assert_eq!(m.peer(&d).unwrap().state, PeerState::Unknown);
        m.handle_timeout(at(2));
        let probed: Vec<NodeId> = drain_probes(&mut m).into_iter().map(|p| p.peer).collect();
        assert_eq!(probed, std::slice::from_ref(&d));
        // A late answer from the forgotten peer changes nothing.
        assert_eq!(
            m.handle_answer(at(3), &c, 2, Load::default()),
            Answer::Stale
        );
        // A shorter interval applies from the next probe on.
        let quick = MembershipConfig {
            interval: Duration::from_secs(1),
            misses_max: 3,
        };
        m.handle_reconfigure(at(3), quick, [b.clone(), d.clone()]);
        m.handle_timeout(at(4));
        let probed: Vec<NodeId> = drain_probes(&mut m).into_iter().map(|p| p.peer).collect();
        assert!(probed.contains(&b), "{probed:?}");
    }

    #[test]
    fn a_timed_answer_keeps_setup_out_and_sub_millisecond_resolution() {
        let b = id("b");
        let mut m = Membership::new(MembershipConfig::default(), [b.clone()], at(0));
        m.handle_timeout(at(0));
        let probe = drain_probes(&mut m).pop().unwrap();
        // 9 ms passed, most of it a connection handshake; the exchange itself took 0.25 ms.
        let rtt = Duration::from_micros(250);
        m.handle_timed_answer(Instant::from_millis(9), &b, probe.seq, Load::default(), rtt);
        assert_eq!(m.peer(&b).unwrap().latency_ms, Some(0.25));
    }

    #[test]
    fn three_misses_offline_one_answer_online() {
        let b = id("b");
        let mut m = Membership::new(MembershipConfig::default(), [b.clone()], at(0));
        assert_eq!(m.poll_timeout(), Some(at(0)));
        m.handle_timeout(at(0));
        let probe = drain_probes(&mut m).pop().unwrap();
        assert_eq!(
            m.handle_answer(Instant::from_millis(24), &b, probe.seq, Load::default()),
            Answer::Counted
        );
        assert_eq!(m.peer(&b).unwrap().state, PeerState::Online);
        assert_eq!(m.peer(&b).unwrap().latency_ms, Some(24.0));
        drain_events(&mut m);
        for round in 1..=3 {
            m.handle_timeout(at(10 * round));
            drain_probes(&mut m);
        }
        // Misses are counted at 20 s and 30 s so far: still Online.
        assert_eq!(m.peer(&b).unwrap().misses, 2);
        assert_eq!(m.peer(&b).unwrap().state, PeerState::Online);
        m.handle_timeout(at(40));
        assert_eq!(m.peer(&b).unwrap().state, PeerState::Offline);
        let offline = drain_events(&mut m);
        assert!(offline.contains(&MembershipEvent::NodeOffline { node: b.clone() }));
        let probe = drain_probes(&mut m).pop().unwrap();
        m.handle_answer(at(41), &b, probe.seq, Load::default());
        assert_eq!(m.peer(&b).unwrap().state, PeerState::Online);
        assert_eq!(m.peer(&b).unwrap().misses, 0);
    }

    #[test]
    fn stale_answers_do_not_count() {
        let b = id("b");
        let mut m = Membership::new(MembershipConfig::default(), [b.clone()], at(0));
        m.handle_timeout(at(0));
        let first = drain_probes(&mut m).pop().unwrap();
        m.handle_timeout(at(10));
        drain_probes(&mut m);
        // The first probe's answer arrives after its deadline: a miss stays a miss.
        assert_eq!(
            m.handle_answer(at(11), &b, first.seq, Load::default()),
            Answer::Stale
        );
        assert_eq!(m.peer(&b).unwrap().misses, 1);
        assert_eq!(
            m.handle_answer(at(11), &id("nobody"), 1, Load::default()),
            Answer::Stale
        );
    }

    #[test]
    fn task_failure_counts_once_per_interval_and_probes_early() {
        let b = id("b");
        let mut m = Membership::new(MembershipConfig::default(), [b.clone()], at(0));
        m.handle_timeout(at(0));
        let probe = drain_probes(&mut m).pop().unwrap();
        m.handle_answer(at(1), &b, probe.seq, Load::default());
        m.handle_task_failure(at(2), &b);
        m.handle_task_failure(at(3), &b);
        assert_eq!(m.peer(&b).unwrap().misses, 1);
        assert_eq!(
            drain_probes(&mut m).len(),
            1,
            "an early probe goes out at once"
        );
        m.handle_timeout(at(12));
        m.handle_timeout(at(22));
        assert_eq!(m.peer(&b).unwrap().state, PeerState::Offline);
    }
}
