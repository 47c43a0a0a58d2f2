//! Offline exactly after `misses_max` consecutive misses; one answer brings a peer back; stale
//! answers never count.

use proptest::prelude::*;
use triforce_core::membership::{Answer, Load, Membership, MembershipConfig, PeerState};
use triforce_core::node::NodeId;
use triforce_core::time::Instant;

/// What happens to one probe.
#[derive(Clone, Copy, Debug)]
enum Fate {
    /// Answered this many ms after it was sent (always inside the interval).
    Answered(u64),
    /// Never answered.
    Lost,
    /// Answered after its deadline.
    Late(u64),
}

fn fate() -> impl Strategy<Value = Fate> {
    prop_oneof![
        (0u64..9_999).prop_map(Fate::Answered),
        Just(Fate::Lost),
        (10_000u64..25_000).prop_map(Fate::Late),
    ]
}

proptest! {
    #[test]
    fn offline_exactly_after_consecutive_misses(
        fates in proptest::collection::vec(fate(), 1..60),
        misses_max in 1u32..5,
        stale_seqs in proptest::collection::vec(0u64..200, 0..20),
    ) {
        let config = MembershipConfig { interval: std::time::Duration::from_secs(10), misses_max };
        let peer = NodeId::new("peer").unwrap();
        let mut m = Membership::new(config, [peer.clone()], Instant::ZERO);
        let mut consecutive = 0u32;
        let mut ever_answered = false;
        let mut late: Vec<(u64, u64)> = Vec::new();
        for (round, fate) in fates.iter().enumerate() {
            let sent_at = round as u64 * 10_000;
            m.handle_timeout(Instant::from_millis(sent_at));
            // The previous round's probe has now expired; check the state it left.
            let view = m.peer(&peer).unwrap();
            prop_assert_eq!(view.misses, consecutive);
            let expected = if consecutive >= misses_max {
                PeerState::Offline
            } else if ever_answered {
                PeerState::Online
            } else {
                PeerState::Unknown
            };
            prop_assert_eq!(view.state, expected, "round {}", round);
            let probe = m.poll_probe().expect("a probe every interval");
            prop_assert!(m.poll_probe().is_none());
            // Late answers and random stale sequence numbers arriving now change nothing.
            for (seq, _) in late.drain(..) {
                prop_assert_eq!(m.handle_answer(Instant::from_millis(sent_at), &peer, seq, Load::default()), Answer::Stale);
            }
            for seq in &stale_seqs {
                if *seq != probe.seq {
                    prop_assert_eq!(m.handle_answer(Instant::from_millis(sent_at), &peer, *seq, Load::default()), Answer::Stale);
                }
            }
            match *fate {
                Fate::Answered(after) => {
                    let counted = m.handle_answer(Instant::from_millis(sent_at + after), &peer, probe.seq, Load::default());
                    prop_assert_eq!(counted, Answer::Counted);
                    prop_assert_eq!(m.peer(&peer).unwrap().state, PeerState::Online);
                    consecutive = 0;
                    ever_answered = true;
                }
                Fate::Lost => consecutive += 1,
                Fate::Late(after) => {
                    late.push((probe.seq, after));
                    consecutive += 1;
                }
            }
            while m.poll_event().is_some() {}
        }
    }
}
