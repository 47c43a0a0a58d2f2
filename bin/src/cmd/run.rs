//! `triforce run`: one node until a signal.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::signal::unix::{signal, SignalKind};
use triforce_net::clock::SystemClock;
use triforce_net::node::Node;

use crate::sockets::{bind, check_address, load, rng_seed};
use crate::NodeArgs;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    node: NodeArgs,
}

/// Loads the node's config, starts a runtime of `limits.runtime_threads` threads and runs the
/// node on it until a signal.
pub fn run(args: Args) -> Result<ExitCode> {
    init_logs();
    let config = load(&args.node.config, &args.node.node)?;
    // The PSK is in the config now; out of the environment it goes, before any thread or child
    // process could see it (executors get a cleared environment too).
    std::env::remove_var(triforce_net::load::PSK_ENV);
    let mut builder = match config.settings.limits.runtime_threads {
        1 => tokio::runtime::Builder::new_current_thread(),
        threads => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            if threads > 1 {
                builder.worker_threads(threads);
            }
            builder
        }
    };
    let runtime = builder
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(config))
}

async fn serve(config: triforce_net::load::NodeConfig) -> Result<ExitCode> {
    check_address(&config)?;
    let spec = config.my_spec();
    let addr = SocketAddr::new(spec.ip, spec.port);
    let (udp, tcp) = bind(addr).await?;
    let drain = Duration::from_millis(config.settings.timing.drain_timeout_ms);
    // The ingress's keys and port are checked before the node starts: a door that cannot open
    // is a config error, not a node running without it.
    let ingress = match config.settings.ingress.listen {
        Some(listen) => {
            let (path, keys) = triforce_net::ingress::load_api_keys(&config)?;
            let tls = triforce_net::ingress::tls_acceptor(&config)?;
            let usage = triforce_net::usage::start_meter(&config)?;
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("ingress: cannot listen on {listen}"))?;
            let scheme = if tls.is_some() { "https" } else { "http" };
            tracing::info!(%listen, scheme, keys = keys.keys.len(), file = %path.display(), "ingress (OpenAI and Ollama APIs) listening");
            Some((listener, keys, tls, usage))
        }
        None => None,
    };
    let node = Node::start(config, udp, Arc::new(SystemClock::new()), rng_seed())?;
    tracing::info!(node = %node.id(), %addr, "node started (HTTP on TCP, QUIC on UDP)");
    let http = tokio::spawn(triforce_net::http::serve(node.clone(), tcp));
    let usage = ingress.as_ref().and_then(|(_, _, _, usage)| usage.clone());
    let ingress = ingress.map(|(listener, keys, tls, usage)| {
        let keys = triforce_net::ingress::KeyCheck::new(keys);
        let app = triforce_net::ingress::router(node.clone(), keys, usage);
        tokio::spawn(triforce_net::ingress::serve(
            node.clone(),
            app,
            listener,
            tls,
        ))
    });

    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut hangup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = terminate.recv() => {
                tracing::info!("SIGTERM: draining");
                break;
            }
            _ = interrupt.recv() => {
                tracing::info!("SIGINT: draining");
                break;
            }
            // The outcome is logged (one line naming the file and the cause when refused).
            _ = hangup.recv() => {
                let _ = node.reload_from_files().await;
            }
        }
    }
    let drained = node.shutdown(drain).await;
    if !drained {
        tracing::warn!(
            ?drain,
            "tasks still running at the drain limit; exiting anyway"
        );
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), http).await;
    if let Some(ingress) = ingress {
        let _ = tokio::time::timeout(Duration::from_secs(5), ingress).await;
    }
    // The counts of the last second, which the meter would write a moment from now.
    if let Some(usage) = usage {
        if let Err(error) = usage.flush() {
            tracing::warn!(%error, "the last usage counts were not written");
        }
    }
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,quinn=warn,rustls=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
