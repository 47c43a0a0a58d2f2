//! quinn's socket seam over turmoil's UDP.
//!
//! turmoil's socket has no poll-based receive, so a task loops `recv_from` into a channel and
//! `poll_recv` polls that channel. Sends use `try_send_to`; writability is always ready (turmoil
//! queues without bound). One datagram per transmit; no fragmentation.

use std::fmt;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};
use tokio::sync::mpsc;

/// Largest datagram read; QUIC's are far smaller.
const DATAGRAM_BYTES_MAX: usize = 65_535;

pub struct SimUdpSocket {
    socket: Arc<turmoil::net::UdpSocket>,
    incoming: Mutex<mpsc::Receiver<(Vec<u8>, SocketAddr)>>,
    local: SocketAddr,
}

impl fmt::Debug for SimUdpSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimUdpSocket")
            .field("local", &self.local)
            .finish()
    }
}

impl SimUdpSocket {
    /// Binds `addr` (turmoil takes `0.0.0.0:port`) on the current simulated host and starts the
    /// receive loop there.
    pub async fn bind(addr: SocketAddr) -> io::Result<Arc<Self>> {
        let socket = Arc::new(turmoil::net::UdpSocket::bind(addr).await?);
        let local = socket.local_addr()?;
        let (tx, rx) = mpsc::channel(1024);
        let reader = socket.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; DATAGRAM_BYTES_MAX];
            while let Ok((len, from)) = reader.recv_from(&mut buf).await {
                if tx.send((buf[..len].to_vec(), from)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Arc::new(SimUdpSocket {
            socket,
            incoming: Mutex::new(rx),
            local,
        }))
    }
}

#[derive(Debug)]
struct AlwaysWritable;

impl UdpPoller for AlwaysWritable {
    fn poll_writable(self: Pin<&mut Self>, _cx: &mut Context) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl AsyncUdpSocket for SimUdpSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        Box::pin(AlwaysWritable)
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        self.socket
            .try_send_to(transmit.contents, transmit.destination)
            .map(|_| ())
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let mut incoming = self.incoming.lock().expect("socket lock");
        match incoming.poll_recv(cx) {
            Poll::Ready(Some((data, from))) => {
                let len = data.len().min(bufs[0].len());
                bufs[0][..len].copy_from_slice(&data[..len]);
                let received = RecvMeta {
                    addr: from,
                    len,
                    stride: len,
                    ..RecvMeta::default()
                };
                meta[0] = received;
                Poll::Ready(Ok(1))
            }
            Poll::Ready(None) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "socket closed",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }

    fn may_fragment(&self) -> bool {
        false
    }
}
