//! `triforce backend`: a small HTTP echo server, the stand-in for a local inference server in
//! benchmarks and tests: every POST gets `{"echo": <its JSON body>, "served_by": NAME}`.

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
}

pub async fn run(args: Args) -> Result<ExitCode> {
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let app = Router::new().fallback(post(echo)).with_state(args.name);
    axum::serve(listener, app).await?;
    Ok(ExitCode::SUCCESS)
}

async fn echo(State(name): State<String>, body: Bytes) -> Json<Value> {
    let echoed: Value = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    Json(json!({"echo": echoed, "served_by": name}))
}
