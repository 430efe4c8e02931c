//! What a parsed request holds in memory beyond its body, counted by the allocator: a body is
//! kept while its request lives, so whatever parsing makes of it is paid again on top, for
//! every request in flight (issue 22, finding 7).
//!
//! Its own test binary, with one test, so that the counting allocator sees nothing else. Run
//! with `--nocapture` for the figures: before chat messages were kept as a slice of the body,
//! a body of many short messages held 1.98 bytes per body byte once parsed, and one of a few
//! long messages 1.00.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use sluice_openai::{ChatCompletionRequest, CompletionRequest, EmbeddingRequest};

/// Counts the bytes live on the heap and their peak.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(bytes: usize) {
    let live = LIVE.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK.fetch_max(live, Ordering::Relaxed);
}

#[expect(unsafe_code, reason = "GlobalAlloc is an unsafe trait; this forwards every call to System")]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            grew(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            grew(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let moved = unsafe { System.realloc(ptr, layout, new_size) };
        if !moved.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            grew(new_size);
        }
        moved
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Bytes the parsed form of `body` holds once parsed, and the most parsing held at once, both
/// per byte of the body.
struct Footprint {
    held: f64,
    peak: f64,
    held_bytes: usize,
}

fn footprint<T>(body: &Bytes, parse: impl FnOnce(&Bytes) -> T) -> Footprint {
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let parsed = std::hint::black_box(parse(body));
    let after = LIVE.load(Ordering::Relaxed);
    let peak = PEAK.load(Ordering::Relaxed);
    drop(parsed);
    let per_byte = |n: usize| n.saturating_sub(before) as f64 / body.len() as f64;
    Footprint { held: per_byte(after), peak: per_byte(peak), held_bytes: after.saturating_sub(before) }
}

/// docs/bench/memory.sh's body: Python's `json.dumps` of `MESSAGES` copies of one short message.
fn many_short_messages() -> Bytes {
    const MESSAGES: usize = 187_245;
    let message = r#"{"role": "user", "content": "a short message of a long conversation, about rivers"}"#;
    let messages = vec![message; MESSAGES].join(", ");
    Bytes::from(format!(r#"{{"model": "bench-model", "messages": [{messages}], "max_tokens": 4}}"#))
}

/// A long conversation as a few long turns: 4 messages of 1 MiB.
fn few_long_messages() -> Bytes {
    let text = "the river carries what the rain left; ".repeat((1 << 20) / 38);
    let messages: Vec<String> = ["system", "user", "assistant", "user"]
        .iter()
        .map(|role| format!(r#"{{"role":"{role}","content":"{text}"}}"#))
        .collect();
    Bytes::from(format!(r#"{{"model":"m","messages":[{}],"max_tokens":4}}"#, messages.join(",")))
}

/// 100,000 short prompts in one batch, for completions and embeddings.
fn many_short_prompts(member: &str) -> Bytes {
    let prompts = vec![r#""a short text about rivers""#; 100_000].join(",");
    Bytes::from(format!(r#"{{"model":"m","{member}":[{prompts}]}}"#))
}

/// How one case is parsed and measured.
type Measure = fn(&Bytes) -> Footprint;

#[test]
fn a_parsed_request_holds_a_fraction_of_its_body() {
    let cases: [(&str, Bytes, Measure); 4] = [
        ("chat, 187,245 short messages", many_short_messages(), |b| footprint(b, ChatCompletionRequest::from_body)),
        ("chat, 4 messages of 1 MiB", few_long_messages(), |b| footprint(b, ChatCompletionRequest::from_body)),
        ("completion, 100,000 short prompts", many_short_prompts("prompt"), |b| {
            footprint(b, CompletionRequest::from_body)
        }),
        ("embeddings, 100,000 short inputs", many_short_prompts("input"), |b| {
            footprint(b, EmbeddingRequest::from_body)
        }),
    ];
    let mut chat = Vec::new();
    for (name, body, measure) in &cases {
        let f = measure(body);
        println!(
            "{name} ({:.1} MiB): held {:.3} bytes per body byte ({} bytes), {:.3} at the peak of parsing",
            body.len() as f64 / (1 << 20) as f64,
            f.held,
            f.held_bytes,
            f.peak
        );
        if name.starts_with("chat") {
            chat.push((name, f));
        }
    }
    // For comparison, what a body of many short messages costs as a `serde_json::Value` (how
    // the plugin host's `body.field` and the response cache's key read a body today).
    let body = &cases[0].1;
    let tree = footprint(body, |b| serde_json::from_slice::<serde_json::Value>(b).unwrap());
    println!("the same 187,245 messages as a serde_json::Value: held {:.3} bytes per body byte", tree.held);
    // A chat's messages stay in the body (before: 1.98 and 1.00 bytes per body byte).
    for (name, f) in chat {
        assert!(f.held <= 0.01 && f.peak <= 0.01, "{name}: held {:.3}, peak {:.3}", f.held, f.peak);
    }
}
