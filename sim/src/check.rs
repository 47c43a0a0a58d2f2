//! The invariants, checked after every step of the simulation.
//!
//! - Offline only after `misses_max` consecutive misses; a node cut off (crashed, partitioned,
//!   held) is offline at every observer within `misses_max + 1` intervals; a node that comes
//!   back is online again within one interval (plus a second for the handshake).
//! - Where every link delivers within the interval, nobody is ever offline.
//! - Every task ends with exactly one outcome; none is lost; none runs twice on one node; a
//!   GPU task is never offered to a non-GPU node while a GPU node is online (recorded by the
//!   nodes' observers as it happens).
//! - The adversary never gets a connection accepted.
//! - After everything heals, everyone sees everyone online again.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use triforce_core::membership::{MembershipEvent, PeerState};
use triforce_core::node::NodeId;

use crate::record::Log;
use crate::scenario::Fault;

/// Extra time allowed over the exact bounds: ticks, handshakes, stream round trips.
const SLACK: Duration = Duration::from_millis(1_500);

/// What the checker knows about one ordered pair (observer, target).
#[derive(Clone, Copy, Debug, Default)]
struct Link {
    /// Cut (either direction, any cause) since this time, or connected since `restored`.
    cut_since: Option<Duration>,
    restored: Duration,
}

pub struct Checker {
    interval: Duration,
    misses_max: u32,
    links_deliver: bool,
    /// Random loss is on: links may drop anything, so only the miss rule holds until healing.
    lossy: bool,
    nodes: Vec<NodeId>,
    down_since: BTreeMap<NodeId, Duration>,
    up_since: BTreeMap<NodeId, Duration>,
    /// Unordered link -> the causes that cut it (partition, one-way, hold).
    cuts: BTreeMap<(NodeId, NodeId), BTreeSet<&'static str>>,
    links: BTreeMap<(NodeId, NodeId), Link>,
    events_seen: usize,
    last_miss: BTreeMap<(NodeId, NodeId), u32>,
    last_view_check: Duration,
    /// Crash time of each node now down, for detection-time samples.
    pub detection_samples: Vec<Duration>,
    pending_detection: BTreeMap<(NodeId, NodeId), Duration>,
}

fn pair(a: &NodeId, b: &NodeId) -> (NodeId, NodeId) {
    if a <= b {
        (a.clone(), b.clone())
    } else {
        (b.clone(), a.clone())
    }
}

fn id(name: &str) -> NodeId {
    NodeId::new(name).expect("scenario node ids are valid")
}

impl Checker {
    pub fn new(
        nodes: &[NodeId],
        interval: Duration,
        misses_max: u32,
        links_deliver: bool,
        lossy: bool,
    ) -> Self {
        let mut links = BTreeMap::new();
        for a in nodes {
            for b in nodes.iter().filter(|b| *b != a) {
                links.insert((a.clone(), b.clone()), Link::default());
            }
        }
        Checker {
            interval,
            misses_max,
            links_deliver,
            lossy,
            nodes: nodes.to_vec(),
            down_since: BTreeMap::new(),
            up_since: nodes.iter().map(|n| (n.clone(), Duration::ZERO)).collect(),
            cuts: BTreeMap::new(),
            links,
            events_seen: 0,
            last_miss: BTreeMap::new(),
            last_view_check: Duration::ZERO,
            detection_samples: Vec::new(),
            pending_detection: BTreeMap::new(),
        }
    }

    fn detect_bound(&self) -> Duration {
        self.interval * (self.misses_max + 1) + SLACK
    }

    fn recover_bound(&self) -> Duration {
        self.interval + SLACK
    }

    /// Records a fault applied at `now`.
    pub fn apply(&mut self, now: Duration, fault: &Fault) {
        match fault {
            Fault::Crash(n) => {
                let n = id(n);
                self.down_since.insert(n.clone(), now);
                self.up_since.remove(&n);
                for other in self.nodes.clone().iter().filter(|o| **o != n) {
                    self.pending_detection
                        .insert((other.clone(), n.clone()), now);
                }
            }
            Fault::Restart(n) => {
                let n = id(n);
                self.down_since.remove(&n);
                self.up_since.insert(n.clone(), now);
                self.pending_detection.retain(|(_, target), _| *target != n);
            }
            Fault::Bounce(n) => {
                let n = id(n);
                self.up_since.insert(n, now);
            }
            Fault::Partition(a, b) => self.cut(now, a, b, "partition"),
            Fault::PartitionOneway(a, b) => self.cut(now, a, b, "oneway"),
            Fault::Hold(a, b) => self.cut(now, a, b, "hold"),
            Fault::Repair(a, b) => {
                self.uncut(now, a, b, "partition");
                self.uncut(now, a, b, "oneway");
            }
            Fault::Release(a, b) => self.uncut(now, a, b, "hold"),
            // A rotation in the right order changes no link: every node accepts what its
            // peers sign with at every moment, so the invariants stay as they are.
            Fault::Latency(..) | Fault::Rotate(..) => {}
            // A node that forgot another refuses it: for the pair it is a cut until the
            // node knows it again (the forgetting side has no view of it meanwhile).
            // A backend is no node: its faults change no link between nodes.
            Fault::BackendDown(_)
            | Fault::BackendUp(_)
            | Fault::BackendHang(_)
            | Fault::BackendRelease(_)
            | Fault::BackendStall(_)
            | Fault::Models(..) => {}
            Fault::Forget(a, b) => self.cut(now, a, b, "config"),
            Fault::Readd(a, b) => self.uncut(now, a, b, "config"),
        }
    }

    fn cut(&mut self, now: Duration, a: &str, b: &str, cause: &'static str) {
        let key = pair(&id(a), &id(b));
        let causes = self.cuts.entry(key.clone()).or_default();
        let was_cut = !causes.is_empty();
        causes.insert(cause);
        if !was_cut {
            // QUIC needs both directions, so any cut silences the pair both ways.
            for (o, t) in [
                (key.0.clone(), key.1.clone()),
                (key.1.clone(), key.0.clone()),
            ] {
                self.links.get_mut(&(o, t)).expect("known pair").cut_since = Some(now);
            }
        }
    }

    fn uncut(&mut self, now: Duration, a: &str, b: &str, cause: &'static str) {
        let key = pair(&id(a), &id(b));
        let causes = self.cuts.entry(key.clone()).or_default();
        causes.remove(cause);
        if causes.is_empty() {
            for (o, t) in [
                (key.0.clone(), key.1.clone()),
                (key.1.clone(), key.0.clone()),
            ] {
                let link = self.links.get_mut(&(o, t)).expect("known pair");
                if link.cut_since.take().is_some() {
                    link.restored = now;
                }
            }
        }
    }

    /// Everything heals at `now`.
    pub fn heal_all(&mut self, now: Duration) {
        if self.lossy {
            self.lossy = false;
            for link in self.links.values_mut() {
                link.restored = now;
            }
        }
        let cut: Vec<(NodeId, NodeId)> = self
            .cuts
            .iter()
            .filter(|(_, c)| !c.is_empty())
            .map(|(k, _)| k.clone())
            .collect();
        for (a, b) in cut {
            for cause in ["partition", "oneway", "hold"] {
                self.uncut(now, a.as_str(), b.as_str(), cause);
            }
        }
    }

    /// Checks everything new in `log` at simulated time `now`.
    pub fn step(&mut self, now: Duration, log: &mut Log) {
        let mut found = Vec::new();
        for seen in &log.events[self.events_seen..] {
            match &seen.event {
                MembershipEvent::ProbeMissed { node, misses } => {
                    self.last_miss
                        .insert((seen.observer.clone(), node.clone()), *misses);
                }
                MembershipEvent::NodeOnline { node } => {
                    self.last_miss
                        .remove(&(seen.observer.clone(), node.clone()));
                }
                MembershipEvent::NodeOffline { node } => {
                    let misses = self
                        .last_miss
                        .get(&(seen.observer.clone(), node.clone()))
                        .copied()
                        .unwrap_or(0);
                    if misses < self.misses_max {
                        found.push(format!(
                            "{}: {} marked {node} offline after {misses} misses",
                            seen.at.as_secs_f64(),
                            seen.observer
                        ));
                    }
                    if self.links_deliver {
                        found.push(format!(
                            "{}: {} marked {node} offline although every link delivers",
                            seen.at.as_secs_f64(),
                            seen.observer
                        ));
                    }
                    if let Some(crashed_at) = self
                        .pending_detection
                        .remove(&(seen.observer.clone(), node.clone()))
                    {
                        self.detection_samples
                            .push(seen.at.saturating_sub(crashed_at));
                    }
                }
                // The simulator does not reload configs yet.
                MembershipEvent::LatencyChanged { .. }
                | MembershipEvent::NodeJoined { .. }
                | MembershipEvent::NodeLeft { .. } => {}
            }
        }
        self.events_seen = log.events.len();
        for message in found {
            log.violation(message);
        }
        if !self.lossy && now >= self.last_view_check + Duration::from_millis(250) {
            self.last_view_check = now;
            self.check_views(now, log);
        }
    }

    /// Every live observer's view against what the faults imply.
    fn check_views(&self, now: Duration, log: &mut Log) {
        let mut found = Vec::new();
        // One snapshot per observer, not one per pair: with 50 nodes, 50 locks instead of 2450.
        let views: BTreeMap<&NodeId, BTreeMap<NodeId, PeerState>> = log
            .nodes
            .iter()
            .map(|(id, node)| {
                let states = node
                    .peer_views()
                    .into_iter()
                    .map(|(peer, view)| (peer, view.state));
                (id, states.collect())
            })
            .collect();
        for ((observer, target), link) in &self.links {
            let Some(observer_up) = self.up_since.get(observer) else {
                continue;
            };
            let Some(state) = views.get(observer).and_then(|v| v.get(target)).copied() else {
                continue;
            };
            let silenced_since = match (self.down_since.get(target), link.cut_since) {
                (Some(down), Some(cut)) => Some((*down).min(cut)),
                (down, cut) => down.copied().or(cut),
            };
            if let Some(since) = silenced_since {
                let since = since.max(*observer_up);
                if now >= since + self.detect_bound() && state != PeerState::Offline {
                    found.push(format!(
                        "{}: {observer} still sees {target} as {:?}, cut off since {}",
                        now.as_secs_f64(),
                        state,
                        since.as_secs_f64()
                    ));
                }
            } else {
                let back = link
                    .restored
                    .max(*observer_up)
                    .max(self.up_since.get(target).copied().unwrap_or_default());
                if now >= back + self.recover_bound() && state != PeerState::Online {
                    found.push(format!(
                        "{}: {observer} sees {target} as {:?}, connected again since {}",
                        now.as_secs_f64(),
                        state,
                        back.as_secs_f64()
                    ));
                }
            }
        }
        for message in found {
            log.violation(message);
        }
    }

    /// The end of a run: nothing lost.
    pub fn finish(&self, log: &mut Log) {
        let lost: Vec<String> = log
            .submitted
            .keys()
            .filter(|t| !log.ended.contains_key(*t))
            .cloned()
            .collect();
        for task in lost.iter().take(5) {
            log.violation(format!("task {task} was submitted and never ended"));
        }
    }
}
