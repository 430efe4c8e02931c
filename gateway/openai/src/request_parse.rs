//! How request bodies are parsed: the `Deserialize` impls of the types in [`crate::request`].
//!
//! They are written out instead of derived because every request pays for them. serde's
//! `#[serde(flatten)]` (for `extra`) and `#[serde(untagged)]` (for the shapes of `content` and
//! `prompt`) first buffer the input into an intermediate tree and then match the tree against
//! each field or variant in turn; these impls match member names and value shapes as the parser
//! streams past them. Accepted input and error messages stay those of the derived impls (serde's
//! `missing field`, `duplicate field`, `invalid type` wording), except that a value matching no
//! shape says which shapes were expected instead of "did not match any variant", and an error
//! within a chat's messages names the message (`in messages[3]`).
//!
//! Each request type is read through a `DeserializeSeed` ([`In`]) that knows the input it reads
//! from, so that its kept members ([`crate::Messages`]) can be slices of the body; `Deserialize`
//! is that seed over any other input.

use std::fmt;

use serde::de::value::SeqAccessDeserializer;
use serde::de::{self, Deserialize, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::from_body::{In, Source};
use crate::messages::Messages;
use crate::request::{
    ChatCompletionRequest, ChatMessage, CompletionRequest, ContentPart, EmbeddingRequest, MessageContent, Prompt,
    StreamOptions,
};

/// Implements `Deserialize` (and the `In` seed) for a struct with named members and an `extra`
/// map for the rest. `required` members missing from the object are an error; `kept` ones too,
/// read through their own `In` seed; `optional` ones are `Option`s that default to `None` (and
/// `null` reads as `None`). A named member given twice is an error, as it would be with a
/// derived impl: a body that says two things about its model is ambiguous.
macro_rules! deserialize_keeping_unknown {
    (
        $ty:ident, $expecting:literal,
        required { $($req:ident: $req_ty:ty = $req_key:literal),* $(,)? }
        kept { $($kept:ident: $kept_ty:ty = $kept_key:literal),* $(,)? }
        optional { $($opt:ident: $opt_ty:ty = $opt_key:literal),* $(,)? }
    ) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                In::<$ty>::new(Source::Other).deserialize(deserializer)
            }
        }

        impl<'de> DeserializeSeed<'de> for In<'_, $ty> {
            type Value = $ty;

            fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<$ty, D::Error> {
                #[allow(non_camel_case_types)]
                enum Member {
                    $($req,)*
                    $($kept,)*
                    $($opt,)*
                    Unknown(String),
                }

                impl<'de> Deserialize<'de> for Member {
                    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                        struct Names;
                        impl<'de> Visitor<'de> for Names {
                            type Value = Member;
                            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                                f.write_str("a member name")
                            }
                            fn visit_str<E: de::Error>(self, name: &str) -> Result<Member, E> {
                                Ok(match name {
                                    $($req_key => Member::$req,)*
                                    $($kept_key => Member::$kept,)*
                                    $($opt_key => Member::$opt,)*
                                    other => Member::Unknown(other.to_owned()),
                                })
                            }
                        }
                        deserializer.deserialize_identifier(Names)
                    }
                }

                struct Members<'b>(Source<'b>);
                impl<'de> Visitor<'de> for Members<'_> {
                    type Value = $ty;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<$ty, A::Error> {
                        // Types without kept members have no use for it.
                        let Members(source) = self;
                        let _ = source;
                        $(let mut $req: Option<$req_ty> = None;)*
                        $(let mut $kept: Option<$kept_ty> = None;)*
                        $(let mut $opt: Option<$opt_ty> = None;)*
                        let mut extra = Map::new();
                        while let Some(member) = map.next_key::<Member>()? {
                            match member {
                                $(Member::$req => {
                                    if $req.is_some() {
                                        return Err(de::Error::duplicate_field($req_key));
                                    }
                                    $req = Some(map.next_value()?);
                                })*
                                $(Member::$kept => {
                                    if $kept.is_some() {
                                        return Err(de::Error::duplicate_field($kept_key));
                                    }
                                    $kept = Some(map.next_value_seed(In::<$kept_ty>::new(source))?);
                                })*
                                $(Member::$opt => {
                                    if $opt.is_some() {
                                        return Err(de::Error::duplicate_field($opt_key));
                                    }
                                    $opt = Some(map.next_value()?);
                                })*
                                Member::Unknown(name) => {
                                    extra.insert(name, map.next_value::<Value>()?);
                                }
                            }
                        }
                        Ok($ty {
                            $($req: $req.ok_or_else(|| de::Error::missing_field($req_key))?,)*
                            $($kept: $kept.ok_or_else(|| de::Error::missing_field($kept_key))?,)*
                            $($opt: $opt.unwrap_or_default(),)*
                            extra,
                        })
                    }
                }

                deserializer.deserialize_map(Members(self.source))
            }
        }
    };
}

deserialize_keeping_unknown!(StreamOptions, "stream options (a JSON object)",
    required {}
    kept {}
    optional { include_usage: Option<bool> = "include_usage" }
);

deserialize_keeping_unknown!(ChatCompletionRequest, "a chat completion request (a JSON object)",
    required { model: String = "model" }
    kept { messages: Messages = "messages" }
    optional {
        stream: Option<bool> = "stream",
        stream_options: Option<StreamOptions> = "stream_options",
        max_tokens: Option<u32> = "max_tokens",
        max_completion_tokens: Option<u32> = "max_completion_tokens",
        temperature: Option<f64> = "temperature",
        user: Option<String> = "user",
    }
);

deserialize_keeping_unknown!(ChatMessage, "a chat message (a JSON object)",
    required { role: String = "role" }
    kept {}
    optional { content: Option<MessageContent> = "content" }
);

deserialize_keeping_unknown!(ContentPart, "a content part (a JSON object)",
    required { kind: String = "type" }
    kept {}
    optional { text: Option<String> = "text" }
);

deserialize_keeping_unknown!(CompletionRequest, "a completion request (a JSON object)",
    required { model: String = "model", prompt: Prompt = "prompt" }
    kept {}
    optional {
        stream: Option<bool> = "stream",
        stream_options: Option<StreamOptions> = "stream_options",
        max_tokens: Option<u32> = "max_tokens",
        temperature: Option<f64> = "temperature",
        user: Option<String> = "user",
    }
);

deserialize_keeping_unknown!(EmbeddingRequest, "an embeddings request (a JSON object)",
    required { model: String = "model", input: Prompt = "input" }
    kept {}
    optional {
        encoding_format: Option<String> = "encoding_format",
        dimensions: Option<u32> = "dimensions",
        user: Option<String> = "user",
    }
);

impl<'de> Deserialize<'de> for MessageContent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Shapes;
        impl<'de> Visitor<'de> for Shapes {
            type Value = MessageContent;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an array of content parts")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<MessageContent, E> {
                Ok(MessageContent::Text(text.to_owned()))
            }
            fn visit_string<E: de::Error>(self, text: String) -> Result<MessageContent, E> {
                Ok(MessageContent::Text(text))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, parts: A) -> Result<MessageContent, A::Error> {
                Vec::deserialize(SeqAccessDeserializer::new(parts)).map(MessageContent::Parts)
            }
        }
        deserializer.deserialize_any(Shapes)
    }
}

/// The first member of a prompt array, which decides the array's shape.
enum PromptItem {
    Text(String),
    Token(u32),
    Tokens(Vec<u32>),
}

fn token<E: de::Error>(id: u64) -> Result<u32, E> {
    u32::try_from(id).map_err(|_| E::invalid_value(de::Unexpected::Unsigned(id), &"a token id (0 to 4294967295)"))
}

impl<'de> Deserialize<'de> for PromptItem {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Shapes;
        impl<'de> Visitor<'de> for Shapes {
            type Value = PromptItem;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, a token id or an array of token ids")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<PromptItem, E> {
                Ok(PromptItem::Text(text.to_owned()))
            }
            fn visit_string<E: de::Error>(self, text: String) -> Result<PromptItem, E> {
                Ok(PromptItem::Text(text))
            }
            fn visit_u64<E: de::Error>(self, id: u64) -> Result<PromptItem, E> {
                token(id).map(PromptItem::Token)
            }
            fn visit_i64<E: de::Error>(self, id: i64) -> Result<PromptItem, E> {
                let id = u64::try_from(id)
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(id), &"a token id (0 to 4294967295)"))?;
                self.visit_u64(id)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, ids: A) -> Result<PromptItem, A::Error> {
                Vec::deserialize(SeqAccessDeserializer::new(ids)).map(PromptItem::Tokens)
            }
        }
        deserializer.deserialize_any(Shapes)
    }
}

/// Collects the rest of an array whose first member was `first`.
fn rest_of<'de, T: Deserialize<'de>, A: SeqAccess<'de>>(first: T, mut items: A) -> Result<Vec<T>, A::Error> {
    let mut all = Vec::with_capacity(items.size_hint().map_or(1, |n| n + 1));
    all.push(first);
    while let Some(item) = items.next_element()? {
        all.push(item);
    }
    Ok(all)
}

impl<'de> Deserialize<'de> for Prompt {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Shapes;
        impl<'de> Visitor<'de> for Shapes {
            type Value = Prompt;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, an array of strings, an array of token ids or an array of token-id arrays")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Prompt, E> {
                Ok(Prompt::Text(text.to_owned()))
            }
            fn visit_string<E: de::Error>(self, text: String) -> Result<Prompt, E> {
                Ok(Prompt::Text(text))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<Prompt, A::Error> {
                // `[]` read as an empty batch of texts with the derived impl too.
                Ok(match items.next_element::<PromptItem>()? {
                    None => Prompt::Texts(Vec::new()),
                    Some(PromptItem::Text(first)) => Prompt::Texts(rest_of(first, items)?),
                    Some(PromptItem::Token(first)) => Prompt::Tokens(rest_of(first, items)?),
                    Some(PromptItem::Tokens(first)) => Prompt::TokenBatches(rest_of(first, items)?),
                })
            }
        }
        deserializer.deserialize_any(Shapes)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The request `body` is, as each way of reading it reads it (they must agree).
    fn chat(body: Value) -> Result<ChatCompletionRequest, String> {
        let from_value = serde_json::from_value::<ChatCompletionRequest>(body.clone()).map_err(|e| e.to_string());
        let from_bytes = serde_json::from_slice(body.to_string().as_bytes()).map_err(|e| e.to_string());
        let from_body =
            ChatCompletionRequest::from_body(&bytes::Bytes::from(body.to_string())).map_err(|e| e.to_string());
        assert_eq!(from_value.is_ok(), from_bytes.is_ok(), "all parsers agree on {body}");
        assert_eq!(from_bytes, from_body, "all parsers agree on {body}");
        from_body
    }

    #[test]
    fn every_member_round_trips_whatever_its_place_or_shape() {
        let bodies = [
            json!({"model": "m", "messages": []}),
            json!({
                "top_k": 5, "model": "m", "user": "u", "temperature": 0.5, "max_tokens": 7,
                "max_completion_tokens": 9, "stream": false, "stream_options": {"include_usage": true, "x": [1]},
                "messages": [
                    {"role": "system", "content": "be brief", "name": "sys"},
                    {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {"url": "u"}}]},
                    {"role": "assistant", "tool_calls": [{"id": "t"}]},
                ],
                "guided_json": {"type": "object", "model": "nested names are not members"},
            }),
        ];
        for body in bodies {
            let parsed = chat(body.clone()).unwrap();
            assert_eq!(serde_json::to_value(&parsed).unwrap(), body);
        }
    }

    #[test]
    fn null_optional_members_read_as_absent() {
        let parsed = chat(json!({
            "model": "m", "messages": [{"role": "assistant", "content": null}],
            "stream": null, "stream_options": null, "max_tokens": null, "user": null,
        }))
        .unwrap();
        assert_eq!((parsed.stream, parsed.max_tokens, &parsed.user), (None, None, &None));
        assert!(parsed.stream_options.is_none() && parsed.messages.iter().all(|m| m.content.is_none()));
        assert!(parsed.extra.is_empty());
    }

    #[test]
    fn errors_name_the_member_and_the_expected_shape() {
        for (body, says) in [
            (json!({"messages": []}), "missing field `model`"),
            (json!({"model": "m"}), "missing field `messages`"),
            (json!({"model": "m", "messages": [{"content": "x"}]}), "missing field `role`"),
            (json!({"model": "m", "messages": [], "max_tokens": -1}), "invalid value: integer `-1`"),
            (json!({"model": "m", "messages": [], "stream": "yes"}), "expected a boolean"),
            (json!({"model": 3, "messages": []}), "expected a string"),
            (json!(["model"]), "expected a chat completion request"),
            (
                json!({"model": "m", "messages": [{"role": "user", "content": 3}]}),
                "a string or an array of content parts",
            ),
            (json!({"model": "m", "messages": [{"role": "user", "content": [{"text": "x"}]}]}), "missing field `type`"),
        ] {
            let err = chat(body.clone()).unwrap_err();
            assert!(err.contains(says), "{body}: {err}");
        }
        let twice = serde_json::from_str::<ChatCompletionRequest>(r#"{"model":"a","messages":[],"model":"b"}"#);
        assert!(twice.unwrap_err().to_string().contains("duplicate field `model`"));
    }

    #[test]
    fn an_error_in_the_messages_names_the_message() {
        let body = r#"{"model":"m","messages":[{"role":"system","content":"x"},{"content":"no role"}]}"#;
        let err = ChatCompletionRequest::from_body(&bytes::Bytes::from_static(body.as_bytes())).unwrap_err();
        assert!(err.to_string().starts_with("missing field `role` in messages[1] at line 1 column "), "{err}");
        let err = serde_json::from_str::<ChatCompletionRequest>(r#"{"model":"m","messages":[{"role":5}]}"#);
        assert!(
            err.unwrap_err().to_string().starts_with("invalid type: integer `5`, expected a string in messages[0]")
        );
    }

    /// serde_json refuses the 128th bracket open at once; the messages, checked apart from the
    /// body, are held to the same count as the rest of it.
    #[test]
    fn nesting_in_messages_is_limited_as_in_the_rest_of_the_body() {
        for depth in 120..130 {
            let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            let body = format!(r#"{{"model":"m","messages":[{{"role":"user","x":{nested}}}]}}"#);
            let ours = ChatCompletionRequest::from_body(&bytes::Bytes::from(body.clone()));
            let theirs = serde_json::from_str::<derived::Chat>(&body);
            assert_eq!(ours.is_ok(), theirs.is_ok(), "{depth}: {:?}", ours.err());
            let parts =
                format!(r#"{{"model":"m","messages":[{{"role":"user","content":[{{"type":"t","x":{nested}}}]}}]}}"#);
            let ours = ChatCompletionRequest::from_body(&bytes::Bytes::from(parts.clone()));
            let theirs = serde_json::from_str::<derived::Chat>(&parts);
            assert_eq!(ours.is_ok(), theirs.is_ok(), "{depth} in a part: {:?}", ours.err());
        }
    }

    #[test]
    fn prompt_shapes_are_told_apart_by_their_first_member() {
        let parse = |v: Value| serde_json::from_str::<Prompt>(&v.to_string()).map_err(|e| e.to_string());
        assert_eq!(parse(json!("x")).unwrap(), Prompt::Text("x".into()));
        assert_eq!(parse(json!([])).unwrap(), Prompt::Texts(vec![]));
        assert_eq!(parse(json!(["a", "b"])).unwrap(), Prompt::Texts(vec!["a".into(), "b".into()]));
        assert_eq!(parse(json!([1, 2])).unwrap(), Prompt::Tokens(vec![1, 2]));
        assert_eq!(parse(json!([[1], [], [2, 3]])).unwrap(), Prompt::TokenBatches(vec![vec![1], vec![], vec![2, 3]]));
        for (bad, says) in [
            (json!(["a", 1]), "expected a string"),
            (json!([1, "a"]), "expected u32"),
            (json!([[1], 2]), "expected a sequence"),
            (json!([4294967296u64]), "a token id"),
            (json!([-1]), "a token id"),
            (json!([1.5]), "a string, a token id or an array of token ids"),
            (json!(null), "a string, an array of strings"),
        ] {
            let err = parse(bad.clone()).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
        let from_value = serde_json::from_value::<Prompt>(json!([[1, 2]])).unwrap();
        assert_eq!(from_value, Prompt::TokenBatches(vec![vec![1, 2]]));
    }

    #[test]
    fn completion_and_embedding_requests_keep_unknown_members() {
        let completion = json!({"model": "m", "prompt": [1, 2], "echo": true, "stream": true});
        let parsed: CompletionRequest = serde_json::from_value(completion.clone()).unwrap();
        assert_eq!(parsed.extra["echo"], json!(true));
        assert_eq!(serde_json::to_value(&parsed).unwrap(), completion);
        let embedding = json!({"model": "e", "input": ["a"], "dimensions": 8, "truncate_prompt_tokens": 4});
        let parsed: EmbeddingRequest = serde_json::from_value(embedding.clone()).unwrap();
        assert_eq!(parsed.dimensions, Some(8));
        assert_eq!(serde_json::to_value(&parsed).unwrap(), embedding);
        let err = serde_json::from_value::<EmbeddingRequest>(json!({"model": "e"})).unwrap_err();
        assert!(err.to_string().contains("missing field `input`"), "{err}");
    }

    /// The impls serde derives for the same structs, as the gateway used them before these.
    mod derived {
        use serde::Deserialize;
        use serde_json::{Map, Value};

        #[derive(Deserialize)]
        pub struct Chat {
            pub model: String,
            pub messages: Vec<Message>,
            #[serde(default)]
            pub stream: Option<bool>,
            #[serde(default)]
            pub stream_options: Option<StreamOptions>,
            #[serde(default)]
            pub max_tokens: Option<u32>,
            #[serde(default)]
            pub max_completion_tokens: Option<u32>,
            #[serde(default)]
            pub temperature: Option<f64>,
            #[serde(default)]
            pub user: Option<String>,
            #[serde(flatten)]
            pub extra: Map<String, Value>,
        }

        #[derive(Deserialize)]
        pub struct StreamOptions {
            #[serde(default)]
            pub include_usage: Option<bool>,
            #[serde(flatten)]
            pub extra: Map<String, Value>,
        }

        #[derive(Deserialize)]
        pub struct Message {
            pub role: String,
            #[serde(default)]
            pub content: Option<Content>,
            #[serde(flatten)]
            pub extra: Map<String, Value>,
        }

        #[derive(Deserialize)]
        #[serde(untagged)]
        pub enum Content {
            Text(String),
            Parts(Vec<Part>),
        }

        #[derive(Deserialize)]
        pub struct Part {
            #[serde(rename = "type")]
            pub kind: String,
            #[serde(default)]
            pub text: Option<String>,
            #[serde(flatten)]
            pub extra: Map<String, Value>,
        }
    }

    /// What both impls make of a body, in a form that can be compared (the messages as they
    /// are read one by one).
    fn summary_of_ours(r: &ChatCompletionRequest) -> String {
        let mut v = serde_json::to_value(r).unwrap();
        v["messages"] = Value::Array(r.messages.iter().map(|m| serde_json::to_value(m).unwrap()).collect());
        format!("{v}")
    }

    fn messages_of_derived(r: &derived::Chat) -> Vec<Value> {
        r.messages
            .iter()
            .map(|m| {
                let mut v = m.extra.clone();
                v.insert("role".into(), json!(m.role));
                match &m.content {
                    Some(derived::Content::Text(t)) => {
                        v.insert("content".into(), json!(t));
                    }
                    Some(derived::Content::Parts(parts)) => {
                        let parts: Vec<Value> = parts
                            .iter()
                            .map(|p| {
                                let mut v = p.extra.clone();
                                v.insert("type".into(), json!(p.kind));
                                if let Some(t) = &p.text {
                                    v.insert("text".into(), json!(t));
                                }
                                Value::Object(v)
                            })
                            .collect();
                        v.insert("content".into(), Value::Array(parts));
                    }
                    None => {}
                }
                Value::Object(v)
            })
            .collect()
    }

    fn summary_of_derived(r: &derived::Chat) -> String {
        let mut v = r.extra.clone();
        v.insert("model".into(), json!(r.model));
        v.insert("messages".into(), Value::Array(messages_of_derived(r)));
        let optional = [
            ("stream", r.stream.map(|b| json!(b))),
            ("max_tokens", r.max_tokens.map(|n| json!(n))),
            ("max_completion_tokens", r.max_completion_tokens.map(|n| json!(n))),
            ("temperature", r.temperature.map(|t| json!(t))),
            ("user", r.user.as_ref().map(|u| json!(u))),
            (
                "stream_options",
                r.stream_options.as_ref().map(|o| {
                    let mut v = o.extra.clone();
                    if let Some(u) = o.include_usage {
                        v.insert("include_usage".into(), json!(u));
                    }
                    Value::Object(v)
                }),
            ),
        ];
        for (name, value) in optional {
            if let Some(value) = value {
                v.insert(name.into(), value);
            }
        }
        format!("{}", Value::Object(v))
    }

    /// Chat requests assembled from members, in every order and with repeats, that each impl
    /// accepts or refuses: the written-out impl accepts exactly what the derived one did, and
    /// reads the same request from it.
    #[test]
    fn accepts_and_reads_what_the_derived_impls_did() {
        let members = [
            r#""model":"m""#,
            r#""model":null"#,
            r#""model":7"#,
            r#""messages":[]"#,
            r#""messages":[{"role":"user","content":"hi"}]"#,
            r#""messages":[{"role":"user","content":null,"name":"n"},{"role":"tool","content":[{"type":"text","text":"t"},{"type":"image_url","image_url":{"url":"u"}}]}]"#,
            r#""messages":[{"content":"no role"}]"#,
            r#""messages":[{"role":"user","content":5}]"#,
            r#""messages":[{"role":"user","content":[{"text":"no type"}]}]"#,
            r#""messages":{}"#,
            r#""messages":null"#,
            r#""messages":["hi"]"#,
            r#""messages":[{"role":"user","role":"system"}]"#,
            r#""messages":[{"role":"user","content":null,"content":"x"}]"#,
            r#""messages":[{"role":null}]"#,
            r#""messages":[{"role":7,"content":"x"}]"#,
            r#""messages":[{"role":"user","content":[{"type":"text","text":null,"x":[1,{"y":2}]}]}]"#,
            r#""messages":[{"role":"user","content":[{"type":"text","type":"image"}]}]"#,
            r#""messages":[{"role":"user","content":[{"type":"text","text":"a","text":"b"}]}]"#,
            r#""messages":[{"role":"user","content":["x"]}]"#,
            r#""messages":[{"role":"user","content":{}}]"#,
            r#""messages":[{"role":"user","content":[]},{"role":"tool","content":true}]"#,
            r#""messages":[{"role":"assistant","tool_calls":[{"id":"t","function":{"arguments":"{}"}}],"w":1e400}]"#,
            r#""messages":[{"role":"assistant","w":[1e300,-0.0,18446744073709551616,-9223372036854775809]}]"#,
            r#""messages":[ {"role" : "user\u00e9" , "content":"\ud83d\ude00"} ,{"role":"a","n":-0.0} ]"#,
            r#""messages":[{"role":"user","content":"\ud800"}]"#,
            r#""messages":[{"role":"user","\u0063ontent":"escaped name"}]"#,
            r#""stream":true"#,
            r#""stream":null"#,
            r#""stream":"yes""#,
            r#""stream_options":{"include_usage":false,"continuous_usage_stats":true}"#,
            r#""stream_options":null"#,
            r#""stream_options":[]"#,
            r#""max_tokens":16"#,
            r#""max_tokens":-1"#,
            r#""max_tokens":4294967296"#,
            r#""max_completion_tokens":8"#,
            r#""temperature":0.5"#,
            r#""temperature":1"#,
            r#""user":"u""#,
            r#""top_k":40"#,
            r#""top_k":41"#,
            r#""guided_json":{"model":"inner","messages":null}"#,
            r#""n":null"#,
        ];
        let mut next = crate::draws(0x9e37_79b9_7f4a_7c15u64);
        let mut accepted = 0;
        for _ in 0..20_000 {
            let mut picked: Vec<&str> = (0..next(6)).map(|_| members[next(members.len())]).collect();
            // Mostly with a model and messages, so that many draws are whole requests.
            if next(8) > 0 {
                picked.insert(next(picked.len() + 1), members[0]);
                picked.insert(next(picked.len() + 1), members[3 + next(3)]);
            }
            let body = format!("{{{}}}", picked.join(","));
            let ours = ChatCompletionRequest::from_body(&bytes::Bytes::from(body.clone()));
            let from_str = serde_json::from_str::<ChatCompletionRequest>(&body);
            assert_eq!(ours.as_ref().ok(), from_str.as_ref().ok(), "{body}");
            let theirs = serde_json::from_str::<derived::Chat>(&body);
            match (&ours, &theirs) {
                (Ok(ours), Ok(theirs)) => {
                    assert_eq!(summary_of_ours(ours), summary_of_derived(theirs), "{body}");
                    // The messages read one by one are the ones kept, as the derived impls read them.
                    let read: Vec<Value> = ours.messages.iter().map(|m| serde_json::to_value(m).unwrap()).collect();
                    assert_eq!(read.len(), ours.messages.len(), "{body}");
                    assert_eq!(read, messages_of_derived(theirs), "{body}");
                    accepted += 1;
                }
                (Err(_), Err(_)) => {}
                _ => panic!(
                    "{body}: ours {:?}, derived {:?}",
                    ours.as_ref().err(),
                    theirs.as_ref().err().map(|e| e.to_string())
                ),
            }
        }
        // Many draws repeat a member or hold a bad one; enough are whole requests.
        assert!(accepted > 2_000, "only {accepted} of 20000 were accepted");
    }
}
