//! A Chat Completions answer as the Anthropic Messages answer its client asked for.
//!
//! A stream becomes Messages' events as the chat's arrive: `message_start`, a text block
//! (`content_block_start`, one `content_block_delta` per piece, `content_block_stop`), a
//! `tool_use` block per tool call with its arguments as `input_json_delta`s, then
//! `message_delta` with the stop reason and the token counts, and `message_stop`. Nothing is
//! kept but the block in progress. A whole answer is translated once.

use serde_json::{json, Value};

use super::answer::{usage_counts, AnswerDialect, Translation};
use super::sse::event_data;

/// The translation of one answer into Anthropic's shapes, fed its body as it arrives.
pub type AnthropicAnswer = Translation<AnthropicEvents>;

/// What an Anthropic client gets: its state between the events of a stream.
#[derive(Debug)]
pub struct AnthropicEvents {
    model: String,
    status: u16,
    started: bool,
    /// The index and kind of the content block that is open, if one is.
    open: Option<(usize, Block)>,
    blocks: usize,
    stop_reason: Option<&'static str>,
    usage: Option<(u64, u64)>,
    ended: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Block {
    Text,
    ToolUse(usize),
}

impl AnthropicAnswer {
    /// The translation of an answer with `status` and `content_type` to a request for `model`.
    pub fn new(model: &str, status: u16, content_type: &str) -> Self {
        Translation::of(
            content_type,
            AnthropicEvents {
                model: model.to_string(),
                status,
                started: false,
                open: None,
                blocks: 0,
                stop_reason: None,
                usage: None,
                ended: false,
            },
        )
    }
}

impl AnswerDialect for AnthropicEvents {
    const STREAM_CONTENT_TYPE: &'static str = "text/event-stream";

    fn event(&mut self, line: &[u8], out: &mut Vec<u8>) {
        self.line(line, out);
    }

    /// The open block's end, `message_delta` and `message_stop`, once the chat said it
    /// finished.
    fn end(&mut self, out: &mut Vec<u8>) {
        if self.stop_reason.is_some() {
            self.stop(out);
        }
    }

    fn whole(&mut self, body: &[u8]) -> Vec<u8> {
        self.whole_answer(body)
    }

    fn too_large(&self) -> Vec<u8> {
        error_body("the backend's answer is too large to translate")
    }
}

impl AnthropicEvents {
    fn line(&mut self, line: &[u8], out: &mut Vec<u8>) {
        if self.ended {
            return;
        }
        let Some(data) = event_data(line) else {
            return;
        };
        if data.trim_ascii() == b"[DONE]" {
            self.stop(out);
            return;
        }
        let Ok(chunk) = serde_json::from_slice::<Value>(data) else {
            return;
        };
        if let Some(error) = chunk.get("error") {
            let message = error["message"]
                .as_str()
                .map_or_else(|| error.to_string(), str::to_string);
            emit(
                out,
                "error",
                json!({"error": {"type": "api_error", "message": message}}),
            );
            self.ended = true;
            return;
        }
        if !self.started {
            self.started = true;
            let message = json!({"id": message_id(&chunk), "type": "message", "role": "assistant",
                "model": self.model, "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 0, "output_tokens": 0}});
            emit(out, "message_start", json!({ "message": message }));
        }
        if let Some(Value::Object(usage)) = chunk.get("usage") {
            self.usage = Some(usage_counts(usage));
        }
        let Some(choice) = chunk["choices"].get(0) else {
            return;
        };
        if let Some(text) = choice["delta"]["content"]
            .as_str()
            .filter(|t| !t.is_empty())
        {
            let index = self.block(out, Block::Text, || json!({"type": "text", "text": ""}));
            emit(
                out,
                "content_block_delta",
                json!({"index": index,
                "delta": {"type": "text_delta", "text": text}}),
            );
        }
        for piece in choice["delta"]["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
        {
            self.call_piece(piece, out);
        }
        if let Some(reason) = choice["finish_reason"].as_str() {
            self.stop_reason = Some(stop_reason(reason));
        }
    }

    /// A piece of a streamed tool call: its block opens with its id and name, its arguments
    /// follow as partial JSON.
    fn call_piece(&mut self, piece: &Value, out: &mut Vec<u8>) {
        let call = piece["index"].as_u64().unwrap_or(0) as usize;
        let index = self.block(out, Block::ToolUse(call), || {
            json!({"type": "tool_use", "id": piece["id"], "name": piece["function"]["name"], "input": {}})
        });
        if let Some(arguments) = piece["function"]["arguments"]
            .as_str()
            .filter(|a| !a.is_empty())
        {
            emit(
                out,
                "content_block_delta",
                json!({"index": index,
                "delta": {"type": "input_json_delta", "partial_json": arguments}}),
            );
        }
    }

    /// The index of the open block of `kind`, opening it (and closing another) if needed.
    fn block(&mut self, out: &mut Vec<u8>, kind: Block, start: impl FnOnce() -> Value) -> usize {
        if let Some((index, open)) = self.open {
            if open == kind {
                return index;
            }
            emit(out, "content_block_stop", json!({ "index": index }));
        }
        let index = self.blocks;
        self.blocks += 1;
        emit(
            out,
            "content_block_start",
            json!({"index": index, "content_block": start()}),
        );
        self.open = Some((index, kind));
        index
    }

    /// The open block's end, the stop reason with the counts, and the message's end.
    fn stop(&mut self, out: &mut Vec<u8>) {
        if self.ended || !self.started {
            return;
        }
        self.ended = true;
        if let Some((index, _)) = self.open.take() {
            emit(out, "content_block_stop", json!({ "index": index }));
        }
        let (input, output) = self.usage.unwrap_or((0, 0));
        emit(
            out,
            "message_delta",
            json!({
            "delta": {"stop_reason": self.stop_reason.unwrap_or("end_turn"), "stop_sequence": null},
            "usage": {"input_tokens": input, "output_tokens": output}}),
        );
        emit(out, "message_stop", json!({}));
    }

    /// A whole chat answer (or an error) as a message.
    fn whole_answer(&self, body: &[u8]) -> Vec<u8> {
        let Ok(answer) = serde_json::from_slice::<Value>(body) else {
            return body.to_vec();
        };
        if self.status >= 400 || answer.get("error").is_some() {
            let message = answer["error"]["message"]
                .as_str()
                .or_else(|| answer["error"].as_str())
                .map_or_else(|| answer.to_string(), str::to_string);
            return error_body(&message);
        }
        let choice = &answer["choices"][0];
        let message = &choice["message"];
        let mut content = Vec::new();
        if let Some(text) = message["content"].as_str().filter(|t| !t.is_empty()) {
            content.push(json!({"type": "text", "text": text}));
        }
        for call in message["tool_calls"].as_array().into_iter().flatten() {
            let arguments = call["function"]["arguments"].as_str().unwrap_or("{}");
            let input: Value = serde_json::from_str(arguments).unwrap_or_else(|_| json!({}));
            content.push(json!({"type": "tool_use", "id": call["id"],
                "name": call["function"]["name"], "input": input}));
        }
        let (input, output) = answer["usage"].as_object().map_or((0, 0), usage_counts);
        json!({"id": message_id(&answer), "type": "message", "role": "assistant", "model": self.model,
            "content": content, "stop_reason": stop_reason(choice["finish_reason"].as_str().unwrap_or("stop")),
            "stop_sequence": null, "usage": {"input_tokens": input, "output_tokens": output}})
        .to_string()
        .into_bytes()
    }
}

fn emit(out: &mut Vec<u8>, kind: &str, mut event: Value) {
    event["type"] = json!(kind);
    out.extend_from_slice(format!("event: {kind}\ndata: {event}\n\n").as_bytes());
}

fn error_body(message: &str) -> Vec<u8> {
    json!({"type": "error", "error": {"type": "api_error", "message": message}})
        .to_string()
        .into_bytes()
}

fn message_id(chunk: &Value) -> String {
    format!("msg_{}", chunk["id"].as_str().unwrap_or("0"))
}

/// Chat Completions' finish reason as Messages' stop reason.
fn stop_reason(finish_reason: &str) -> &'static str {
    match finish_reason {
        "length" => "max_tokens",
        "tool_calls" | "function_call" => "tool_use",
        _ => "end_turn",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SSE: &str = "data: {\"id\":\"c1\",\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n\
        data: {\"id\":\"c1\",\"choices\":[{\"delta\":{\"content\":\"Hel\"},\"finish_reason\":null}]}\n\n\
        data: {\"id\":\"c1\",\"choices\":[{\"delta\":{\"content\":\"lo\"},\"finish_reason\":null}]}\n\n\
        data: {\"id\":\"c1\",\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"t1\",\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"a\\\"\"}}]},\"finish_reason\":null}]}\n\n\
        data: {\"id\":\"c1\",\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\":1}\"}}]},\"finish_reason\":\"tool_calls\"}]}\n\n\
        data: {\"id\":\"c1\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":4}}\n\n\
        data: [DONE]\n\n";

    fn events(bytes: &[u8]) -> Vec<Value> {
        String::from_utf8_lossy(bytes)
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .map(|d| serde_json::from_str(d).unwrap())
            .collect()
    }

    #[test]
    fn a_stream_becomes_blocks_a_stop_reason_and_counts() {
        let mut answer = AnthropicAnswer::new("m", 200, "text/event-stream");
        let mut out = answer.feed(SSE.as_bytes());
        out.extend(answer.finish());
        let all = events(&out);
        let kinds: Vec<&str> = all.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(all[2]["delta"]["text"], "Hel");
        assert_eq!(all[5]["content_block"]["name"], "f");
        assert_eq!(all[5]["index"], 1);
        let json: String = all[6..8]
            .iter()
            .map(|e| e["delta"]["partial_json"].as_str().unwrap())
            .collect();
        assert_eq!(json, r#"{"a":1}"#);
        assert_eq!(all[9]["delta"]["stop_reason"], "tool_use");
        assert_eq!(
            all[9]["usage"],
            json!({"input_tokens": 5, "output_tokens": 4})
        );
    }

    #[test]
    fn a_stream_cut_anywhere_translates_the_same() {
        let translate = |cut: usize| {
            let mut answer = AnthropicAnswer::new("m", 200, "text/event-stream");
            let mut out = answer.feed(&SSE.as_bytes()[..cut]);
            out.extend(answer.feed(&SSE.as_bytes()[cut..]));
            out.extend(answer.finish());
            out
        };
        let whole = translate(SSE.len());
        for cut in 0..SSE.len() {
            assert_eq!(translate(cut), whole, "cut at {cut}");
        }
    }

    #[test]
    fn whole_answers_and_errors() {
        let translate = |status, body: Value| {
            let mut answer = AnthropicAnswer::new("m", status, "application/json");
            answer.feed(body.to_string().as_bytes());
            serde_json::from_slice::<Value>(&answer.finish()).unwrap()
        };
        let message = translate(
            200,
            json!({"id": "c", "choices": [{"message": {"content": "Hi"}, "finish_reason": "length"}],
            "usage": {"prompt_tokens": 2, "completion_tokens": 1}}),
        );
        assert_eq!(message["content"], json!([{"type": "text", "text": "Hi"}]));
        assert_eq!(message["stop_reason"], "max_tokens");
        assert_eq!(message["usage"]["output_tokens"], 1);
        let error = translate(
            400,
            json!({"error": {"message": "bad", "type": "invalid_request_error"}}),
        );
        assert_eq!(
            error,
            json!({"type": "error", "error": {"type": "api_error", "message": "bad"}})
        );
    }
}
