//! The token counts a backend reports in its answer, read as the answer passes the door.
//!
//! OpenAI's dialect reports `usage: {prompt_tokens, completion_tokens}` in a whole answer and,
//! when asked with `stream_options: {include_usage: true}`, in a last event of a stream whose
//! `choices` is empty. Ollama's reports `prompt_eval_count` and `eval_count` in a whole answer
//! and in the last line of a stream (`done: true`). [`UsageReader`] takes an answer's bytes in
//! whatever pieces they come and finds the counts, without holding a stream back: it keeps only
//! the line it is in the middle of.

use serde::Deserialize;

/// Tokens one request used, as its backend counted them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TokenUsage {
    pub prompt: u64,
    pub completion: u64,
}

/// How an answer's body is framed, from its content type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// `text/event-stream`: `data: {...}` events (OpenAI with `"stream": true`).
    ServerSentEvents,
    /// `application/x-ndjson`: one JSON document per line (Ollama's streams).
    JsonLines,
    /// One JSON document (an answer that does not stream).
    Whole,
}

impl Framing {
    /// The framing a `Content-Type` names.
    pub fn of(content_type: &str) -> Self {
        let media = content_type.split(';').next().unwrap_or_default().trim();
        if media.eq_ignore_ascii_case("text/event-stream") {
            Framing::ServerSentEvents
        } else if media.eq_ignore_ascii_case("application/x-ndjson") {
            Framing::JsonLines
        } else {
            Framing::Whole
        }
    }
}

/// Longest line (or whole JSON answer) the reader keeps to look for counts in. Counts sit in a
/// small last event or at the end of an answer of at most a few kB (embeddings are larger, and
/// their counts are found as long as the answer fits); anything longer is passed on unread.
pub const READ_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Reads the counts out of an answer fed to it piece by piece.
#[derive(Debug)]
pub struct UsageReader {
    framing: Framing,
    /// The line (or, for JSON, the document) read so far.
    pending: Vec<u8>,
    /// `pending` outgrew [`READ_BYTES_MAX`]: the rest of this line is skipped.
    overflowed: bool,
    usage: Option<TokenUsage>,
    error_event: bool,
}

/// What an answer reported, once it has ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AnswerReport {
    /// The backend's token counts, if it gave any.
    pub usage: Option<TokenUsage>,
    /// The stream carried an error event (`{"error": ...}`): the backend's, or the one the
    /// door writes when a stream breaks off.
    pub error_event: bool,
}

impl UsageReader {
    pub fn new(framing: Framing) -> Self {
        UsageReader {
            framing,
            pending: Vec::new(),
            overflowed: false,
            usage: None,
            error_event: false,
        }
    }

    /// Takes the next piece of the answer.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.framing == Framing::Whole {
            self.keep(bytes);
            return;
        }
        let mut rest = bytes;
        while let Some(end) = memchr::memchr(b'\n', rest) {
            let line = &rest[..end];
            rest = &rest[end + 1..];
            if self.pending.is_empty() && !self.overflowed {
                // The whole line is in this piece: read it where it is.
                self.read_line(line);
                continue;
            }
            self.keep(line);
            let overflowed = std::mem::replace(&mut self.overflowed, false);
            let pending = std::mem::take(&mut self.pending);
            if !overflowed {
                self.read_line(&pending);
            }
            // Keeps the allocation for the next line that spans two pieces.
            self.pending = pending;
            self.pending.clear();
        }
        self.keep(rest);
    }

    /// What the answer reported, once it has ended.
    pub fn finish(mut self) -> AnswerReport {
        if !self.overflowed {
            let last = std::mem::take(&mut self.pending);
            match self.framing {
                Framing::Whole => self.usage = counts_in(&last).or(self.usage),
                _ => self.read_line(&last),
            }
        }
        AnswerReport {
            usage: self.usage,
            error_event: self.error_event,
        }
    }

    fn keep(&mut self, bytes: &[u8]) {
        if self.overflowed {
            return;
        }
        if self.pending.len() + bytes.len() > READ_BYTES_MAX {
            self.overflowed = true;
            self.pending = Vec::new();
            return;
        }
        self.pending.extend_from_slice(bytes);
    }

    /// Reads one whole line of a stream.
    fn read_line(&mut self, line: &[u8]) {
        let json = match self.framing {
            Framing::ServerSentEvents => match line.strip_prefix(b"data:") {
                Some(data) => data,
                None => return,
            },
            _ => line,
        };
        if json.trim_ascii_start().starts_with(b"{\"error\"") {
            self.error_event = true;
        } else if let Some(usage) = counts_in(json) {
            self.usage = Some(usage);
        }
    }
}

/// What the door adds to an OpenAI streaming request whose client did not say what its stream
/// reports (`stream_options` absent): the backend's token counts in a last event.
const ASK_FOR_USAGE: &str = r#""stream_options":{"include_usage":true}"#;

/// `body`, a JSON object with `stream: true` and no `stream_options`, asking the backend for a
/// last event with its token counts (see [`crate::door::with_member`]). `None` if `body` is no
/// object.
pub fn asking_for_usage(body: &[u8]) -> Option<Vec<u8>> {
    crate::door::with_member(body, ASK_FOR_USAGE)
}

/// Takes out of an SSE stream the event the door asked for with [`asking_for_usage`] (counts,
/// no choices), which its client did not ask for and may not expect; every other byte passes
/// as it came. Events are passed whole: a piece that ends inside one keeps it until its end.
#[derive(Debug, Default)]
pub struct UsageEventFilter {
    /// The start of an event whose end has not come yet.
    carry: Vec<u8>,
}

impl UsageEventFilter {
    /// Whether `piece` can pass as it is: nothing carried, whole events only (it ends with a
    /// blank line), and no counts in it. Most pieces of a stream are one token's event.
    pub fn passes_whole(&self, piece: &[u8]) -> bool {
        self.carry.is_empty() && piece.ends_with(b"\n\n") && USAGE.find(piece).is_none()
    }

    /// The bytes of `piece` (after any carried ones) to pass on now.
    pub fn pass(&mut self, piece: &[u8]) -> Vec<u8> {
        self.carry.extend_from_slice(piece);
        let mut out = Vec::with_capacity(self.carry.len());
        let mut event_start = 0;
        let mut line_start = 0;
        while let Some(end) = memchr::memchr(b'\n', &self.carry[line_start..]) {
            let line_end = line_start + end;
            let line = &self.carry[line_start..line_end];
            line_start = line_end + 1;
            // A blank line ends the event.
            if line.is_empty() || line == b"\r" {
                let event = &self.carry[event_start..line_start];
                if !is_usage_only(event) {
                    out.extend_from_slice(event);
                }
                event_start = line_start;
            }
        }
        self.carry.drain(..event_start);
        // A stream that never ends its events is not held back for ever: past the limit, what
        // is carried goes on as it is.
        if self.carry.len() > READ_BYTES_MAX {
            out.append(&mut self.carry);
        }
        out
    }

    /// What is left when the stream ends: an event that never ended, passed as it is.
    pub fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.carry)
    }
}

/// Whether an SSE event is a usage report without choices (what `include_usage` adds).
fn is_usage_only(event: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct Shape<'a> {
        #[serde(borrow)]
        choices: Option<Vec<&'a serde_json::value::RawValue>>,
        usage: Option<&'a serde_json::value::RawValue>,
    }
    if USAGE.find(event).is_none() {
        return false;
    }
    let data = event
        .split(|b| *b == b'\n')
        .find_map(|line| line.strip_prefix(b"data:"));
    let Some(data) = data else {
        return false;
    };
    match serde_json::from_slice::<Shape>(data.trim_ascii()) {
        Ok(shape) => {
            shape.choices.is_some_and(|c| c.is_empty())
                && shape.usage.is_some_and(|u| u.get() != "null")
        }
        Err(_) => false,
    }
}

#[derive(Deserialize)]
struct Counts {
    #[serde(default)]
    usage: Option<OpenAiUsage>,
    /// OpenAI Responses' stream ends with the response object, its usage inside. (Ollama's
    /// `/api/generate` has a `response` too: its text.)
    #[serde(default)]
    response: Option<ResponseField>,
    #[serde(default)]
    prompt_eval_count: Option<u64>,
    #[serde(default)]
    eval_count: Option<u64>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ResponseField {
    Object {
        #[serde(default)]
        usage: Option<OpenAiUsage>,
    },
    Text(serde::de::IgnoredAny),
}

/// Chat Completions' names, or the Responses API's (`input_tokens`, `output_tokens`).
#[derive(Deserialize)]
struct OpenAiUsage {
    #[serde(default, alias = "input_tokens")]
    prompt_tokens: Option<u64>,
    #[serde(default, alias = "output_tokens")]
    completion_tokens: Option<u64>,
}

/// The counts in one JSON document, if it reports any. A byte search first: most events of a
/// stream are tokens, and parsing each would cost the stream more than relaying it.
fn counts_in(json: &[u8]) -> Option<TokenUsage> {
    let reports = USAGE.find(json).is_some() || EVAL_COUNT.find(json).is_some();
    if !reports {
        return None;
    }
    let counts: Counts = serde_json::from_slice(json.trim_ascii()).ok()?;
    let usage = counts.usage.or(match counts.response {
        Some(ResponseField::Object { usage }) => usage,
        _ => None,
    });
    if let Some(usage) = usage {
        if usage.prompt_tokens.is_some() || usage.completion_tokens.is_some() {
            return Some(TokenUsage {
                prompt: usage.prompt_tokens.unwrap_or(0),
                completion: usage.completion_tokens.unwrap_or(0),
            });
        }
    }
    if counts.prompt_eval_count.is_some() || counts.eval_count.is_some() {
        return Some(TokenUsage {
            prompt: counts.prompt_eval_count.unwrap_or(0),
            completion: counts.eval_count.unwrap_or(0),
        });
    }
    None
}

/// The searches for the two names counts go by, built once.
static USAGE: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\"usage\""));
static EVAL_COUNT: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\"eval_count\""));

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn read(framing: Framing, pieces: &[&[u8]]) -> Option<TokenUsage> {
        let mut reader = UsageReader::new(framing);
        for piece in pieces {
            reader.feed(piece);
        }
        reader.finish().usage
    }

    const OPENAI_STREAM: &str = concat!(
        "data: {\"choices\":[{\"delta\":{\"content\":\"usage\"}}],\"usage\":null}\n\n",
        "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n",
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":7,\"total_tokens\":19}}\n\n",
        "data: [DONE]\n\n"
    );

    const OLLAMA_STREAM: &str = concat!(
        "{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"eval_count\"},\"done\":false}\n",
        "{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done\":true,\"prompt_eval_count\":26,\"eval_count\":290}\n"
    );

    #[test]
    fn counts_in_each_dialect_and_framing() {
        let whole = br#"{"choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":5,"completion_tokens":2}}"#;
        let usage = |prompt, completion| Some(TokenUsage { prompt, completion });
        assert_eq!(read(Framing::Whole, &[whole]), usage(5, 2));
        assert_eq!(
            read(Framing::ServerSentEvents, &[OPENAI_STREAM.as_bytes()]),
            usage(12, 7)
        );
        assert_eq!(
            read(Framing::JsonLines, &[OLLAMA_STREAM.as_bytes()]),
            usage(26, 290)
        );
        let ollama_whole =
            br#"{"message":{"content":"x"},"done":true,"prompt_eval_count":3,"eval_count":1}"#;
        assert_eq!(read(Framing::Whole, &[ollama_whole]), usage(3, 1));
        let ollama_generate =
            br#"{"response":"x","done":true,"prompt_eval_count":3,"eval_count":1}"#;
        assert_eq!(read(Framing::Whole, &[ollama_generate]), usage(3, 1));
        let responses_whole = br#"{"object":"response","output":[],"usage":{"input_tokens":6,"output_tokens":3,"total_tokens":9}}"#;
        assert_eq!(read(Framing::Whole, &[responses_whole]), usage(6, 3));
        let responses_stream = b"event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"usage\":{\"input_tokens\":2,\"output_tokens\":8}}}\n\n";
        assert_eq!(
            read(Framing::ServerSentEvents, &[responses_stream]),
            usage(2, 8)
        );
        // Embeddings report prompt tokens only.
        let embeddings =
            br#"{"data":[{"embedding":[0.1]}],"usage":{"prompt_tokens":4,"total_tokens":4}}"#;
        assert_eq!(read(Framing::Whole, &[embeddings]), usage(4, 0));
    }

    #[test]
    fn an_answer_without_counts_has_none() {
        let stream = "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\ndata: [DONE]\n\n";
        assert_eq!(read(Framing::ServerSentEvents, &[stream.as_bytes()]), None);
        assert_eq!(read(Framing::Whole, &[b"{\"usage\":null}"]), None);
        assert_eq!(read(Framing::Whole, &[b"not json \"usage\""]), None);
        // A stream cut before its last event.
        let cut = &OPENAI_STREAM.as_bytes()[..OPENAI_STREAM.find("data: {\"choices\":[]").unwrap()];
        assert_eq!(read(Framing::ServerSentEvents, &[cut]), None);
    }

    #[test]
    fn a_line_over_the_limit_is_skipped_and_the_next_is_read() {
        let mut long = b"data: \"".to_vec();
        long.resize(READ_BYTES_MAX + 10, b'x');
        long.extend_from_slice(b"\"\n\n");
        let mut reader = UsageReader::new(Framing::ServerSentEvents);
        reader.feed(&long);
        reader.feed(OPENAI_STREAM.as_bytes());
        assert_eq!(
            reader.finish().usage,
            Some(TokenUsage {
                prompt: 12,
                completion: 7
            })
        );
    }

    #[test]
    fn the_framing_of_a_content_type() {
        assert_eq!(
            Framing::of("text/event-stream; charset=utf-8"),
            Framing::ServerSentEvents
        );
        assert_eq!(Framing::of("Application/X-NDJSON"), Framing::JsonLines);
        assert_eq!(Framing::of("application/json"), Framing::Whole);
    }

    #[test]
    fn the_door_asks_for_usage_without_touching_the_rest() {
        let body = br#" {"model":"m","stream":true}"#;
        let asked = asking_for_usage(body).unwrap();
        assert_eq!(
            asked,
            br#" {"stream_options":{"include_usage":true},"model":"m","stream":true}"#
        );
        let fields = crate::door::read_door_fields(&asked).unwrap();
        assert_eq!((fields.stream, fields.stream_options), (Some(true), true));
        assert_eq!(asking_for_usage(b"[1]"), None);
    }

    #[test]
    fn the_asked_for_event_is_taken_out_and_nothing_else() {
        let mut filter = UsageEventFilter::default();
        let mut out = filter.pass(OPENAI_STREAM.as_bytes());
        out.extend(filter.finish());
        let expected = OPENAI_STREAM.replace(
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":7,\"total_tokens\":19}}\n\n",
            "",
        );
        assert_eq!(String::from_utf8(out).unwrap(), expected);
        // An event with choices and usage (some servers put usage on the last choice) stays.
        let both = "data: {\"choices\":[{\"delta\":{}}],\"usage\":{\"prompt_tokens\":1}}\r\n\r\n";
        assert_eq!(filter.pass(both.as_bytes()), both.as_bytes());
    }

    proptest! {
        /// However the stream is cut, the filter passes the same bytes, and an event is never
        /// held past its end.
        #[test]
        fn the_filter_passes_the_same_bytes_however_cut(cuts in proptest::collection::vec(0usize..400, 0..12)) {
            let bytes = OPENAI_STREAM.as_bytes();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (bytes.len() + 1)).collect();
            cuts.sort_unstable();
            let mut filter = UsageEventFilter::default();
            let (mut out, mut from) = (Vec::new(), 0);
            // As the door does: a piece that can pass whole skips the filter's copy.
            let pass = |filter: &mut UsageEventFilter, piece: &[u8]| {
                if filter.passes_whole(piece) {
                    piece.to_vec()
                } else {
                    filter.pass(piece)
                }
            };
            for cut in cuts {
                out.extend(pass(&mut filter, &bytes[from..cut]));
                from = cut;
            }
            out.extend(pass(&mut filter, &bytes[from..]));
            prop_assert!(filter.carry.is_empty());
            let mut whole = UsageEventFilter::default();
            prop_assert_eq!(out, whole.pass(bytes));
        }

        /// However a stream is cut into pieces, the counts read are those of the whole.
        #[test]
        fn pieces_read_as_the_whole(cuts in proptest::collection::vec(0usize..400, 0..12), ollama: bool) {
            let (framing, text) = if ollama {
                (Framing::JsonLines, OLLAMA_STREAM)
            } else {
                (Framing::ServerSentEvents, OPENAI_STREAM)
            };
            let bytes = text.as_bytes();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (bytes.len() + 1)).collect();
            cuts.sort_unstable();
            let mut pieces = Vec::new();
            let mut from = 0;
            for cut in cuts {
                pieces.push(&bytes[from..cut]);
                from = cut;
            }
            pieces.push(&bytes[from..]);
            prop_assert_eq!(read(framing, &pieces), read(framing, &[bytes]));
            prop_assert!(read(framing, &[bytes]).is_some());
        }
    }
}
