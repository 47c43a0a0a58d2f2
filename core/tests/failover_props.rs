//! Failover never repeats a node while others remain, and always ends, within its deadline,
//! with exactly one outcome.

use std::collections::BTreeSet;
use std::time::Duration;

use proptest::prelude::*;
use triforce_core::failover::{
    Action, ErrorCode, FailoverConfig, RemoteError, RetryBudget, TaskFailover, TaskOutcome,
};
use triforce_core::node::NodeId;
use triforce_core::time::Instant;

/// What the current attempt's node does next.
#[derive(Clone, Debug)]
enum Step {
    Accept(u64),
    Progress(u64),
    ConnectionError(u64),
    Busy(u64),
    Succeed(u64),
    Fail(u64),
    Silence,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0u64..3_000).prop_map(Step::Accept),
        (0u64..8_000).prop_map(Step::Progress),
        (0u64..3_000).prop_map(Step::ConnectionError),
        (0u64..3_000).prop_map(Step::Busy),
        (0u64..40_000).prop_map(Step::Succeed),
        (0u64..40_000).prop_map(Step::Fail),
        Just(Step::Silence),
    ]
}

proptest! {
    #[test]
    fn one_outcome_within_the_deadline_and_no_repeats(
        nodes in 0usize..6,
        steps in proptest::collection::vec(step(), 0..200),
        deadline_s in 1u64..200,
        reserve in 0u32..4,
    ) {
        let config = FailoverConfig { deadline: Duration::from_secs(deadline_s), ..FailoverConfig::default() };
        let candidates: Vec<NodeId> = (0..nodes).map(|i| NodeId::new(format!("n{i}")).unwrap()).collect();
        let mut budget = RetryBudget::new(0.0, reserve);
        let mut task = TaskFailover::new(config, candidates, Instant::ZERO, &mut budget);
        let mut now = Instant::ZERO;
        let mut dispatched: Vec<NodeId> = Vec::new();
        let mut outcomes = Vec::new();
        let mut steps = steps.into_iter();
        for _ in 0..10_000 {
            while let Some(action) = task.poll_action() {
                match action {
                    Action::Dispatch { node, .. } => dispatched.push(node),
                    // A fresh selection: every node again (the machine must skip tried ones),
                    // plus one node that was not in the first list.
                    Action::Reselect { tried } => {
                        prop_assert_eq!(&tried, &dispatched, "tried lists every attempt");
                        let mut fresh: Vec<NodeId> = (0..=nodes).map(|i| NodeId::new(format!("n{i}")).unwrap()).collect();
                        fresh.reverse();
                        task.handle_candidates(now, fresh, &mut budget);
                    }
                    Action::Abandon { .. } => {}
                }
            }
            if let Some(outcome) = task.poll_outcome() {
                outcomes.push(outcome);
            }
            let Some(node) = task.current_node().cloned() else { break };
            let remote = |retryable| RemoteError::new(if retryable { ErrorCode::Busy } else { ErrorCode::ExecutorFailed }, "x");
            match steps.next().unwrap_or(Step::Silence) {
                Step::Accept(dt) => { now = now + Duration::from_millis(dt); task.handle_accepted(now, &node) }
                Step::Progress(dt) => { now = now + Duration::from_millis(dt); task.handle_progress(now, &node) }
                Step::ConnectionError(dt) => { now = now + Duration::from_millis(dt); task.handle_connection_error(now, &node, "x".into(), &mut budget) }
                Step::Busy(dt) => { now = now + Duration::from_millis(dt); task.handle_answer(now, &node, Err(remote(true)), &mut budget) }
                Step::Fail(dt) => { now = now + Duration::from_millis(dt); task.handle_answer(now, &node, Err(remote(false)), &mut budget) }
                Step::Succeed(dt) => { now = now + Duration::from_millis(dt); task.handle_answer(now, &node, Ok(serde_json::json!(1).into()), &mut budget) }
                Step::Silence => {
                    let at = task.poll_timeout().expect("a running attempt has a timer");
                    now = now.max(at);
                    task.handle_timeout(now, &mut budget);
                }
            }
        }
        if let Some(outcome) = task.poll_outcome() {
            outcomes.push(outcome);
        }
        prop_assert!(task.poll_outcome().is_none());
        prop_assert_eq!(outcomes.len(), 1, "exactly one outcome");
        let unique: BTreeSet<_> = dispatched.iter().collect();
        prop_assert_eq!(unique.len(), dispatched.len(), "no node twice");
        prop_assert!(dispatched.len() <= nodes + 1, "the first list plus what reselection added");
        prop_assert!(dispatched.len() <= 1 + 10 * reserve as usize, "retries stay within the budget");
        let outcome = &outcomes[0];
        for attempt in outcome.attempts() {
            let end = attempt.started_at + attempt.duration;
            prop_assert!(end <= Instant::ZERO + Duration::from_secs(deadline_s), "ended within the deadline");
        }
        if nodes == 0 {
            let exhausted = matches!(outcome, TaskOutcome::AllNodesFailed { .. });
            prop_assert!(exhausted);
        }
    }
}
