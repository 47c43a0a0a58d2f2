//! An OpenAI Responses request (`POST /v1/responses`, the stateless part) as the Chat
//! Completions request every backend serves (llama.cpp, vLLM, and Ollama's `/v1`).
//!
//! `input` as a text or a list of items (messages with text and image parts, earlier function
//! calls and their outputs), `instructions` as the system prompt, `max_output_tokens`,
//! sampling, function tools, `text.format`, `stream`. What needs state kept between requests
//! (`previous_response_id`, `conversation`) or a tool the backend does not run (web search,
//! file search ...) is refused, naming the field.

use serde_json::{json, Map, Value};

use super::{set_stream, Refusal};

/// A translated Responses request.
#[derive(Clone, Debug, PartialEq)]
pub struct ForChat {
    /// The Chat Completions body.
    pub body: Vec<u8>,
    /// The model as the client named it (the answer repeats it).
    pub model: String,
    pub stream: bool,
}

type Object = Map<String, Value>;

/// Fields passed to Chat Completions under the same name.
const SAME_NAME: [&str; 6] = [
    "temperature",
    "top_p",
    "user",
    "parallel_tool_calls",
    "seed",
    "tool_choice",
];

/// Fields that do not change the answer (where it is kept, what it is labelled).
const IGNORED: [&str; 5] = ["store", "metadata", "service_tier", "truncation", "include"];

/// Translates the Responses request `body` into a Chat Completions request.
pub fn responses_to_chat(body: &[u8]) -> Result<ForChat, Refusal> {
    let request: Object = serde_json::from_slice(body)
        .map_err(|e| Refusal::new("body", format!("not a JSON object: {e}")))?;
    let mut out = Object::new();
    let mut model = String::new();
    let mut stream = false;
    let mut messages = Vec::new();
    for (field, value) in &request {
        if value.is_null() {
            continue;
        }
        match field.as_str() {
            "model" => {
                model = value.as_str().unwrap_or_default().to_string();
                out.insert("model".into(), value.clone());
            }
            "instructions" => {
                let Some(text) = value.as_str() else {
                    return Err(Refusal::new("instructions", "must be a string"));
                };
                messages.insert(0, json!({"role": "system", "content": text}));
            }
            "input" => messages.extend(input_messages(value)?),
            "stream" => {
                stream = value.as_bool() == Some(true);
                set_stream(&mut out, stream);
            }
            "max_output_tokens" => {
                out.insert("max_tokens".into(), value.clone());
            }
            "tools" => {
                out.insert("tools".into(), Value::Array(function_tools(value)?));
            }
            "text" => {
                if let Some(format) = response_format(value)? {
                    out.insert("response_format".into(), format);
                }
            }
            field if SAME_NAME.contains(&field) => {
                out.insert(field.into(), value.clone());
            }
            field if IGNORED.contains(&field) => {}
            "previous_response_id" | "conversation" => {
                return Err(Refusal::new(
                    field,
                    "this door keeps no responses between requests; send the whole conversation in input",
                ))
            }
            other => {
                return Err(Refusal::new(
                    other,
                    "the backends behind this door cannot honour it",
                ))
            }
        }
    }
    if model.is_empty() {
        return Err(Refusal::new("model", "a model must be named"));
    }
    out.insert("messages".into(), Value::Array(messages));
    Ok(ForChat {
        body: serde_json::to_vec(&out).expect("a JSON map serializes"),
        model,
        stream,
    })
}

/// `input`: a text (one user message) or a list of items.
fn input_messages(input: &Value) -> Result<Vec<Value>, Refusal> {
    let items = match input {
        Value::String(text) => return Ok(vec![json!({"role": "user", "content": text})]),
        Value::Array(items) => items,
        _ => return Err(Refusal::new("input", "must be a text or a list of items")),
    };
    let mut messages: Vec<Value> = Vec::with_capacity(items.len());
    for (at, item) in items.iter().enumerate() {
        let field = |name: &str| format!("input[{at}].{name}");
        match item["type"].as_str().unwrap_or("message") {
            "message" => {
                let role = match item["role"].as_str() {
                    Some("developer") => "system",
                    Some(role @ ("user" | "assistant" | "system")) => role,
                    _ => {
                        return Err(Refusal::new(
                            field("role"),
                            "must be user, assistant, system or developer",
                        ))
                    }
                };
                let content = message_content(&item["content"], &field)?;
                messages.push(json!({"role": role, "content": content}));
            }
            "function_call" => {
                let call = json!({"id": item["call_id"], "type": "function",
                    "function": {"name": item["name"], "arguments": item["arguments"]}});
                // Calls made in one turn are one assistant message with several calls.
                match messages.last_mut() {
                    Some(last) if last["role"] == "assistant" && last["tool_calls"].is_array() => {
                        last["tool_calls"]
                            .as_array_mut()
                            .expect("checked")
                            .push(call);
                    }
                    _ => messages
                        .push(json!({"role": "assistant", "content": null, "tool_calls": [call]})),
                }
            }
            "function_call_output" => {
                let output = match &item["output"] {
                    Value::String(text) => text.clone(),
                    other => other.to_string(),
                };
                messages.push(
                    json!({"role": "tool", "tool_call_id": item["call_id"], "content": output}),
                );
            }
            other => {
                return Err(Refusal::new(
                    field("type"),
                    format!("{other:?} items need state or tools this door does not keep"),
                ))
            }
        }
    }
    Ok(messages)
}

/// A message's content: a text, or parts (`input_text`, `output_text`, `input_image`).
fn message_content(content: &Value, field: &dyn Fn(&str) -> String) -> Result<Value, Refusal> {
    let parts = match content {
        Value::String(_) => return Ok(content.clone()),
        Value::Array(parts) => parts,
        _ => {
            return Err(Refusal::new(
                field("content"),
                "must be a text or a list of parts",
            ))
        }
    };
    let mut out = Vec::with_capacity(parts.len());
    for part in parts {
        match part["type"].as_str() {
            Some("input_text" | "output_text") => {
                out.push(json!({"type": "text", "text": part["text"]}));
            }
            Some("input_image") => match part["image_url"].as_str() {
                Some(url) => out.push(json!({"type": "image_url", "image_url": {"url": url}})),
                None => {
                    return Err(Refusal::new(
                        field("content"),
                        "an input_image needs an image_url (file ids need a file store)",
                    ))
                }
            },
            other => {
                return Err(Refusal::new(
                    field("content"),
                    format!("parts of type {other:?} are not carried"),
                ))
            }
        }
    }
    Ok(super::chat_content(out))
}

/// Function tools, in Chat Completions' shape; any other tool needs a service the door has not.
fn function_tools(tools: &Value) -> Result<Vec<Value>, Refusal> {
    let Some(tools) = tools.as_array() else {
        return Err(Refusal::new("tools", "must be a list"));
    };
    tools
        .iter()
        .map(|tool| match tool["type"].as_str() {
            Some("function") => {
                let mut function = json!({"name": tool["name"], "parameters": tool["parameters"]});
                if let Some(description) = tool["description"].as_str() {
                    function["description"] = json!(description);
                }
                Ok(json!({"type": "function", "function": function}))
            }
            other => Err(Refusal::new(
                "tools",
                format!("tools of type {other:?} are not run by this door's backends"),
            )),
        })
        .collect()
}

/// `text.format`: plain text, a JSON object, or a JSON schema.
fn response_format(text: &Value) -> Result<Option<Value>, Refusal> {
    let format = &text["format"];
    match format["type"].as_str() {
        None | Some("text") => Ok(None),
        Some("json_object") => Ok(Some(json!({"type": "json_object"}))),
        Some("json_schema") => Ok(Some(json!({"type": "json_schema", "json_schema": {
            "name": format["name"], "schema": format["schema"], "strict": format["strict"]}}))),
        Some(other) => Err(Refusal::new(
            "text.format.type",
            format!("{other:?} is not known"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn translate(body: Value) -> Result<(ForChat, Value), Refusal> {
        let translated = responses_to_chat(body.to_string().as_bytes())?;
        let out = serde_json::from_slice(&translated.body).unwrap();
        Ok((translated, out))
    }

    #[test]
    fn a_text_input_with_instructions_is_a_chat() {
        let (t, out) = translate(
            json!({"model": "m", "input": "hi", "instructions": "be brief",
            "max_output_tokens": 5, "temperature": 0, "stream": true, "store": false}),
        )
        .unwrap();
        assert_eq!((t.model.as_str(), t.stream), ("m", true));
        assert_eq!(
            out["messages"],
            json!([{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}])
        );
        assert_eq!(out["max_tokens"], 5);
        assert_eq!(out["stream_options"]["include_usage"], true);
        assert!(out.get("store").is_none());
    }

    #[test]
    fn items_parts_and_function_calls_become_messages() {
        let (_, out) = translate(json!({"model": "m", "input": [
            {"role": "developer", "content": "rules"},
            {"type": "message", "role": "user", "content": [
                {"type": "input_text", "text": "what is this?"},
                {"type": "input_image", "image_url": "data:image/png;base64,AA=="}]},
            {"type": "function_call", "call_id": "c1", "name": "look", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "a cat"}],
            "tools": [{"type": "function", "name": "look", "parameters": {"type": "object"}}]}))
        .unwrap();
        let messages = out["messages"].as_array().unwrap();
        assert_eq!(messages[0]["role"], "system");
        assert_eq!(
            messages[1]["content"][1]["image_url"]["url"],
            "data:image/png;base64,AA=="
        );
        assert_eq!(messages[2]["tool_calls"][0]["id"], "c1");
        assert_eq!(
            messages[3],
            json!({"role": "tool", "tool_call_id": "c1", "content": "a cat"})
        );
        assert_eq!(out["tools"][0]["function"]["name"], "look");
    }

    #[test]
    fn a_single_text_part_goes_as_a_plain_text() {
        // Open WebUI's Responses connection sends every message as parts.
        let (_, out) = translate(json!({"model": "m", "input": [
            {"type": "message", "role": "user", "content": [
                {"type": "input_text", "text": "hi"}]},
            {"type": "message", "role": "user", "content": [
                {"type": "input_text", "text": "one"}, {"type": "input_text", "text": "two"}]}]}))
        .unwrap();
        assert_eq!(out["messages"][0]["content"], "hi");
        assert_eq!(
            out["messages"][1]["content"],
            json!([{"type": "text", "text": "one"}, {"type": "text", "text": "two"}])
        );
    }

    #[test]
    fn state_and_hosted_tools_are_refused_by_name() {
        let refused = |body: Value| {
            responses_to_chat(body.to_string().as_bytes())
                .unwrap_err()
                .field
        };
        assert_eq!(
            refused(json!({"model": "m", "input": "x", "previous_response_id": "resp_1"})),
            "previous_response_id"
        );
        assert_eq!(
            refused(json!({"model": "m", "input": "x", "tools": [{"type": "web_search"}]})),
            "tools"
        );
        assert_eq!(
            refused(json!({"model": "m", "input": "x", "reasoning": {"effort": "high"}})),
            "reasoning"
        );
        assert_eq!(refused(json!({"input": "x"})), "model");
        assert_eq!(
            refused(json!({"model": "m", "input": [{"type": "file_search_call"}]})),
            "input[0].type"
        );
    }
}
