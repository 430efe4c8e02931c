//! What the gateway reads out of a worker's answers: the probes of streamed chunks and the
//! usage of whole bodies. `body_usage` takes a shortcut near the end of the body and promises
//! never to differ from a full parse; this holds it to that.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_openai::Usage;
use sluice_openai::probe::{body_usage, chunk_facts, strip_usage};

/// The full parse `body_usage` must agree with.
#[derive(serde::Deserialize)]
struct UsageProbe {
    #[serde(default)]
    usage: Option<Usage>,
}

fuzz_target!(|data: &[u8]| {
    let facts = chunk_facts(data);
    if let Some(stripped) = strip_usage(data) {
        let after = chunk_facts(&stripped);
        assert!(after.is_some() || facts.is_none(), "stripping usage made a chunk unreadable");
        if let Some(after) = after {
            assert_eq!(after.usage, None, "usage survived stripping");
        }
        if let (Some(before), Some(after)) = (facts, after) {
            assert_eq!(before.has_token, after.has_token);
            assert_eq!(before.choices_empty, after.choices_empty);
            assert_eq!(before.is_error, after.is_error);
        }
    }
    let fast = body_usage(data);
    // Answers are JSON objects. (serde also reads a struct from an array, by position: `[[0]]`
    // fully parsed has a usage of zeros; the shortcut, finding no "usage" key, has none.)
    let object = data.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    if object && let Ok(full) = serde_json::from_slice::<UsageProbe>(data) {
        assert_eq!(fast, full.usage, "the shortcut differs from the full parse");
    }
});
