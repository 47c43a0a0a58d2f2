//! TLS for QUIC: a fresh self-signed certificate per node start, and a client that does not
//! check it, because peer identity comes from the PSK proof, not from a PKI (see `super`).

use std::sync::Arc;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// The ALPN protocol id of node-to-node QUIC, which is also the frames' wire version: postcard
/// carries no field tags, so two versions of a frame misread each other. A node of another
/// version fails the TLS handshake ("no application protocol") before any frame is read, and
/// stays offline to this one until both run the same version. Bump it with every change of
/// `Frame`'s encoding. 2: `TaskFrame.relay` and the typed `Frame::Streamed` head.
pub const ALPN: &[u8] = b"triforce/2";

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Streams a peer may have open at once: heartbeats and tasks in flight between two nodes. A
/// relayed answer holds its stream for as long as it streams (minutes for a long chat). At
/// 1,024 a burst of 1,000 streams plus the ones still closing made the sender wait for a
/// stream and miss the accept timeout; 2,048 carries 1,000 concurrent streams without an error
/// (`bench/front_door.sh`). Higher costs idle memory: quinn sizes per-connection state by it
/// (8,192 made an idle node 16 MB larger).
const BIDI_STREAMS_MAX: u32 = 2048;
/// Connection-wide receive window, in stream windows: how many full task frames may sit
/// unread per connection before the sender is held back.
const CONNECTION_WINDOW_FRAMES: u64 = 8;

/// Transport limits sized for what frames need: no unidirectional streams (no frame uses one),
/// a bounded number of bidirectional ones, a stream window that holds one whole frame and a
/// connection window of a few, so an unproved or hostile peer cannot make a node buffer more.
fn transport(idle_timeout_ms: u64, frame_bytes_max: usize) -> Arc<quinn::TransportConfig> {
    let mut transport = quinn::TransportConfig::default();
    let idle = quinn::VarInt::from_u64(idle_timeout_ms).unwrap_or(quinn::VarInt::MAX);
    transport.max_idle_timeout(Some(quinn::IdleTimeout::from(idle)));
    transport.keep_alive_interval(Some(std::time::Duration::from_millis(idle_timeout_ms / 3)));
    let stream_window = (frame_bytes_max as u64).saturating_add(4);
    let stream_window = quinn::VarInt::from_u64(stream_window).unwrap_or(quinn::VarInt::MAX);
    transport.stream_receive_window(stream_window);
    let connection_window = stream_window.into_inner() * CONNECTION_WINDOW_FRAMES;
    transport
        .receive_window(quinn::VarInt::from_u64(connection_window).unwrap_or(quinn::VarInt::MAX));
    transport.max_concurrent_uni_streams(0u32.into());
    transport.max_concurrent_bidi_streams(BIDI_STREAMS_MAX.into());
    Arc::new(transport)
}

/// A server config with a certificate made now by rcgen.
/// `frame_bytes_max` sizes the receive windows (see `transport`).
pub fn server_config(idle_timeout_ms: u64, frame_bytes_max: usize) -> quinn::ServerConfig {
    // Ed25519: fixed-length signatures keep handshake packets the same size on every run, which
    // the simulator's determinism relies on (ECDSA's DER signatures vary by a byte or two).
    let key_pair =
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("ring makes Ed25519 keys");
    let mut params =
        rcgen::CertificateParams::new(vec!["triforce-node".to_string()]).expect("a valid DNS name");
    // A fixed serial for the same reason: a random one changes the DER length now and then.
    // Nothing checks it; peers are identified by the PSK proof.
    params.serial_number = Some(rcgen::SerialNumber::from(1u64));
    let cert = params
        .self_signed(&key_pair)
        .expect("rcgen signs its own certificate");
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pair.serialize_der()));
    let chain = vec![CertificateDer::from(cert.der().to_vec())];
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("ring supports TLS 1.3")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("rcgen's certificate is valid");
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = QuicServerConfig::try_from(tls).expect("TLS 1.3 config suits QUIC");
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(transport(idle_timeout_ms, frame_bytes_max));
    config
}

pub fn client_config(idle_timeout_ms: u64, frame_bytes_max: usize) -> quinn::ClientConfig {
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("ring supports TLS 1.3")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(ProofVerifiesPeer(provider())))
        .with_no_client_auth();
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = QuicClientConfig::try_from(tls).expect("TLS 1.3 config suits QUIC");
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(transport(idle_timeout_ms, frame_bytes_max));
    config
}

/// Accepts any certificate (the PSK proof identifies the peer), but still checks that the
/// handshake is signed by the certificate's key, so the session is the server's own.
#[derive(Debug)]
struct ProofVerifiesPeer(Arc<CryptoProvider>);

impl ServerCertVerifier for ProofVerifiesPeer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
