//! An OpenAI backend's answer, as the Ollama answer its client asked for.
//!
//! A stream (server-sent events) becomes Ollama's lines event by event: each piece of text one
//! line with `"done": false`, then one last line with `"done": true`, the finish reason and the
//! token counts. Nothing is held but the line in progress and, for streamed tool calls, their
//! pieces until the last line. Any other answer (a whole JSON document, an error) is read to
//! its end and translated once.

use serde_json::{json, Map, Value};

use super::answer::{usage_counts, AnswerDialect, Translation, WHOLE_ANSWER_KEPT_MAX};
use super::rfc3339::rfc3339;
use super::sse::event_data;
use super::OllamaShape;

/// The translation of one answer into Ollama's shapes, fed its body as it arrives.
pub type OllamaAnswer = Translation<OllamaEvents>;

/// What Ollama's client gets: its state between the lines of a stream.
#[derive(Debug)]
pub struct OllamaEvents {
    shape: OllamaShape,
    model: String,
    /// The backend's status: an error's body becomes Ollama's `{"error": ...}`.
    status: u16,
    created_at: Option<String>,
    done_reason: Option<String>,
    counts: Option<(u64, u64)>,
    tool_calls: Vec<StreamedCall>,
    /// The last line (or an error line) is out: nothing more is written.
    ended: bool,
}

/// A tool call whose pieces arrive over several events.
#[derive(Debug, Default)]
struct StreamedCall {
    name: String,
    arguments: String,
}

impl OllamaAnswer {
    /// The translation of an answer with `status` and `content_type` to a request for `model`.
    pub fn new(shape: OllamaShape, model: &str, status: u16, content_type: &str) -> Self {
        Translation::of(
            content_type,
            OllamaEvents {
                shape,
                model: model.to_string(),
                status,
                created_at: None,
                done_reason: None,
                counts: None,
                tool_calls: Vec::new(),
                ended: false,
            },
        )
    }
}

impl AnswerDialect for OllamaEvents {
    const STREAM_CONTENT_TYPE: &'static str = "application/x-ndjson";

    fn event(&mut self, line: &[u8], out: &mut Vec<u8>) {
        self.line(line, out);
    }

    fn end(&mut self, out: &mut Vec<u8>) {
        if self.done_reason.is_some() {
            self.last_line(out);
        }
    }

    fn whole(&mut self, body: &[u8]) -> Vec<u8> {
        self.whole_answer(body)
    }

    fn too_large(&self) -> Vec<u8> {
        let message = format!(
            "the backend's answer is over {WHOLE_ANSWER_KEPT_MAX} bytes, more than this node translates"
        );
        json!({ "error": message }).to_string().into_bytes()
    }
}

impl OllamaEvents {
    /// One line of the event stream.
    fn line(&mut self, line: &[u8], out: &mut Vec<u8>) {
        if self.ended {
            return;
        }
        let Some(data) = event_data(line) else {
            return; // blank lines, comments, `event:` names
        };
        if data.trim_ascii() == b"[DONE]" {
            self.last_line(out);
            return;
        }
        let Ok(event) = serde_json::from_slice::<Value>(data) else {
            return;
        };
        if let Some(error) = event.get("error") {
            write_line(out, &json!({"error": error_message(error)}));
            self.ended = true;
            return;
        }
        if self.created_at.is_none() {
            self.created_at = created_at(&event);
        }
        if let Some(Value::Object(usage)) = event.get("usage") {
            self.counts = Some(usage_counts(usage));
        }
        let Some(choice) = event["choices"].get(0) else {
            return;
        };
        if let Some(reason) = choice["finish_reason"].as_str() {
            self.done_reason = Some(done_reason(reason).to_string());
        }
        if let Value::Array(calls) = &choice["delta"]["tool_calls"] {
            self.add_call_pieces(calls);
        }
        let text = match self.shape {
            OllamaShape::Chat | OllamaShape::Generate => choice["delta"]["content"]
                .as_str()
                .or_else(|| choice["text"].as_str()),
            OllamaShape::Embed | OllamaShape::EmbeddingsLegacy => None,
        };
        if let Some(text) = text.filter(|t| !t.is_empty()) {
            let mut line = self.line_start();
            self.put_text(&mut line, text, None);
            line.insert("done".into(), Value::Bool(false));
            write_line(out, &Value::Object(line));
        }
    }

    /// Streamed tool calls come in pieces by index: a name, then arguments in fragments.
    fn add_call_pieces(&mut self, pieces: &[Value]) {
        for piece in pieces {
            let index = piece["index"].as_u64().unwrap_or(0) as usize;
            if index >= self.tool_calls.len() {
                self.tool_calls
                    .resize_with(index + 1, StreamedCall::default);
            }
            let call = &mut self.tool_calls[index];
            if let Some(name) = piece["function"]["name"].as_str() {
                call.name.push_str(name);
            }
            if let Some(arguments) = piece["function"]["arguments"].as_str() {
                call.arguments.push_str(arguments);
            }
        }
    }

    /// The last line of a stream: done, why, the counts, and any tool calls.
    fn last_line(&mut self, out: &mut Vec<u8>) {
        if self.ended {
            return;
        }
        self.ended = true;
        let calls: Vec<Value> = self
            .tool_calls
            .iter()
            .map(|c| ollama_call(&c.name, &Value::String(c.arguments.clone())))
            .collect();
        let mut line = self.line_start();
        self.put_text(&mut line, "", Some(calls));
        let reason = self.done_reason.clone().unwrap_or_else(|| "stop".into());
        self.put_end(&mut line, &reason, self.counts);
        write_line(out, &Value::Object(line));
    }

    fn line_start(&self) -> Map<String, Value> {
        let mut line = Map::new();
        line.insert("model".into(), Value::String(self.model.clone()));
        let created_at = self.created_at.clone().unwrap_or_else(|| rfc3339(0));
        line.insert("created_at".into(), Value::String(created_at));
        line
    }

    /// The text in its shape's place: a chat's `message`, a generation's `response`.
    fn put_text(&self, line: &mut Map<String, Value>, text: &str, calls: Option<Vec<Value>>) {
        match self.shape {
            OllamaShape::Generate => {
                line.insert("response".into(), Value::String(text.to_string()));
            }
            _ => {
                let mut message = json!({"role": "assistant", "content": text});
                if let Some(calls) = calls.filter(|c| !c.is_empty()) {
                    message["tool_calls"] = Value::Array(calls);
                }
                line.insert("message".into(), message);
            }
        }
    }

    fn put_end(&self, line: &mut Map<String, Value>, reason: &str, counts: Option<(u64, u64)>) {
        line.insert("done".into(), Value::Bool(true));
        line.insert("done_reason".into(), Value::String(reason.to_string()));
        for zero in [
            "total_duration",
            "load_duration",
            "prompt_eval_duration",
            "eval_duration",
        ] {
            line.insert(zero.into(), json!(0));
        }
        if let Some((prompt, completion)) = counts {
            line.insert("prompt_eval_count".into(), json!(prompt));
            line.insert("eval_count".into(), json!(completion));
        }
    }

    /// A whole answer (or an error) in its Ollama shape. A body that is not the JSON expected
    /// passes as it came: the client sees what the backend said.
    fn whole_answer(&mut self, body: &[u8]) -> Vec<u8> {
        let Ok(answer) = serde_json::from_slice::<Value>(body) else {
            return body.to_vec();
        };
        if self.status >= 400 {
            let message = answer
                .get("error")
                .map_or_else(|| answer.to_string(), error_message);
            return json!({"error": message}).to_string().into_bytes();
        }
        self.created_at = created_at(&answer);
        let counts = answer
            .get("usage")
            .and_then(Value::as_object)
            .map(usage_counts);
        let translated = match self.shape {
            OllamaShape::Chat | OllamaShape::Generate => {
                let choice = &answer["choices"][0];
                let message = &choice["message"];
                let text = message["content"]
                    .as_str()
                    .or_else(|| choice["text"].as_str())
                    .unwrap_or_default();
                let calls: Vec<Value> = message["tool_calls"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|c| {
                        ollama_call(
                            c["function"]["name"].as_str().unwrap_or_default(),
                            &c["function"]["arguments"],
                        )
                    })
                    .collect();
                let mut line = self.line_start();
                self.put_text(&mut line, text, Some(calls));
                let reason = done_reason(choice["finish_reason"].as_str().unwrap_or("stop"));
                self.put_end(&mut line, reason, counts);
                Value::Object(line)
            }
            OllamaShape::Embed => {
                let embeddings = embeddings_in_order(&answer);
                let mut out = json!({"model": self.model, "embeddings": embeddings});
                if let Some((prompt, _)) = counts {
                    out["prompt_eval_count"] = json!(prompt);
                }
                out
            }
            OllamaShape::EmbeddingsLegacy => {
                let first = embeddings_in_order(&answer).into_iter().next();
                json!({"embedding": first.unwrap_or(Value::Array(Vec::new()))})
            }
        };
        translated.to_string().into_bytes()
    }
}

fn write_line(out: &mut Vec<u8>, value: &Value) {
    serde_json::to_writer(&mut *out, value).expect("a JSON value serializes");
    out.push(b'\n');
}

/// OpenAI's `{"message": ...}` error object, or a bare text.
fn error_message(error: &Value) -> String {
    match error {
        Value::String(message) => message.clone(),
        other => other["message"]
            .as_str()
            .map_or_else(|| other.to_string(), str::to_string),
    }
}

fn created_at(answer: &Value) -> Option<String> {
    answer["created"].as_u64().map(rfc3339)
}

/// OpenAI's finish reason as Ollama's `done_reason` (a tool call ends a turn: `stop`).
fn done_reason(reason: &str) -> &str {
    match reason {
        "tool_calls" | "function_call" => "stop",
        other => other,
    }
}

/// A tool call as Ollama writes it: arguments as an object when they are JSON.
fn ollama_call(name: &str, arguments: &Value) -> Value {
    let arguments = match arguments {
        Value::String(text) => serde_json::from_str(text).unwrap_or(Value::String(text.clone())),
        other => other.clone(),
    };
    json!({"function": {"name": name, "arguments": arguments}})
}

/// An embeddings answer's vectors in input order (by `index`).
fn embeddings_in_order(answer: &Value) -> Vec<Value> {
    let mut data: Vec<&Value> = answer["data"].as_array().into_iter().flatten().collect();
    data.sort_by_key(|d| d["index"].as_u64().unwrap_or(0));
    data.into_iter().map(|d| d["embedding"].clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SSE: &str = "data: {\"created\":1796619600,\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n\
        data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"},\"finish_reason\":null}]}\n\n\
        data: {\"choices\":[{\"delta\":{\"content\":\"lo\"},\"finish_reason\":null}]}\n\n\
        data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"length\"}]}\n\n\
        data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2}}\n\n\
        data: [DONE]\n\n";

    fn lines(bytes: &[u8]) -> Vec<Value> {
        bytes
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect()
    }

    #[test]
    fn a_stream_becomes_lines_with_a_last_one_that_counts() {
        let mut answer = OllamaAnswer::new(OllamaShape::Chat, "qwen", 200, "text/event-stream");
        assert_eq!(answer.content_type(), "application/x-ndjson");
        let mut out = answer.feed(SSE.as_bytes());
        out.extend(answer.finish());
        let lines = lines(&out);
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert_eq!(lines[0]["message"]["content"], "Hel");
        assert_eq!(lines[0]["done"], false);
        assert_eq!(lines[0]["created_at"], "2026-12-07T05:00:00Z");
        assert_eq!(lines[2]["done"], true);
        assert_eq!(lines[2]["done_reason"], "length");
        assert_eq!(
            (
                lines[2]["prompt_eval_count"].as_u64(),
                lines[2]["eval_count"].as_u64()
            ),
            (Some(5), Some(2))
        );
    }

    #[test]
    fn a_stream_cut_anywhere_translates_the_same() {
        let whole = {
            let mut answer =
                OllamaAnswer::new(OllamaShape::Generate, "m", 200, "text/event-stream");
            let mut out = answer.feed(SSE.as_bytes());
            out.extend(answer.finish());
            out
        };
        for cut in 0..SSE.len() {
            let mut answer =
                OllamaAnswer::new(OllamaShape::Generate, "m", 200, "text/event-stream");
            let mut out = answer.feed(&SSE.as_bytes()[..cut]);
            out.extend(answer.feed(&SSE.as_bytes()[cut..]));
            out.extend(answer.finish());
            assert_eq!(out, whole, "cut at {cut}");
        }
        assert_eq!(lines(&whole)[1]["response"], "lo");
    }

    #[test]
    fn a_stream_that_never_finished_gets_no_last_line() {
        let cut_short =
            "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"},\"finish_reason\":null}]}\n\n";
        let mut answer = OllamaAnswer::new(OllamaShape::Chat, "m", 200, "text/event-stream");
        let mut out = answer.feed(cut_short.as_bytes());
        out.extend(answer.finish());
        assert!(lines(&out).iter().all(|l| l["done"] == false));
    }

    #[test]
    fn whole_answers_errors_tool_calls_and_embeddings() {
        let translate = |shape, status, body: Value| {
            let mut answer = OllamaAnswer::new(shape, "m", status, "application/json");
            assert!(answer.feed(body.to_string().as_bytes()).is_empty());
            serde_json::from_slice::<Value>(&answer.finish()).unwrap()
        };
        let chat = translate(
            OllamaShape::Chat,
            200,
            json!({"created": 0, "choices": [{"message": {"role": "assistant", "content": null,
            "tool_calls": [{"id": "c", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Oslo\"}"}}]},
            "finish_reason": "tool_calls"}], "usage": {"prompt_tokens": 3, "completion_tokens": 4}}),
        );
        assert_eq!(
            chat["message"]["tool_calls"][0]["function"]["arguments"]["city"],
            "Oslo"
        );
        assert_eq!(chat["done_reason"], "stop");
        assert_eq!(chat["eval_count"], 4);
        let error = translate(
            OllamaShape::Chat,
            400,
            json!({"error": {"message": "too long", "type": "x"}}),
        );
        assert_eq!(error, json!({"error": "too long"}));
        let embed = translate(
            OllamaShape::Embed,
            200,
            json!({"data": [
            {"index": 1, "embedding": [2.0]}, {"index": 0, "embedding": [1.0]}], "usage": {"prompt_tokens": 2}}),
        );
        assert_eq!(embed["embeddings"], json!([[1.0], [2.0]]));
        assert_eq!(embed["prompt_eval_count"], 2);
        let legacy = translate(
            OllamaShape::EmbeddingsLegacy,
            200,
            json!({"data": [{"index": 0, "embedding": [1.0]}]}),
        );
        assert_eq!(legacy, json!({"embedding": [1.0]}));
    }

    #[test]
    fn a_whole_answer_too_large_to_keep_is_an_error_not_a_full_memory() {
        let mut answer = OllamaAnswer::new(OllamaShape::Embed, "m", 200, "application/json");
        let piece = vec![b' '; 1 << 20];
        for _ in 0..=(WHOLE_ANSWER_KEPT_MAX >> 20) {
            answer.feed(&piece);
        }
        assert!(answer.whole.len() <= WHOLE_ANSWER_KEPT_MAX);
        let out: Value = serde_json::from_slice(&answer.finish()).unwrap();
        assert!(out["error"]
            .as_str()
            .unwrap()
            .contains("more than this node translates"));
    }

    #[test]
    fn streamed_tool_calls_arrive_whole_in_the_last_line() {
        let sse = "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"c\",\"function\":{\"name\":\"weather\",\"arguments\":\"{\\\"ci\"}}]},\"finish_reason\":null}]}\n\n\
            data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"ty\\\":\\\"Oslo\\\"}\"}}]},\"finish_reason\":\"tool_calls\"}]}\n\n\
            data: [DONE]\n\n";
        let mut answer = OllamaAnswer::new(OllamaShape::Chat, "m", 200, "text/event-stream");
        let mut out = answer.feed(sse.as_bytes());
        out.extend(answer.finish());
        let lines = lines(&out);
        assert_eq!(lines.len(), 1);
        assert_eq!(
            lines[0]["message"]["tool_calls"][0]["function"],
            json!({"name": "weather", "arguments": {"city": "Oslo"}})
        );
    }
}
