//! A whole chat completion rewritten as a Messages answer.

use serde_json::{Value, json};

use super::{TranslateError, Usage, call_id, invalid, stop_reason};

pub(super) fn chat_to_messages(body: &[u8], model: &str) -> Result<Vec<u8>, TranslateError> {
    let answer: Value =
        serde_json::from_slice(body).map_err(|e| invalid(format!("the worker's answer is not valid JSON: {e}")))?;
    if !answer.is_object() {
        return Err(invalid("the worker's answer is not a JSON object"));
    }
    let choice = answer
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
        .ok_or_else(|| invalid("the worker's answer has no choices"))?;
    let message = choice.get("message").unwrap_or(&Value::Null);

    let mut content = Vec::new();
    match message.get("content") {
        None | Some(Value::Null) => {}
        Some(Value::String(text)) if text.is_empty() => {}
        Some(Value::String(text)) => content.push(json!({"type": "text", "text": text})),
        Some(_) => return Err(invalid("the worker's message content is not a string")),
    }
    let calls = match message.get("tool_calls") {
        None | Some(Value::Null) => &[][..],
        Some(Value::Array(calls)) => calls.as_slice(),
        Some(_) => return Err(invalid("the worker's tool calls are not a list")),
    };
    for (i, call) in calls.iter().enumerate() {
        content.push(tool_use(call, i)?);
    }

    let (stop_reason, stop_sequence) = stop_reason(choice, !calls.is_empty());
    let usage = Usage::from_chat(answer.get("usage").unwrap_or(&Value::Null));
    let id = answer.get("id").and_then(Value::as_str).unwrap_or("sluice");
    let message = json!({
        "id": format!("msg_{id}"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": {
            "input_tokens": usage.input,
            "output_tokens": usage.output,
            "cache_read_input_tokens": usage.cached,
            "cache_creation_input_tokens": 0,
        },
    });
    Ok(message.to_string().into_bytes())
}

fn tool_use(call: &Value, i: usize) -> Result<Value, TranslateError> {
    let function = call.get("function").ok_or_else(|| invalid("a tool call in the worker's answer has no function"))?;
    let name = function
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("a tool call in the worker's answer has no function name"))?;
    let arguments = match function.get("arguments") {
        None | Some(Value::Null) => "",
        Some(Value::String(arguments)) => arguments.as_str(),
        Some(_) => return Err(invalid("the worker's tool call arguments are not JSON")),
    };
    Ok(json!({
        "type": "tool_use",
        "id": call_id(call, i),
        "name": name,
        "input": tool_input(arguments)?,
    }))
}

/// A tool call's arguments as the `input` object. Some workers send no text at all for a tool
/// without parameters, which means `{}`; any other text must be a JSON object, since making up
/// arguments would run the tool with input the model never gave.
fn tool_input(arguments: &str) -> Result<Value, TranslateError> {
    if arguments.trim().is_empty() {
        return Ok(json!({}));
    }
    match serde_json::from_str::<Value>(arguments) {
        Ok(input @ Value::Object(_)) => Ok(input),
        Ok(_) => Err(invalid("the worker's tool call arguments are not a JSON object")),
        Err(_) => Err(invalid("the worker's tool call arguments are not JSON")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(answer: Value) -> Result<Value, TranslateError> {
        chat_to_messages(answer.to_string().as_bytes(), "claude-ish").map(|body| serde_json::from_slice(&body).unwrap())
    }

    #[test]
    fn text_tool_calls_and_cached_tokens() {
        let got = messages(json!({
            "id": "chatcmpl-42", "object": "chat.completion", "model": "qwen",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": "Let me look.",
                "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "read", "arguments": "{\"path\": \"a\"}"}},
                    {"id": "call_2", "type": "function", "function": {"name": "ls", "arguments": ""}},
                ],
            }}],
            "usage": {"prompt_tokens": 1000, "completion_tokens": 30, "total_tokens": 1030,
                "prompt_tokens_details": {"cached_tokens": 768}},
        }))
        .unwrap();
        assert_eq!(
            got,
            json!({
                "id": "msg_chatcmpl-42", "type": "message", "role": "assistant", "model": "claude-ish",
                "content": [
                    {"type": "text", "text": "Let me look."},
                    {"type": "tool_use", "id": "call_1", "name": "read", "input": {"path": "a"}},
                    {"type": "tool_use", "id": "call_2", "name": "ls", "input": {}},
                ],
                "stop_reason": "tool_use", "stop_sequence": null,
                "usage": {"input_tokens": 232, "output_tokens": 30, "cache_read_input_tokens": 768,
                    "cache_creation_input_tokens": 0},
            })
        );
    }

    #[test]
    fn plain_text_and_stop_reasons() {
        let answer = |finish: Value, extra: Value| {
            let mut choice =
                json!({"index": 0, "finish_reason": finish, "message": {"role": "assistant", "content": "hi"}});
            if let (Some(choice), Value::Object(extra)) = (choice.as_object_mut(), extra) {
                choice.extend(extra);
            }
            messages(json!({"choices": [choice]})).unwrap()
        };
        let got = answer(json!("stop"), json!({}));
        assert_eq!(got["id"], "msg_sluice");
        assert_eq!(got["content"], json!([{"type": "text", "text": "hi"}]));
        assert_eq!((&got["stop_reason"], &got["stop_sequence"]), (&json!("end_turn"), &Value::Null));
        assert_eq!(
            got["usage"],
            json!({"input_tokens": 0, "output_tokens": 0, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0})
        );
        let got = answer(json!("stop"), json!({"stop_reason": "</answer>"}));
        assert_eq!((&got["stop_reason"], &got["stop_sequence"]), (&json!("stop_sequence"), &json!("</answer>")));
        assert_eq!(answer(json!("length"), json!({}))["stop_reason"], "max_tokens");
        assert_eq!(answer(json!("content_filter"), json!({}))["stop_reason"], "refusal");
        assert_eq!(answer(Value::Null, json!({}))["stop_reason"], "end_turn");
    }

    #[test]
    fn empty_content_gives_no_text_block() {
        let got = messages(json!({"choices": [{"finish_reason": "stop", "message": {"content": ""}}]})).unwrap();
        assert_eq!(got["content"], json!([]));
    }

    #[test]
    fn broken_answers_are_invalid() {
        let call = |arguments: &str| {
            json!({"choices": [{"finish_reason": "tool_calls", "message": {"content": null, "tool_calls": [
                {"id": "c", "type": "function", "function": {"name": "f", "arguments": arguments}},
            ]}}]})
        };
        assert_eq!(
            messages(call("{\"path\": ")),
            Err(TranslateError::Invalid("the worker's tool call arguments are not JSON".into()))
        );
        assert!(matches!(messages(call("[1]")), Err(TranslateError::Invalid(_))));
        assert_eq!(
            messages(json!({"choices": []})),
            Err(TranslateError::Invalid("the worker's answer has no choices".into()))
        );
        assert!(matches!(messages(json!({"id": "x"})), Err(TranslateError::Invalid(_))));
        assert!(matches!(chat_to_messages(b"not json", "m"), Err(TranslateError::Invalid(_))));
    }
}
