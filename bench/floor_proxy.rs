//! The stack's floor: the least a node built on tokio and hyper can cost per proxied request.
//!
//! One thread, hyper's HTTP/1 server, hyper_util's pooled client, mimalloc: the parts a node
//! uses, with nothing of the federation (no signature, ledger, selection or runner). Every
//! request is read whole and sent to one upstream, and the answer is read whole and returned.
//! `bench/run.sh` measures it next to nginx as path (f), so the node's cost splits into what the
//! stack costs on this machine and what the federation adds.
//!
//!     cargo run --release -p triforce --example floor_proxy -- 127.0.0.21:18000 http://127.0.0.11:18080/

use std::convert::Infallible;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::HOST;
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(upstream)) = (args.next(), args.next()) else {
        eprintln!("usage: floor_proxy LISTEN_ADDR UPSTREAM_URL");
        std::process::exit(2);
    };
    let upstream: Uri = match upstream.parse() {
        Ok(uri) => uri,
        Err(error) => {
            eprintln!("floor_proxy: {upstream} is not a URL: {error}");
            std::process::exit(2);
        }
    };
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let (client, upstream) = (client.clone(), upstream.clone());
        let service = hyper::service::service_fn(move |request| {
            proxy(client.clone(), upstream.clone(), request)
        });
        tokio::spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            let _ = connection.await;
        });
    }
}

/// `request` sent to `upstream` with its headers (but `Host`) and body; the answer returned as
/// it came, or 502 when the upstream fails.
async fn proxy(
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    upstream: Uri,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
        return Ok(status(StatusCode::BAD_REQUEST));
    };
    let mut out = Request::builder().method(parts.method).uri(upstream);
    for (name, value) in parts.headers.iter().filter(|(name, _)| *name != HOST) {
        out = out.header(name, value);
    }
    let Ok(out) = out.body(Full::new(body)) else {
        return Ok(status(StatusCode::BAD_REQUEST));
    };
    let Ok(answer) = client.request(out).await else {
        return Ok(status(StatusCode::BAD_GATEWAY));
    };
    let (parts, body) = answer.into_parts();
    match body.collect().await {
        Ok(body) => Ok(Response::from_parts(parts, Full::new(body.to_bytes()))),
        Err(_) => Ok(status(StatusCode::BAD_GATEWAY)),
    }
}

fn status(code: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = code;
    response
}
