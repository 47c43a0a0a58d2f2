//! Translation between the APIs a client may speak and the one its backend speaks.
//!
//! Same dialect on both sides stays pass-through: the body as the client wrote it, the answer as
//! the backend wrote it. When they differ, the node that relays the request (it knows what its
//! backend speaks) translates the request once, and the answer piece by piece as it passes,
//! never holding a whole stream. Pure code: bytes in, bytes out, no IO.
//!
//! Translated so far: Ollama's client API (`/api/chat`, `/api/generate`, `/api/embed`,
//! `/api/embeddings`) to a backend that speaks only OpenAI's (llama.cpp's server, vLLM), and
//! OpenAI's Responses API (`/v1/responses`, stateless) and Anthropic's Messages API
//! (`/v1/messages`) to Chat Completions, which every backend serves. A field the backend cannot honour is refused with a [`Refusal`] naming it, never
//! dropped silently.

mod answer;
mod anthropic_answer;
mod anthropic_request;
mod for_ollama;
mod ollama_answer;
mod ollama_request;
mod responses_answer;
mod responses_request;
mod rfc3339;
#[cfg(test)]
mod shared_fields;
mod sse;
mod stream_break;

pub use answer::{AnswerDialect, Translation, WHOLE_ANSWER_KEPT_MAX};
pub use anthropic_answer::{AnthropicAnswer, AnthropicEvents};
pub use anthropic_request::anthropic_to_chat;
pub use for_ollama::check_openai_for_ollama;
pub use ollama_answer::{OllamaAnswer, OllamaEvents};
pub use ollama_request::{ollama_to_openai, ForOpenAi};
pub use responses_answer::{ResponsesAnswer, ResponsesEvents};
pub use responses_request::{responses_to_chat, ForChat};
pub use stream_break::StreamBreak;

/// Sets a translated Chat Completions request's `stream`; a stream asks for the token counts
/// too, which every client API's answer reports and the door's usage accounting reads.
fn set_stream(out: &mut serde_json::Map<String, serde_json::Value>, stream: bool) {
    out.insert("stream".into(), serde_json::Value::Bool(stream));
    if stream {
        out.insert(
            "stream_options".into(),
            serde_json::json!({"include_usage": true}),
        );
    }
}

/// A message's content parts as Chat Completions takes them: a single text part as a plain
/// text, which every backend takes (llama-cpp-python's chat templates fail on a list of parts
/// with "can only concatenate str (not list) to str"), any other list as parts.
fn chat_content(mut parts: Vec<serde_json::Value>) -> serde_json::Value {
    if parts.len() == 1 && parts[0]["type"] == "text" && parts[0]["text"].is_string() {
        return parts.swap_remove(0)["text"].take();
    }
    serde_json::Value::Array(parts)
}

/// An answer's translation into the client's API, whichever it is.
#[derive(Debug)]
pub enum AnswerTranslator {
    Ollama(OllamaAnswer),
    Responses(ResponsesAnswer),
    Anthropic(AnthropicAnswer),
}

impl From<OllamaAnswer> for AnswerTranslator {
    fn from(answer: OllamaAnswer) -> Self {
        AnswerTranslator::Ollama(answer)
    }
}

impl From<ResponsesAnswer> for AnswerTranslator {
    fn from(answer: ResponsesAnswer) -> Self {
        AnswerTranslator::Responses(answer)
    }
}

impl From<AnthropicAnswer> for AnswerTranslator {
    fn from(answer: AnthropicAnswer) -> Self {
        AnswerTranslator::Anthropic(answer)
    }
}

impl AnswerTranslator {
    /// The translated bytes that `piece` of the backend's body completes.
    pub fn feed(&mut self, piece: &[u8]) -> Vec<u8> {
        match self {
            AnswerTranslator::Ollama(answer) => answer.feed(piece),
            AnswerTranslator::Responses(answer) => answer.feed(piece),
            AnswerTranslator::Anthropic(answer) => answer.feed(piece),
        }
    }

    /// The rest of the translation, once the backend's body has ended.
    pub fn finish(&mut self) -> Vec<u8> {
        match self {
            AnswerTranslator::Ollama(answer) => answer.finish(),
            AnswerTranslator::Responses(answer) => answer.finish(),
            AnswerTranslator::Anthropic(answer) => answer.finish(),
        }
    }

    /// The translated answer's content type.
    pub fn content_type(&self) -> &'static str {
        match self {
            AnswerTranslator::Ollama(answer) => answer.content_type(),
            AnswerTranslator::Responses(answer) => answer.content_type(),
            AnswerTranslator::Anthropic(answer) => answer.content_type(),
        }
    }
}

/// What the translated answer must become: which Ollama endpoint's shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OllamaShape {
    /// `/api/chat`: `message: {role, content, tool_calls}`.
    Chat,
    /// `/api/generate`: `response`.
    Generate,
    /// `/api/embed`: `embeddings: [[...]]`.
    Embed,
    /// `/api/embeddings` (the older one): `embedding: [...]`, one input.
    EmbeddingsLegacy,
}

/// A request the backend's API cannot carry as asked: the field, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct Refusal {
    /// The field as the client named it (`options.num_ctx`).
    pub field: String,
    pub reason: String,
}

impl Refusal {
    fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Refusal {
            field: field.into(),
            reason: reason.into(),
        }
    }
}
