//! The adversary beside `backup`: it has backup's address and even the PSK, and keeps trying
//! to get the master to accept what it must refuse, over QUIC and over the HTTP shim.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use triforce_core::auth::{HmacSha256Key, Keyring};
use triforce_core::node::NodeId;
use triforce_net::clock::Clock;
use triforce_net::quic::{client_config, make_proof, write_frame, Frame, Identity, Role};

use crate::clock::SimClock;
use crate::config_changes::{signing_key, PSK};
use crate::http;
use crate::record::{sim_now, SharedLog};
use crate::socket::SimUdpSocket;
use crate::world::PORT;

/// A clock for the adversary: the host's, moved into the past.
struct Skewed {
    inner: SimClock,
    behind_s: u64,
}

impl Clock for Skewed {
    fn now(&self) -> triforce_core::time::Instant {
        self.inner.now()
    }
    fn unix_s(&self) -> u64 {
        self.inner.unix_s().saturating_sub(self.behind_s)
    }
}

/// Beside `backup` (its address, and even the PSK, as if it had stolen both), tries every 20 s
/// to get a QUIC connection to the master accepted with a wrong key, a stale proof and a
/// proof replayed from another connection. Every success is a violation.
pub async fn adversary(log: SharedLog, ip: IpAddr, seed: u64) {
    let master = NodeId::new("hetzner").expect("valid");
    let Some(endpoint) = adversary_endpoint(seed).await else {
        return;
    };
    let target = SocketAddr::new(turmoil::lookup("hetzner"), PORT);
    let ips = BTreeMap::from([
        (
            NodeId::new("hetzner").expect("valid"),
            turmoil::lookup("hetzner"),
        ),
        (NodeId::new("backup").expect("valid"), ip),
    ]);
    let identity = |psk: &[u8], behind_s: u64| Identity {
        me: NodeId::new("backup").expect("valid"),
        signing: HmacSha256Key::new(psk),
        keys: Keyring::from_psks(psk, &[]),
        window_s: 30,
        node_ips: ips.clone(),
        clock: Arc::new(Skewed {
            inner: SimClock::new(),
            behind_s,
        }),
        timeout: Duration::from_secs(5),
    };
    loop {
        tokio::time::sleep(Duration::from_secs(20)).await;
        let attempts: [(&str, &[u8], u64); 2] = [
            ("wrong key", b"a-guessed-wrong-psk-000", 0),
            ("stale proof", PSK, 120),
        ];
        for (what, psk, behind_s) in attempts {
            let Ok(connecting) = endpoint.connect(target, "triforce-node") else {
                continue;
            };
            let Ok(Ok(connection)) = tokio::time::timeout(Duration::from_secs(5), connecting).await
            else {
                continue;
            };
            log.lock().expect("log lock").adversary_attempts += 1;
            if identity(psk, behind_s)
                .prove_to(&connection, &master)
                .await
                .is_ok()
            {
                log.lock()
                    .expect("log lock")
                    .violation(format!("adversary's {what} was accepted"));
            }
            connection.close(0u32.into(), b"");
        }
        replay_a_proof(&endpoint, target, &log).await;
        refused_over_http(&log).await;
    }
}

/// One request the adversary sends, and the refusal it must get.
struct Hostile {
    what: &'static str,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    status: u16,
    code: &'static str,
}

/// The adversary at the master's HTTP shim, over turmoil's TCP from `backup`'s address: a
/// signature under a guessed key, a request signed as the master (with the stolen PSK) from
/// the wrong address, a captured request sent twice, and a body over the limit. Each must be
/// refused with its own code; anything else is a violation.
async fn refused_over_http(log: &SharedLog) {
    let master = SocketAddr::new(turmoil::lookup("hetzner"), PORT);
    let task = |id: &str| {
        // A type no node runs: the first, valid copy is answered 422 and runs nowhere.
        json!({"task_id": id, "type": "adversary_probe", "payload": {}, "priority": 1})
            .to_string()
            .into_bytes()
    };
    let n = log.lock().expect("log lock").adversary_attempts;
    let stolen = signing_key(log, "backup");
    let guessed = task(&format!("guessed-{n}"));
    let captured = task(&format!("captured-{n}"));
    let captured_headers = http::signed(stolen, "backup", &captured);
    let wrong_source = task(&format!("wrong-source-{n}"));
    let oversized = vec![b' '; (1 << 20) + 1];
    let attempts = [
        Hostile {
            what: "a guessed key",
            headers: http::signed(b"a-guessed-wrong-psk-000", "backup", &guessed),
            body: guessed,
            status: 401,
            code: "bad_signature",
        },
        Hostile {
            what: "the master's name from backup's address",
            headers: http::signed(stolen, "hetzner", &wrong_source),
            body: wrong_source,
            status: 403,
            code: "ip_not_allowed",
        },
        Hostile {
            what: "a captured request (first copy)",
            headers: captured_headers.clone(),
            body: captured.clone(),
            status: 422,
            code: "all_nodes_failed",
        },
        Hostile {
            what: "a captured request sent again",
            headers: captured_headers,
            body: captured,
            status: 401,
            code: "replay",
        },
        Hostile {
            what: "a body over the limit",
            headers: http::signed(stolen, "backup", b""),
            body: oversized,
            status: 413,
            code: "body_too_large",
        },
    ];
    for Hostile {
        what,
        headers,
        body,
        status,
        code,
    } in attempts
    {
        let Ok(answer) =
            http::exchange(master, "POST", "/v1/federation/task", &headers, body).await
        else {
            // Lost on the way (bursty loss): whether the node saw it is unknown, so the replay
            // that follows may be its first copy. The next round tries again.
            break;
        };
        let answered: serde_json::Value = serde_json::from_slice(&answer.body).unwrap_or_default();
        let mut log = log.lock().expect("log lock");
        log.adversary_attempts += 1;
        // A held link may deliver the request after its window: refused as expired, which
        // is as good a refusal as the one it was sent to provoke.
        let late = answer.status == 401 && answered["error"]["code"] == "expired";
        if !late && (answer.status != status || answered["error"]["code"] != code) {
            log.violation(format!(
                "{}: the adversary's HTTP request with {what} got {} {}, not {status} {code}",
                sim_now().as_secs_f64(),
                answer.status,
                String::from_utf8_lossy(&answer.body)
            ));
        }
    }
}

/// The adversary's QUIC endpoint beside `backup`, seeded so one seed gives one run.
async fn adversary_endpoint(seed: u64) -> Option<quinn::Endpoint> {
    let socket = SimUdpSocket::bind(SocketAddr::new(IpAddr::from([0, 0, 0, 0]), 0))
        .await
        .ok()?;
    let mut quic_seed = [0u8; 32];
    ChaCha8Rng::seed_from_u64(seed).fill_bytes(&mut quic_seed);
    let mut endpoint_config = quinn::EndpointConfig::default();
    endpoint_config.rng_seed(Some(quic_seed));
    let mut endpoint = quinn::Endpoint::new_with_abstract_socket(
        endpoint_config,
        None,
        socket,
        Arc::new(quinn::TokioRuntime),
    )
    .ok()?;
    endpoint.set_default_client_config(client_config(30_000, 1 << 20));
    Some(endpoint)
}

/// A proof made for one connection, sent on another: the node must refuse it.
async fn replay_a_proof(endpoint: &quinn::Endpoint, target: SocketAddr, log: &SharedLog) {
    let (Ok(first), Ok(second)) = (
        endpoint.connect(target, "triforce-node"),
        endpoint.connect(target, "triforce-node"),
    ) else {
        return;
    };
    let (Ok(Ok(first)), Ok(Ok(second))) = (
        tokio::time::timeout(Duration::from_secs(5), first).await,
        tokio::time::timeout(Duration::from_secs(5), second).await,
    ) else {
        return;
    };
    let mut exporter = [0u8; 32];
    if first
        .export_keying_material(&mut exporter, b"EXPERIMENTAL triforce node proof", b"")
        .is_err()
    {
        return;
    }
    let unix_s = SimClock::new().unix_s();
    let proof = make_proof(
        &HmacSha256Key::new(PSK),
        Role::Client,
        &exporter,
        "backup",
        unix_s,
    );
    log.lock().expect("log lock").adversary_attempts += 1;
    if let Ok((mut send, mut recv)) = second.open_bi().await {
        let _ = write_frame(
            &mut send,
            &Frame::Hello {
                node: "backup".into(),
                unix_s,
                proof,
            },
        )
        .await;
        let _ = send.finish();
        if let Ok(Ok(Frame::Welcome { .. })) = tokio::time::timeout(
            Duration::from_secs(5),
            triforce_net::quic::read_frame(&mut recv, 256),
        )
        .await
        {
            log.lock()
                .expect("log lock")
                .violation("adversary's replayed proof was accepted".into());
        }
    }
    first.close(0u32.into(), b"");
    second.close(0u32.into(), b"");
}
