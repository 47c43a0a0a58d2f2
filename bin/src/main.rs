//! `triforce`: run a federation node, talk to one, or watch a demo federation on loopback.

/// glibc's allocator was a fifth of a node's CPU under load (bench/run.sh, perf); mimalloc's
/// thread-local free lists suit the many small, short-lived allocations of a request path.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod cmd;
mod sockets;
mod wireguard;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "triforce",
    version,
    about = "TriForce Federation: one front door for AI tasks across a few servers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where a node's configuration lives and which node this is.
#[derive(clap::Args, Clone)]
pub struct NodeArgs {
    /// Directory holding federation_nodes.json and, optionally, federation.toml.
    #[arg(long, value_name = "DIR")]
    pub config: PathBuf,
    /// This node's id in federation_nodes.json.
    #[arg(long, value_name = "NAME")]
    pub node: String,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node until SIGINT or SIGTERM (SIGHUP reloads its config). The PSK comes from
    /// TRIFORCE_PSK or psk_file.
    Run(cmd::run::Args),
    /// Show what a node knows about the federation.
    Status(cmd::status::Args),
    /// Make the running node read its config files again (as SIGHUP does) and say what
    /// changed, or why it refused them (its config then stays as it was).
    Reload(cmd::control::ReloadArgs),
    /// Drain a node: it finishes its running tasks and takes no new ones (peers learn it from
    /// its heartbeats). It stays up until stopped.
    Drain(cmd::control::DrainArgs),
    /// Submit a task through a node and print its outcome.
    Submit(cmd::submit::Args),
    /// Print the three signed headers for a request body, for use with curl.
    Sign(cmd::sign::Args),
    /// Start a 3-node federation on 127.0.0.1-3 and show routing, failover and recovery.
    Demo(cmd::demo::Args),
    /// Write a new federation's config: PSK, node list, settings, WireGuard keys and configs.
    Init(cmd::init::Args),
    /// Print one node's WireGuard (wg-quick) config from the keys `init` wrote.
    Wireguard(cmd::wireguard::Args),
    /// Load-test a node (signed tasks) or any HTTP endpoint; prints a JSON summary.
    Bench(cmd::bench::Args),
    /// A stand-in for a local inference server in tests and benchmarks: an HTTP echo server,
    /// or with --llm the OpenAI and Ollama APIs streaming made-up tokens.
    Backend(cmd::backend::Args),
    /// Manage the ingress's API keys (add prints the new key once).
    Apikey(cmd::apikey::Args),
    /// What each API key used at the door, per day and model (requests, errors, tokens), from
    /// this node's usage database, or with --all from every node.
    Usage(cmd::usage::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = match cli.command {
        // A node sizes its own runtime from its settings.
        Command::Run(args) => return report(cmd::run::run(args)),
        command => command,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match command {
            Command::Run(_) => unreachable!("handled above"),
            Command::Status(args) => cmd::status::run(args).await,
            Command::Reload(args) => cmd::control::reload(args).await,
            Command::Drain(args) => cmd::control::drain(args).await,
            Command::Submit(args) => cmd::submit::run(args).await,
            Command::Sign(args) => cmd::sign::run(args),
            Command::Demo(args) => cmd::demo::run(args).await,
            Command::Init(args) => cmd::init::run(args),
            Command::Apikey(args) => cmd::apikey::run(args),
            Command::Usage(args) => cmd::usage::run(args).await,
            Command::Wireguard(args) => cmd::wireguard::run(args),
            Command::Bench(args) => cmd::bench::run(args).await,
            Command::Backend(args) => cmd::backend::run(args).await,
        }
    });
    report(result)
}

/// Keeps the allocator's arenas in 4 KiB pages. mimalloc asks for transparent huge pages on
/// them (`MADV_HUGEPAGE`), so the first byte touched in a 2 MiB stretch makes all of it
/// resident: an idle node measured 29 MB RSS, 18 MB of it huge pages it barely uses, against
/// 12 MB without. A node's heap is small and short-lived; the TLB savings do not pay for that.
///
/// It runs as a load-time constructor, before the Rust runtime's first allocation, because
/// pages faulted before the flag is set stay huge.
extern "C" fn no_huge_pages() {
    // SAFETY: prctl with PR_SET_THP_DISABLE only sets a flag on this process; no pointers. On
    // a kernel without the option (before 3.15) it fails, and the process runs as before.
    unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
}

#[used]
#[link_section = ".init_array"]
static NO_HUGE_PAGES: extern "C" fn() = no_huge_pages;

/// The exit code of a command, with its error on stderr.
fn report(result: anyhow::Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
