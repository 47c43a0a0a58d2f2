//! An Anthropic Messages request (`POST /v1/messages`: Claude Code, the `anthropic` SDK) as the
//! Chat Completions request every backend serves.
//!
//! `system` (a text or text blocks) becomes the system message; content blocks become parts
//! (`text`, `image` as an `image_url`), an assistant's `tool_use` blocks its tool calls, and a
//! user's `tool_result` blocks tool messages; `max_tokens`, `stop_sequences`, sampling, tools
//! and `tool_choice` keep their meaning. Extended thinking and server-side tools are refused,
//! naming the field.

use serde_json::{json, Map, Value};

use super::responses_request::ForChat;
use super::{set_stream, Refusal};

type Object = Map<String, Value>;

/// Fields passed to Chat Completions under the same name.
const SAME_NAME: [&str; 4] = ["max_tokens", "temperature", "top_p", "top_k"];

/// Fields that do not change what the backend generates.
const IGNORED: [&str; 2] = ["service_tier", "anthropic_version"];

/// Translates the Messages request `body` into a Chat Completions request.
pub fn anthropic_to_chat(body: &[u8]) -> Result<ForChat, Refusal> {
    let request: Object = serde_json::from_slice(body)
        .map_err(|e| Refusal::new("body", format!("not a JSON object: {e}")))?;
    let mut out = Object::new();
    let mut model = String::new();
    let mut stream = false;
    let mut system = None;
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
            "system" => system = Some(block_text(value, "system")?),
            "messages" => {
                let Some(list) = value.as_array() else {
                    return Err(Refusal::new("messages", "must be a list"));
                };
                for (at, message) in list.iter().enumerate() {
                    chat_messages(message, at, &mut messages)?;
                }
            }
            "stream" => {
                stream = value.as_bool() == Some(true);
                set_stream(&mut out, stream);
            }
            "stop_sequences" => {
                out.insert("stop".into(), value.clone());
            }
            "tools" => {
                out.insert("tools".into(), Value::Array(tools(value)?));
            }
            "tool_choice" => {
                out.insert("tool_choice".into(), tool_choice(value)?);
            }
            "metadata" => {
                if let Some(user) = value["user_id"].as_str() {
                    out.insert("user".into(), json!(user));
                }
            }
            "thinking" if value["type"] == "disabled" => {}
            field if SAME_NAME.contains(&field) => {
                out.insert(field.into(), value.clone());
            }
            field if IGNORED.contains(&field) => {}
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
    if let Some(system) = system {
        messages.insert(0, json!({"role": "system", "content": system}));
    }
    out.insert("messages".into(), Value::Array(messages));
    Ok(ForChat {
        body: serde_json::to_vec(&out).expect("a JSON map serializes"),
        model,
        stream,
    })
}

/// A text, or text blocks joined (`system`, a tool result's content).
fn block_text(value: &Value, field: &str) -> Result<String, Refusal> {
    match value {
        Value::String(text) => Ok(text.clone()),
        Value::Array(blocks) => blocks
            .iter()
            .map(
                |block| match (block["type"].as_str(), block["text"].as_str()) {
                    (Some("text"), Some(text)) => Ok(text),
                    _ => Err(Refusal::new(field, "only text blocks are carried here")),
                },
            )
            .collect::<Result<Vec<_>, _>>()
            .map(|texts| texts.join("\n")),
        _ => Err(Refusal::new(field, "must be a text or text blocks")),
    }
}

/// One Messages message as one or more chat messages: tool results become tool messages of
/// their own, ahead of the rest of the user's turn.
fn chat_messages(message: &Value, at: usize, out: &mut Vec<Value>) -> Result<(), Refusal> {
    let field = |name: &str| format!("messages[{at}].{name}");
    let role = match message["role"].as_str() {
        Some(role @ ("user" | "assistant")) => role,
        _ => return Err(Refusal::new(field("role"), "must be user or assistant")),
    };
    let blocks = match &message["content"] {
        Value::String(text) => {
            out.push(json!({"role": role, "content": text}));
            return Ok(());
        }
        Value::Array(blocks) => blocks,
        _ => return Err(Refusal::new(field("content"), "must be a text or blocks")),
    };
    let mut parts = Vec::new();
    let mut calls = Vec::new();
    for block in blocks {
        match block["type"].as_str() {
            Some("text") => parts.push(json!({"type": "text", "text": block["text"]})),
            Some("image") => parts.push(image_part(&block["source"], &field)?),
            Some("tool_use") => calls.push(json!({"id": block["id"], "type": "function",
                "function": {"name": block["name"], "arguments": block["input"].to_string()}})),
            Some("tool_result") => {
                let content = match &block["content"] {
                    Value::Null => String::new(),
                    content => block_text(content, &field("content"))?,
                };
                out.push(json!({"role": "tool", "tool_call_id": block["tool_use_id"], "content": content}));
            }
            // An earlier turn's reasoning: history the backend has no field for.
            Some("thinking" | "redacted_thinking") => {}
            other => {
                return Err(Refusal::new(
                    field("content"),
                    format!("blocks of type {other:?} are not carried"),
                ))
            }
        }
    }
    if parts.is_empty() && calls.is_empty() {
        return Ok(());
    }
    let mut chat = json!({"role": role, "content": super::chat_content(parts)});
    if !calls.is_empty() {
        chat["tool_calls"] = Value::Array(calls);
        if chat["content"].as_array().is_some_and(Vec::is_empty) {
            chat["content"] = Value::Null;
        }
    }
    out.push(chat);
    Ok(())
}

fn image_part(source: &Value, field: &dyn Fn(&str) -> String) -> Result<Value, Refusal> {
    let url = match source["type"].as_str() {
        Some("base64") => format!(
            "data:{};base64,{}",
            source["media_type"].as_str().unwrap_or("image/jpeg"),
            source["data"].as_str().unwrap_or_default()
        ),
        Some("url") => source["url"].as_str().unwrap_or_default().to_string(),
        _ => {
            return Err(Refusal::new(
                field("content"),
                "an image needs a base64 or url source",
            ))
        }
    };
    Ok(json!({"type": "image_url", "image_url": {"url": url}}))
}

/// Client tools in Chat Completions' shape; a server tool (web search ...) is refused.
fn tools(tools: &Value) -> Result<Vec<Value>, Refusal> {
    let Some(tools) = tools.as_array() else {
        return Err(Refusal::new("tools", "must be a list"));
    };
    tools
        .iter()
        .map(|tool| match tool["type"].as_str() {
            None | Some("custom") => {
                let mut function =
                    json!({"name": tool["name"], "parameters": tool["input_schema"]});
                if let Some(description) = tool["description"].as_str() {
                    function["description"] = json!(description);
                }
                Ok(json!({"type": "function", "function": function}))
            }
            Some(other) => Err(Refusal::new(
                "tools",
                format!("tools of type {other:?} run on Anthropic's servers, not here"),
            )),
        })
        .collect()
}

fn tool_choice(choice: &Value) -> Result<Value, Refusal> {
    match choice["type"].as_str() {
        Some("auto") => Ok(json!("auto")),
        Some("any") => Ok(json!("required")),
        Some("none") => Ok(json!("none")),
        Some("tool") => Ok(json!({"type": "function", "function": {"name": choice["name"]}})),
        _ => Err(Refusal::new(
            "tool_choice",
            "must be auto, any, tool or none",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn translate(body: Value) -> Result<(ForChat, Value), Refusal> {
        let translated = anthropic_to_chat(body.to_string().as_bytes())?;
        let out = serde_json::from_slice(&translated.body).unwrap();
        Ok((translated, out))
    }

    #[test]
    fn system_blocks_and_sampling_become_a_chat() {
        let (t, out) = translate(json!({"model": "m", "max_tokens": 64, "stream": true,
            "system": [{"type": "text", "text": "be brief"}], "stop_sequences": ["\n\n"],
            "temperature": 0, "metadata": {"user_id": "u1"},
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA=="}}]}]}))
        .unwrap();
        assert_eq!((t.model.as_str(), t.stream), ("m", true));
        assert_eq!(
            out["messages"][0],
            json!({"role": "system", "content": "be brief"})
        );
        assert_eq!(
            out["messages"][1]["content"][1]["image_url"]["url"],
            "data:image/png;base64,AA=="
        );
        assert_eq!(
            (
                out["max_tokens"].clone(),
                out["stop"].clone(),
                out["user"].clone()
            ),
            (json!(64), json!(["\n\n"]), json!("u1"))
        );
        assert_eq!(out["stream_options"]["include_usage"], true);
    }

    #[test]
    fn a_tool_use_and_its_result_round_trip() {
        let (_, out) = translate(json!({"model": "m", "max_tokens": 64,
            "tools": [{"name": "weather", "description": "w", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "tool", "name": "weather"},
            "messages": [
                {"role": "user", "content": "weather in Oslo?"},
                {"role": "assistant", "content": [{"type": "text", "text": "Looking."},
                    {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Oslo"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "cold"}]}]}))
        .unwrap();
        let messages = out["messages"].as_array().unwrap();
        assert_eq!(messages[1]["content"], "Looking.");
        assert_eq!(
            messages[1]["tool_calls"][0]["function"]["arguments"],
            r#"{"city":"Oslo"}"#
        );
        assert_eq!(
            messages[2],
            json!({"role": "tool", "tool_call_id": "toolu_1", "content": "cold"})
        );
        assert_eq!(
            messages.len(),
            3,
            "a user turn of tool results only adds no empty message"
        );
        assert_eq!(out["tools"][0]["function"]["parameters"]["type"], "object");
        assert_eq!(out["tool_choice"]["function"]["name"], "weather");
    }

    #[test]
    fn thinking_and_server_tools_are_refused_by_name() {
        let refused = |body: Value| {
            anthropic_to_chat(body.to_string().as_bytes())
                .unwrap_err()
                .field
        };
        let base = |extra: (&str, Value)| {
            let mut body = json!({"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "x"}]});
            body[extra.0] = extra.1;
            body
        };
        assert_eq!(
            refused(base((
                "thinking",
                json!({"type": "enabled", "budget_tokens": 1024})
            ))),
            "thinking"
        );
        assert_eq!(
            refused(base((
                "tools",
                json!([{"type": "web_search_20250305", "name": "web_search"}])
            ))),
            "tools"
        );
        assert_eq!(refused(base(("mcp_servers", json!([])))), "mcp_servers");
        assert!(anthropic_to_chat(
            base(("thinking", json!({"type": "disabled"})))
                .to_string()
                .as_bytes()
        )
        .is_ok());
    }
}
