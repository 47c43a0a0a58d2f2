//! How the executors' HTTP client reaches a backend: the OS's TCP in production (hyper's own
//! connector), any other transport through [`Dial`]. The simulator passes turmoil's TCP, so a
//! backend is a host of its own there that can crash, hang or be cut off while its node runs.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

/// Longest wait for a backend to accept a connection. A backend is on this machine or its LAN,
/// where a connection is accepted in well under a millisecond even when the server is busy
/// (the kernel answers the handshake); one not accepted by then sits on a host that is gone
/// or cut off. Without this, a relay would wait out its whole answer timeout before the task
/// could run elsewhere.
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// A byte stream to a backend.
pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Stream for T {}

/// A connection being opened.
pub type Dialing = Pin<Box<dyn Future<Output = io::Result<Box<dyn Stream>>> + Send>>;

/// Opens connections to `host:port`.
pub trait Dial: Send + Sync + 'static {
    fn dial(&self, host: String, port: u16) -> Dialing;
}

/// A [`Dial`] as hyper's client wants its connector.
#[derive(Clone)]
pub struct Connector(pub Arc<dyn Dial>);

/// A connection a [`Dial`] opened.
pub struct Dialed(TokioIo<Box<dyn Stream>>);

impl tower::Service<Uri> for Connector {
    type Response = Dialed;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Dialed>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let Some(host) = uri.host().map(str::to_string) else {
            let error = io::Error::new(io::ErrorKind::InvalidInput, format!("no host in {uri}"));
            return Box::pin(std::future::ready(Err(error)));
        };
        let port = uri.port_u16().unwrap_or(80);
        let dialing = self.0.dial(host, port);
        Box::pin(async move {
            let stream = tokio::time::timeout(CONNECT_TIMEOUT, dialing)
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
            Ok(Dialed(TokioIo::new(stream)))
        })
    }
}

impl Connection for Dialed {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl hyper::rt::Read for Dialed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for Dialed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
