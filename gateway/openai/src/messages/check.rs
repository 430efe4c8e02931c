//! Checking that a chat's `messages` are what [`crate::ChatMessage`]'s `Deserialize` accepts,
//! without building them: the same members required, the same shapes, the same refusals (the
//! differential test in `request_parse` holds both to serde's derived impls).

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// The most brackets open at once serde_json accepts (its recursion limit, 128, is reached by
/// the 128th). The messages are checked apart from the body they are in, and would otherwise
/// be allowed one level more than the rest of it: the check counts from where they stand.
const MAX_DEPTH: usize = 127;
/// Brackets open at a request's `messages` array: the request object's and its own.
const MESSAGES_DEPTH: usize = 2;

/// Checks that `json` is an array of chat messages. Returns their number, or the error, naming
/// the message it is in.
pub(super) fn check(json: &str) -> Result<usize, String> {
    let at = Cell::new(None);
    let mut input = serde_json::Deserializer::from_str(json);
    let checked = CheckMessages { at: &at }.deserialize(&mut input).and_then(|n| input.end().map(|()| n));
    checked.map_err(|e| {
        // The position is within the messages' text; the body's parser adds its own.
        let text = e.to_string();
        let at_position = format!(" at line {} column {}", e.line(), e.column());
        let message = text.strip_suffix(&at_position).unwrap_or(&text);
        match at.get() {
            Some(i) => format!("{message} in messages[{i}]"),
            None => message.to_owned(),
        }
    })
}

/// Opens a bracket at `depth` (the number open once it is), refusing one too many.
fn open<E: de::Error>(depth: usize) -> Result<usize, E> {
    if depth > MAX_DEPTH { Err(E::custom("recursion limit exceeded")) } else { Ok(depth) }
}

struct CheckMessages<'a> {
    /// The index of the message being checked.
    at: &'a Cell<Option<usize>>,
}

impl<'de> DeserializeSeed<'de> for CheckMessages<'_> {
    type Value = usize;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<usize, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for CheckMessages<'_> {
    type Value = usize;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // serde's wording for a `Vec`, which `messages` was read as.
        f.write_str("a sequence")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut messages: A) -> Result<usize, A::Error> {
        let depth = MESSAGES_DEPTH;
        let mut n = 0;
        loop {
            self.at.set(Some(n));
            if messages.next_element_seed(CheckObject::<Message>::at(depth + 1))?.is_none() {
                self.at.set(None);
                return Ok(n);
            }
            n += 1;
        }
    }
}

/// An object with named members, some required, and any others (kept by the typed parse in
/// `extra`, here only checked to be JSON).
trait Shape {
    const EXPECTING: &'static str;
    const NAMES: &'static [&'static str];
    const REQUIRED: &'static [bool];
    /// Checks the value of the member `NAMES[member]`, at `depth`.
    fn check_member<'de, A: MapAccess<'de>>(member: usize, depth: usize, map: &mut A) -> Result<(), A::Error>;
}

/// A chat message: `role` (a string) required, `content` optional.
struct Message;

impl Shape for Message {
    const EXPECTING: &'static str = "a chat message (a JSON object)";
    const NAMES: &'static [&'static str] = &["role", "content"];
    const REQUIRED: &'static [bool] = &[true, false];

    fn check_member<'de, A: MapAccess<'de>>(member: usize, depth: usize, map: &mut A) -> Result<(), A::Error> {
        match member {
            0 => map.next_value_seed(CheckString),
            _ => map.next_value_seed(Optional(CheckContent { depth })),
        }
    }
}

/// A content part: `type` (a string) required, `text` an optional string.
struct Part;

impl Shape for Part {
    const EXPECTING: &'static str = "a content part (a JSON object)";
    const NAMES: &'static [&'static str] = &["type", "text"];
    const REQUIRED: &'static [bool] = &[true, false];

    fn check_member<'de, A: MapAccess<'de>>(member: usize, _depth: usize, map: &mut A) -> Result<(), A::Error> {
        match member {
            0 => map.next_value_seed(CheckString),
            _ => map.next_value_seed(Optional(CheckString)),
        }
    }
}

/// An object of shape `S` whose brackets open at `depth`.
struct CheckObject<S> {
    depth: usize,
    shape: std::marker::PhantomData<S>,
}

impl<S> CheckObject<S> {
    fn at(depth: usize) -> Self {
        CheckObject { depth, shape: std::marker::PhantomData }
    }
}

impl<'de, S: Shape> DeserializeSeed<'de> for CheckObject<S> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de, S: Shape> Visitor<'de> for CheckObject<S> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(S::EXPECTING)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let depth = open(self.depth)?;
        let mut seen = [false; 2];
        while let Some(name) = map.next_key_seed(MemberName(S::NAMES))? {
            match name.and_then(|i| seen.get_mut(i).map(|seen| (i, seen))) {
                Some((i, seen)) => {
                    if *seen {
                        return Err(de::Error::duplicate_field(S::NAMES[i]));
                    }
                    *seen = true;
                    S::check_member(i, depth + 1, &mut map)?;
                }
                None => map.next_value_seed(AnyJson { depth })?,
            }
        }
        for ((name, required), seen) in S::NAMES.iter().zip(S::REQUIRED).zip(seen) {
            if *required && !seen {
                return Err(de::Error::missing_field(name));
            }
        }
        Ok(())
    }
}

/// A member's name: the index of a named member, `None` for any other.
struct MemberName(&'static [&'static str]);

impl<'de> DeserializeSeed<'de> for MemberName {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Option<usize>, D::Error> {
        deserializer.deserialize_identifier(self)
    }
}

impl<'de> Visitor<'de> for MemberName {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<Option<usize>, E> {
        Ok(self.0.iter().position(|n| *n == name))
    }
}

/// A string.
struct CheckString;

impl<'de> DeserializeSeed<'de> for CheckString {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for CheckString {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
}

/// `null` or what `T` checks, as an `Option` reads.
struct Optional<T>(T);

impl<'de, T: DeserializeSeed<'de, Value = ()>> DeserializeSeed<'de> for Optional<T> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_option(self)
    }
}

impl<'de, T: DeserializeSeed<'de, Value = ()>> Visitor<'de> for Optional<T> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("option")
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        self.0.deserialize(deserializer)
    }
}

/// A message's `content`: a string or an array of content parts.
struct CheckContent {
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for CheckContent {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for CheckContent {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string or an array of content parts")
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut parts: A) -> Result<(), A::Error> {
        let depth = open(self.depth)?;
        while parts.next_element_seed(CheckObject::<Part>::at(depth + 1))?.is_some() {}
        Ok(())
    }
}

/// Any JSON value serde_json would read into a `serde_json::Value` (numbers in range, nesting
/// within the limit), read without keeping it.
struct AnyJson {
    /// Brackets open around the value.
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for AnyJson {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for AnyJson {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any valid JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<(), A::Error> {
        let depth = open(self.depth + 1)?;
        while items.next_element_seed(AnyJson { depth })?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut members: A) -> Result<(), A::Error> {
        let depth = open(self.depth + 1)?;
        while members.next_key::<IgnoredAny>()?.is_some() {
            members.next_value_seed(AnyJson { depth })?;
        }
        Ok(())
    }
}
