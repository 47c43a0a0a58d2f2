//! The door-stream invariants: what a streaming client read through the master's AI door,
//! held against what the hubs' backends wrote (`crate::backend_stream`).
//!
//! - A stream is complete (every chunk once, in order, then its API's end: `[DONE]`, Ollama's
//!   `"done": true`) or ends with an error event after a prefix of the backend's text; never a
//!   clean end short of the backend's end, a broken connection, or silence.
//! - A failover never repeats a byte the client already read: what it read is always a prefix
//!   of the one text the backend writes.
//! - Nothing comes after the end or the error event.
//! - A complete stream of several chunks arrives in several reads (the door does not buffer).
//! - A client that leaves stops the backend: the backend sees its reader go within
//!   [`CANCEL_BOUND`] when nothing else happened meanwhile, within [`CANCEL_BOUND_FAULTED`]
//!   when a fault did (a partition holds the cancel until the QUIC connection times out).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::backend_stream::full_text;

/// A client's leaving reaches the backend within this when no fault is in the way: the door
/// sees the closed connection at its next write, the executing node at the next chunk.
pub const CANCEL_BOUND: Duration = Duration::from_secs(5);
/// With a fault in the way: the QUIC idle timeout (30 s) ends the relay's connection.
pub const CANCEL_BOUND_FAULTED: Duration = Duration::from_secs(40);

/// What a client is told when its model server did not finish in time
/// (`StreamFailure::BackendTimedOut`).
pub const HUNG_WORDING: &str = "did not finish the answer in time";

/// How a backend's stream ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendEnd {
    Complete,
    /// Its reader (the executing node) went away.
    ReaderLeft,
}

/// One backend's writing of a stream (a stream that failed over before its first byte has
/// one per backend that began it).
#[derive(Clone, Debug)]
struct BackendSide {
    host: String,
    wrote: u32,
    ended: Option<(Duration, BackendEnd)>,
}

/// The API a client streams in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientApi {
    /// `/v1/chat/completions`, server-sent events ending in `[DONE]`.
    OpenAi,
    /// `/api/chat`, JSON lines ending in one with `"done": true`.
    Ollama,
}

/// What a client asked of a stream.
#[derive(Clone, Debug)]
pub struct ClientPlan {
    pub id: String,
    pub api: ClientApi,
    pub chunks: u32,
    pub gap_ms: u64,
    pub hang_after: Option<u32>,
    /// Leave after reading the first words.
    pub cancel: bool,
}

/// How a client's stream ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientEnd {
    /// The API's end (`[DONE]`, `"done": true`) and then the body's end.
    Done,
    /// An error event and then the body's end.
    ErrorEvent,
    /// The body ended with neither.
    CleanEnd,
    /// The connection broke (or never opened).
    Broken(String),
    /// Nothing arrived for the client's patience.
    Stalled,
    /// Answered with this status instead of a stream.
    Refused(u16),
    /// The client left, as planned.
    Left,
}

/// What a client read.
#[derive(Clone, Debug)]
pub struct ClientRead {
    pub end: ClientEnd,
    pub text: String,
    /// Body reads that carried words.
    pub reads_with_words: u32,
    /// Events after the end or the error event.
    pub after_end: u32,
    /// What the error event said.
    pub error_message: Option<String>,
}

#[derive(Clone, Debug)]
struct ClientSide {
    plan: ClientPlan,
    opened: Duration,
    ended: Option<(Duration, ClientRead)>,
}

/// Every door stream of a run, from both ends, and when the plan's faults struck.
#[derive(Debug, Default)]
pub struct DoorStreams {
    backends: BTreeMap<String, Vec<BackendSide>>,
    clients: BTreeMap<String, ClientSide>,
    faults: Vec<Duration>,
}

impl DoorStreams {
    pub fn backend_began(&mut self, id: &str, host: &str) {
        self.backends
            .entry(id.to_string())
            .or_default()
            .push(BackendSide {
                host: host.to_string(),
                wrote: 0,
                ended: None,
            });
    }

    pub fn backend_wrote(&mut self, id: &str, chunks: u32) {
        if let Some(side) = self.latest(id) {
            side.wrote = chunks;
        }
    }

    pub fn backend_ended(&mut self, id: &str, at: Duration, how: BackendEnd) {
        if let Some(side) = self.latest(id) {
            side.ended = Some((at, how));
        }
    }

    fn latest(&mut self, id: &str) -> Option<&mut BackendSide> {
        self.backends.get_mut(id).and_then(|sides| sides.last_mut())
    }

    pub fn client_opened(&mut self, plan: ClientPlan, at: Duration) {
        let id = plan.id.clone();
        let side = ClientSide {
            plan,
            opened: at,
            ended: None,
        };
        self.clients.insert(id, side);
    }

    pub fn client_ended(&mut self, id: &str, at: Duration, read: ClientRead) {
        if let Some(side) = self.clients.get_mut(id) {
            side.ended = Some((at, read));
        }
    }

    /// A fault of the plan struck at `at`.
    pub fn fault_at(&mut self, at: Duration) {
        self.faults.push(at);
    }

    /// How each client's stream ended, by API, as the report counts them.
    pub fn ends(&self) -> Vec<(ClientApi, &'static str)> {
        self.clients
            .values()
            .map(|client| {
                let end = match client.ended.as_ref().map(|(_, read)| &read.end) {
                    Some(ClientEnd::Done) => "complete",
                    Some(ClientEnd::ErrorEvent) => "error event",
                    Some(ClientEnd::Left) => "client left",
                    Some(ClientEnd::Refused(_)) => "refused",
                    _ => "broken",
                };
                (client.plan.api, end)
            })
            .collect()
    }

    /// Every broken invariant, as messages.
    pub fn check(&self) -> Vec<String> {
        let mut violations = Vec::new();
        for (id, client) in &self.clients {
            let Some((at, read)) = &client.ended else {
                violations.push(format!(
                    "door stream {id}, opened at {:.2}, never ended",
                    client.opened.as_secs_f64()
                ));
                continue;
            };
            let at = at.as_secs_f64();
            if let Some(broken) = read_violation(&client.plan, read) {
                violations.push(format!("{at:.2}: door stream {id} {broken}"));
            }
            if let Some(still) = self.cancel_violation(id, client) {
                violations.push(format!("{at:.2}: door stream {id}: {still}"));
            }
            if let Some(wording) = self.hang_violation(client) {
                violations.push(format!("{at:.2}: door stream {id}: {wording}"));
            }
        }
        violations
    }

    /// Whether a fault of the plan struck from `from` to `to`, both included.
    fn fault_between(&self, from: Duration, to: Duration) -> bool {
        self.faults.iter().any(|fault| (from..=to).contains(fault))
    }

    /// Whether a stream whose backend hung, with nothing else going wrong meanwhile, was told
    /// anything but that the model server ran out of time.
    fn hang_violation(&self, client: &ClientSide) -> Option<String> {
        let (ended, read) = client.ended.as_ref()?;
        let faulted = self.fault_between(client.opened, *ended);
        if client.plan.hang_after.is_none() || read.end != ClientEnd::ErrorEvent || faulted {
            return None;
        }
        let message = read.error_message.as_deref().unwrap_or_default();
        (!message.contains(HUNG_WORDING))
            .then(|| format!("its backend hung, but its error event said {message:?}"))
    }

    /// Whether the backend went on writing a stream its client had left, past the bound.
    fn cancel_violation(&self, id: &str, client: &ClientSide) -> Option<String> {
        let (left, read) = client.ended.as_ref()?;
        if read.end != ClientEnd::Left {
            return None;
        }
        let side = self.backends.get(id)?.last()?;
        let faulted = self.fault_between(client.opened, *left + CANCEL_BOUND);
        let bound = if faulted {
            CANCEL_BOUND_FAULTED
        } else {
            CANCEL_BOUND
        };
        match side.ended {
            Some((ended, _)) if ended <= *left + bound => None,
            Some((ended, how)) => Some(format!(
                "its client left at {:.2}, but {} wrote on until {:.2} ({how:?}, {} chunks; bound {} s)",
                left.as_secs_f64(),
                side.host,
                ended.as_secs_f64(),
                side.wrote,
                bound.as_secs(),
            )),
            // The backend's host crashed under it: nothing writes any more.
            None if faulted => None,
            None => Some(format!(
                "its client left at {:.2}, but {} was still writing at the run's end ({} chunks)",
                left.as_secs_f64(),
                side.host,
                side.wrote
            )),
        }
    }
}

/// What is wrong with what a client read, if anything.
fn read_violation(plan: &ClientPlan, read: &ClientRead) -> Option<String> {
    let whole = full_text(plan.chunks);
    if !whole.starts_with(&read.text) {
        return Some(format!(
            "read {:?}, which is no prefix of the backend's {whole:?} (a repeated or foreign byte)",
            read.text
        ));
    }
    if read.after_end > 0 {
        return Some(format!("read {} events after its end", read.after_end));
    }
    match &read.end {
        ClientEnd::Done if read.text != whole => Some(format!(
            "ended as complete after {:?}, short of the backend's {whole:?}",
            read.text
        )),
        ClientEnd::Done if plan.hang_after.is_some() => {
            Some("completed, though its backend hung mid-answer".to_string())
        }
        ClientEnd::Done if plan.chunks >= 4 && read.reads_with_words < 2 => Some(format!(
            "arrived whole in one read: the door buffered {} chunks",
            plan.chunks
        )),
        ClientEnd::Done | ClientEnd::ErrorEvent | ClientEnd::Left => None,
        ClientEnd::CleanEnd => Some(format!(
            "ended cleanly after {:?}, with neither its end nor an error event",
            read.text
        )),
        ClientEnd::Broken(error) => Some(format!("broke off: {error}")),
        ClientEnd::Stalled => Some(format!("stalled after {:?}", read.text)),
        ClientEnd::Refused(status) if *status >= 500 => None,
        ClientEnd::Refused(status) => Some(format!("was refused with {status}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(chunks: u32) -> ClientPlan {
        ClientPlan {
            id: "s1".into(),
            api: ClientApi::OpenAi,
            chunks,
            gap_ms: 100,
            hang_after: None,
            cancel: false,
        }
    }

    fn read(end: ClientEnd, text: &str) -> ClientRead {
        ClientRead {
            end,
            text: text.into(),
            reads_with_words: 3,
            after_end: 0,
            error_message: None,
        }
    }

    #[test]
    fn a_failover_that_repeats_the_first_word_is_caught() {
        let repeated = read(ClientEnd::Done, "w0 w0 w1 w2 ");
        assert!(read_violation(&plan(3), &repeated)
            .expect("a violation")
            .contains("no prefix"));
    }

    #[test]
    fn a_short_stream_must_end_with_an_error_event() {
        assert_eq!(
            read_violation(&plan(3), &read(ClientEnd::ErrorEvent, "w0 ")),
            None
        );
        assert!(read_violation(&plan(3), &read(ClientEnd::CleanEnd, "w0 ")).is_some());
        assert!(read_violation(&plan(3), &read(ClientEnd::Done, "w0 ")).is_some());
        assert_eq!(
            read_violation(&plan(3), &read(ClientEnd::Done, "w0 w1 w2 ")),
            None
        );
    }

    #[test]
    fn a_backend_writing_on_after_its_client_left_is_caught() {
        let mut streams = DoorStreams::default();
        let mut client = plan(60);
        client.cancel = true;
        streams.client_opened(client, Duration::from_secs(10));
        streams.backend_began("s1", "backup-llm");
        streams.client_ended("s1", Duration::from_secs(11), read(ClientEnd::Left, "w0 "));
        streams.backend_ended("s1", Duration::from_secs(40), BackendEnd::Complete);
        let violations = streams.check();
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert!(violations[0].contains("wrote on until 40.00"));
    }
}
