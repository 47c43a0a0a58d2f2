//! The last event of a stream that broke off before its end (a backend or a node died
//! mid-answer), written in the client's own API so that its SDK raises an error instead of
//! taking a short answer for a whole one. An event another API would write is no help: the
//! `anthropic` SDK skips an SSE event without an `event:` line, so an OpenAI-shaped error
//! there reads as a clean end.

use serde_json::json;

use crate::relay::{Dialect, RESPONSES_PATH};
use crate::usage::Framing;

/// Which API's error event ends a client's broken stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamBreak {
    /// OpenAI's Chat Completions and Completions: a `data:` event holding `error`.
    ChatCompletions,
    /// OpenAI's Responses API: an `error` event.
    Responses,
    /// Anthropic's Messages API: an `error` event with Anthropic's error object.
    Anthropic,
    /// Ollama's API: a last line holding `error`.
    Ollama,
}

/// The stable code a broken stream's event carries, where the API has a code.
const CODE: &str = "stream_interrupted";

impl StreamBreak {
    /// The break event for a client that spoke `dialect` to `path`.
    pub fn for_client(dialect: Dialect, path: &str) -> Self {
        match dialect {
            Dialect::OpenAi if path == RESPONSES_PATH => StreamBreak::Responses,
            Dialect::OpenAi => StreamBreak::ChatCompletions,
            Dialect::Anthropic => StreamBreak::Anthropic,
            Dialect::Ollama => StreamBreak::Ollama,
        }
    }

    /// The event saying `message` that ends a stream framed as `framing`; `None` for a whole
    /// document, where no event fits and the connection is aborted instead (every client
    /// reports that as an incomplete answer).
    pub fn event(self, framing: Framing, message: &str) -> Option<Vec<u8>> {
        let text = match framing {
            Framing::Whole => return None,
            // Whatever the client spoke, lines are Ollama's framing, and its error line.
            Framing::JsonLines => format!("{}\n", json!({"error": message})),
            Framing::ServerSentEvents => match self {
                StreamBreak::ChatCompletions | StreamBreak::Ollama => {
                    let error = json!({"error": {"message": message, "type": "server_error",
                                                 "param": null, "code": CODE}});
                    format!("data: {error}\n\n")
                }
                // The Responses API's own fields, and the `error` object the `openai` SDK
                // raises on (it raises on no other field of an event).
                StreamBreak::Responses => {
                    let error = json!({"type": "error", "code": CODE, "message": message,
                                       "param": null,
                                       "error": {"type": "server_error", "code": CODE,
                                                 "message": message}});
                    format!("event: error\ndata: {error}\n\n")
                }
                StreamBreak::Anthropic => {
                    let error = json!({"type": "error",
                                       "error": {"type": "api_error", "message": message}});
                    format!("event: error\ndata: {error}\n\n")
                }
            },
        };
        Some(text.into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::ANTHROPIC_MESSAGES_PATH;
    use serde_json::Value;

    /// The event's name (if any) and its data.
    fn sse(event: &[u8]) -> (Option<String>, Value) {
        let text = std::str::from_utf8(event).unwrap();
        assert!(text.ends_with("\n\n"), "{text}");
        let mut name = None;
        let mut data = Value::Null;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("event: ") {
                name = Some(rest.to_string());
            } else if let Some(rest) = line.strip_prefix("data: ") {
                data = serde_json::from_str(rest).unwrap();
            }
        }
        (name, data)
    }

    #[test]
    fn each_api_gets_its_own_error_event() {
        let sse_of = |dialect, path| {
            let event = StreamBreak::for_client(dialect, path)
                .event(Framing::ServerSentEvents, "gone")
                .unwrap();
            sse(&event)
        };
        let (name, chat) = sse_of(Dialect::OpenAi, "/v1/chat/completions");
        assert_eq!(name, None);
        assert_eq!(chat["error"]["message"], "gone");
        assert_eq!(chat["error"]["code"], CODE);

        let (name, responses) = sse_of(Dialect::OpenAi, RESPONSES_PATH);
        assert_eq!(name.as_deref(), Some("error"));
        assert_eq!(responses["type"], "error");
        assert_eq!(responses["message"], "gone");
        assert_eq!(responses["error"]["message"], "gone");

        let (name, anthropic) = sse_of(Dialect::Anthropic, ANTHROPIC_MESSAGES_PATH);
        assert_eq!(name.as_deref(), Some("error"));
        assert_eq!(anthropic["type"], "error");
        assert_eq!(anthropic["error"]["type"], "api_error");
        assert_eq!(anthropic["error"]["message"], "gone");
    }

    #[test]
    fn lines_end_with_an_error_line_and_whole_answers_with_none() {
        let ollama = StreamBreak::for_client(Dialect::Ollama, "/api/chat");
        assert_eq!(
            ollama.event(Framing::JsonLines, "gone").unwrap(),
            b"{\"error\":\"gone\"}\n"
        );
        assert_eq!(ollama.event(Framing::Whole, "gone"), None);
        let chat = StreamBreak::for_client(Dialect::OpenAi, "/v1/chat/completions");
        assert_eq!(chat.event(Framing::Whole, "gone"), None);
    }
}
