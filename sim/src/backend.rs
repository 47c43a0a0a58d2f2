//! Backend hosts: what a hub's `http` executor calls, each on a turmoil host of its own
//! (`<node>-llm`), so a backend can crash, hang or come back while its node runs on.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use triforce_net::exec::{Dial, Dialing, Stream};

/// The port every backend host listens on.
pub const BACKEND_PORT: u16 = 8000;

/// The name of `node`'s backend host.
pub fn backend_host(node: &str) -> String {
    format!("{node}-llm")
}

/// Serves the backend until its host crashes: each POST sleeps the payload's `ms`, then
/// answers `{"slept_ms": ms, "backend": HOST}`.
pub async fn serve_backend(host: String) -> turmoil::Result {
    let any = SocketAddr::new(IpAddr::from([0, 0, 0, 0]), BACKEND_PORT);
    let listener = turmoil::net::TcpListener::bind(any).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let host = host.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| answer(host.clone(), request));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn answer(
    host: String,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let body = match request.into_body().collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let ms = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|payload| payload["ms"].as_u64())
        .unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(ms)).await;
    let answer = serde_json::json!({ "slept_ms": ms, "backend": host }).to_string();
    Ok(Response::new(Full::new(Bytes::from(answer))))
}

/// The executors' way to their backends in the simulator: turmoil's TCP.
pub struct SimDial;

impl Dial for SimDial {
    fn dial(&self, host: String, port: u16) -> Dialing {
        Box::pin(async move {
            let stream = turmoil::net::TcpStream::connect((host.as_str(), port)).await?;
            Ok(Box::new(stream) as Box<dyn Stream>)
        })
    }
}
