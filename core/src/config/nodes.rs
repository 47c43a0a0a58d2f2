//! `federation_nodes.json`: the seed's schema, keyed by node id.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use super::{ConfigError, NODES_FILE};
use crate::node::{NodeId, NodeSpec, Role};

/// Every node of the federation, by id. Ordered, so everything derived from it is too.
#[derive(Clone, Debug, PartialEq)]
pub struct Federation {
    pub nodes: BTreeMap<NodeId, NodeSpec>,
}

/// One node as written, before checking. Unknown fields are refused: a typo such as `cpus`
/// would otherwise silently leave a default in place.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    ip: String,
    port: u64,
    cores: u64,
    ram: u64,
    gpu: Option<String>,
    role: Role,
    name: String,
}

/// The top-level object, keeping duplicate keys visible (serde_json would keep the last).
struct NodeEntries(Vec<(String, serde_json::Value)>);

impl<'de> Deserialize<'de> for NodeEntries {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntriesVisitor;
        impl<'de> Visitor<'de> for EntriesVisitor {
            type Value = NodeEntries;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object mapping node ids to node descriptions")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NodeEntries, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(NodeEntries(entries))
            }
        }
        deserializer.deserialize_map(EntriesVisitor)
    }
}

impl Federation {
    /// Parses and checks the text of `federation_nodes.json`.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let entries: NodeEntries = serde_json::from_str(text).map_err(|e| ConfigError::Syntax {
            file: NODES_FILE.into(),
            message: e.to_string(),
        })?;
        let mut nodes = BTreeMap::new();
        for (key, value) in entries.0 {
            let id = NodeId::new(key.clone())
                .map_err(|e| ConfigError::invalid(NODES_FILE, format!("{key:?}"), e.to_string()))?;
            if nodes.contains_key(&id) {
                return Err(ConfigError::invalid(
                    NODES_FILE,
                    key,
                    "node id appears twice",
                ));
            }
            let raw: RawNode = serde_json::from_value(value)
                .map_err(|e| ConfigError::invalid(NODES_FILE, key.clone(), e.to_string()))?;
            nodes.insert(id, check_node(&key, raw)?);
        }
        let federation = Federation { nodes };
        federation.check_whole()?;
        Ok(federation)
    }

    fn check_whole(&self) -> Result<(), ConfigError> {
        if self.nodes.is_empty() {
            return Err(ConfigError::invalid(
                NODES_FILE,
                "(top level)",
                "no nodes are defined",
            ));
        }
        let mut endpoints = BTreeMap::new();
        for (id, spec) in &self.nodes {
            if let Some(other) = endpoints.insert((spec.ip, spec.port), id) {
                return Err(ConfigError::invalid(
                    NODES_FILE,
                    id.as_str(),
                    format!("{}:{} is already used by node {other}", spec.ip, spec.port),
                ));
            }
        }
        Ok(())
    }

    pub fn get(&self, id: &str) -> Option<(&NodeId, &NodeSpec)> {
        self.nodes.iter().find(|(k, _)| k.as_str() == id)
    }

    /// Every node's configured address: whom the source check and the QUIC proof bind to.
    pub fn node_ips(&self) -> BTreeMap<NodeId, IpAddr> {
        self.nodes
            .iter()
            .map(|(id, spec)| (id.clone(), spec.ip))
            .collect()
    }

    /// Every node id, comma-separated, for error messages that list the choices.
    pub fn ids(&self) -> String {
        self.nodes
            .keys()
            .map(NodeId::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn check_node(key: &str, raw: RawNode) -> Result<NodeSpec, ConfigError> {
    let field = |name: &str| format!("{key}.{name}");
    let ip: IpAddr = raw.ip.parse().map_err(|_| {
        ConfigError::invalid(
            NODES_FILE,
            field("ip"),
            format!("{:?} is not an IP address", raw.ip),
        )
    })?;
    let port = u16::try_from(raw.port)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| {
            ConfigError::invalid(
                NODES_FILE,
                field("port"),
                format!("{} is not a port (1-65535)", raw.port),
            )
        })?;
    let cores = u32::try_from(raw.cores)
        .ok()
        .filter(|c| *c > 0)
        .ok_or_else(|| ConfigError::invalid(NODES_FILE, field("cores"), "must be at least 1"))?;
    let ram = u32::try_from(raw.ram)
        .map_err(|_| ConfigError::invalid(NODES_FILE, field("ram"), "is too large"))?;
    if raw.gpu.as_deref().is_some_and(|g| g.trim().is_empty()) {
        return Err(ConfigError::invalid(
            NODES_FILE,
            field("gpu"),
            "use null for no GPU, not an empty string",
        ));
    }
    Ok(NodeSpec {
        ip,
        port,
        cores,
        ram,
        gpu: raw.gpu,
        role: raw.role,
        name: raw.name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = include_str!("../../../config/federation_nodes.json");

    #[test]
    fn the_seeds_file_loads_unchanged() {
        let federation = Federation::parse(SEED).unwrap();
        assert_eq!(federation.ids(), "backup, hetzner, zombie-pc");
        let (_, zombie) = federation.get("zombie-pc").unwrap();
        assert_eq!(zombie.gpu.as_deref(), Some("RX 6800 XT"));
        assert_eq!(zombie.ip, "10.10.0.2".parse::<IpAddr>().unwrap());
        let (_, hetzner) = federation.get("hetzner").unwrap();
        assert_eq!(
            (hetzner.cores, hetzner.ram, hetzner.role),
            (20, 62, Role::Master)
        );
    }

    fn error_of(text: &str) -> String {
        Federation::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn errors_name_the_node_and_field() {
        let node = |body: &str| format!(r#"{{"a": {{{body}}}}}"#);
        let base =
            r#""ip":"10.0.0.1","port":9000,"cores":4,"ram":8,"gpu":null,"role":"hub","name":"A""#;
        assert!(Federation::parse(&node(base)).is_ok());
        let e = error_of(&node(&base.replace("10.0.0.1", "10.0.0.300")));
        assert!(e.contains("a.ip") && e.contains("not an IP"), "{e}");
        let e = error_of(&node(&base.replace("9000", "70000")));
        assert!(e.contains("a.port"), "{e}");
        let e = error_of(&node(&base.replace(r#""cores":4"#, r#""cores":0"#)));
        assert!(e.contains("a.cores"), "{e}");
        let e = error_of(&node(&base.replace(r#""role":"hub""#, r#""role":"boss""#)));
        assert!(e.contains("a:") && e.contains("boss"), "{e}");
        let e = error_of(&node(&base.replace(r#""ram":8,"#, "")));
        assert!(e.contains("missing field `ram`"), "{e}");
        let e = error_of(&node(&format!(r#"{base},"cpus":3"#)));
        assert!(e.contains("unknown field `cpus`"), "{e}");
        let e = error_of(&format!(r#"{{"a": {{{base}}}, "a": {{{base}}}}}"#));
        assert!(e.contains("appears twice"), "{e}");
        let e = error_of(&format!(r#"{{"a:b": {{{base}}}}}"#));
        assert!(e.contains("only ASCII"), "{e}");
        let e = error_of(&format!(r#"{{"a": {{{base}}}, "b": {{{base}}}}}"#));
        assert!(e.contains("already used by node a"), "{e}");
        assert!(error_of("{}").contains("no nodes"));
        assert!(error_of("[1]").starts_with("federation_nodes.json:"));
    }
}
