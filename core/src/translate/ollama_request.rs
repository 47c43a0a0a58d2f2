//! An Ollama request, as the OpenAI request a backend without Ollama's API understands.
//!
//! `/api/chat` becomes `/v1/chat/completions`; `/api/generate` too (Ollama applies the model's
//! chat template to a prompt, as a chat endpoint does), unless it is `raw`, which is a plain
//! completion (`/v1/completions`); `/api/embed` and `/api/embeddings` become `/v1/embeddings`.

use serde_json::{json, Map, Value};

use super::{set_stream, OllamaShape, Refusal};

/// A translated request: where to send it, what to send, and what its answer must become.
#[derive(Clone, Debug, PartialEq)]
pub struct ForOpenAi {
    /// The OpenAI path on the backend.
    pub path: &'static str,
    pub body: Vec<u8>,
    /// The Ollama shape the answer is translated back into.
    pub shape: OllamaShape,
    /// The model as the client named it (Ollama's answers repeat it).
    pub model: String,
    /// Whether the client asked for a stream (Ollama's default when it says nothing).
    pub stream: bool,
}

type Object = Map<String, Value>;

/// Translates the Ollama request `body` to `path` into OpenAI's API.
pub fn ollama_to_openai(path: &str, body: &[u8]) -> Result<ForOpenAi, Refusal> {
    let request: Object = serde_json::from_slice(body)
        .map_err(|e| Refusal::new("body", format!("not a JSON object: {e}")))?;
    let model = match request.get("model") {
        Some(Value::String(model)) if !model.is_empty() => model.clone(),
        _ => return Err(Refusal::new("model", "a model must be named")),
    };
    let (openai_path, shape, out) = match path {
        "/api/chat" => ("/v1/chat/completions", OllamaShape::Chat, chat(&request)?),
        "/api/generate" => generate(&request)?,
        "/api/embed" => ("/v1/embeddings", OllamaShape::Embed, embed(&request)?),
        "/api/embeddings" => (
            "/v1/embeddings",
            OllamaShape::EmbeddingsLegacy,
            embeddings_legacy(&request)?,
        ),
        other => {
            return Err(Refusal::new(
                "path",
                format!("{other} has no counterpart in OpenAI's API"),
            ))
        }
    };
    let stream = out.get("stream").and_then(Value::as_bool) == Some(true);
    let mut out = out;
    out.insert("model".into(), Value::String(model.clone()));
    Ok(ForOpenAi {
        path: openai_path,
        body: serde_json::to_vec(&out).expect("a JSON map serializes"),
        shape,
        model,
        stream,
    })
}

/// `/api/chat`.
fn chat(request: &Object) -> Result<Object, Refusal> {
    refuse_thinking(request)?;
    let messages = match request.get("messages") {
        Some(Value::Array(messages)) => messages,
        None | Some(Value::Null) => &Vec::new(),
        Some(_) => return Err(Refusal::new("messages", "must be a list")),
    };
    let mut out = Object::new();
    out.insert("messages".into(), Value::Array(chat_messages(messages)?));
    if let Some(tools) = request.get("tools").filter(|t| !t.is_null()) {
        out.insert("tools".into(), tools.clone());
    }
    streaming(request, &mut out);
    response_format(request, &mut out)?;
    sampling(request, &mut out)?;
    Ok(out)
}

/// `/api/generate`: a chat of one prompt, or with `raw`, a plain completion.
fn generate(request: &Object) -> Result<(&'static str, OllamaShape, Object), Refusal> {
    refuse_thinking(request)?;
    for field in ["template", "suffix"] {
        if text(request, field)?.is_some_and(|t| !t.is_empty()) {
            return Err(Refusal::new(
                field,
                "an OpenAI-API backend applies its own template and takes no suffix",
            ));
        }
    }
    if request
        .get("context")
        .is_some_and(|c| c.as_array().is_some_and(|c| !c.is_empty()))
    {
        return Err(Refusal::new(
            "context",
            "an OpenAI-API backend keeps no context between requests; send the conversation to /api/chat",
        ));
    }
    let prompt = text(request, "prompt")?.unwrap_or_default();
    let raw = request.get("raw").and_then(Value::as_bool) == Some(true);
    let mut out = Object::new();
    let path = if raw {
        if request.get("images").is_some_and(|i| !i.is_null()) {
            return Err(Refusal::new("images", "a raw prompt cannot carry images"));
        }
        out.insert("prompt".into(), Value::String(prompt.to_string()));
        "/v1/completions"
    } else {
        let mut messages = Vec::new();
        if let Some(system) = text(request, "system")?.filter(|s| !s.is_empty()) {
            messages.push(json!({"role": "system", "content": system}));
        }
        let user = json!({"role": "user", "content": prompt, "images": request.get("images")});
        messages.extend(chat_messages(&[user])?);
        out.insert("messages".into(), Value::Array(messages));
        "/v1/chat/completions"
    };
    streaming(request, &mut out);
    response_format(request, &mut out)?;
    sampling(request, &mut out)?;
    Ok((path, OllamaShape::Generate, out))
}

/// `/api/embed`: `input` is a text or a list of texts.
fn embed(request: &Object) -> Result<Object, Refusal> {
    refuse_options(request)?;
    let mut out = Object::new();
    match request.get("input") {
        Some(input @ (Value::String(_) | Value::Array(_))) => {
            out.insert("input".into(), input.clone());
        }
        _ => return Err(Refusal::new("input", "must be a text or a list of texts")),
    }
    if let Some(dimensions) = request.get("dimensions").filter(|d| !d.is_null()) {
        out.insert("dimensions".into(), dimensions.clone());
    }
    Ok(out)
}

/// `/api/embeddings`: one `prompt`.
fn embeddings_legacy(request: &Object) -> Result<Object, Refusal> {
    refuse_options(request)?;
    let prompt = text(request, "prompt")?.unwrap_or_default();
    let mut out = Object::new();
    out.insert("input".into(), Value::String(prompt.to_string()));
    Ok(out)
}

/// A text field, if there (`null` is absent).
fn text<'a>(request: &'a Object, field: &str) -> Result<Option<&'a str>, Refusal> {
    match request.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(Refusal::new(field, "must be a string")),
    }
}

fn refuse_thinking(request: &Object) -> Result<(), Refusal> {
    match request.get("think") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => Ok(()),
        Some(_) => Err(Refusal::new(
            "think",
            "an OpenAI-API backend has no separate thinking output",
        )),
    }
}

fn refuse_options(request: &Object) -> Result<(), Refusal> {
    match request.get("options") {
        Some(Value::Object(options)) if !options.is_empty() => Err(Refusal::new(
            "options",
            "an OpenAI-API backend takes no model options for embeddings",
        )),
        _ => Ok(()),
    }
}

/// Ollama streams unless told not to; OpenAI only when told to.
fn streaming(request: &Object, out: &mut Object) {
    set_stream(
        out,
        request.get("stream").and_then(Value::as_bool) != Some(false),
    );
}

/// `format`: `"json"`, or a JSON schema.
fn response_format(request: &Object, out: &mut Object) -> Result<(), Refusal> {
    let format = match request.get("format") {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::String(s)) if s.is_empty() => return Ok(()),
        Some(Value::String(s)) if s == "json" => json!({"type": "json_object"}),
        Some(schema @ Value::Object(_)) => {
            json!({"type": "json_schema", "json_schema": {"name": "format", "schema": schema}})
        }
        Some(_) => return Err(Refusal::new("format", "must be \"json\" or a JSON schema")),
    };
    out.insert("response_format".into(), format);
    Ok(())
}

/// Options an OpenAI-API server takes under the same name (llama.cpp's server and vLLM take
/// `top_k`, `min_p` and `repeat_penalty` beside OpenAI's own).
const SAME_NAME_OPTIONS: [&str; 8] = [
    "temperature",
    "top_p",
    "seed",
    "stop",
    "presence_penalty",
    "frequency_penalty",
    "top_k",
    "min_p",
];

/// `options`: sampling, as OpenAI's fields. One the backend cannot take per request
/// (`num_ctx`, `num_gpu` ...: a server's own settings) is refused, not dropped.
fn sampling(request: &Object, out: &mut Object) -> Result<(), Refusal> {
    let options = match request.get("options") {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Object(options)) => options,
        Some(_) => return Err(Refusal::new("options", "must be an object")),
    };
    for (name, value) in options {
        if value.is_null() {
            continue;
        }
        match name.as_str() {
            name if SAME_NAME_OPTIONS.contains(&name) => {
                out.insert(name.to_string(), value.clone());
            }
            "repeat_penalty" => {
                out.insert(name.clone(), value.clone());
            }
            // Negative: no limit, OpenAI's default.
            "num_predict" => match value.as_i64() {
                Some(n) if n < 0 => {}
                Some(n) => {
                    out.insert("max_tokens".into(), json!(n));
                }
                None => return Err(Refusal::new("options.num_predict", "must be an integer")),
            },
            other => {
                return Err(Refusal::new(
                    format!("options.{other}"),
                    "an OpenAI-API backend takes no such setting per request",
                ))
            }
        }
    }
    Ok(())
}

/// Ollama's messages as OpenAI's: images become `image_url` parts with data URLs, an
/// assistant's tool calls get ids (Ollama has none) and arguments as JSON text, and each tool
/// answer names the call it answers, in order.
fn chat_messages(messages: &[Value]) -> Result<Vec<Value>, Refusal> {
    let mut out = Vec::with_capacity(messages.len());
    let mut calls_made = 0usize;
    let mut calls_answered = 0usize;
    for (at, message) in messages.iter().enumerate() {
        let field = |name: &str| format!("messages[{at}].{name}");
        let Value::Object(message) = message else {
            return Err(Refusal::new(format!("messages[{at}]"), "must be an object"));
        };
        let role = match message.get("role") {
            Some(Value::String(role)) => role.as_str(),
            _ => return Err(Refusal::new(field("role"), "must be a string")),
        };
        let content = match message.get("content") {
            None | Some(Value::Null) => "",
            Some(Value::String(content)) => content,
            Some(_) => return Err(Refusal::new(field("content"), "must be a string")),
        };
        let mut translated = Object::new();
        translated.insert("role".into(), Value::String(role.to_string()));
        translated.insert(
            "content".into(),
            with_images(content, message.get("images"), &field)?,
        );
        if let Some(Value::Array(calls)) = message.get("tool_calls") {
            let calls = calls
                .iter()
                .map(|call| {
                    calls_made += 1;
                    tool_call(call, calls_made - 1)
                })
                .collect();
            translated.insert("tool_calls".into(), Value::Array(calls));
        }
        if role == "tool" {
            translated.insert(
                "tool_call_id".into(),
                Value::String(call_id(calls_answered.min(calls_made.saturating_sub(1)))),
            );
            calls_answered += 1;
        }
        out.push(Value::Object(translated));
    }
    Ok(out)
}

/// The id the translation gives the `n`th tool call of a conversation.
fn call_id(n: usize) -> String {
    format!("call_{n}")
}

/// Ollama's `{"function": {"name", "arguments": {...}}}` as OpenAI's call.
fn tool_call(call: &Value, n: usize) -> Value {
    let function = &call["function"];
    let arguments = match &function["arguments"] {
        Value::String(text) => text.clone(),
        Value::Null => "{}".to_string(),
        other => other.to_string(),
    };
    json!({"id": call_id(n), "type": "function",
        "function": {"name": function["name"], "arguments": arguments}})
}

/// A message's text, with its images (base64, no media type) as `image_url` parts.
fn with_images(
    content: &str,
    images: Option<&Value>,
    field: &dyn Fn(&str) -> String,
) -> Result<Value, Refusal> {
    let images = match images {
        None | Some(Value::Null) => return Ok(Value::String(content.to_string())),
        Some(Value::Array(images)) if images.is_empty() => {
            return Ok(Value::String(content.to_string()))
        }
        Some(Value::Array(images)) => images,
        Some(_) => return Err(Refusal::new(field("images"), "must be a list")),
    };
    let mut parts = vec![json!({"type": "text", "text": content})];
    for image in images {
        let Value::String(image) = image else {
            return Err(Refusal::new(field("images"), "must be base64 texts"));
        };
        let url = format!("data:{};base64,{image}", image_media_type(image));
        parts.push(json!({"type": "image_url", "image_url": {"url": url}}));
    }
    Ok(Value::Array(parts))
}

/// An image's media type from its first bytes (base64): Ollama sends none.
fn image_media_type(base64: &str) -> &'static str {
    if base64.starts_with("iVBOR") {
        "image/png"
    } else if base64.starts_with("R0lGOD") {
        "image/gif"
    } else if base64.starts_with("UklGR") {
        "image/webp"
    } else {
        "image/jpeg"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn translate(path: &str, body: Value) -> Result<(ForOpenAi, Value), Refusal> {
        let translated = ollama_to_openai(path, body.to_string().as_bytes())?;
        let out = serde_json::from_slice(&translated.body).unwrap();
        Ok((translated, out))
    }

    #[test]
    fn a_chat_keeps_roles_sampling_and_streams_by_default() {
        let (t, out) = translate(
            "/api/chat",
            json!({"model": "qwen", "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "hi", "images": ["iVBORw0KGgo="]}],
                "options": {"temperature": 0, "num_predict": 5, "stop": ["\n"], "seed": 7},
                "format": "json", "keep_alive": "5m"}),
        )
        .unwrap();
        assert_eq!(
            (t.path, t.shape, t.stream),
            ("/v1/chat/completions", OllamaShape::Chat, true)
        );
        assert_eq!(out["model"], "qwen");
        assert_eq!(out["stream_options"]["include_usage"], true);
        assert_eq!(
            out["messages"][0],
            json!({"role": "system", "content": "be brief"})
        );
        assert_eq!(
            out["messages"][1]["content"][1]["image_url"]["url"],
            "data:image/png;base64,iVBORw0KGgo="
        );
        assert_eq!(out["max_tokens"], 5);
        assert_eq!(out["temperature"], 0);
        assert_eq!(out["stop"], json!(["\n"]));
        assert_eq!(out["seed"], 7);
        assert_eq!(out["response_format"]["type"], "json_object");
        assert!(out.get("keep_alive").is_none());
    }

    #[test]
    fn tool_calls_get_ids_and_their_answers_name_them() {
        let (_, out) = translate(
            "/api/chat",
            json!({"model": "m", "stream": false, "messages": [
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": "", "tool_calls": [
                    {"function": {"name": "weather", "arguments": {"city": "Oslo"}}}]},
                {"role": "tool", "content": "cold", "tool_name": "weather"}],
                "tools": [{"type": "function", "function": {"name": "weather"}}]}),
        )
        .unwrap();
        let call = &out["messages"][1]["tool_calls"][0];
        assert_eq!(call["id"], "call_0");
        assert_eq!(call["function"]["arguments"], r#"{"city":"Oslo"}"#);
        assert_eq!(out["messages"][2]["tool_call_id"], "call_0");
        assert_eq!(out["tools"][0]["function"]["name"], "weather");
        assert_eq!(out["stream"], false);
        assert!(out.get("stream_options").is_none());
    }

    #[test]
    fn generate_is_a_chat_unless_raw() {
        let (t, out) = translate(
            "/api/generate",
            json!({"model": "m", "prompt": "once", "system": "tell", "stream": false}),
        )
        .unwrap();
        assert_eq!(
            (t.path, t.shape),
            ("/v1/chat/completions", OllamaShape::Generate)
        );
        assert_eq!(
            out["messages"][1],
            json!({"role": "user", "content": "once"})
        );
        let (t, out) = translate(
            "/api/generate",
            json!({"model": "m", "prompt": "once", "raw": true}),
        )
        .unwrap();
        assert_eq!(t.path, "/v1/completions");
        assert_eq!(out["prompt"], "once");
    }

    #[test]
    fn embeddings_take_their_input() {
        let (t, out) = translate("/api/embed", json!({"model": "e", "input": ["a", "b"]})).unwrap();
        assert_eq!(
            (t.path, t.shape, t.stream),
            ("/v1/embeddings", OllamaShape::Embed, false)
        );
        assert_eq!(out["input"], json!(["a", "b"]));
        let (t, out) = translate("/api/embeddings", json!({"model": "e", "prompt": "a"})).unwrap();
        assert_eq!(t.shape, OllamaShape::EmbeddingsLegacy);
        assert_eq!(out["input"], "a");
    }

    #[test]
    fn what_the_backend_cannot_honour_is_refused_by_name() {
        let refused = |path: &str, body: Value| {
            ollama_to_openai(path, body.to_string().as_bytes())
                .unwrap_err()
                .field
        };
        assert_eq!(
            refused(
                "/api/chat",
                json!({"model": "m", "options": {"num_ctx": 8192}})
            ),
            "options.num_ctx"
        );
        assert_eq!(
            refused("/api/chat", json!({"model": "m", "think": true})),
            "think"
        );
        assert_eq!(
            refused(
                "/api/generate",
                json!({"model": "m", "template": "{{ .Prompt }}"})
            ),
            "template"
        );
        assert_eq!(
            refused("/api/generate", json!({"model": "m", "context": [1, 2]})),
            "context"
        );
        assert_eq!(refused("/api/chat", json!({"messages": []})), "model");
        assert_eq!(
            refused(
                "/api/chat",
                json!({"model": "m", "messages": [{"role": "user", "content": 3}]})
            ),
            "messages[0].content"
        );
        assert_eq!(refused("/api/embed", json!({"model": "m"})), "input");
        assert_eq!(refused("/api/pull", json!({"model": "m"})), "path");
    }
}
