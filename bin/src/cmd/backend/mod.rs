//! `triforce backend`: stand-ins for a local inference server in benchmarks and tests.
//!
//! - By default an HTTP echo server: every POST gets `{"echo": <its JSON body>, "served_by":
//!   NAME}` (the `http` executor's backend).
//! - With `--llm`, the OpenAI and Ollama APIs ([`llm`]): chat, completions, generate and
//!   embeddings, streamed or whole, with made-up tokens at a set pace.

pub mod llm;

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::{Context, Result};
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

#[derive(clap::Args)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, value_name = "IP:PORT")]
    listen: SocketAddr,
    /// A name to put in every answer, to see which backend served a request.
    #[arg(long, default_value = "backend")]
    name: String,
    /// Speak the OpenAI and Ollama APIs instead of echoing.
    #[arg(long)]
    llm: bool,
    #[command(flatten)]
    llm_args: llm::LlmArgs,
}

pub async fn run(args: Args) -> Result<ExitCode> {
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let app = if args.llm {
        llm::router(args.name, args.llm_args)
    } else {
        Router::new().fallback(post(echo)).with_state(args.name)
    };
    axum::serve(listener, app).await?;
    Ok(ExitCode::SUCCESS)
}

async fn echo(State(name): State<String>, body: Bytes) -> Json<Value> {
    let echoed: Value = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    Json(json!({"echo": echoed, "served_by": name}))
}
