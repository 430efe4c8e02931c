//! A Messages request rewritten as a chat completions request.

use serde_json::{Map, Value, json};

use super::{TranslateError, invalid, unsupported};

pub(super) fn messages_to_chat(body: &[u8]) -> Result<Vec<u8>, TranslateError> {
    let request: Value =
        serde_json::from_slice(body).map_err(|e| invalid(format!("the request body is not valid JSON: {e}")))?;
    let Value::Object(request) = request else { return Err(invalid("the request body must be a JSON object")) };
    // Checked first so that a refusal names the member even when other members are also wrong.
    for key in request.keys() {
        if !KNOWN.contains(&key.as_str()) {
            return Err(unsupported(format_args!("the request member `{key}`")));
        }
    }
    // `null` stands for an absent optional member, as the SDKs' own serialisers allow.
    let field = |name: &str| request.get(name).filter(|v| !v.is_null());

    let mut chat = Map::new();
    let model = field("model").ok_or_else(|| invalid("missing field `model`"))?;
    chat.insert("model".into(), Value::String(string(model, "model")?.to_owned()));
    let max_tokens = field("max_tokens").ok_or_else(|| invalid("missing field `max_tokens`"))?;
    if max_tokens.as_u64().is_none() {
        return Err(invalid("`max_tokens` must be a non-negative integer"));
    }
    chat.insert("max_tokens".into(), max_tokens.clone());

    let mut messages = Vec::new();
    if let Some(system) = field("system") {
        messages.push(json!({"role": "system", "content": system_text(system)?}));
    }
    let Some(Value::Array(turns)) = field("messages") else {
        return Err(invalid("`messages` must be a list of messages"));
    };
    for (i, turn) in turns.iter().enumerate() {
        push_turn(turn, i, &mut messages)?;
    }
    chat.insert("messages".into(), Value::Array(messages));

    for name in ["temperature", "top_p"] {
        if let Some(value) = field(name) {
            if !value.is_number() {
                return Err(invalid(format!("`{name}` must be a number")));
            }
            chat.insert(name.into(), value.clone());
        }
    }
    if let Some(top_k) = field("top_k") {
        if top_k.as_u64().is_none() {
            return Err(invalid("`top_k` must be a non-negative integer"));
        }
        chat.insert("top_k".into(), top_k.clone());
    }
    if let Some(stop) = field("stop_sequences") {
        let all_strings = stop.as_array().is_some_and(|s| s.iter().all(Value::is_string));
        if !all_strings {
            return Err(invalid("`stop_sequences` must be a list of strings"));
        }
        chat.insert("stop".into(), stop.clone());
    }
    if let Some(metadata) = field("metadata")
        && let Some(user) = user_id(metadata)?
    {
        chat.insert("user".into(), Value::String(user.to_owned()));
    }
    if let Some(stream) = field("stream") {
        let Some(stream) = stream.as_bool() else { return Err(invalid("`stream` must be true or false")) };
        chat.insert("stream".into(), Value::Bool(stream));
        if stream {
            chat.insert("stream_options".into(), json!({"include_usage": true}));
        }
    }
    if let Some(tools) = field("tools") {
        let Some(tools) = tools.as_array() else { return Err(invalid("`tools` must be a list")) };
        let tools = tools.iter().map(function_tool).collect::<Result<Vec<_>, _>>()?;
        chat.insert("tools".into(), Value::Array(tools));
    }
    if let Some(choice) = field("tool_choice") {
        tool_choice(choice, &mut chat)?;
    }
    if let Some(thinking) = field("thinking") {
        match thinking.get("type").and_then(Value::as_str) {
            Some("disabled") => {}
            Some(kind) => return Err(unsupported(format_args!("extended thinking (`thinking.type` `{kind}`)"))),
            None => return Err(invalid("`thinking.type` must be a string")),
        }
    }
    Ok(Value::Object(chat).to_string().into_bytes())
}

/// The top-level members this module reads or deliberately ignores (`service_tier`).
const KNOWN: &[&str] = &[
    "model",
    "max_tokens",
    "messages",
    "system",
    "stop_sequences",
    "stream",
    "temperature",
    "top_p",
    "top_k",
    "tools",
    "tool_choice",
    "metadata",
    "thinking",
    "service_tier",
];

fn string<'a>(value: &'a Value, what: &str) -> Result<&'a str, TranslateError> {
    value.as_str().ok_or_else(|| invalid(format!("`{what}` must be a string")))
}

fn blocks<'a>(value: &'a Value, what: &str) -> Result<&'a [Value], TranslateError> {
    value.as_array().map(Vec::as_slice).ok_or_else(|| invalid(format!("`{what}` must be a string or a list of blocks")))
}

fn block_type<'a>(block: &'a Value, what: &str) -> Result<&'a str, TranslateError> {
    block.get("type").and_then(Value::as_str).ok_or_else(|| invalid(format!("every block in `{what}` needs a `type`")))
}

fn block_text<'a>(block: &'a Value, what: &str) -> Result<&'a str, TranslateError> {
    block.get("text").and_then(Value::as_str).ok_or_else(|| invalid(format!("a text block in `{what}` needs `text`")))
}

fn system_text(system: &Value) -> Result<String, TranslateError> {
    if let Some(text) = system.as_str() {
        return Ok(text.to_owned());
    }
    let mut texts = Vec::new();
    for block in blocks(system, "system")? {
        match block_type(block, "system")? {
            "text" => texts.push(block_text(block, "system")?),
            other => return Err(unsupported(format_args!("a `{other}` block in `system`"))),
        }
    }
    Ok(texts.join("\n\n"))
}

fn user_id(metadata: &Value) -> Result<Option<&str>, TranslateError> {
    let Some(metadata) = metadata.as_object() else { return Err(invalid("`metadata` must be an object")) };
    if let Some(key) = metadata.keys().find(|k| *k != "user_id") {
        return Err(unsupported(format_args!("the request member `metadata.{key}`")));
    }
    match metadata.get("user_id") {
        None | Some(Value::Null) => Ok(None),
        Some(user) => string(user, "metadata.user_id").map(Some),
    }
}

/// Appends the chat messages for the Messages API's `messages[i]`.
fn push_turn(turn: &Value, i: usize, out: &mut Vec<Value>) -> Result<(), TranslateError> {
    let role = turn.get("role").and_then(Value::as_str);
    let content = turn.get("content").ok_or_else(|| invalid(format!("`messages[{i}]` has no `content`")))?;
    match role {
        Some("user") => user_turn(content, i, out),
        Some("assistant") => {
            out.push(assistant_turn(content, i)?);
            Ok(())
        }
        Some(other) => Err(invalid(format!("`messages[{i}].role` is `{other}`; it must be `user` or `assistant`"))),
        None => Err(invalid(format!("`messages[{i}].role` must be `user` or `assistant`"))),
    }
}

fn user_turn(content: &Value, i: usize, out: &mut Vec<Value>) -> Result<(), TranslateError> {
    if let Some(text) = content.as_str() {
        out.push(json!({"role": "user", "content": text}));
        return Ok(());
    }
    let what = format!("messages[{i}].content");
    let mut parts = Vec::new();
    let mut tool_results = 0;
    for block in blocks(content, &what)? {
        match block_type(block, &what)? {
            "text" => parts.push(json!({"type": "text", "text": block_text(block, &what)?})),
            "image" => parts.push(image_part(block, &what)?),
            "tool_result" => {
                out.push(tool_message(block, &what)?);
                tool_results += 1;
            }
            "tool_use" => return Err(invalid(format!("`{what}`: `tool_use` blocks belong in assistant messages"))),
            other => return Err(unsupported(format_args!("content block type `{other}`"))),
        }
    }
    // A turn of only tool results is wholly carried by the tool messages.
    if parts.is_empty() && tool_results > 0 {
        return Ok(());
    }
    let content = match parts.as_slice() {
        [only] if only["type"] == "text" => only["text"].clone(),
        _ => Value::Array(parts),
    };
    out.push(json!({"role": "user", "content": content}));
    Ok(())
}

fn assistant_turn(content: &Value, i: usize) -> Result<Value, TranslateError> {
    if let Some(text) = content.as_str() {
        return Ok(json!({"role": "assistant", "content": text}));
    }
    let what = format!("messages[{i}].content");
    let mut text = String::new();
    let mut calls = Vec::new();
    for block in blocks(content, &what)? {
        match block_type(block, &what)? {
            "text" => text.push_str(block_text(block, &what)?),
            "tool_use" => calls.push(tool_call(block, &what)?),
            "image" => return Err(unsupported("an image in an assistant message")),
            "tool_result" => return Err(invalid(format!("`{what}`: `tool_result` blocks belong in user messages"))),
            other => return Err(unsupported(format_args!("content block type `{other}`"))),
        }
    }
    if calls.is_empty() {
        return Ok(json!({"role": "assistant", "content": text}));
    }
    let text = if text.is_empty() { Value::Null } else { Value::String(text) };
    Ok(json!({"role": "assistant", "content": text, "tool_calls": calls}))
}

fn image_part(block: &Value, what: &str) -> Result<Value, TranslateError> {
    let source = block.get("source").ok_or_else(|| invalid(format!("an image in `{what}` needs a `source`")))?;
    let field = |name: &str| {
        source
            .get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| invalid(format!("an image source in `{what}` needs `{name}`")))
    };
    let url = match source.get("type").and_then(Value::as_str) {
        Some("base64") => format!("data:{};base64,{}", field("media_type")?, field("data")?),
        Some("url") => field("url")?.to_owned(),
        Some(other) => return Err(unsupported(format_args!("image source type `{other}`"))),
        None => return Err(invalid(format!("an image source in `{what}` needs a `type`"))),
    };
    Ok(json!({"type": "image_url", "image_url": {"url": url}}))
}

fn tool_call(block: &Value, what: &str) -> Result<Value, TranslateError> {
    let field = |name: &str| {
        block
            .get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| invalid(format!("a `tool_use` block in `{what}` needs `{name}`")))
    };
    let input = block.get("input").ok_or_else(|| invalid(format!("a `tool_use` block in `{what}` needs `input`")))?;
    Ok(json!({
        "id": field("id")?,
        "type": "function",
        "function": {"name": field("name")?, "arguments": input.to_string()},
    }))
}

fn tool_message(block: &Value, what: &str) -> Result<Value, TranslateError> {
    let id = block
        .get("tool_use_id")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(format!("a `tool_result` block in `{what}` needs `tool_use_id`")))?;
    let mut text = match block.get("content") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(text)) => text.clone(),
        Some(content) => {
            let what = format!("{what}[].content");
            let mut texts = Vec::new();
            for inner in blocks(content, &what)? {
                match block_type(inner, &what)? {
                    "text" => texts.push(block_text(inner, &what)?),
                    "image" => return Err(unsupported("an image inside a `tool_result`")),
                    other => {
                        return Err(unsupported(format_args!("content block type `{other}` inside a `tool_result`")));
                    }
                }
            }
            texts.join("\n\n")
        }
    };
    if block.get("is_error").and_then(Value::as_bool) == Some(true) {
        text.insert_str(0, "Error: ");
    }
    Ok(json!({"role": "tool", "tool_call_id": id, "content": text}))
}

fn function_tool(tool: &Value) -> Result<Value, TranslateError> {
    match tool.get("type") {
        None | Some(Value::Null) => {}
        Some(Value::String(kind)) if kind == "custom" => {}
        Some(Value::String(kind)) => return Err(unsupported(format_args!("the server tool `{kind}`"))),
        Some(_) => return Err(invalid("a tool's `type` must be a string")),
    }
    let name = tool.get("name").and_then(Value::as_str).ok_or_else(|| invalid("every tool needs a `name`"))?;
    let schema = tool
        .get("input_schema")
        .filter(|s| s.is_object())
        .ok_or_else(|| invalid(format!("the tool `{name}` needs an `input_schema` object")))?;
    let mut function = json!({"name": name, "parameters": schema});
    if let Some(description) = tool.get("description").filter(|d| !d.is_null()) {
        function["description"] = Value::String(string(description, "tools[].description")?.to_owned());
    }
    Ok(json!({"type": "function", "function": function}))
}

fn tool_choice(choice: &Value, chat: &mut Map<String, Value>) -> Result<(), TranslateError> {
    let value = match choice.get("type").and_then(Value::as_str) {
        Some("auto") => json!("auto"),
        Some("any") => json!("required"),
        Some("none") => json!("none"),
        Some("tool") => {
            let name = choice
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| invalid("`tool_choice` of type `tool` needs a `name`"))?;
            json!({"type": "function", "function": {"name": name}})
        }
        Some(other) => return Err(invalid(format!("`tool_choice.type` `{other}` is not a Messages API tool choice"))),
        None => return Err(invalid("`tool_choice.type` must be a string")),
    };
    chat.insert("tool_choice".into(), value);
    if choice.get("disable_parallel_tool_use").and_then(Value::as_bool) == Some(true) {
        chat.insert("parallel_tool_calls".into(), Value::Bool(false));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn chat(request: Value) -> Value {
        serde_json::from_slice(&messages_to_chat(request.to_string().as_bytes()).unwrap()).unwrap()
    }

    fn refusal(request: Value) -> TranslateError {
        messages_to_chat(request.to_string().as_bytes()).unwrap_err()
    }

    /// A minimal request with `extra` members added.
    fn with(extra: Value) -> Value {
        let mut request = json!({"model": "m", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]});
        if let (Some(request), Value::Object(extra)) = (request.as_object_mut(), extra) {
            request.extend(extra);
        }
        request
    }

    fn assert_unsupported(err: TranslateError, names: &str) {
        match err {
            TranslateError::Unsupported(message) => {
                assert!(message.contains(names), "{message:?} should name {names:?}");
                assert!(message.ends_with(super::super::NOT_SUPPORTED), "{message:?}");
            }
            other => panic!("expected Unsupported naming {names:?}, got {other:?}"),
        }
    }

    #[test]
    fn sampling_parameters_carry_over() {
        let got = chat(with(json!({
            "temperature": 0.5, "top_p": 0.9, "top_k": 40, "stop_sequences": ["###"],
            "metadata": {"user_id": "u-1"}, "service_tier": "auto", "thinking": {"type": "disabled"},
        })));
        assert_eq!(
            got,
            json!({
                "model": "m", "max_tokens": 16, "temperature": 0.5, "top_p": 0.9, "top_k": 40, "stop": ["###"],
                "user": "u-1", "messages": [{"role": "user", "content": "hi"}],
            })
        );
    }

    #[test]
    fn streams_ask_for_usage() {
        let got = chat(with(json!({"stream": true})));
        assert_eq!(got["stream"], true);
        assert_eq!(got["stream_options"], json!({"include_usage": true}));
        let got = chat(with(json!({"stream": false})));
        assert_eq!(got["stream"], false);
        assert!(got.get("stream_options").is_none());
    }

    #[test]
    fn system_as_string_or_text_blocks() {
        let got = chat(with(json!({"system": "Be brief."})));
        assert_eq!(got["messages"][0], json!({"role": "system", "content": "Be brief."}));
        let got = chat(with(json!({"system": [
            {"type": "text", "text": "Be brief."},
            {"type": "text", "text": "Be kind.", "cache_control": {"type": "ephemeral"}},
        ]})));
        assert_eq!(got["messages"][0], json!({"role": "system", "content": "Be brief.\n\nBe kind."}));
        assert_eq!(got["messages"][1], json!({"role": "user", "content": "hi"}));
        assert_unsupported(refusal(with(json!({"system": [{"type": "image", "source": {}}]}))), "`image`");
    }

    #[test]
    fn text_and_images() {
        let got = chat(with(json!({"messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "What is this?", "cache_control": {"type": "ephemeral"}},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/a.jpg"}},
            ]},
            {"role": "assistant", "content": [{"type": "text", "text": "A "}, {"type": "text", "text": "cat."}]},
            {"role": "user", "content": [{"type": "text", "text": "Sure?"}]},
        ]})));
        assert_eq!(
            got["messages"],
            json!([
                {"role": "user", "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}},
                ]},
                {"role": "assistant", "content": "A cat."},
                {"role": "user", "content": "Sure?"},
            ])
        );
    }

    #[test]
    fn tool_use_and_results() {
        let got = chat(with(json!({"messages": [
            {"role": "user", "content": "Read both files."},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Reading."},
                {"type": "tool_use", "id": "toolu_1", "name": "read", "input": {"path": "a"}},
                {"type": "tool_use", "id": "toolu_2", "name": "read", "input": {"path": "b"}},
            ]},
            {"role": "user", "content": [
                {"type": "text", "text": "Here they are."},
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": [
                    {"type": "text", "text": "line 1"}, {"type": "text", "text": "line 2"},
                ]},
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": "no such file", "is_error": true},
            ]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_3", "name": "ls", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_3"}]},
        ]})));
        assert_eq!(
            got["messages"],
            json!([
                {"role": "user", "content": "Read both files."},
                {"role": "assistant", "content": "Reading.", "tool_calls": [
                    {"id": "toolu_1", "type": "function", "function": {"name": "read", "arguments": "{\"path\":\"a\"}"}},
                    {"id": "toolu_2", "type": "function", "function": {"name": "read", "arguments": "{\"path\":\"b\"}"}},
                ]},
                {"role": "tool", "tool_call_id": "toolu_1", "content": "line 1\n\nline 2"},
                {"role": "tool", "tool_call_id": "toolu_2", "content": "Error: no such file"},
                {"role": "user", "content": "Here they are."},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "toolu_3", "type": "function", "function": {"name": "ls", "arguments": "{}"}},
                ]},
                {"role": "tool", "tool_call_id": "toolu_3", "content": ""},
            ])
        );
    }

    #[test]
    fn tools_and_every_tool_choice() {
        let tools = json!([
            {"name": "read", "description": "Reads a file", "input_schema": {"type": "object"},
             "cache_control": {"type": "ephemeral"}},
            {"type": "custom", "name": "ls", "input_schema": {"type": "object", "properties": {}}},
        ]);
        let got = chat(with(json!({"tools": tools})));
        assert_eq!(
            got["tools"],
            json!([
                {"type": "function", "function": {"name": "read", "description": "Reads a file",
                    "parameters": {"type": "object"}}},
                {"type": "function", "function": {"name": "ls", "parameters": {"type": "object", "properties": {}}}},
            ])
        );
        for (choice, want) in [
            (json!({"type": "auto"}), json!("auto")),
            (json!({"type": "any"}), json!("required")),
            (json!({"type": "none"}), json!("none")),
            (json!({"type": "tool", "name": "ls"}), json!({"type": "function", "function": {"name": "ls"}})),
        ] {
            let got = chat(with(json!({"tools": tools, "tool_choice": choice})));
            assert_eq!(got["tool_choice"], want, "{choice}");
            assert!(got.get("parallel_tool_calls").is_none());
        }
        let got =
            chat(with(json!({"tools": tools, "tool_choice": {"type": "any", "disable_parallel_tool_use": true}})));
        assert_eq!(got["tool_choice"], "required");
        assert_eq!(got["parallel_tool_calls"], false);
    }

    #[test]
    fn refusals_name_what_they_refuse() {
        assert_unsupported(refusal(with(json!({"thinking": {"type": "enabled", "budget_tokens": 1024}}))), "thinking");
        assert_unsupported(
            refusal(with(json!({"messages": [{"role": "user", "content": [
                {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "x"}},
            ]}]}))),
            "content block type `document`",
        );
        assert_unsupported(
            refusal(with(json!({"messages": [{"role": "assistant", "content": [
                {"type": "thinking", "thinking": "hm", "signature": "s"},
            ]}]}))),
            "`thinking`",
        );
        assert_unsupported(
            refusal(with(json!({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}))),
            "`web_search_20250305`",
        );
        assert_unsupported(refusal(with(json!({"container": "c-1"}))), "`container`");
        assert_unsupported(refusal(with(json!({"mcp_servers": []}))), "`mcp_servers`");
        assert_unsupported(refusal(with(json!({"frobnicate": 1}))), "`frobnicate`");
        assert_unsupported(
            refusal(with(json!({"messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t",
                "content": [{"type": "image", "source": {"type": "url", "url": "https://x/y.png"}}]}]}]}))),
            "image inside a `tool_result`",
        );
        assert_unsupported(
            refusal(with(json!({"messages": [{"role": "assistant", "content": [
                {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}},
            ]}]}))),
            "image in an assistant message",
        );
        assert_unsupported(
            refusal(with(json!({"messages": [{"role": "user", "content": [
                {"type": "image", "source": {"type": "file", "file_id": "f"}},
            ]}]}))),
            "`file`",
        );
    }

    #[test]
    fn invalid_requests_say_why() {
        let invalid = |body: &[u8]| match messages_to_chat(body) {
            Err(TranslateError::Invalid(message)) => message,
            other => panic!("expected Invalid, got {other:?}"),
        };
        assert!(invalid(b"{not json").contains("not valid JSON"));
        assert!(invalid(b"[1]").contains("JSON object"));
        assert_eq!(invalid(br#"{"model":"m","messages":[]}"#), "missing field `max_tokens`");
        assert!(invalid(br#"{"model":"m","max_tokens":1,"messages":{}}"#).contains("`messages` must be a list"));
        assert!(invalid(br#"{"model":"m","max_tokens":1}"#).contains("`messages` must be a list"));
        assert!(
            invalid(br#"{"model":"m","max_tokens":1,"messages":[{"role":"system","content":"x"}]}"#)
                .contains("`system`")
        );
        assert!(invalid(br#"{"model":"m","max_tokens":1,"messages":[],"stream":"yes"}"#).contains("`stream`"));
    }
}
