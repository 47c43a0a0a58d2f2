//! The models each hub's backend serves as they change during a run, and how stale a node's
//! knowledge of them may be. A task naming a model may go only to a node whose backend listed
//! it recently enough that the news of its removal cannot have reached the sender yet: one
//! probe interval for the hub to see it, and the heartbeats that may be missed before the
//! sender stops trusting what it last heard.

use std::collections::BTreeMap;
use std::time::Duration;

use triforce_core::node::NodeId;

use crate::backend::backend_host;
use crate::record::Log;

/// The task type the hubs relay to their backends (an `openai` executor); the master has no
/// executor for it.
pub const LLM_TASK_TYPE: &str = "llm";

/// The models the load asks for. `phi` no backend ever serves.
pub const ASKED: [&str; 4] = ["llama3", "qwen", "mistral", "phi"];

/// What a hub's backend serves before any scenario changes it.
pub fn initial(host: &str) -> Vec<String> {
    let names: &[&str] = match host {
        "zombie-pc-llm" => &["llama3", "qwen"],
        "backup-llm" => &["llama3", "mistral"],
        _ => &["llama3"],
    };
    names.iter().map(|m| m.to_string()).collect()
}

/// Every backend host's model list over time.
#[derive(Default)]
pub struct ModelLists {
    /// Per host: each list and the time it took effect, oldest first.
    by_host: BTreeMap<String, Vec<(Duration, Vec<String>)>>,
}

impl ModelLists {
    fn history(&mut self, host: &str) -> &mut Vec<(Duration, Vec<String>)> {
        self.by_host
            .entry(host.to_string())
            .or_insert_with(|| vec![(Duration::ZERO, initial(host))])
    }

    /// What `host` serves now.
    pub fn now(&mut self, host: &str) -> Vec<String> {
        let history = self.history(host);
        history
            .last()
            .map(|(_, list)| list.clone())
            .unwrap_or_default()
    }

    /// `host` serves `models` from `at` on.
    pub fn set(&mut self, host: &str, at: Duration, models: Vec<String>) {
        self.history(host).push((at, models));
    }

    /// When `host` last stopped listing `model` at or before `at`, if it listed it before.
    pub fn dropped_at(&mut self, host: &str, model: &str, at: Duration) -> Option<Duration> {
        let history = self.history(host);
        history
            .windows(2)
            .filter(|pair| pair[1].0 <= at)
            .rfind(|pair| {
                pair[0].1.iter().any(|m| m == model) && !pair[1].1.iter().any(|m| m == model)
            })
            .map(|pair| pair[1].0)
    }

    /// Whether `host` listed `model` at any moment in `from..=to`.
    pub fn listed_within(&mut self, host: &str, model: &str, from: Duration, to: Duration) -> bool {
        let history = self.history(host);
        history.iter().enumerate().any(|(i, (start, list))| {
            let end = history.get(i + 1).map_or(Duration::MAX, |(next, _)| *next);
            *start <= to && end > from && list.iter().any(|m| m == model)
        })
    }
}

/// How long what a node knows of a backend's models may lag behind the backend.
#[derive(Clone, Copy, Debug)]
pub struct Staleness {
    /// How often a hub probes its backend.
    pub probe: Duration,
    /// How long a sender may go on trusting a peer's last heartbeat answer: the misses allowed
    /// before it goes offline, times the interval.
    pub heartbeats: Duration,
    /// Ticks, round trips, a probe's own time.
    pub slack: Duration,
}

impl Staleness {
    /// How long after a model left a backend its node may still be chosen for it.
    pub fn at_sender(&self) -> Duration {
        self.probe + self.heartbeats + self.slack
    }

    /// How long after a model left a backend that backend may still be asked for it: the hub
    /// checks its own last probe before relaying.
    pub fn at_node(&self) -> Duration {
        self.probe + self.slack
    }

    /// How long after its start a node advertises "any model": until its first probe and the
    /// heartbeat that carries it.
    pub fn unprobed(&self, interval: Duration) -> Duration {
        interval + self.probe + self.slack
    }
}

/// What the model checks need from the run.
#[derive(Clone, Copy, Debug)]
pub struct ModelRules {
    pub staleness: Staleness,
    pub interval: Duration,
}

impl Log {
    /// A node sent an attempt of `task_id` to `node` at `at`: if the task names a model, that
    /// node must run the task type and its backend must have listed the model recently
    /// enough, unless the node started too recently to have told anyone its list.
    pub fn check_model_dispatch(&mut self, task_id: &str, node: &NodeId, at: Duration) {
        let (Some(model), Some(rules)) =
            (self.asked_models.get(task_id).cloned(), self.model_rules)
        else {
            return;
        };
        if !self.relay_nodes.contains(node) {
            self.violation(format!(
                "{}: {LLM_TASK_TYPE} task {task_id} sent to {node}, which runs no {LLM_TASK_TYPE} executor",
                at.as_secs_f64()
            ));
            return;
        }
        if self.started_within(node, at, rules.staleness.unprobed(rules.interval)) {
            return;
        }
        let from = at.saturating_sub(rules.staleness.at_sender());
        if !self
            .models
            .listed_within(&backend_host(node.as_str()), &model, from, at)
        {
            self.violation(format!(
                "{}: task {task_id} for model {model} sent to {node}, whose backend has not listed it since {}",
                at.as_secs_f64(),
                from.as_secs_f64()
            ));
        }
    }

    /// `node`'s backend was asked for `model` by `task_id` at `at`. When it does not serve it,
    /// it must have listed it at the hub's last probe before the task came.
    pub fn check_backend_asked(&mut self, node: &NodeId, task_id: &str, model: &str, at: Duration) {
        let host = backend_host(node.as_str());
        if self.models.now(&host).iter().any(|m| m == model) {
            return;
        }
        let Some(rules) = self.model_rules else {
            return;
        };
        let sent = self
            .dispatches
            .get(task_id)
            .and_then(|ds| {
                ds.iter()
                    .rev()
                    .find(|(_, to)| to == node)
                    .map(|(at, _)| *at)
            })
            .unwrap_or(at);
        // The hub probes at its start: before that probe it knows no list to refuse by.
        if self.started_within(node, sent, rules.staleness.at_node()) {
            return;
        }
        let from = sent.saturating_sub(rules.staleness.at_node());
        if self.models.listed_within(&host, model, from, at) {
            return;
        }
        // The hub probes only an idle backend (a relay in flight, or one ended within the probe
        // interval, speaks for it instead): after the drop, it learns of it at its first probe
        // once the backend has been idle for an interval.
        let busy_until = self
            .models
            .dropped_at(&host, model, sent)
            .map(|dropped| self.busy_until(&host, dropped, rules.staleness.probe));
        let learned_by =
            busy_until.map(|busy| busy + 2 * rules.staleness.probe + rules.staleness.slack);
        if learned_by.is_none_or(|by| sent > by) {
            self.violation(format!(
                "{}: {host} asked for model {model} by task {task_id}, not listed since {}",
                at.as_secs_f64(),
                from.as_secs_f64()
            ));
        }
    }

    /// A model-naming task completed on `node` with `result` (the relayed answer's status and
    /// body): its backend's answer for that model, or its 404 for a model it had just dropped
    /// (which [`Self::check_backend_asked`] judged when it was asked).
    pub fn check_model_answer(
        &mut self,
        task_id: &str,
        model: &str,
        node: &NodeId,
        result: &serde_json::Value,
        at: Duration,
    ) {
        let body = &result["body"];
        let answered = result["status"] == 200
            && body["backend"] == backend_host(node.as_str()).as_str()
            && body["model"] == model;
        if !answered && result["status"] != 404 {
            self.violation(format!(
                "{}: task {task_id} for model {model} completed on {node} without its backend's answer: {result}",
                at.as_secs_f64()
            ));
        }
    }

    /// The end of the run of relayed requests to `host` that keeps its hub from probing it at
    /// `from`: requests that overlap, or follow one another within `probe`.
    fn busy_until(&self, host: &str, from: Duration, probe: Duration) -> Duration {
        let mut spans = self.relayed.get(host).cloned().unwrap_or_default();
        spans.sort();
        let mut busy_until = from;
        for (start, end) in spans {
            if start <= busy_until + probe && end + probe > busy_until {
                busy_until = busy_until.max(end);
            }
        }
        busy_until
    }

    fn started_within(&self, node: &NodeId, at: Duration, window: Duration) -> bool {
        self.started
            .get(node)
            .is_some_and(|started| at.saturating_sub(*started) <= window)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_within_follows_the_history() {
        let mut lists = ModelLists::default();
        let s = Duration::from_secs;
        assert!(lists.listed_within("backup-llm", "mistral", s(0), s(1)));
        lists.set("backup-llm", s(50), vec!["qwen".into()]);
        assert!(lists.listed_within("backup-llm", "mistral", s(40), s(60)));
        assert!(!lists.listed_within("backup-llm", "mistral", s(51), s(60)));
        assert!(lists.listed_within("backup-llm", "qwen", s(49), s(50)));
        assert!(!lists.listed_within("backup-llm", "qwen", s(10), s(49)));
        assert!(!lists.listed_within("backup-llm", "phi", s(0), s(100)));
        assert_eq!(lists.now("backup-llm"), ["qwen"]);
    }
}
