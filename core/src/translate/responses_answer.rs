//! A Chat Completions answer as the OpenAI Responses answer its client asked for.
//!
//! A stream becomes Responses' events as the chat's arrive: `response.created`, then for the
//! text `response.output_item.added`, `response.content_part.added` and one
//! `response.output_text.delta` per piece, and at the end the `.done` events and
//! `response.completed` with the usage. The `.done` events repeat the whole text, as the API
//! defines them, so the text is kept as it passes (never held back). Function calls are
//! announced whole at the end. A whole answer is translated once.

use serde_json::{json, Map, Value};

use super::answer::{usage_counts, AnswerDialect, Translation};
use super::sse::event_data;

/// The translation of one answer into the Responses API's shapes, fed its body as it arrives.
pub type ResponsesAnswer = Translation<ResponsesEvents>;

/// What a Responses client gets: its state between the events of a stream.
#[derive(Debug)]
pub struct ResponsesEvents {
    model: String,
    status: u16,
    id: Option<String>,
    created_at: u64,
    text: String,
    message_open: bool,
    calls: Vec<Call>,
    finish_reason: Option<String>,
    usage: Option<(u64, u64)>,
    sequence: u64,
    ended: bool,
}

#[derive(Debug, Default)]
struct Call {
    id: String,
    name: String,
    arguments: String,
}

/// The id of the answer's one message item.
const MESSAGE_ID: &str = "msg_0";

impl ResponsesAnswer {
    /// The translation of an answer with `status` and `content_type` to a request for `model`.
    pub fn new(model: &str, status: u16, content_type: &str) -> Self {
        Translation::of(
            content_type,
            ResponsesEvents {
                model: model.to_string(),
                status,
                id: None,
                created_at: 0,
                text: String::new(),
                message_open: false,
                calls: Vec::new(),
                finish_reason: None,
                usage: None,
                sequence: 0,
                ended: false,
            },
        )
    }
}

impl AnswerDialect for ResponsesEvents {
    const STREAM_CONTENT_TYPE: &'static str = "text/event-stream";

    fn event(&mut self, line: &[u8], out: &mut Vec<u8>) {
        self.line(line, out);
    }

    /// The `.done` events and `response.completed`, once the chat said it finished.
    fn end(&mut self, out: &mut Vec<u8>) {
        if self.finish_reason.is_some() {
            self.complete(out);
        }
    }

    fn whole(&mut self, body: &[u8]) -> Vec<u8> {
        self.whole_answer(body)
    }

    fn too_large(&self) -> Vec<u8> {
        json!({"error": {"message": "the backend's answer is too large to translate",
            "type": "server_error"}})
        .to_string()
        .into_bytes()
    }
}

impl ResponsesEvents {
    fn line(&mut self, line: &[u8], out: &mut Vec<u8>) {
        if self.ended {
            return;
        }
        let Some(data) = event_data(line) else {
            return;
        };
        if data.trim_ascii() == b"[DONE]" {
            self.complete(out);
            return;
        }
        let Ok(chunk) = serde_json::from_slice::<Value>(data) else {
            return;
        };
        if chunk.get("error").is_some() {
            // An error event keeps the shape both APIs share.
            out.extend_from_slice(b"data: ");
            out.extend_from_slice(data);
            out.extend_from_slice(b"\n\n");
            self.ended = true;
            return;
        }
        if self.id.is_none() {
            self.id = Some(response_id(&chunk));
            self.created_at = chunk["created"].as_u64().unwrap_or(0);
            let response = self.response("in_progress", Vec::new());
            self.emit(out, "response.created", json!({ "response": response }));
        }
        if let Some(Value::Object(usage)) = chunk.get("usage") {
            self.usage = Some(usage_counts(usage));
        }
        let Some(choice) = chunk["choices"].get(0) else {
            return;
        };
        if let Some(reason) = choice["finish_reason"].as_str() {
            self.finish_reason = Some(reason.to_string());
        }
        if let Value::Array(pieces) = &choice["delta"]["tool_calls"] {
            self.add_call_pieces(pieces);
        }
        if let Some(text) = choice["delta"]["content"]
            .as_str()
            .filter(|t| !t.is_empty())
        {
            if !self.message_open {
                self.message_open = true;
                let item = json!({"id": MESSAGE_ID, "type": "message", "status": "in_progress",
                    "role": "assistant", "content": []});
                self.emit(
                    out,
                    "response.output_item.added",
                    json!({"output_index": 0, "item": item}),
                );
                let part = json!({"type": "output_text", "text": "", "annotations": []});
                self.emit(
                    out,
                    "response.content_part.added",
                    json!({"item_id": MESSAGE_ID,
                    "output_index": 0, "content_index": 0, "part": part}),
                );
            }
            self.text.push_str(text);
            self.emit(
                out,
                "response.output_text.delta",
                json!({"item_id": MESSAGE_ID,
                "output_index": 0, "content_index": 0, "delta": text}),
            );
        }
    }

    fn add_call_pieces(&mut self, pieces: &[Value]) {
        for piece in pieces {
            let index = piece["index"].as_u64().unwrap_or(0) as usize;
            if index >= self.calls.len() {
                self.calls.resize_with(index + 1, Call::default);
            }
            let call = &mut self.calls[index];
            if let Some(id) = piece["id"].as_str() {
                call.id.push_str(id);
            }
            if let Some(name) = piece["function"]["name"].as_str() {
                call.name.push_str(name);
            }
            if let Some(arguments) = piece["function"]["arguments"].as_str() {
                call.arguments.push_str(arguments);
            }
        }
    }

    /// The `.done` events and `response.completed`.
    fn complete(&mut self, out: &mut Vec<u8>) {
        if self.ended {
            return;
        }
        self.ended = true;
        let mut output = Vec::new();
        if self.message_open {
            let part = json!({"type": "output_text", "text": self.text, "annotations": []});
            self.emit(
                out,
                "response.output_text.done",
                json!({"item_id": MESSAGE_ID,
                "output_index": 0, "content_index": 0, "text": self.text}),
            );
            self.emit(
                out,
                "response.content_part.done",
                json!({"item_id": MESSAGE_ID,
                "output_index": 0, "content_index": 0, "part": part}),
            );
            let item = message_item(&self.text);
            self.emit(
                out,
                "response.output_item.done",
                json!({"output_index": 0, "item": item}),
            );
            output.push(item);
        }
        let calls: Vec<Value> = self
            .calls
            .iter()
            .map(|c| function_call_item(&c.id, &c.name, &c.arguments))
            .collect();
        for item in calls {
            let index = output.len();
            self.emit(
                out,
                "response.output_item.added",
                json!({"output_index": index, "item": item}),
            );
            self.emit(
                out,
                "response.output_item.done",
                json!({"output_index": index, "item": item}),
            );
            output.push(item);
        }
        let status = match self.finish_reason.as_deref() {
            Some("length") => "incomplete",
            _ => "completed",
        };
        let response = self.response(status, output);
        self.emit(out, "response.completed", json!({ "response": response }));
    }

    fn emit(&mut self, out: &mut Vec<u8>, kind: &str, mut event: Value) {
        event["type"] = json!(kind);
        event["sequence_number"] = json!(self.sequence);
        self.sequence += 1;
        out.extend_from_slice(format!("event: {kind}\ndata: {event}\n\n").as_bytes());
    }

    /// The response object as it stands.
    fn response(&self, status: &str, output: Vec<Value>) -> Value {
        let mut response = Map::new();
        response.insert(
            "id".into(),
            json!(self.id.clone().unwrap_or_else(|| "resp_0".into())),
        );
        response.insert("object".into(), json!("response"));
        response.insert("created_at".into(), json!(self.created_at));
        response.insert("status".into(), json!(status));
        response.insert("model".into(), json!(self.model));
        response.insert("output".into(), Value::Array(output));
        response.insert("parallel_tool_calls".into(), json!(true));
        response.insert("tool_choice".into(), json!("auto"));
        response.insert("tools".into(), json!([]));
        if status == "incomplete" {
            response.insert(
                "incomplete_details".into(),
                json!({"reason": "max_output_tokens"}),
            );
        }
        if let Some((input, output)) = self.usage {
            response.insert("usage".into(), usage(input, output));
        }
        Value::Object(response)
    }

    /// A whole chat answer (or an error) as a response object.
    fn whole_answer(&mut self, body: &[u8]) -> Vec<u8> {
        let Ok(answer) = serde_json::from_slice::<Value>(body) else {
            return body.to_vec();
        };
        if self.status >= 400 || answer.get("error").is_some() {
            return body.to_vec(); // the error shape is the same in both APIs
        }
        self.id = Some(response_id(&answer));
        self.created_at = answer["created"].as_u64().unwrap_or(0);
        self.usage = answer["usage"].as_object().map(usage_counts);
        let choice = &answer["choices"][0];
        let message = &choice["message"];
        let mut output = Vec::new();
        if let Some(text) = message["content"].as_str().filter(|t| !t.is_empty()) {
            output.push(message_item(text));
        }
        for call in message["tool_calls"].as_array().into_iter().flatten() {
            let function = &call["function"];
            output.push(function_call_item(
                call["id"].as_str().unwrap_or_default(),
                function["name"].as_str().unwrap_or_default(),
                function["arguments"].as_str().unwrap_or("{}"),
            ));
        }
        let status = match choice["finish_reason"].as_str() {
            Some("length") => "incomplete",
            _ => "completed",
        };
        self.response(status, output).to_string().into_bytes()
    }
}

fn response_id(chunk: &Value) -> String {
    format!("resp_{}", chunk["id"].as_str().unwrap_or("0"))
}

fn message_item(text: &str) -> Value {
    json!({"id": MESSAGE_ID, "type": "message", "status": "completed", "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}]})
}

fn function_call_item(id: &str, name: &str, arguments: &str) -> Value {
    json!({"id": format!("fc_{id}"), "type": "function_call", "status": "completed",
        "call_id": id, "name": name, "arguments": arguments})
}

fn usage(input: u64, output: u64) -> Value {
    json!({"input_tokens": input, "output_tokens": output, "total_tokens": input + output,
        "input_tokens_details": {"cached_tokens": 0}, "output_tokens_details": {"reasoning_tokens": 0}})
}

#[cfg(test)]
mod tests {
    use super::*;

    const SSE: &str = "data: {\"id\":\"c1\",\"created\":5,\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n\
        data: {\"id\":\"c1\",\"choices\":[{\"delta\":{\"content\":\"Hel\"},\"finish_reason\":null}]}\n\n\
        data: {\"id\":\"c1\",\"choices\":[{\"delta\":{\"content\":\"lo\"},\"finish_reason\":\"stop\"}]}\n\n\
        data: {\"id\":\"c1\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2}}\n\n\
        data: [DONE]\n\n";

    fn events(bytes: &[u8]) -> Vec<Value> {
        String::from_utf8_lossy(bytes)
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .map(|d| serde_json::from_str(d).unwrap())
            .collect()
    }

    #[test]
    fn a_stream_becomes_the_responses_events_in_order() {
        let mut answer = ResponsesAnswer::new("m", 200, "text/event-stream");
        let mut out = answer.feed(SSE.as_bytes());
        out.extend(answer.finish());
        let kinds: Vec<String> = events(&out)
            .iter()
            .map(|e| e["type"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(
            kinds,
            [
                "response.created",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.completed"
            ]
        );
        let all = events(&out);
        assert_eq!(all[5]["text"], "Hello");
        let completed = &all[8]["response"];
        assert_eq!(completed["status"], "completed");
        assert_eq!(completed["usage"]["output_tokens"], 2);
        assert_eq!(completed["output"][0]["content"][0]["text"], "Hello");
        assert!(all
            .iter()
            .enumerate()
            .all(|(n, e)| e["sequence_number"] == n as u64));
    }

    #[test]
    fn a_stream_cut_anywhere_translates_the_same() {
        let translate = |cut: usize| {
            let mut answer = ResponsesAnswer::new("m", 200, "text/event-stream");
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
    fn a_whole_answer_is_a_response_object() {
        let mut answer = ResponsesAnswer::new("m", 200, "application/json");
        answer.feed(json!({"id": "c2", "created": 7, "choices": [{"message": {"role": "assistant", "content": "Hi",
            "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}]},
            "finish_reason": "length"}], "usage": {"prompt_tokens": 3, "completion_tokens": 4}}).to_string().as_bytes());
        let out: Value = serde_json::from_slice(&answer.finish()).unwrap();
        assert_eq!(out["object"], "response");
        assert_eq!(out["status"], "incomplete");
        assert_eq!(out["output"][0]["content"][0]["text"], "Hi");
        assert_eq!(out["output"][1]["call_id"], "t1");
        assert_eq!(out["usage"]["input_tokens"], 3);
    }
}
