//! Loading a node's configuration: the directory's two files, the PSK, and the chosen node.
//! Either everything loads and checks out, or the error names the one thing that is wrong.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use triforce_core::auth::PSK_LEN_MIN;
use triforce_core::config::{Federation, Settings, NODES_FILE, SETTINGS_FILE};
use triforce_core::node::{NodeId, NodeSpec};

/// The environment variable that may carry the PSK.
pub const PSK_ENV: &str = "TRIFORCE_PSK";

/// Everything a node needs from its config directory.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub dir: PathBuf,
    pub federation: Federation,
    pub settings: Settings,
    pub me: NodeId,
    /// The PSK this node signs with.
    pub psk: Vec<u8>,
    /// Further PSKs accepted (key rotation).
    pub accepted_psks: Vec<Vec<u8>>,
    /// Whether the PSK came from `TRIFORCE_PSK`: a reload then keeps it (the variable is gone
    /// from the environment once the node runs), so live rotation needs `psk_file`.
    pub psk_from_env: bool,
}

/// Why a config directory could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    // The cause is in the message, not a `source`: error chains (`{:#}`) would print it twice.
    #[error("cannot read {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(transparent)]
    Config(#[from] triforce_core::config::ConfigError),
    #[error("node {node:?} is not in {NODES_FILE}; it defines: {known}")]
    UnknownNode { node: String, known: String },
    #[error("no PSK: set {PSK_ENV}, or psk_file in {SETTINGS_FILE}")]
    NoPsk,
    #[error("the PSK from {from} is {len} bytes; at least {PSK_LEN_MIN} are required")]
    ShortPsk { from: String, len: usize },
    #[error("{path} has mode {mode:04o}: a key file must not be readable by group or others; run chmod 600 {path}")]
    KeyFileMode { path: PathBuf, mode: u32 },
}

impl NodeConfig {
    /// Loads `dir` for node `node`; the PSK comes from `psk_env` (the value of
    /// `TRIFORCE_PSK`, passed in so callers decide about the environment), else the settings.
    pub fn load(dir: &Path, node: &str, psk_env: Option<String>) -> Result<Self, LoadError> {
        let nodes_text = read(&dir.join(NODES_FILE))?;
        let federation = Federation::parse(&nodes_text)?;
        let settings_path = dir.join(SETTINGS_FILE);
        let settings = if settings_path.exists() {
            Settings::parse(&read(&settings_path)?)?
        } else {
            Settings::default()
        };
        let (me, _) = federation.get(node).ok_or_else(|| LoadError::UnknownNode {
            node: node.to_string(),
            known: federation.ids(),
        })?;
        let me = me.clone();
        let psk_from_env = psk_env.as_ref().is_some_and(|v| !v.is_empty());
        let psk = resolve_psk(dir, &settings, psk_env)?;
        let accepted_psks = settings
            .accepted_psk_files
            .iter()
            .map(|file| {
                let path = dir.join(file);
                let key = trim_newline(read_key_file(&path)?).into_bytes();
                check_psk_len(&key, &path.display().to_string())?;
                Ok(key)
            })
            .collect::<Result<_, LoadError>>()?;
        Ok(NodeConfig {
            dir: dir.to_path_buf(),
            federation,
            settings,
            me,
            psk,
            accepted_psks,
            psk_from_env,
        })
    }

    /// This config's directory loaded again for the same node, as a reload does: the PSK
    /// from the environment stays if it came from there.
    pub fn load_again(&self) -> Result<Self, LoadError> {
        let psk_env = self
            .psk_from_env
            .then(|| String::from_utf8_lossy(&self.psk).into_owned());
        Self::load(&self.dir, self.me.as_str(), psk_env)
    }

    pub fn my_spec(&self) -> &NodeSpec {
        &self.federation.nodes[&self.me]
    }

    pub fn spec(&self, id: &NodeId) -> Option<&NodeSpec> {
        self.federation.nodes.get(id)
    }

    pub fn my_ip(&self) -> IpAddr {
        self.my_spec().ip
    }

    /// The keys this node signs with and accepts.
    pub fn keyring(&self) -> triforce_core::auth::Keyring {
        triforce_core::auth::Keyring::from_psks(&self.psk, &self.accepted_psks)
    }
}

fn resolve_psk(
    dir: &Path,
    settings: &Settings,
    psk_env: Option<String>,
) -> Result<Vec<u8>, LoadError> {
    let (psk, from) = if let Some(env) = psk_env.filter(|v| !v.is_empty()) {
        (env, PSK_ENV.to_string())
    } else if let Some(file) = &settings.psk_file {
        let path = dir.join(file);
        (
            trim_newline(read_key_file(&path)?),
            path.display().to_string(),
        )
    } else if let Some(inline) = &settings.psk {
        (inline.clone(), format!("psk in {SETTINGS_FILE}"))
    } else {
        return Err(LoadError::NoPsk);
    };
    check_psk_len(psk.as_bytes(), &from)?;
    Ok(psk.into_bytes())
}

fn check_psk_len(psk: &[u8], from: &str) -> Result<(), LoadError> {
    if psk.len() < PSK_LEN_MIN {
        return Err(LoadError::ShortPsk {
            from: from.to_string(),
            len: psk.len(),
        });
    }
    Ok(())
}

/// Reads a PSK file, refusing one that group or others may read (as ssh refuses such keys):
/// whoever can read the PSK can sign as any node.
pub(crate) fn read_key_file(path: &Path) -> Result<String, LoadError> {
    use std::os::unix::fs::PermissionsExt;
    let metadata = std::fs::metadata(path).map_err(|error| LoadError::Read {
        path: path.to_path_buf(),
        error,
    })?;
    let mode = metadata.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(LoadError::KeyFileMode {
            path: path.to_path_buf(),
            mode,
        });
    }
    read(path)
}

fn read(path: &Path) -> Result<String, LoadError> {
    std::fs::read_to_string(path).map_err(|error| LoadError::Read {
        path: path.to_path_buf(),
        error,
    })
}

fn trim_newline(mut text: String) -> String {
    while text.ends_with('\n') || text.ends_with('\r') {
        text.pop();
    }
    text
}
