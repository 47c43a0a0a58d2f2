//! The part of every answer translation that is the same whatever the client's API: a stream
//! (server-sent events) is read line by line and each line translated as it completes; any
//! other answer (a whole JSON document, an error) is kept, bounded, and translated once at its
//! end. Each client API supplies what its lines, its stream's end and its whole answers become
//! ([`AnswerDialect`]).

use serde_json::{Map, Value};

use super::sse::Lines;

/// The most bytes of a whole answer kept for its translation (a whole JSON document can only be
/// translated once it is all there). Far above any chat answer; a batch of embeddings can come
/// near it. Past it the client gets an error instead of the node's memory filling.
pub const WHOLE_ANSWER_KEPT_MAX: usize = 64 << 20;

/// What one client API makes of a Chat Completions answer; [`Translation`] feeds it.
pub trait AnswerDialect {
    /// The content type of a translated stream.
    const STREAM_CONTENT_TYPE: &'static str;
    /// One line of the backend's event stream, translated into `out`.
    fn event(&mut self, line: &[u8], out: &mut Vec<u8>);
    /// The backend's stream ended: what closes the translated one. A stream that never said it
    /// finished gets nothing: its client sees it end short, as it did.
    fn end(&mut self, out: &mut Vec<u8>);
    /// A whole answer (or an error) in the client's shape.
    fn whole(&mut self, body: &[u8]) -> Vec<u8>;
    /// What a whole answer over [`WHOLE_ANSWER_KEPT_MAX`] becomes.
    fn too_large(&self) -> Vec<u8>;
}

/// The translation of one answer, fed its body as it arrives.
#[derive(Debug)]
pub struct Translation<D> {
    /// Server-sent events, translated as they come; otherwise the whole body, kept to its end.
    streamed: bool,
    lines: Lines,
    pub(super) whole: Vec<u8>,
    /// The whole body outgrew [`WHOLE_ANSWER_KEPT_MAX`]: no more is kept.
    overflowed: bool,
    dialect: D,
}

impl<D: AnswerDialect> Translation<D> {
    /// The translation of an answer with `content_type` into `dialect`.
    pub(super) fn of(content_type: &str, dialect: D) -> Self {
        let media = content_type.split(';').next().unwrap_or_default().trim();
        Translation {
            streamed: media.eq_ignore_ascii_case("text/event-stream"),
            lines: Lines::default(),
            whole: Vec::new(),
            overflowed: false,
            dialect,
        }
    }

    /// The content type of the translated answer.
    pub fn content_type(&self) -> &'static str {
        if self.streamed {
            D::STREAM_CONTENT_TYPE
        } else {
            "application/json"
        }
    }

    /// The translated bytes that `piece` of the backend's body completes (often none).
    pub fn feed(&mut self, piece: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        if self.streamed {
            let dialect = &mut self.dialect;
            self.lines.feed(piece, |line| dialect.event(line, &mut out));
        } else if self.overflowed || self.whole.len() + piece.len() > WHOLE_ANSWER_KEPT_MAX {
            self.overflowed = true;
        } else {
            self.whole.extend_from_slice(piece);
        }
        out
    }

    /// The rest of the translation, once the backend's body has ended.
    pub fn finish(&mut self) -> Vec<u8> {
        if !self.streamed {
            if self.overflowed {
                return self.dialect.too_large();
            }
            let whole = std::mem::take(&mut self.whole);
            return self.dialect.whole(&whole);
        }
        let mut out = Vec::new();
        let dialect = &mut self.dialect;
        self.lines.finish(|line| dialect.event(line, &mut out));
        dialect.end(&mut out);
        out
    }
}

/// A Chat Completions `usage` as (prompt tokens, completion tokens).
pub(super) fn usage_counts(usage: &Map<String, Value>) -> (u64, u64) {
    let count = |name: &str| usage.get(name).and_then(Value::as_u64).unwrap_or(0);
    (count("prompt_tokens"), count("completion_tokens"))
}
