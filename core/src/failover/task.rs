//! The per-task failover machine.

use std::collections::VecDeque;
use std::time::Duration;

use super::{
    AbandonReason, Action, AttemptError, AttemptRecord, ExhaustedReason, RemoteError, RetryBudget,
    TaskOutcome,
};
use crate::json::RawJson;
use crate::node::NodeId;
use crate::time::{earliest, Instant};

/// Failover timing; see the [module docs](super).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FailoverConfig {
    /// The longest a node gets to acknowledge a task; all it gets when its RTT is unknown.
    pub accept_timeout: Duration,
    /// The shortest: a node with a measured RTT gets [`ACCEPT_RTTS`] of them within these bounds
    /// (`accept_timeout` wins if the two cross).
    pub accept_timeout_min: Duration,
    pub progress_timeout: Duration,
    pub attempt_timeout: Duration,
    pub deadline: Duration,
}

impl Default for FailoverConfig {
    fn default() -> Self {
        FailoverConfig {
            accept_timeout: Duration::from_secs(2),
            accept_timeout_min: Duration::from_millis(250),
            progress_timeout: Duration::from_millis(1_500),
            attempt_timeout: Duration::from_secs(30),
            deadline: Duration::from_secs(120),
        }
    }
}

/// Round trips a node with a known RTT gets to acknowledge a task (the dispatch and the
/// acknowledgement are one; the rest is room for a busy node and a lost packet's resend).
pub const ACCEPT_RTTS: u32 = 4;

/// One node to try, with what the driver knows of its round-trip time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub node: NodeId,
    /// Smoothed RTT from heartbeats; `None` for this node itself or a peer not measured yet.
    pub rtt: Option<Duration>,
}

impl From<NodeId> for Target {
    fn from(node: NodeId) -> Self {
        Target { node, rtt: None }
    }
}

impl FailoverConfig {
    /// How long `target` gets to acknowledge: [`ACCEPT_RTTS`] round trips, bounded by
    /// `accept_timeout_min` and `accept_timeout`. A dead node is then found in a few RTTs
    /// instead of the fixed worst case, which is what a client waits when a node dies.
    pub fn accept_timeout_for(&self, target: &Target) -> Duration {
        match target.rtt {
            Some(rtt) => rtt
                .saturating_mul(ACCEPT_RTTS)
                .max(self.accept_timeout_min)
                .min(self.accept_timeout),
            None => self.accept_timeout,
        }
    }
}

#[derive(Clone, Debug)]
struct Current {
    node: NodeId,
    started_at: Instant,
    accept_timeout: Duration,
    /// Set by the acknowledgement; until then the accept timer runs.
    accepted: bool,
    last_heard: Instant,
}

/// Drives one task across its candidates. Feed it what happens to the current attempt; drain
/// [`Self::poll_action`]; it ends with exactly one [`TaskOutcome`] from [`Self::poll_outcome`].
#[derive(Clone, Debug)]
pub struct TaskFailover {
    config: FailoverConfig,
    candidates: VecDeque<Target>,
    current: Option<Current>,
    attempts: Vec<AttemptRecord>,
    deadline_at: Instant,
    now: Instant,
    actions: VecDeque<Action>,
    outcome: Option<TaskOutcome>,
    outcome_taken: bool,
    /// A `Reselect` is out and not yet answered.
    reselecting: bool,
}

impl TaskFailover {
    /// Starts a task over `candidates` (selection's order) and dispatches the first attempt.
    pub fn new<T: Into<Target>>(
        config: FailoverConfig,
        candidates: impl IntoIterator<Item = T>,
        now: Instant,
        budget: &mut RetryBudget,
    ) -> Self {
        let mut task = Self::blank(config, candidates, now);
        if task.candidates.is_empty() {
            task.finish_exhausted(ExhaustedReason::NoCandidates);
        } else {
            budget.handle_first_attempt(now);
            task.dispatch_next(now);
        }
        task
    }

    /// A task no node may take, ended at once with `reason`: no attempt, no budget spent.
    pub fn refused(config: FailoverConfig, reason: ExhaustedReason, now: Instant) -> Self {
        let mut task = Self::blank(config, Vec::<Target>::new(), now);
        task.finish_exhausted(reason);
        task
    }

    fn blank<T: Into<Target>>(
        config: FailoverConfig,
        candidates: impl IntoIterator<Item = T>,
        now: Instant,
    ) -> Self {
        TaskFailover {
            config,
            candidates: candidates.into_iter().map(Into::into).collect(),
            current: None,
            attempts: Vec::new(),
            deadline_at: now + config.deadline,
            now,
            actions: VecDeque::new(),
            outcome: None,
            outcome_taken: false,
            reselecting: false,
        }
    }

    /// The node running the current attempt, if any.
    pub fn current_node(&self) -> Option<&NodeId> {
        self.current.as_ref().map(|c| &c.node)
    }

    pub fn is_done(&self) -> bool {
        self.outcome.is_some() || self.outcome_taken
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.reselecting && !self.is_done() {
            return Some(self.deadline_at);
        }
        let current = self.current.as_ref()?;
        let silence = if current.accepted {
            current.last_heard + self.config.progress_timeout
        } else {
            current.started_at + current.accept_timeout
        };
        let attempt_end = current.started_at + self.config.attempt_timeout;
        earliest(Some(silence.min(attempt_end)), Some(self.deadline_at))
    }

    pub fn handle_timeout(&mut self, now: Instant, budget: &mut RetryBudget) {
        let now = self.advance(now);
        let Some(fired_at) = self.poll_timeout().filter(|t| *t <= now) else {
            return;
        };
        if self.reselecting {
            // The deadline passed while the driver owed an answer.
            self.reselecting = false;
            self.finish_exhausted(ExhaustedReason::Deadline);
            return;
        }
        let Some(current) = &self.current else {
            return;
        };
        let error = if now >= self.deadline_at {
            AttemptError::Deadline
        } else if now >= current.started_at + self.config.attempt_timeout {
            AttemptError::AttemptTimeout
        } else if !current.accepted && now >= current.started_at + current.accept_timeout {
            AttemptError::AcceptTimeout
        } else if current.accepted && now >= current.last_heard + self.config.progress_timeout {
            AttemptError::ProgressLost
        } else {
            return;
        };
        let node = current.node.clone();
        let reason = match &error {
            AttemptError::Deadline => AbandonReason::Deadline,
            AttemptError::AttemptTimeout => AbandonReason::AttemptTimeout,
            AttemptError::AcceptTimeout => AbandonReason::AcceptTimeout,
            _ => AbandonReason::ProgressLost,
        };
        self.actions.push_back(Action::Abandon { node, reason });
        // The attempt ended when its timer fired, even if the driver reports that late.
        self.fail_current_at(fired_at, now, error, budget);
    }

    /// `node` acknowledged the task. Acknowledgements from other nodes are ignored.
    pub fn handle_accepted(&mut self, now: Instant, node: &NodeId) {
        let now = self.advance(now);
        if self.poll_timeout().is_some_and(|t| t <= now) {
            // A timer expired first; the next handle_timeout acts on it.
            return;
        }
        if let Some(current) = self.current.as_mut().filter(|c| &c.node == node) {
            current.accepted = true;
            current.last_heard = now;
        }
    }

    /// `node` reported that the task is still running there.
    pub fn handle_progress(&mut self, now: Instant, node: &NodeId) {
        self.handle_accepted(now, node);
    }

    /// The call to `node` failed without an answer (connection refused, reset, closed).
    pub fn handle_connection_error(
        &mut self,
        now: Instant,
        node: &NodeId,
        message: String,
        budget: &mut RetryBudget,
    ) {
        // Timers that expired before this input act first, whatever order the driver saw.
        self.handle_timeout(now, budget);
        let now = self.now;
        if self.current.as_ref().is_some_and(|c| &c.node == node) {
            self.fail_current(now, AttemptError::Connection { message }, budget);
        }
    }

    /// `node` answered with the task's result or an error.
    pub fn handle_answer(
        &mut self,
        now: Instant,
        node: &NodeId,
        answer: Result<RawJson, RemoteError>,
        budget: &mut RetryBudget,
    ) {
        self.handle_timeout(now, budget);
        let now = self.now;
        if self.outcome.is_some() || self.outcome_taken {
            return;
        }
        let is_current = self.current.as_ref().is_some_and(|c| &c.node == node);
        let late_but_ran = self.attempts.iter().any(|a| {
            &a.node == node && a.error.as_ref().is_some_and(AttemptError::may_still_finish)
        });
        match answer {
            Ok(result) if is_current || late_but_ran => {
                if let Some(current) = self.current.take() {
                    if !is_current {
                        self.actions.push_back(Action::Abandon {
                            node: current.node.clone(),
                            reason: AbandonReason::Superseded,
                        });
                    }
                    let error = (!is_current).then_some(AttemptError::Deadline);
                    self.record(current, now, error);
                }
                if !is_current {
                    // The late attempt produced the outcome: its record carries no error now.
                    if let Some(record) = self.attempts.iter_mut().rev().find(|a| &a.node == node) {
                        record.error = None;
                    }
                }
                let attempts = std::mem::take(&mut self.attempts);
                self.outcome = Some(TaskOutcome::Completed {
                    node: node.clone(),
                    result,
                    attempts,
                });
            }
            Err(error) if is_current && error.retryable() => {
                self.fail_current(now, AttemptError::Remote(error), budget);
            }
            Err(error) if is_current => {
                let current = self.current.take().expect("is_current");
                self.record(current, now, Some(AttemptError::Remote(error.clone())));
                self.outcome = Some(TaskOutcome::Failed {
                    node: node.clone(),
                    error,
                    attempts: std::mem::take(&mut self.attempts),
                });
            }
            _ => {}
        }
    }

    /// The driver's answer to [`Action::Reselect`]: a fresh failover order. Nodes already
    /// tried are dropped from it; if none is left, the task ends as `AllTried`.
    pub fn handle_candidates<T: Into<Target>>(
        &mut self,
        now: Instant,
        candidates: impl IntoIterator<Item = T>,
        budget: &mut RetryBudget,
    ) {
        let now = self.advance(now);
        if !std::mem::take(&mut self.reselecting) || self.is_done() {
            return;
        }
        let mut fresh: Vec<Target> = Vec::new();
        for target in candidates.into_iter().map(Into::into) {
            let tried = self.attempts.iter().any(|a| a.node == target.node);
            if !tried && !fresh.iter().any(|f| f.node == target.node) {
                fresh.push(target);
            }
        }
        if now >= self.deadline_at {
            self.finish_exhausted(ExhaustedReason::Deadline);
        } else if fresh.is_empty() {
            self.finish_exhausted(ExhaustedReason::AllTried);
        } else if !budget.try_retry(now) {
            self.finish_exhausted(ExhaustedReason::RetryBudget);
        } else {
            self.candidates = fresh.into();
            self.dispatch_next(now);
        }
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The outcome, once; `None` before the task ends and after it was taken.
    pub fn poll_outcome(&mut self) -> Option<TaskOutcome> {
        let outcome = self.outcome.take();
        self.outcome_taken |= outcome.is_some();
        outcome
    }

    fn advance(&mut self, now: Instant) -> Instant {
        self.now = self.now.max(now);
        self.now
    }

    fn record(&mut self, current: Current, now: Instant, error: Option<AttemptError>) {
        self.attempts.push(AttemptRecord {
            duration: now.saturating_since(current.started_at),
            node: current.node,
            started_at: current.started_at,
            error,
        });
    }

    fn fail_current(&mut self, now: Instant, error: AttemptError, budget: &mut RetryBudget) {
        self.fail_current_at(now, now, error, budget);
    }

    /// Ends the current attempt as of `ended_at` (when its timer fired) and moves on at `now`.
    fn fail_current_at(
        &mut self,
        ended_at: Instant,
        now: Instant,
        error: AttemptError,
        budget: &mut RetryBudget,
    ) {
        let current = self
            .current
            .take()
            .expect("caller checked there is a current attempt");
        let deadline_hit = error == AttemptError::Deadline;
        let spends_budget = match &error {
            AttemptError::Remote(remote) => remote.spends_retry_budget(),
            _ => true,
        };
        self.record(current, ended_at, Some(error));
        if deadline_hit || now >= self.deadline_at {
            self.finish_exhausted(ExhaustedReason::Deadline);
        } else if self.candidates.is_empty() {
            self.reselecting = true;
            let tried = self.attempts.iter().map(|a| a.node.clone()).collect();
            self.actions.push_back(Action::Reselect { tried });
        } else if spends_budget && !budget.try_retry(now) {
            self.finish_exhausted(ExhaustedReason::RetryBudget);
        } else {
            self.dispatch_next(now);
        }
    }

    fn dispatch_next(&mut self, now: Instant) {
        let target = self
            .candidates
            .pop_front()
            .expect("caller checked a candidate remains");
        self.actions.push_back(Action::Dispatch {
            node: target.node.clone(),
            attempt: self.attempts.len() as u32 + 1,
        });
        self.current = Some(Current {
            accept_timeout: self.config.accept_timeout_for(&target),
            node: target.node,
            started_at: now,
            accepted: false,
            last_heard: now,
        });
    }

    fn finish_exhausted(&mut self, reason: ExhaustedReason) {
        self.outcome = Some(TaskOutcome::AllNodesFailed {
            reason,
            attempts: std::mem::take(&mut self.attempts),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failover::ErrorCode;

    fn id(s: &str) -> NodeId {
        NodeId::new(s).unwrap()
    }

    fn ms(n: u64) -> Instant {
        Instant::from_millis(n)
    }

    fn drain(task: &mut TaskFailover) -> Vec<Action> {
        std::iter::from_fn(|| task.poll_action()).collect()
    }

    #[test]
    fn accept_timeout_is_a_few_rtts_within_bounds() {
        let config = FailoverConfig::default();
        let target = |rtt_ms: Option<u64>| Target {
            node: id("a"),
            rtt: rtt_ms.map(Duration::from_millis),
        };
        // Unmeasured: the configured worst case.
        assert_eq!(
            config.accept_timeout_for(&target(None)),
            config.accept_timeout
        );
        // Near: the floor, not 4 x 1 ms.
        assert_eq!(
            config.accept_timeout_for(&target(Some(1))),
            config.accept_timeout_min
        );
        assert_eq!(
            config.accept_timeout_for(&target(Some(100))),
            Duration::from_millis(400)
        );
        // Far (or an absurd sample): never beyond the ceiling.
        assert_eq!(
            config.accept_timeout_for(&target(Some(5_000))),
            config.accept_timeout
        );
        assert_eq!(
            config.accept_timeout_for(&target(Some(u64::MAX))),
            config.accept_timeout
        );
        // A ceiling below the floor wins.
        let tight = FailoverConfig {
            accept_timeout: Duration::from_millis(100),
            ..config
        };
        assert_eq!(
            tight.accept_timeout_for(&target(Some(1))),
            Duration::from_millis(100)
        );

        // The machine times each attempt with its own target's timeout.
        let mut budget = RetryBudget::new(0.5, 10);
        let near_then_far = vec![
            Target {
                node: id("a"),
                rtt: Some(Duration::from_millis(100)),
            },
            Target {
                node: id("b"),
                rtt: None,
            },
        ];
        let mut task = TaskFailover::new(config, near_then_far, ms(0), &mut budget);
        drain(&mut task);
        assert_eq!(task.poll_timeout(), Some(ms(400)));
        task.handle_timeout(ms(400), &mut budget);
        assert_eq!(
            drain(&mut task),
            [
                Action::Abandon {
                    node: id("a"),
                    reason: AbandonReason::AcceptTimeout
                },
                Action::Dispatch {
                    node: id("b"),
                    attempt: 2
                }
            ]
        );
        assert_eq!(task.poll_timeout(), Some(ms(2_400)));
    }

    #[test]
    fn fails_over_fast_on_silence_and_completes() {
        let mut budget = RetryBudget::new(0.5, 10);
        let mut task = TaskFailover::new(
            FailoverConfig::default(),
            vec![id("a"), id("b")],
            ms(0),
            &mut budget,
        );
        assert_eq!(
            drain(&mut task),
            [Action::Dispatch {
                node: id("a"),
                attempt: 1
            }]
        );
        assert_eq!(task.poll_timeout(), Some(ms(2_000)));
        task.handle_timeout(ms(2_000), &mut budget);
        assert_eq!(
            drain(&mut task),
            [
                Action::Abandon {
                    node: id("a"),
                    reason: AbandonReason::AcceptTimeout
                },
                Action::Dispatch {
                    node: id("b"),
                    attempt: 2
                }
            ]
        );
        task.handle_accepted(ms(2_010), &id("b"));
        assert_eq!(task.poll_timeout(), Some(ms(3_510)));
        task.handle_answer(
            ms(2_500),
            &id("b"),
            Ok(RawJson::from(serde_json::json!(42))),
            &mut budget,
        );
        match task.poll_outcome().unwrap() {
            TaskOutcome::Completed {
                node,
                result,
                attempts,
            } => {
                assert_eq!(
                    (node, result),
                    (id("b"), RawJson::from(serde_json::json!(42)))
                );
                assert_eq!(attempts.len(), 2);
                assert_eq!(attempts[0].error, Some(AttemptError::AcceptTimeout));
                assert_eq!(attempts[0].duration, Duration::from_secs(2));
            }
            other => panic!("{other:?}"),
        }
        assert!(task.poll_outcome().is_none(), "exactly one outcome");
    }

    #[test]
    fn every_node_failing_lists_every_attempt() {
        let mut budget = RetryBudget::new(0.5, 10);
        let mut task = TaskFailover::new(
            FailoverConfig::default(),
            vec![id("a"), id("b")],
            ms(0),
            &mut budget,
        );
        task.handle_connection_error(ms(1), &id("a"), "refused".into(), &mut budget);
        let busy = RemoteError::new(ErrorCode::Busy, "queue full");
        task.handle_answer(ms(2), &id("b"), Err(busy), &mut budget);
        assert!(
            task.poll_outcome().is_none(),
            "first, a chance to select again"
        );
        assert_eq!(
            drain(&mut task).last(),
            Some(&Action::Reselect {
                tried: vec![id("a"), id("b")]
            })
        );
        // Selection offers only nodes already tried: they are not tried again.
        task.handle_candidates(ms(3), vec![id("b"), id("a")], &mut budget);
        match task.poll_outcome().unwrap() {
            TaskOutcome::AllNodesFailed { reason, attempts } => {
                assert_eq!(reason, ExhaustedReason::AllTried);
                assert_eq!(
                    attempts
                        .iter()
                        .map(|a| a.error.as_ref().unwrap().code())
                        .collect::<Vec<_>>(),
                    ["connection", "busy"]
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn executor_failure_is_final_and_a_late_result_still_counts() {
        let mut budget = RetryBudget::new(0.5, 10);
        let failed = RemoteError::new(ErrorCode::ExecutorFailed, "exit 1");
        let mut task = TaskFailover::new(
            FailoverConfig::default(),
            vec![id("a"), id("b")],
            ms(0),
            &mut budget,
        );
        task.handle_answer(ms(5), &id("a"), Err(failed), &mut budget);
        assert!(matches!(
            task.poll_outcome(),
            Some(TaskOutcome::Failed { .. })
        ));

        let mut task = TaskFailover::new(
            FailoverConfig::default(),
            vec![id("a"), id("b")],
            ms(0),
            &mut budget,
        );
        task.handle_accepted(ms(1), &id("a"));
        task.handle_timeout(ms(6_001), &mut budget);
        task.handle_answer(
            ms(6_500),
            &id("a"),
            Ok(RawJson::from(serde_json::json!("late"))),
            &mut budget,
        );
        let abandoned: Vec<Action> = drain(&mut task)
            .into_iter()
            .filter(|a| matches!(a, Action::Abandon { .. }))
            .collect();
        assert_eq!(
            abandoned.last(),
            Some(&Action::Abandon {
                node: id("b"),
                reason: AbandonReason::Superseded
            }),
            "b lost to a's late result: no evidence against b"
        );
        assert!(!AbandonReason::Superseded.is_peer_failure());
        let outcome = task.poll_outcome().unwrap();
        let TaskOutcome::Completed { node, attempts, .. } = outcome else {
            panic!()
        };
        assert_eq!(node, id("a"));
        assert_eq!(
            attempts[1].error,
            Some(AttemptError::Deadline),
            "b was abandoned"
        );
    }

    #[test]
    fn a_node_without_the_executor_costs_no_retry_budget() {
        // A budget with nothing in reserve and no first attempts to earn from: any retry
        // that spends it ends the task.
        let mut budget = RetryBudget::new(0.0, 0);
        let mut task = TaskFailover::new(
            FailoverConfig::default(),
            vec![id("a"), id("b"), id("c")],
            ms(0),
            &mut budget,
        );
        let no_executor = RemoteError::new(ErrorCode::NoExecutor, "no executor for type x");
        task.handle_answer(ms(1), &id("a"), Err(no_executor.clone()), &mut budget);
        task.handle_answer(ms(2), &id("b"), Err(no_executor), &mut budget);
        assert_eq!(
            task.current_node(),
            Some(&id("c")),
            "moved on twice for free"
        );
        let busy = RemoteError::new(ErrorCode::Busy, "queue full");
        task.handle_answer(ms(3), &id("c"), Err(busy), &mut budget);
        task.handle_candidates(ms(3), vec![id("d")], &mut budget);
        assert!(
            matches!(
                task.poll_outcome(),
                Some(TaskOutcome::AllNodesFailed {
                    reason: ExhaustedReason::RetryBudget,
                    ..
                })
            ),
            "a real failure still spends it"
        );
    }
}
