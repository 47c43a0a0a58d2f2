//! What a reload may change while the node runs, and what it changed: pure config policy. The
//! node reads the files and applies what passes; these decide.

use crate::node::{NodeId, NodeSpec};

use super::{Federation, Settings};

/// A part of the config the process set up at start (a socket, the runtime) that a reload
/// wants changed. The running config stays as it is.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{what} cannot change while the node runs (running: {running}; the files now say: {wanted}); restart the node to apply it, or put the old value back")]
pub struct NeedsRestart {
    pub what: &'static str,
    pub running: String,
    pub wanted: String,
}

/// Refuses a reload that would move this node (`me`, its entry in the nodes file) or change
/// what its process set up at start: the ingress listener, its TLS files, the usage database,
/// the runtime's threads.
pub fn restart_needed(
    (running_me, running): (&NodeSpec, &Settings),
    (wanted_me, wanted): (&NodeSpec, &Settings),
) -> Result<(), NeedsRestart> {
    let same = |what, running: String, wanted: String| {
        if running == wanted {
            Ok(())
        } else {
            Err(NeedsRestart {
                what,
                running,
                wanted,
            })
        }
    };
    same(
        "this node's address",
        format!("{}:{}", running_me.ip, running_me.port),
        format!("{}:{}", wanted_me.ip, wanted_me.port),
    )?;
    let (old, new) = (&running.ingress, &wanted.ingress);
    same(
        "[ingress] listen",
        format!("{:?}", old.listen),
        format!("{:?}", new.listen),
    )?;
    same(
        "[ingress] TLS files",
        format!("{:?} {:?}", old.tls_cert_file, old.tls_key_file),
        format!("{:?} {:?}", new.tls_cert_file, new.tls_key_file),
    )?;
    same(
        "[ingress] usage_db",
        old.usage_db.display().to_string(),
        new.usage_db.display().to_string(),
    )?;
    same(
        "limits.runtime_threads",
        running.limits.runtime_threads.to_string(),
        wanted.limits.runtime_threads.to_string(),
    )
}

/// Which nodes a reload of the nodes file adds, removes and moves to another address.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodesChanged {
    pub joined: Vec<NodeId>,
    pub left: Vec<NodeId>,
    pub moved: Vec<NodeId>,
}

pub fn nodes_changed(running: &Federation, wanted: &Federation) -> NodesChanged {
    let (old, new) = (&running.nodes, &wanted.nodes);
    NodesChanged {
        joined: new
            .keys()
            .filter(|id| !old.contains_key(*id))
            .cloned()
            .collect(),
        left: old
            .keys()
            .filter(|id| !new.contains_key(*id))
            .cloned()
            .collect(),
        moved: new
            .iter()
            .filter(|(id, spec)| {
                old.get(*id)
                    .is_some_and(|was| (was.ip, was.port) != (spec.ip, spec.port))
            })
            .map(|(id, _)| id.clone())
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(hetzner_port: u16, with_backup: bool) -> Federation {
        let backup = if with_backup {
            r#", "backup": {"ip":"10.10.0.3","port":9000,"cores":28,"ram":64,"gpu":null,"role":"hub","name":"b"}"#
        } else {
            ""
        };
        Federation::parse(&format!(
            r#"{{"hetzner": {{"ip":"10.10.0.1","port":{hetzner_port},"cores":20,"ram":62,"gpu":null,"role":"master","name":"h"}}{backup}}}"#
        ))
        .unwrap()
    }

    fn hetzner(federation: &Federation) -> &NodeSpec {
        federation.get("hetzner").unwrap().1
    }

    #[test]
    fn what_the_process_set_up_at_start_is_refused_with_its_name() {
        let (running, moved) = (nodes(9000, true), nodes(9001, true));
        let settings = Settings::default();
        let error = restart_needed((hetzner(&running), &settings), (hetzner(&moved), &settings))
            .unwrap_err();
        assert_eq!(error.what, "this node's address");
        assert!(error.to_string().contains("10.10.0.1:9001"), "{error}");
        let ingress = Settings::parse("[ingress]\nlisten = \"127.0.0.1:8080\"\n").unwrap();
        let error = restart_needed(
            (hetzner(&running), &settings),
            (hetzner(&running), &ingress),
        )
        .unwrap_err();
        assert_eq!(error.what, "[ingress] listen");
        // Timing and limits change live.
        let live = Settings::parse("[timing]\nheartbeat_interval_ms = 500\n").unwrap();
        assert!(restart_needed((hetzner(&running), &settings), (hetzner(&running), &live)).is_ok());
    }

    #[test]
    fn joined_left_and_moved_nodes_are_named() {
        let changed = nodes_changed(&nodes(9000, true), &nodes(9001, false));
        assert_eq!(changed.left, vec![NodeId::new("backup").unwrap()]);
        assert_eq!(changed.moved, vec![NodeId::new("hetzner").unwrap()]);
        assert!(changed.joined.is_empty());
        let changed = nodes_changed(&nodes(9000, false), &nodes(9000, true));
        assert_eq!(changed.joined, vec![NodeId::new("backup").unwrap()]);
        assert_eq!(
            nodes_changed(&nodes(9000, true), &nodes(9000, true)),
            NodesChanged::default()
        );
    }
}
