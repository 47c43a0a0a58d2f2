//! `triforce apikey`: the ingress's API keys. A key is shown once, when made; the file keeps
//! only its SHA-256, so a leaked config leaks no key.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use triforce_core::config::{
    key_hash, key_name_is_valid, ApiKey, ApiKeys, Settings, KEY_NAME_RULE, SETTINGS_FILE,
};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Make a key; it is printed once, as the last line of stdout.
    Add {
        #[arg(long, value_name = "DIR")]
        config: PathBuf,
        /// What the key is for (shown in logs and `apikey list`).
        #[arg(long)]
        name: String,
        /// Models the key may use (repeatable); any model when none is given.
        #[arg(long = "model", value_name = "MODEL")]
        models: Vec<String>,
        #[command(flatten)]
        limits: LimitArgs,
        /// The key may read the ingress's dashboard, which shows every node, model and task of
        /// the federation (whatever `--model` limits it to).
        #[arg(long)]
        dashboard: bool,
    },
    /// Change a key's limits (the ones given; 0 removes a limit); the node applies them from
    /// its next reload (`triforce reload`, SIGHUP) on.
    Set {
        #[arg(long, value_name = "DIR")]
        config: PathBuf,
        #[arg(long)]
        name: String,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// List the keys' names and limits (never the keys).
    List {
        #[arg(long, value_name = "DIR")]
        config: PathBuf,
    },
    /// Remove a key by name; clients using it are refused from the node's next reload
    /// (`triforce reload`, SIGHUP) on.
    Remove {
        #[arg(long, value_name = "DIR")]
        config: PathBuf,
        #[arg(long)]
        name: String,
    },
}

/// A key's limits; each one not given stays as it is (`set`) or is none (`add`); 0 = none.
#[derive(clap::Args)]
struct LimitArgs {
    /// Requests per minute.
    #[arg(long, value_name = "N")]
    requests_per_minute: Option<u32>,
    /// Prompt plus completion tokens per minute, as the backends count them.
    #[arg(long, value_name = "N")]
    tokens_per_minute: Option<u64>,
    /// Requests in flight at once.
    #[arg(long = "concurrent", value_name = "N")]
    concurrent_max: Option<u32>,
    /// The most completion tokens one request may ask for (max_tokens, num_predict); asking
    /// for more is refused, asking for none gets this.
    #[arg(long, value_name = "N")]
    max_tokens: Option<u32>,
    /// Tokens per UTC day (counted in the door's usage database).
    #[arg(long, value_name = "N")]
    tokens_per_day: Option<u64>,
    /// Tokens per UTC calendar month.
    #[arg(long, value_name = "N")]
    tokens_per_month: Option<u64>,
    /// Share of a saturated backend's queue against other keys' (1-100; default 1).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100))]
    weight: Option<u32>,
}

impl LimitArgs {
    /// Sets on `key` each limit given.
    fn apply(&self, key: &mut ApiKey) {
        let set = |field: &mut u32, value: Option<u32>| *field = value.unwrap_or(*field);
        let set_u64 = |field: &mut u64, value: Option<u64>| *field = value.unwrap_or(*field);
        set(&mut key.requests_per_minute, self.requests_per_minute);
        set_u64(&mut key.tokens_per_minute, self.tokens_per_minute);
        set(&mut key.concurrent_max, self.concurrent_max);
        set(&mut key.max_tokens, self.max_tokens);
        set_u64(&mut key.tokens_per_day, self.tokens_per_day);
        set_u64(&mut key.tokens_per_month, self.tokens_per_month);
        set(&mut key.weight, self.weight);
    }
}

pub fn run(args: Args) -> Result<ExitCode> {
    match args.command {
        Command::Add {
            config,
            name,
            models,
            limits,
            dashboard,
        } => {
            if !key_name_is_valid(&name) {
                bail!("key name {name:?} must be {KEY_NAME_RULE}");
            }
            if let Some(model) = models.iter().find(|m| m.is_empty() || m.len() > 200) {
                bail!("model {model:?} must be 1-200 bytes");
            }
            let path = keys_path(&config)?;
            let _lock = lock_keys(&path)?;
            let mut keys = read_keys(&path)?;
            if keys.keys.iter().any(|k| k.name == name) {
                bail!(
                    "{}: a key named {name:?} exists; remove it first or pick another name",
                    path.display()
                );
            }
            let key = new_key()?;
            let mut entry = ApiKey {
                models,
                dashboard,
                ..ApiKey::new(name.clone(), key_hash(&key))
            };
            limits.apply(&mut entry);
            keys.keys.push(entry);
            write_keys(&path, &keys)?;
            eprintln!(
                "added key {name:?} to {} (shown once; store it now)",
                path.display()
            );
            println!("{key}");
        }
        Command::List { config } => {
            let path = keys_path(&config)?;
            let keys = read_keys(&path)?;
            if keys.keys.is_empty() {
                println!("no keys in {}", path.display());
            }
            for key in &keys.keys {
                let models = if key.models.is_empty() {
                    "any model".to_string()
                } else {
                    key.models.join(", ")
                };
                let dashboard = if key.dashboard { "\tdashboard" } else { "" };
                println!("{}\t{models}\t{}{dashboard}", key.name, limits_text(key));
            }
        }
        Command::Set {
            config,
            name,
            limits,
        } => {
            let path = keys_path(&config)?;
            let _lock = lock_keys(&path)?;
            let mut keys = read_keys(&path)?;
            let Some(key) = keys.keys.iter_mut().find(|k| k.name == name) else {
                bail!("{}: no key named {name:?}", path.display());
            };
            limits.apply(key);
            let now = limits_text(key);
            write_keys(&path, &keys)?;
            eprintln!(
                "key {name:?} in {}: {now} (from the node's next reload)",
                path.display()
            );
        }
        Command::Remove { config, name } => {
            let path = keys_path(&config)?;
            let _lock = lock_keys(&path)?;
            let mut keys = read_keys(&path)?;
            let before = keys.keys.len();
            keys.keys.retain(|k| k.name != name);
            if keys.keys.len() == before {
                bail!("{}: no key named {name:?}", path.display());
            }
            write_keys(&path, &keys)?;
            eprintln!("removed key {name:?} from {}", path.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A key's limits in words, for `list` and `set`.
fn limits_text(key: &ApiKey) -> String {
    let limits: Vec<String> = [
        (u64::from(key.requests_per_minute), "requests/min"),
        (key.tokens_per_minute, "tokens/min"),
        (u64::from(key.concurrent_max), "at once"),
        (u64::from(key.max_tokens), "max_tokens"),
        (key.tokens_per_day, "tokens/day"),
        (key.tokens_per_month, "tokens/month"),
    ]
    .into_iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, what)| format!("{n} {what}"))
    .chain((key.weight > 1).then(|| format!("weight {}", key.weight)))
    .collect();
    if limits.is_empty() {
        "no limits".to_string()
    } else {
        limits.join(", ")
    }
}

/// The keys file named by the directory's settings (default `api_keys`).
fn keys_path(dir: &Path) -> Result<PathBuf> {
    let settings_path = dir.join(SETTINGS_FILE);
    let settings = if settings_path.exists() {
        let text = std::fs::read_to_string(&settings_path)
            .with_context(|| format!("cannot read {}", settings_path.display()))?;
        Settings::parse(&text)?
    } else {
        Settings::default()
    };
    Ok(dir.join(settings.ingress.api_keys_file))
}

fn read_keys(path: &Path) -> Result<ApiKeys> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(ApiKeys::parse(&path.display().to_string(), &text)?),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(ApiKeys::default()),
        Err(error) => Err(error).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Holds `path`'s lock file (`<file>.lock`, exclusively) while a command reads, changes and
/// writes the keys, so two `apikey add`s at once cannot lose one of the keys.
fn lock_keys(path: &Path) -> Result<std::fs::File> {
    let lock_path = sibling(path, ".lock");
    let lock = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&lock_path)
        .with_context(|| format!("cannot open the lock file {}", lock_path.display()))?;
    lock.lock()
        .with_context(|| format!("cannot lock {}", lock_path.display()))?;
    Ok(lock)
}

/// `path` with `suffix` added to its file name.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// Writes the file whole or not at all: a new temporary file in the same directory (mode
/// 0600, created exclusively and never through a symlink), synced, renamed over the old one,
/// and the directory synced so the rename survives a crash.
fn write_keys(path: &Path, keys: &ApiKeys) -> Result<()> {
    let mut nonce = [0u8; 8];
    getrandom::getrandom(&mut nonce).context("no OS randomness for a file name")?;
    let temporary = sibling(path, &format!(".{}.tmp", hex::encode(nonce)));
    let written = (|| -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&temporary)?;
        file.write_all(keys.to_toml().as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    })();
    if let Err(error) = written {
        let _ = std::fs::remove_file(&temporary);
        return Err(error).with_context(|| format!("cannot write {}", path.display()));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)
            .and_then(|dir| dir.sync_all())
            .with_context(|| format!("cannot sync {}", dir.display()))?;
    }
    Ok(())
}

/// `tf-` and 256 random bits in hex.
fn new_key() -> Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).context("no OS randomness for a key")?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("tf-{hex}"))
}
