//! A chat request that forces a function call (`tools`, with `tool_choice` `"required"` or a
//! named function) is answered with one call of that function, as vLLM answers it with a tool
//! parser: the generated text becomes the value of the function's first parameter, so the
//! answer's length, timing and usage are those of any other. Enough for a client's tool-use
//! loop to run against the simulator; a request that only allows tools (`"auto"`) gets text.

use serde_json::{Map, Value};

use crate::sampling::FinishReason;

pub(crate) struct ForcedCall {
    pub id: String,
    pub name: String,
    /// The parameter the generated text is the value of.
    parameter: String,
}

impl ForcedCall {
    /// The call a request's `tools` and `tool_choice` force, if any; `id` makes the call's id.
    pub fn of(request: &Map<String, Value>, id: &str) -> Option<Self> {
        let functions = request.get("tools")?.as_array()?.iter().filter_map(|tool| tool.get("function"));
        let chosen = match request.get("tool_choice")? {
            Value::String(choice) if choice == "required" => functions.into_iter().next()?,
            Value::Object(choice) => {
                let name = choice.get("function")?.get("name")?.as_str()?;
                functions.into_iter().find(|f| f.get("name").and_then(Value::as_str) == Some(name))?
            }
            _ => return None,
        };
        let name = chosen.get("name")?.as_str()?.to_owned();
        let parameter = chosen
            .get("parameters")
            .and_then(|p| p.get("properties"))
            .and_then(Value::as_object)
            .and_then(|properties| properties.keys().next().cloned())
            .unwrap_or_else(|| "text".to_owned());
        Some(ForcedCall { id: format!("call_{id}"), name, parameter })
    }

    /// A whole answer's arguments, for its generated `text`.
    pub fn arguments(&self, text: &str) -> String {
        let mut arguments = Map::new();
        arguments.insert(self.parameter.clone(), Value::String(text.to_owned()));
        Value::Object(arguments).to_string()
    }

    /// What a streamed token adds to the arguments: the first opens the object, the last closes
    /// it, so the pieces join into the same JSON as [`ForcedCall::arguments`].
    pub fn fragment(&self, text: &str, first: bool, last: bool) -> String {
        let mut out = String::new();
        if first {
            out.push('{');
            out.push_str(&Value::String(self.parameter.clone()).to_string());
            out.push_str(":\"");
        }
        let quoted = Value::String(text.to_owned()).to_string();
        out.push_str(quoted.get(1..quoted.len() - 1).unwrap_or_default());
        if last {
            out.push_str("\"}");
        }
        out
    }

    /// The finish reason of an answer that is a call: `tool_calls` for one that ended by
    /// itself, `length` for one the limit cut.
    pub fn finish_reason(reason: FinishReason) -> &'static str {
        match reason {
            FinishReason::Stop => "tool_calls",
            FinishReason::Length => "length",
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn request(choice: Value) -> Map<String, Value> {
        let tools = json!([
            {"type": "function", "function": {"name": "a", "parameters": {"type": "object", "properties": {"q": {}}}}},
            {"type": "function", "function": {"name": "b"}}
        ]);
        json!({"tools": tools, "tool_choice": choice}).as_object().unwrap().clone()
    }

    #[test]
    fn only_a_forced_choice_calls() {
        assert_eq!(ForcedCall::of(&request(json!("required")), "1").unwrap().name, "a");
        let named = ForcedCall::of(&request(json!({"type": "function", "function": {"name": "b"}})), "1").unwrap();
        assert_eq!((named.name.as_str(), named.parameter.as_str(), named.id.as_str()), ("b", "text", "call_1"));
        assert!(ForcedCall::of(&request(json!("auto")), "1").is_none());
        assert!(ForcedCall::of(&request(json!({"type": "function", "function": {"name": "c"}})), "1").is_none());
        assert!(ForcedCall::of(&Map::new(), "1").is_none());
    }

    #[test]
    fn streamed_fragments_join_into_the_whole_arguments() {
        let call = ForcedCall::of(&request(json!("required")), "1").unwrap();
        let tokens = ["say \"hi\"", " to", " Oslo\n"];
        let joined: String =
            tokens.iter().enumerate().map(|(i, t)| call.fragment(t, i == 0, i == tokens.len() - 1)).collect();
        assert_eq!(joined, call.arguments(&tokens.concat()));
        let parsed: Value = serde_json::from_str(&joined).unwrap();
        assert_eq!(parsed, json!({"q": "say \"hi\" to Oslo\n"}));
        assert_eq!(call.fragment("x", true, true), r#"{"q":"x"}"#);
    }
}
