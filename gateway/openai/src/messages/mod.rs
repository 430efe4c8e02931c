//! A chat request's `messages`, kept as the JSON text the client sent.
//!
//! The messages are most of a chat body, and the gateway only forwards them (plugins read the
//! prompt from the body itself). Parsed into a struct each, with its own strings and map, they
//! cost about the body's size again for a body of many short messages, held as long as the
//! request lives. So they are checked where the request is read — every message must be what
//! the API allows, refused with the errors a typed parse gives — and kept as their text: a
//! slice of the body, with no copy, when the request is read by `from_body`.
//! [`Messages::iter`] reads them one at a time for whoever needs them (the simulator).

mod check;

use bytes::Bytes;
use serde::de::{self, Deserialize, DeserializeSeed, Deserializer};
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;

use crate::from_body::{In, Source};
use crate::request::ChatMessage;
use check::check;

/// `messages`: a JSON array of chat messages, checked, as the client sent it.
#[derive(Debug, Clone, PartialEq)]
pub struct Messages {
    /// The array's JSON text (UTF-8, checked to be an array of chat messages).
    json: Bytes,
    len: usize,
}

impl Messages {
    /// The number of messages.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The array's JSON text as the client sent it.
    pub fn json(&self) -> &str {
        // Made from a `&str` (see `read`); the check cannot fail.
        std::str::from_utf8(&self.json).unwrap_or_default()
    }

    /// The messages, each parsed when it is reached.
    pub fn iter(&self) -> Iter<'_> {
        Iter { rest: self.json(), left: self.len }
    }
}

impl<'a> IntoIterator for &'a Messages {
    type Item = ChatMessage;
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

/// The messages of a [`Messages`], parsed one at a time.
pub struct Iter<'a> {
    /// The text after the last message read.
    rest: &'a str,
    left: usize,
}

impl Iterator for Iter<'_> {
    type Item = ChatMessage;

    fn next(&mut self) -> Option<ChatMessage> {
        // The text was checked when it was read: `[`, objects separated by commas, `]`, with
        // JSON whitespace between them. An object never starts with `[` or `,`.
        let rest = self.rest.trim_start_matches(|c: char| c == '[' || c == ',' || c.is_ascii_whitespace());
        let mut stream = serde_json::Deserializer::from_str(rest).into_iter::<ChatMessage>();
        let message = match stream.next() {
            Some(Ok(message)) => message,
            // `]`: the end. An error cannot happen to checked text; it ends the messages too.
            Some(Err(_)) | None => {
                self.rest = "";
                self.left = 0;
                return None;
            }
        };
        self.rest = rest.get(stream.byte_offset()..).unwrap_or_default();
        self.left = self.left.saturating_sub(1);
        Some(message)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for Iter<'_> {}

/// Written as it was read: the text, not a re-serialisation, so every member of every message
/// reaches the worker exactly as the client sent it. (Only JSON serializers know raw text.)
impl Serialize for Messages {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let raw: &RawValue = serde_json::from_str(self.json()).map_err(serde::ser::Error::custom)?;
        raw.serialize(serializer)
    }
}

/// Reads `messages` as its text, checked: a slice of the body when the source is one.
impl<'de> DeserializeSeed<'de> for In<'_, Messages> {
    type Value = Messages;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Messages, D::Error> {
        match self.source {
            Source::Body(body) => {
                let raw = <&RawValue>::deserialize(deserializer)?;
                let len = check(raw.get()).map_err(de::Error::custom)?;
                Ok(Messages { json: slice_of(body, raw.get()), len })
            }
            Source::Other => {
                let raw = Box::<RawValue>::deserialize(deserializer)?;
                let len = check(raw.get()).map_err(de::Error::custom)?;
                Ok(Messages { json: Bytes::from(String::from(Box::<str>::from(raw))), len })
            }
        }
    }
}

/// `part` as a slice of `body`, which it was borrowed from; a copy if it was not.
fn slice_of(body: &Bytes, part: &str) -> Bytes {
    let start = part.as_ptr().addr().wrapping_sub(body.as_ptr().addr());
    match start.checked_add(part.len()) {
        Some(end) if end <= body.len() => body.slice(start..end),
        _ => Bytes::copy_from_slice(part.as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use crate::{ChatCompletionRequest, MessageContent};

    const BODY: &str = r#"{"model":"m", "messages": [ {"role":"system","content":"be brief"} ,
        {"role":"user","content":[{"type":"text","text":"hi"}],"name":"ann","x":{"k":[1.50,2]}}],"top_k":3}"#;

    #[test]
    fn messages_from_a_body_are_a_slice_of_it() {
        let body = Bytes::from_static(BODY.as_bytes());
        let request = ChatCompletionRequest::from_body(&body).unwrap();
        let json = request.messages.json();
        assert!(json.starts_with("[ {\"role\"") && json.ends_with("\"x\":{\"k\":[1.50,2]}}]"), "{json}");
        let start = json.as_ptr().addr() - body.as_ptr().addr();
        assert_eq!(&BODY[start..start + json.len()], json, "the very bytes of the body, not a copy");
        assert_eq!(request.messages.len(), 2);
    }

    #[test]
    fn messages_are_read_one_at_a_time() {
        let request = ChatCompletionRequest::from_body(&Bytes::from_static(BODY.as_bytes())).unwrap();
        let mut messages = request.messages.iter();
        assert_eq!(messages.len(), 2);
        let first = messages.next().unwrap();
        assert_eq!((first.role.as_str(), first.content), ("system", Some(MessageContent::Text("be brief".into()))));
        assert_eq!(messages.len(), 1);
        let second = messages.next().unwrap();
        assert_eq!(second.extra["name"], "ann");
        assert_eq!(second.content.unwrap().text().collect::<Vec<_>>(), ["hi"]);
        assert!(messages.next().is_none() && messages.next().is_none());
        let none = ChatCompletionRequest::from_body(&Bytes::from_static(br#"{"model":"m","messages":[ ]}"#)).unwrap();
        assert!(none.messages.is_empty() && none.messages.iter().next().is_none());
    }

    #[test]
    fn messages_are_forwarded_as_sent() {
        let request = ChatCompletionRequest::from_body(&Bytes::from_static(BODY.as_bytes())).unwrap();
        let forwarded = String::from_utf8(serde_json::to_vec(&request).unwrap()).unwrap();
        // Spacing, member order and number spelling within the messages are the client's.
        assert!(forwarded.contains(&format!(r#""messages":{}"#, request.messages.json())), "{forwarded}");
        let again = ChatCompletionRequest::from_body(&Bytes::from(forwarded)).unwrap();
        assert_eq!(again, request);
    }
}
