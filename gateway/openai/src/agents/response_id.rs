//! A Responses answer's id (`resp_…`), by which a later request continues it
//! (`previous_response_id`): a whole answer's top-level `id`, or in a stream the
//! `response.created` event's `response.id`. Only the id is built; serde skips the rest.

use std::borrow::Cow;

use serde::Deserialize;

#[derive(Deserialize)]
struct Identified<'a> {
    #[serde(default, borrow)]
    id: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Created<'a> {
    #[serde(borrow)]
    response: Identified<'a>,
}

fn owned(id: Option<Cow<'_, str>>) -> Option<String> {
    id.filter(|id| !id.is_empty()).map(Cow::into_owned)
}

/// The id of a whole Responses answer.
pub fn of_answer(body: &[u8]) -> Option<String> {
    owned(serde_json::from_slice::<Identified<'_>>(body).ok()?.id)
}

/// The id of the response a stream's `response.created` event announces.
pub fn of_created_event(data: &[u8]) -> Option<String> {
    owned(serde_json::from_slice::<Created<'_>>(data).ok()?.response.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_of_answers_and_created_events() {
        let whole = br#"{"id":"resp_1a","object":"response","output":[{"id":"msg_2","type":"message"}],"usage":{}}"#;
        assert_eq!(of_answer(whole).as_deref(), Some("resp_1a"));
        assert_eq!(of_answer(br#"{"object":"response"}"#), None);
        assert_eq!(of_answer(br#"{"id":""}"#), None);
        assert_eq!(of_answer(b"not json"), None);
        let created = br#"{"type":"response.created","sequence_number":0,"response":{"id":"resp_\u0033","status":"in_progress"}}"#;
        assert_eq!(of_created_event(created).as_deref(), Some("resp_3"));
        assert_eq!(of_created_event(br#"{"type":"response.created"}"#), None);
        assert_eq!(of_created_event(br#"{"response":{"id":5}}"#), None);
    }
}
