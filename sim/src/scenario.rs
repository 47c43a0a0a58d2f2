//! The fault plans, drawn from the seed's world: a node dies and comes back, the master loses a
//! hub both ways or one way, links hold packets and release them late, latency spikes, bursty
//! loss, links clogged one by one, rolling restarts; and config rollouts where nodes disagree
//! for a while: a PSK rotation mid-partition, a hub leaving and rejoining; and backends that
//! fail while their nodes run, or change the models they serve.

use std::time::Duration;

use rand_chacha::rand_core::RngCore;
use rand_chacha::ChaCha8Rng;

/// One change to the simulated world.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    Crash(String),
    Restart(String),
    /// Crash and restart at once.
    Bounce(String),
    Partition(String, String),
    PartitionOneway(String, String),
    Repair(String, String),
    /// Queue messages on the link both ways until released.
    Hold(String, String),
    Release(String, String),
    /// Set the link's latency (both ways).
    Latency(String, String, Duration),
    /// The node reloads its config at this step of a PSK rotation (see [`KeyStep`]).
    Rotate(String, KeyStep),
    /// The first node reloads a nodes file without the second (it leaves, as that node sees
    /// it); the second keeps its own config.
    Forget(String, String),
    /// The first node reloads a nodes file with the second again.
    Readd(String, String),
    /// The node's backend host crashes (connections refused from then on).
    BackendDown(String),
    /// The node's backend host starts again.
    BackendUp(String),
    /// The link between the node and its backend holds every packet: calls hang.
    BackendHang(String),
    BackendRelease(String),
    /// The node's backend answers its next probe or relay only after every timeout (one slow
    /// answer from a backend that is otherwise fine).
    BackendStall(String),
    /// The node's backend serves these models from now on.
    Models(String, Vec<String>),
}

/// What one node's config files say, as far as a scenario changes them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigState {
    pub keys: KeyStep,
    /// Nodes left out of its nodes file.
    pub without: std::collections::BTreeSet<String>,
}

/// The three reloads of a PSK rotation, each done on every node before the next starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum KeyStep {
    /// Before the rotation: sign with the old key, accept only it.
    #[default]
    Old,
    /// Sign with the old key, accept the new one too.
    AcceptNew,
    /// Sign with the new key, accept the old one too.
    SignNew,
    /// Sign with the new key, accept only it.
    DropOld,
}

/// A fault at a simulated time.
#[derive(Clone, Debug)]
pub struct Step {
    pub at: Duration,
    pub fault: Fault,
}

/// A named scenario.
#[derive(Clone, Copy)]
pub struct Scenario {
    pub name: &'static str,
    pub about: &'static str,
    /// Every link keeps delivering within the heartbeat interval: no node may go offline.
    pub links_deliver: bool,
    /// turmoil's per-message fail and repair rates (bursty loss); 0.0 for none.
    pub fail_rate: f64,
    pub repair_rate: f64,
    pub conversations: Conversations,
    /// A client streams chats through the master's AI door (`crate::door_client`).
    pub door_streams: bool,
    pub plan: fn(&mut ChaCha8Rng) -> Vec<Step>,
}

/// Whether the master's users also hold multi-turn conversations with the hubs' model
/// (`crate::conversations`), and whether the nodes route them with session affinity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conversations {
    None,
    WithAffinity,
    WithoutAffinity,
}

fn at(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn s(name: &str) -> String {
    name.to_string()
}

/// A time in `lo..hi` seconds, from the seed.
fn between(rng: &mut ChaCha8Rng, lo: u64, hi: u64) -> Duration {
    Duration::from_millis(lo * 1000 + rng.next_u64() % ((hi - lo) * 1000))
}

fn hub(rng: &mut ChaCha8Rng) -> String {
    s(if rng.next_u64().is_multiple_of(2) {
        "backup"
    } else {
        "zombie-pc"
    })
}

/// Every node reloads at `step`, one by one at seeded times in `from..to` seconds.
fn rollout(rng: &mut ChaCha8Rng, step: KeyStep, from: u64, to: u64) -> Vec<Step> {
    ["hetzner", "zombie-pc", "backup"]
        .into_iter()
        .map(|node| Step {
            at: between(rng, from, to),
            fault: Fault::Rotate(s(node), step),
        })
        .collect()
}

pub const SCENARIOS: [Scenario; 16] = [
    Scenario {
        name: "steady",
        about: "no faults: tasks flow, nobody goes offline",
        links_deliver: true,
        fail_rate: 0.0,
        repair_rate: 0.0,
        conversations: Conversations::None,
        door_streams: false,
        plan: |_| Vec::new(),
    },
    Scenario {
        name: "crash_restart",
        about: "a hub crashes, stays down past detection, comes back",
        links_deliver: false,
        fail_rate: 0.0,
        repair_rate: 0.0,
        conversations: Conversations::None,
        door_streams: false,
        plan: |rng| {
            let victim = hub(rng);
            let down = between(rng, 30, 60);
            let up = down + between(rng, 50, 100);
            vec![
                Step {
                    at: down,
                    fault: Fault::Crash(victim.clone()),
                },
                Step {
                    at: up,
                    fault: Fault::Restart(victim),
                },
            ]
        },
    },
    Scenario {
        name: "partition",
        about: "master and a hub cut both ways, then repaired",
        links_deliver: false,
        fail_rate: 0.0,
        repair_rate: 0.0,
        conversations: Conversations::None,
        door_streams: false,
        plan: |rng| {
            let victim = hub(rng);
            let cut = between(rng, 30, 60);
            let heal = cut + between(rng, 45, 90);
            vec![
                Step {
                    at: cut,
                    fault: Fault::Partition(s("hetzner"), victim.clone()),
                },
                Step {
                    at: heal,
                    fault: Fault::Repair(s("hetzner"), victim),
                },
            ]
        },
    },
    Scenario {
        name: "partition_oneway",
        about: "master's packets to a hub dropped (one way), then repaired",
        links_deliver: false,
        fail_rate: 0.0,
        repair_rate: 0.0,
        conversations: Conversations::None,
        door_streams: false,
        plan: |rng| {
            let victim = hub(rng);
            let cut = between(rng, 30, 60);
            let heal = cut + between(rng, 45, 90);
            let (from, to) = if rng.next_u64() % 2 == 0 {
                (s("hetzner"), victim)
            } else {
                (victim, s("hetzner"))
            };
            vec![
                Step {
                    at: cut,
                    fault: Fault::PartitionOneway(from.clone(), to.clone()),
                },
                Step {
                    at: heal,
                    fault: Fault::Repair(from, to),
                },
            ]
        },
    },
    Scenario {
        name: "hold_release",
        about: "a link holds packets, then releases them all at once (aged heartbeats)",
        links_deliver: false,
        fail_rate: 0.0,
        repair_rate: 0.0,
        conversations: Conversations::None,
        door_streams: false,
        plan: |rng| {
            let victim = hub(rng);
            let hold = between(rng, 30, 60);
            let release = hold + between(rng, 5, 60);
            vec![
                Step {
                    at: hold,
                    fault: Fault::Hold(s("hetzner"), victim.clone()),
                },
                Step {
                    at: release,
                    fault: Fault::Release(s("hetzner"), victim),
                },
            ]
        },
    },
    Scenario {
        name: "latency",
        about: "latency spikes and jitter below the interval: no false offline",
        links_deliver: true,
        fail_rate: 0.0,
        repair_rate: 0.0,
        conversations: Conversations::None,
        door_streams: false,
        plan: |rng| {
            let mut steps = Vec::new();
            let mut t = 30u64;
            while t < 180 {
                let link = (s("hetzner"), hub(rng));
                let spike = Duration::from_millis(200 + rng.next_u64() % 1_300);
                steps.push(Step {
                    at: at(t),
                    fault: Fault::Latency(link.0.clone(), link.1.clone(), spike),
                });
                t += 5 + rng.next_u64() % 20;
                steps.push(Step {
                    at: at(t),
                    fault: Fault::Latency(link.0, link.1, Duration::from_millis(5)),
                });
                t += 5;
            }
            steps
        },
    },
    Scenario {
        name: "bursty_loss",
        about: "bursts of lost packets on every link (fail/repair rates)",
        links_deliver: false,
        fail_rate: 0.02,
        repair_rate: 0.4,
        conversations: Conversations::None,
        door_streams: false,
        plan: |_| Vec::new(),
    },
    Scenario {
        name: "swizzle",
        about: "links clogged one by one, then unclogged in random order",
        links_deliver: false,
        fail_rate: 0.0,
        repair_rate: 0.0,
        conversations: Conversations::None,
        door_streams: false,
        plan: |rng| {
            let links = [
                (s("hetzner"), s("backup")),
                (s("hetzner"), s("zombie-pc")),
                (s("zombie-pc"), s("backup")),
            ];
            let mut steps = Vec::new();
            let mut t = between(rng, 30, 40);
            for (a, b) in &links {
                steps.push(Step {
                    at: t,
                    fault: Fault::Hold(a.clone(), b.clone()),
                });
                t += between(rng, 2, 15);
            }
            let mut order: Vec<usize> = vec![0, 1, 2];
            for i in (1..order.len()).rev() {
                order.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
            }
            for i in order {
                t += between(rng, 5, 30);
                steps.push(Step {
                    at: t,
                    fault: Fault::Release(links[i].0.clone(), links[i].1.clone()),
                });
            }
            steps
        },
    },
    Scenario {
        name: "rolling_restart",
        about: "every hub bounced in turn while tasks run",
        links_deliver: false,
        fail_rate: 0.0,
        repair_rate: 0.0,
        conversations: Conversations::None,
        door_streams: false,
        plan: |rng| {
            let first = between(rng, 30, 50);
            let second = first + between(rng, 30, 60);
            vec![
                Step {
                    at: first,
                    fault: Fault::Bounce(s("backup")),
                },
                Step {
                    at: second,
                    fault: Fault::Bounce(s("zombie-pc")),
                },
            ]
        },
    },
    Scenario {
        name: "psk_rotation",
        about: "the PSK rotates in three rolling reloads while the master and a hub are cut apart",
        links_deliver: false,
        fail_rate: 0.0,
        repair_rate: 0.0,
        conversations: Conversations::None,
        door_streams: false,
        plan: |rng| {
            let victim = hub(rng);
            let cut = between(rng, 20, 60);
            let heal = cut + between(rng, 40, 100);
            let mut steps = vec![
                Step {
                    at: cut,
                    fault: Fault::Partition(s("hetzner"), victim.clone()),
                },
                Step {
                    at: heal,
                    fault: Fault::Repair(s("hetzner"), victim),
                },
            ];
            steps.extend(rollout(rng, KeyStep::AcceptNew, 30, 70));
            steps.extend(rollout(rng, KeyStep::SignNew, 80, 120));
            steps.extend(rollout(rng, KeyStep::DropOld, 130, 180));
            steps
        },
    },
    Scenario {
        name: "leave_rejoin",
        about: "a hub is removed from the others' files one reload at a time, then added back",
        links_deliver: false,
        fail_rate: 0.0,
        repair_rate: 0.0,
        conversations: Conversations::None,
        door_streams: false,
        plan: |rng| {
            let victim = hub(rng);
            let others = ["hetzner", "zombie-pc", "backup"]
                .into_iter()
                .filter(|n| *n != victim)
                .collect::<Vec<_>>();
            let mut steps = Vec::new();
            for other in others {
                steps.push(Step {
                    at: between(rng, 30, 80),
                    fault: Fault::Forget(s(other), victim.clone()),
                });
                steps.push(Step {
                    at: between(rng, 110, 180),
                    fault: Fault::Readd(s(other), victim.clone()),
                });
            }
            steps
        },
    },
    Scenario {
        name: "backend_faults",
        about: "hubs' backends crash, hang, stall one answer and come back while the hubs themselves run on",
        // A backend's failure is no evidence against its node: nobody may go offline.
        links_deliver: true,
        fail_rate: 0.0,
        repair_rate: 0.0,
        conversations: Conversations::None,
        door_streams: false,
        plan: |rng| {
            let crashed = hub(rng);
            let hung = if crashed == "backup" {
                s("zombie-pc")
            } else {
                s("backup")
            };
            let down = between(rng, 20, 60);
            let up = down + between(rng, 20, 60);
            let hang = between(rng, 60, 120);
            let release = hang + between(rng, 10, 40);
            // Well clear of both faults: one slow answer must not mark a backend down.
            let stall = up.max(release) + between(rng, 45, 60);
            let stalled = hub(rng);
            vec![
                Step {
                    at: stall,
                    fault: Fault::BackendStall(stalled),
                },
                Step {
                    at: down,
                    fault: Fault::BackendDown(crashed.clone()),
                },
                Step {
                    at: up,
                    fault: Fault::BackendUp(crashed),
                },
                Step {
                    at: hang,
                    fault: Fault::BackendHang(hung.clone()),
                },
                Step {
                    at: release,
                    fault: Fault::BackendRelease(hung),
                },
            ]
        },
    },
    Scenario {
        name: "model_churn",
        about: "models appear on and leave the hubs' backends, which also crash and hang, while tasks name models",
        // Nothing here is a fault of a node or a link: nobody may go offline.
        links_deliver: true,
        fail_rate: 0.0,
        repair_rate: 0.0,
        conversations: Conversations::None,
        door_streams: false,
        plan: |rng| {
            let models = |hub: &str, names: &[&str]| Fault::Models(s(hub), names.iter().map(|m| s(m)).collect());
            let down = between(rng, 60, 100);
            let hang = between(rng, 150, 180);
            vec![
                Step { at: between(rng, 20, 60), fault: models("backup", &["mistral"]) },
                Step { at: between(rng, 30, 80), fault: models("zombie-pc", &["llama3", "qwen", "mistral"]) },
                Step { at: down, fault: Fault::BackendDown(s("zombie-pc")) },
                Step { at: down + between(rng, 15, 40), fault: Fault::BackendUp(s("zombie-pc")) },
                Step { at: between(rng, 100, 140), fault: models("backup", &["llama3", "mistral", "qwen"]) },
                Step { at: between(rng, 120, 170), fault: models("zombie-pc", &["llama3", "mistral"]) },
                Step { at: hang, fault: Fault::BackendHang(s("backup")) },
                Step { at: hang + between(rng, 5, 15), fault: Fault::BackendRelease(s("backup")) },
            ]
        },
    },
    Scenario {
        name: "conversations",
        about: "multi-turn chats beside the task load, kept on the hub that has their history (affinity on)",
        links_deliver: true,
        fail_rate: 0.0,
        repair_rate: 0.0,
        conversations: Conversations::WithAffinity,
        door_streams: false,
        plan: |_| Vec::new(),
    },
    Scenario {
        name: "conversations_off",
        about: "the same chats routed by load and latency alone (selection.affinity = false)",
        links_deliver: true,
        fail_rate: 0.0,
        repair_rate: 0.0,
        conversations: Conversations::WithoutAffinity,
        door_streams: false,
        plan: |_| Vec::new(),
    },
    Scenario {
        name: "door_streams",
        about: "streams through the master's AI door while hubs' backends die mid-stream, a hub crashes, the master loses a hub and a backend hangs",
        links_deliver: false,
        fail_rate: 0.0,
        repair_rate: 0.0,
        conversations: Conversations::None,
        door_streams: true,
        plan: |rng| {
            let down = between(rng, 30, 60);
            let crash = between(rng, 75, 100);
            let cut = between(rng, 120, 140);
            let hang = between(rng, 160, 175);
            let (first, second) = if rng.next_u64().is_multiple_of(2) {
                (s("zombie-pc"), s("backup"))
            } else {
                (s("backup"), s("zombie-pc"))
            };
            vec![
                Step { at: down, fault: Fault::BackendDown(first.clone()) },
                Step { at: down + between(rng, 8, 20), fault: Fault::BackendUp(first.clone()) },
                Step { at: crash, fault: Fault::Crash(second.clone()) },
                Step { at: crash + between(rng, 10, 25), fault: Fault::Restart(second.clone()) },
                Step { at: cut, fault: Fault::Partition(s("hetzner"), first.clone()) },
                Step { at: cut + between(rng, 8, 20), fault: Fault::Repair(s("hetzner"), first) },
                Step { at: hang, fault: Fault::BackendHang(second.clone()) },
                Step { at: hang + between(rng, 5, 15), fault: Fault::BackendRelease(second) },
            ]
        },
    },
];

pub fn find(name: &str) -> Option<Scenario> {
    SCENARIOS.iter().copied().find(|s| s.name == name)
}
