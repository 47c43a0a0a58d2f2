//! What a node can run: its task types and, per relaying executor, its backend's models and
//! health. Advertised in every heartbeat answer (bounded), so selection sends a task only where
//! it can run, warm models first.

use serde::{Deserialize, Serialize};

/// Most task types, backends, or models per backend a node advertises; the rest are left out.
pub const CAPABILITY_ITEMS_MAX: usize = 256;
/// Longest name (task type or model) advertised; longer ones are left out.
pub const CAPABILITY_NAME_LEN_MAX: usize = 200;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// Task types with an executor on the node (built-ins included).
    pub task_types: Vec<String>,
    /// The backends of its relaying (`openai`) executors.
    pub backends: Vec<BackendState>,
    /// The node is draining (asked to, or stopping): it finishes what it runs and takes no
    /// new tasks.
    pub draining: bool,
}

/// One relaying executor's backend, as its node last saw it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendState {
    pub task_type: String,
    pub healthy: bool,
    /// Models it serves, from its last successful probe (kept while it is down, so a model
    /// that only an unhealthy backend has is told apart from one nobody has). Empty: unknown.
    pub models: Vec<String>,
    /// Models loaded in memory now (Ollama's `/api/ps`), which answer without a load delay.
    pub loaded: Vec<String>,
}

/// What a node offers for one task, best last.
/// Whether two model names name one model: Ollama's `name` and `name:latest` are the same
/// (Open WebUI appends `:latest` to a name without a tag; llama.cpp and vLLM list bare names).
pub fn same_model(a: &str, b: &str) -> bool {
    fn bare(name: &str) -> &str {
        name.strip_suffix(":latest").unwrap_or(name)
    }
    bare(a) == bare(b)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Offer {
    /// No executor for the task type.
    NoType,
    /// The type runs there, but its backend does not have the model.
    NoModel,
    /// Its backend for the type is down.
    Unhealthy,
    /// It could run the task but is draining: it takes no new work.
    Draining,
    /// It can run the task.
    Cold,
    /// It can run the task, with the model already loaded.
    Warm,
}

impl Offer {
    pub fn can_run(self) -> bool {
        self >= Offer::Cold
    }
}

fn bounded_names(names: &mut Vec<String>) {
    names.retain(|n| !n.is_empty() && n.len() <= CAPABILITY_NAME_LEN_MAX);
    names.truncate(CAPABILITY_ITEMS_MAX);
}

impl Capabilities {
    /// Cut to the advertised bounds: a peer cannot make another node hold more than this.
    pub fn bounded(mut self) -> Self {
        bounded_names(&mut self.task_types);
        self.backends
            .retain(|b| !b.task_type.is_empty() && b.task_type.len() <= CAPABILITY_NAME_LEN_MAX);
        self.backends.truncate(CAPABILITY_ITEMS_MAX);
        for backend in &mut self.backends {
            bounded_names(&mut backend.models);
            bounded_names(&mut backend.loaded);
        }
        self
    }

    pub fn runs(&self, task_type: &str) -> bool {
        self.task_types.iter().any(|t| t == task_type)
    }

    /// What the node offers for a task of `task_type` naming `model`.
    pub fn offer(&self, task_type: &str, model: Option<&str>) -> Offer {
        if self.draining {
            return Offer::Draining;
        }
        if !self.runs(task_type) {
            return Offer::NoType;
        }
        let Some(backend) = self.backends.iter().find(|b| b.task_type == task_type) else {
            // Not a relay (echo, http, command): a task naming a model is a request for a model
            // server, which such an executor would answer with something else entirely.
            return match model {
                Some(_) => Offer::NoModel,
                None => Offer::Cold,
            };
        };
        let has_model = |model: &str| {
            backend.models.is_empty() || backend.models.iter().any(|m| same_model(m, model))
        };
        match model {
            Some(model) if !has_model(model) => Offer::NoModel,
            _ if !backend.healthy => Offer::Unhealthy,
            Some(model) if backend.loaded.iter().any(|m| same_model(m, model)) => Offer::Warm,
            _ => Offer::Cold,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(healthy: bool, models: &[&str], loaded: &[&str]) -> Capabilities {
        let names = |list: &[&str]| list.iter().map(|s| s.to_string()).collect();
        Capabilities {
            task_types: vec!["chat".into(), "echo".into()],
            backends: vec![BackendState {
                task_type: "chat".into(),
                healthy,
                models: names(models),
                loaded: names(loaded),
            }],
            draining: false,
        }
    }

    #[test]
    fn a_name_and_its_latest_tag_are_one_model() {
        assert!(same_model("llama3", "llama3:latest"));
        assert!(same_model("llama3:latest", "llama3"));
        assert!(same_model("qwen", "qwen"));
        assert!(!same_model("llama3:8b", "llama3"));
        assert!(!same_model("llama3", "llama3.1"));
        let up = node(true, &["smollm2"], &["smollm2"]);
        assert_eq!(up.offer("chat", Some("smollm2:latest")), Offer::Warm);
    }

    #[test]
    fn offers() {
        let up = node(true, &["llama3", "qwen"], &["qwen"]);
        assert_eq!(up.offer("gpu_inference", None), Offer::NoType);
        assert_eq!(up.offer("echo", Some("llama3")), Offer::NoModel);
        assert_eq!(up.offer("echo", None), Offer::Cold);
        assert_eq!(up.offer("chat", Some("mistral")), Offer::NoModel);
        assert_eq!(up.offer("chat", Some("llama3")), Offer::Cold);
        assert_eq!(up.offer("chat", Some("qwen")), Offer::Warm);
        assert_eq!(up.offer("chat", None), Offer::Cold);
        let down = node(false, &["llama3"], &[]);
        assert_eq!(down.offer("chat", Some("llama3")), Offer::Unhealthy);
        assert_eq!(down.offer("chat", Some("mistral")), Offer::NoModel);
        // A backend that lists no models takes any.
        assert_eq!(node(true, &[], &[]).offer("chat", Some("x")), Offer::Cold);
        let draining = Capabilities {
            draining: true,
            ..up
        };
        assert_eq!(draining.offer("chat", Some("qwen")), Offer::Draining);
        assert!(!Offer::Draining.can_run());
    }

    #[test]
    fn bounded_drops_what_is_too_long_or_too_many() {
        let mut caps = node(true, &[], &[]);
        caps.backends[0].models = (0..1000).map(|i| format!("m{i}")).collect();
        caps.task_types
            .push("x".repeat(CAPABILITY_NAME_LEN_MAX + 1));
        let caps = caps.bounded();
        assert_eq!(caps.backends[0].models.len(), CAPABILITY_ITEMS_MAX);
        assert_eq!(caps.task_types, ["chat", "echo"]);
    }
}
