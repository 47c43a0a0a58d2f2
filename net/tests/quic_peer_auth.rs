//! QUIC peers must prove the PSK from their own address; a peer that cannot is disconnected
//! and the node goes on serving the others.

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use triforce_core::auth::{HmacSha256Key, Keyring};
use triforce_core::config::{Federation, Settings};
use triforce_core::node::NodeId;
use triforce_net::clock::{Clock, SystemClock};
use triforce_net::load::NodeConfig;
use triforce_net::node::Node;
use triforce_net::quic::{
    client_config, make_proof, read_frame, write_frame, Frame, HandshakeError, Identity, Role,
};

const PSK: &[u8] = b"quic-test-psk-0123456789";

fn free_udp_port() -> u16 {
    loop {
        let port = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if ["127.0.0.2", "127.0.0.9"]
            .iter()
            .all(|ip| UdpSocket::bind(format!("{ip}:{port}")).is_ok())
        {
            return port;
        }
    }
}

fn config(port: u16) -> NodeConfig {
    let nodes = format!(
        r#"{{"hetzner": {{"ip":"127.0.0.1","port":{port},"cores":4,"ram":8,"gpu":null,"role":"master","name":"h"}},
            "zombie-pc": {{"ip":"127.0.0.2","port":{port},"cores":4,"ram":8,"gpu":"x","role":"hub","name":"z"}}}}"#
    );
    NodeConfig {
        dir: ".".into(),
        federation: Federation::parse(&nodes).unwrap(),
        settings: Settings::parse("[timing]\nheartbeat_interval_ms = 200\n").unwrap(),
        me: NodeId::new("hetzner").unwrap(),
        psk: PSK.to_vec(),
        accepted_psks: vec![],
        psk_from_env: false,
    }
}

/// An identity claiming `claim` with `psk`, as a rogue or honest peer would build it.
fn identity(claim: &str, psk: &[u8]) -> Identity {
    let ips = BTreeMap::from([
        (
            NodeId::new("hetzner").unwrap(),
            "127.0.0.1".parse().unwrap(),
        ),
        (
            NodeId::new("zombie-pc").unwrap(),
            "127.0.0.2".parse().unwrap(),
        ),
    ]);
    Identity {
        me: NodeId::new(claim).unwrap(),
        signing: HmacSha256Key::new(psk),
        keys: Keyring::from_psks(psk, &[]),
        window_s: 30,
        node_ips: ips,
        clock: Arc::new(SystemClock::new()) as Arc<dyn Clock>,
        timeout: Duration::from_secs(2),
    }
}

async fn connect(from: &str, to: SocketAddr) -> quinn::Connection {
    let mut endpoint = quinn::Endpoint::client(format!("{from}:0").parse().unwrap()).unwrap();
    endpoint.set_default_client_config(client_config(5_000, 1 << 20));
    endpoint
        .connect(to, "triforce-node")
        .unwrap()
        .await
        .unwrap()
}

/// Whether the server closes `connection` soon.
async fn closed_by_server(connection: &quinn::Connection) -> bool {
    matches!(
        tokio::time::timeout(Duration::from_secs(3), connection.closed()).await,
        Ok(quinn::ConnectionError::ApplicationClosed(_))
    )
}

async fn heartbeat(connection: &quinn::Connection) -> Result<u64, String> {
    let (mut send, mut recv) = connection.open_bi().await.map_err(|e| e.to_string())?;
    write_frame(&mut send, &Frame::Heartbeat { seq: 77 })
        .await
        .map_err(|e| e.to_string())?;
    let _ = send.finish();
    match read_frame(&mut recv, 4096)
        .await
        .map_err(|e| e.to_string())?
    {
        Frame::HeartbeatAnswer { seq, .. } => Ok(seq),
        other => Err(format!("{other:?}")),
    }
}

#[tokio::test]
async fn only_proved_peers_from_their_own_address_are_served() {
    let port = free_udp_port();
    let udp = UdpSocket::bind(format!("127.0.0.1:{port}")).unwrap();
    let node = Node::start(config(port), udp, Arc::new(SystemClock::new()), 1).unwrap();
    let server: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let hetzner = NodeId::new("hetzner").unwrap();

    // Without the PSK: the server refuses the proof and closes the connection.
    let rogue = connect("127.0.0.2", server).await;
    let refused = identity("zombie-pc", b"not-the-federation-psk")
        .prove_to(&rogue, &hetzner)
        .await;
    assert!(refused.is_err());
    assert!(
        closed_by_server(&rogue).await,
        "a peer without the PSK is disconnected"
    );

    // From an address that is no node's: dropped before the TLS handshake, so the handshake
    // never completes (and costs the node no signature).
    let mut stranger = quinn::Endpoint::client("127.0.0.9:0".parse().unwrap()).unwrap();
    stranger.set_default_client_config(client_config(5_000, 1 << 20));
    let handshake = stranger.connect(server, "triforce-node").unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(1500), handshake)
            .await
            .is_err(),
        "a stranger's QUIC handshake is never answered"
    );

    // An honest peer is proved both ways and served.
    let honest = connect("127.0.0.2", server).await;
    identity("zombie-pc", PSK)
        .prove_to(&honest, &hetzner)
        .await
        .unwrap();
    assert_eq!(heartbeat(&honest).await, Ok(77));

    // Expecting another node than the one answering fails on the client side too.
    let confused = connect("127.0.0.2", server).await;
    let wrong = identity("zombie-pc", PSK)
        .prove_to(&confused, &NodeId::new("zombie-pc").unwrap())
        .await;
    assert!(
        matches!(wrong, Err(HandshakeError::WrongPeer { .. })),
        "{wrong:?}"
    );

    // A proof copied from another connection: the exporter differs, so it fails.
    let exporter_of = |c: &quinn::Connection| {
        let mut value = [0u8; 32];
        c.export_keying_material(&mut value, b"EXPERIMENTAL triforce node proof", b"")
            .unwrap();
        value
    };
    let signing = HmacSha256Key::new(PSK);
    let unix_s = SystemClock::new().unix_s();
    let stolen = make_proof(
        &signing,
        Role::Client,
        &exporter_of(&honest),
        "zombie-pc",
        unix_s,
    );
    let replayer = connect("127.0.0.2", server).await;
    let (mut send, _recv) = replayer.open_bi().await.unwrap();
    write_frame(
        &mut send,
        &Frame::Hello {
            node: "zombie-pc".into(),
            unix_s,
            proof: stolen,
        },
    )
    .await
    .unwrap();
    let _ = send.finish();
    assert!(
        closed_by_server(&replayer).await,
        "a replayed proof is refused"
    );

    // No frame travels on a unidirectional stream, so a peer may open none.
    let opened = tokio::time::timeout(Duration::from_millis(500), honest.open_uni()).await;
    assert!(opened.is_err(), "a unidirectional stream was allowed");

    // A frame over the limit fails its own stream with a clear answer, not the connection
    // that carries the peer's other tasks and heartbeats.
    let (mut send, mut recv) = honest.open_bi().await.unwrap();
    let oversized = (2u32 << 20).to_be_bytes();
    send.write_all(&oversized).await.unwrap();
    let answer = read_frame(&mut recv, 4096).await.unwrap();
    let Frame::Outcome { result: Err(error) } = answer else {
        panic!("expected a refusal, got {answer:?}")
    };
    assert_eq!(
        error.code.as_str(),
        "request_too_large",
        "{}",
        error.message
    );
    assert_eq!(
        heartbeat(&honest).await,
        Ok(77),
        "the connection outlives the oversized frame"
    );

    // A proved peer that sends garbage is disconnected; the others are not affected.
    let garbler = connect("127.0.0.2", server).await;
    identity("zombie-pc", PSK)
        .prove_to(&garbler, &hetzner)
        .await
        .unwrap();
    let (mut send, _recv) = garbler.open_bi().await.unwrap();
    send.write_all(&[0, 0, 0, 3, 0xff, 0xff, 0xff])
        .await
        .unwrap();
    let _ = send.finish();
    assert!(
        closed_by_server(&garbler).await,
        "garbage frames cost the connection"
    );
    assert_eq!(
        heartbeat(&honest).await,
        Ok(77),
        "the node still serves the honest peer"
    );

    node.shutdown(Duration::ZERO).await;
}

/// Connections that have done the TLS handshake but not yet proved the PSK are capped (twice
/// the nodes, plus four): past the cap, handshakes go unanswered until unproved connections
/// time out, so one address cannot pile up half-open connections.
#[tokio::test]
async fn unproved_connections_are_capped() {
    let port = free_udp_port();
    let udp = UdpSocket::bind(format!("127.0.0.1:{port}")).unwrap();
    let mut config = config(port);
    // A 2 s heartbeat gives unproved connections 2 s to prove themselves: room for the test.
    config.settings = Settings::parse("[timing]\nheartbeat_interval_ms = 2000\n").unwrap();
    let node = Node::start(config, udp, Arc::new(SystemClock::new()), 1).unwrap();
    let server: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();

    let cap = 2 * 2 + 4;
    let mut endpoint = quinn::Endpoint::client("127.0.0.2:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(client_config(5_000, 1 << 20));
    let mut unproved = Vec::new();
    for _ in 0..cap {
        let connecting = endpoint.connect(server, "triforce-node").unwrap();
        unproved.push(
            connecting
                .await
                .expect("within the cap, handshakes complete"),
        );
    }
    let over = endpoint.connect(server, "triforce-node").unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(500), over)
            .await
            .is_err(),
        "a handshake past the cap of {cap} unproved connections was answered"
    );
    // The unproved ones are closed at their proof timeout; then handshakes are answered again.
    for connection in &unproved {
        assert!(
            closed_by_server(connection).await,
            "an unproved connection stayed open"
        );
    }
    let again = connect("127.0.0.2", server).await;
    identity("zombie-pc", PSK)
        .prove_to(&again, &NodeId::new("hetzner").unwrap())
        .await
        .expect("an honest peer is served once the unproved ones are gone");
    assert_eq!(heartbeat(&again).await, Ok(77));
    node.shutdown(Duration::ZERO).await;
}
