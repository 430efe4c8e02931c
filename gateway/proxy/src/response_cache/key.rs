//! An entry's key: whose it is (namespace, tenant, model), placed by the host, and a digest of
//! the request, which a plugin shapes only by naming body members to leave out and text to
//! mix in.

use std::io::Write;
use std::sync::Arc;

use serde_json::Value;
use sha2::{Digest, Sha256};
use sluice_metrics::Api;

use super::answer::AnswerKind;

/// Members that only say how the answer is delivered, never what it says: a streamed entry
/// answers a whole-body request and the reverse.
const DELIVERY_FIELDS: [&str; 2] = ["stream", "stream_options"];

/// Where an entry lives and which request it answers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EntryKey {
    /// The binding's namespace (`plugin:cache`).
    pub namespace: Arc<str>,
    pub tenant: Arc<str>,
    pub model: Arc<str>,
    pub digest: [u8; 32],
}

impl EntryKey {
    pub fn hex(&self) -> String {
        hex::encode(self.digest)
    }

    /// The semantic index's namespace of the entry: its tenant, model and plugin namespace,
    /// length-prefixed so that no names can run into each other, and the kind of answer it
    /// holds, so that a near match is always an answer in the request's own API.
    pub fn space(&self, kind: AnswerKind) -> String {
        let (tenant, model) = (&self.tenant, &self.model);
        format!("t{}:{tenant}|m{}:{model}|{}|{}", tenant.len(), model.len(), self.namespace, kind.label())
    }

    /// Whether a semantic namespace made by [`Self::space`] is wholly inside `scope` (a purge by
    /// key prefix leaves the index alone: its stale entries are dropped when next found).
    pub fn space_in_scope(space: &str, scope: &PurgeScope) -> bool {
        if scope.key_prefix.is_some() {
            return false;
        }
        let parse = |s: &str, tag: char| -> Option<(String, String)> {
            let s = s.strip_prefix(tag)?;
            let (len, rest) = s.split_once(':')?;
            let len: usize = len.parse().ok()?;
            Some((rest.get(..len)?.to_owned(), rest.get(len..)?.strip_prefix('|')?.to_owned()))
        };
        let Some((tenant, rest)) = parse(space, 't') else { return false };
        let Some((model, _)) = parse(&rest, 'm') else { return false };
        scope.tenant.as_deref().is_none_or(|t| t == tenant) && scope.model.as_deref().is_none_or(|m| m == model)
    }

    /// Whether a purge of `scope` removes it.
    pub fn in_scope(&self, scope: &PurgeScope) -> bool {
        scope.tenant.as_deref().is_none_or(|t| *self.tenant == *t)
            && scope.model.as_deref().is_none_or(|m| *self.model == *m)
            && scope.key_prefix.as_deref().is_none_or(|p| self.hex().starts_with(p))
    }
}

/// Which entries a purge removes: all of those matching every field given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PurgeScope {
    pub tenant: Option<String>,
    pub model: Option<String>,
    /// A prefix of the entry's hex digest (as shown in the `x-sluice-cache-key` header).
    pub key_prefix: Option<String>,
}

/// The digest of a request: the API, then the body as canonical JSON (object members sorted,
/// no whitespace) without the delivery members and `ignore`, then `extra`. Two requests that
/// differ only in member order or spacing share an entry. `None` when the body is not a JSON
/// object (the parse stage has already refused such a body; this is the second line).
pub fn digest(api: Api, body: &[u8], ignore: &[String], extra: &str) -> Option<[u8; 32]> {
    let Ok(Value::Object(members)) = serde_json::from_slice::<Value>(body) else { return None };
    let mut hasher = HashWriter(Sha256::new());
    hasher.0.update(b"sluice-cache-v1\0");
    hasher.0.update(api.label().as_bytes());
    hasher.0.update(b"\0");
    let mut names: Vec<&String> =
        members.keys().filter(|k| !DELIVERY_FIELDS.contains(&k.as_str()) && !ignore.iter().any(|i| i == *k)).collect();
    names.sort_unstable();
    hasher.0.update(b"{");
    for (i, name) in names.into_iter().enumerate() {
        if i > 0 {
            hasher.0.update(b",");
        }
        canonical(&mut hasher, &Value::String(name.clone()));
        hasher.0.update(b":");
        canonical(&mut hasher, &members[name]);
    }
    hasher.0.update(b"}\0");
    hasher.0.update(extra.as_bytes());
    Some(hasher.0.finalize().into())
}

/// Writes `value` with sorted object members, whatever order serde_json keeps them in.
fn canonical(out: &mut HashWriter, value: &Value) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.0.update(b"{");
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.0.update(b",");
                }
                let _ = serde_json::to_writer(&mut *out, k);
                out.0.update(b":");
                canonical(out, v);
            }
            out.0.update(b"}");
        }
        Value::Array(items) => {
            out.0.update(b"[");
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.0.update(b",");
                }
                canonical(out, v);
            }
            out.0.update(b"]");
        }
        scalar => {
            // Writing into a hasher cannot fail.
            let _ = serde_json::to_writer(&mut *out, scalar);
        }
    }
}

struct HashWriter(Sha256);

impl Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(body: &str, ignore: &[&str]) -> [u8; 32] {
        let ignore: Vec<String> = ignore.iter().map(|s| (*s).to_owned()).collect();
        digest(Api::ChatCompletions, body.as_bytes(), &ignore, "").unwrap()
    }

    #[test]
    fn order_spacing_and_delivery_do_not_change_the_key() {
        let a = d(r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0}"#, &[]);
        let b = d(
            r#"{ "temperature": 0, "stream": true, "stream_options": {"include_usage": true},
                 "messages": [{"content": "hi", "role": "user"}], "model": "m" }"#,
            &[],
        );
        assert_eq!(a, b);
    }

    #[test]
    fn what_changes_the_answer_changes_the_key() {
        let base = d(r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0}"#, &[]);
        for other in [
            r#"{"model":"m","messages":[{"role":"user","content":"hi!"}],"temperature":0}"#,
            r#"{"model":"n","messages":[{"role":"user","content":"hi"}],"temperature":0}"#,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0,"max_tokens":5}"#,
            r#"{"model":"m","messages":[{"role":"system","content":"hi"}],"temperature":0}"#,
        ] {
            assert_ne!(base, d(other, &[]), "{other}");
        }
        let api = digest(Api::Completions, br#"{"model":"m","prompt":"x"}"#, &[], "").unwrap();
        assert_ne!(api, digest(Api::Embeddings, br#"{"model":"m","prompt":"x"}"#, &[], "").unwrap());
        assert_ne!(api, digest(Api::Completions, br#"{"model":"m","prompt":"x"}"#, &[], "v2").unwrap());
    }

    #[test]
    fn responses_and_messages_are_keyed_like_chat_with_their_api_in_the_key() {
        let key = |api: Api, body: &str| digest(api, body.as_bytes(), &[], "").unwrap();
        // One body, three APIs: three keys, so no API's answer ever reaches another's client.
        let body = r#"{"model":"m","max_tokens":8,"temperature":0,"messages":[{"role":"user","content":"hi"}]}"#;
        let (chat, messages, responses) =
            (key(Api::ChatCompletions, body), key(Api::Messages, body), key(Api::Responses, body));
        assert!(chat != messages && messages != responses && chat != responses);

        let r = r#"{"model":"m","instructions":"be brief","input":"hi","temperature":0,"store":false}"#;
        let streamed = r#"{"stream":true,"stream_options":{"include_obfuscation":false},"store":false,
            "temperature":0,"input":"hi","instructions":"be brief","model":"m"}"#;
        assert_eq!(key(Api::Responses, r), key(Api::Responses, streamed), "delivery is not the key");
        for other in [
            r#"{"model":"m","instructions":"be long","input":"hi","temperature":0,"store":false}"#,
            r#"{"model":"m","instructions":"be brief","input":"hi!","temperature":0,"store":false}"#,
            r#"{"model":"m","instructions":"be brief","input":"hi","temperature":0,"store":false,"max_output_tokens":5}"#,
            r#"{"model":"m","input":"hi","temperature":0,"store":false}"#,
        ] {
            assert_ne!(key(Api::Responses, r), key(Api::Responses, other), "{other}");
        }
        let m = r#"{"model":"m","max_tokens":8,"temperature":0,"system":"be brief","messages":[{"role":"user","content":"hi"}]}"#;
        for other in [
            r#"{"model":"m","max_tokens":8,"temperature":0,"system":"be long","messages":[{"role":"user","content":"hi"}]}"#,
            r#"{"model":"m","max_tokens":8,"temperature":0,"messages":[{"role":"user","content":"hi"}]}"#,
            r#"{"model":"m","max_tokens":9,"temperature":0,"system":"be brief","messages":[{"role":"user","content":"hi"}]}"#,
            r#"{"model":"m","max_tokens":8,"temperature":0,"system":"be brief","messages":[{"role":"user","content":"hi"}],"stop_sequences":["x"]}"#,
        ] {
            assert_ne!(key(Api::Messages, m), key(Api::Messages, other), "{other}");
        }
    }

    #[test]
    fn entries_belong_to_their_tenant_and_near_matches_to_their_api() {
        let body = br#"{"model":"m","input":"hi","temperature":0,"store":false}"#;
        let entry = |tenant: &str| EntryKey {
            namespace: Arc::from("plugin:cache"),
            tenant: Arc::from(tenant),
            model: Arc::from("m"),
            digest: digest(Api::Responses, body, &[], "").unwrap(),
        };
        // The same request of two tenants: the same digest, never the same entry.
        assert_eq!(entry("acme").digest, entry("globex").digest);
        assert_ne!(entry("acme"), entry("globex"));
        assert_ne!(entry("acme").space(AnswerKind::Response), entry("globex").space(AnswerKind::Response));
        let (responses, messages) =
            (entry("acme").space(AnswerKind::Response), entry("acme").space(AnswerKind::Message));
        assert_ne!(responses, messages);
        // Purges by tenant and model still find every API's near-match index.
        let acme = PurgeScope { tenant: Some("acme".into()), model: Some("m".into()), ..PurgeScope::default() };
        assert!(EntryKey::space_in_scope(&responses, &acme) && EntryKey::space_in_scope(&messages, &acme));
        let globex = PurgeScope { tenant: Some("globex".into()), ..PurgeScope::default() };
        assert!(!EntryKey::space_in_scope(&responses, &globex));
    }

    #[test]
    fn ignored_members_are_left_out() {
        let a = d(r#"{"model":"m","messages":[],"user":"alice"}"#, &["user"]);
        let b = d(r#"{"model":"m","messages":[],"user":"bob"}"#, &["user"]);
        assert_eq!(a, b);
        assert_ne!(
            d(r#"{"model":"m","messages":[],"user":"alice"}"#, &[]),
            d(r#"{"model":"m","messages":[],"user":"bob"}"#, &[])
        );
        assert!(digest(Api::ChatCompletions, b"[1,2]", &[], "").is_none());
    }

    #[test]
    fn purge_scopes_match_every_field_given() {
        let key = EntryKey {
            namespace: Arc::from("plugin:cache"),
            tenant: Arc::from("acme"),
            model: Arc::from("m"),
            digest: [0xab; 32],
        };
        assert!(key.in_scope(&PurgeScope::default()));
        assert!(key.in_scope(&PurgeScope {
            tenant: Some("acme".into()),
            key_prefix: Some("abab".into()),
            ..Default::default()
        }));
        assert!(!key.in_scope(&PurgeScope {
            tenant: Some("acme".into()),
            model: Some("n".into()),
            ..Default::default()
        }));
        assert!(!key.in_scope(&PurgeScope { key_prefix: Some("ff".into()), ..Default::default() }));
    }
}
