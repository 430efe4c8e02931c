//! The prompt as the host's prefix index sees it: chained hashes of its blocks.
//!
//! The gateway has no tokenizer configured yet, so a block of a text prompt is [`BLOCK_BYTES`]
//! bytes of its JSON text (a chat's `messages` exactly as sent, a completion's `prompt`): about
//! [`BLOCK_TOKENS`] tokens at the four-bytes-a-token estimate the gateway uses for prompt sizes.
//! A conversation's next turn repeats the same system prompt and earlier messages in the same
//! JSON, so it hashes to the same leading blocks, which is all prefix routing needs. A prompt
//! given as token ids is hashed [`BLOCK_TOKENS`] ids a block. Either way the chain starts from
//! the model's name: a pool serving two models keeps their prefixes apart.
//!
//! These hashes name text, not the engine's token blocks, so the engine's KV events cannot be
//! matched against them; the index holds what the host routed (`upstream::prefixes`).

use sluice_openai::request::Prompt;
use sluice_routing::BlockHash;

use crate::stages::parse::ParsedRequest;

/// Bytes of prompt text per block.
pub const BLOCK_BYTES: usize = 64;
/// Tokens per block, as the route plugins are told (`route-request.block-size`).
pub const BLOCK_TOKENS: u32 = 16;
/// Blocks hashed at most: 512 KiB of text, about 128k tokens. A longer prompt is routed by its
/// first 512 KiB, and a body of the largest size allowed costs no more than that to hash.
pub const MAX_BLOCKS: usize = 8192;

/// The chained hashes of the prompt's full blocks; none for embeddings.
pub fn hashes(parsed: &ParsedRequest) -> Vec<BlockHash> {
    match parsed {
        ParsedRequest::Chat(r) => text_blocks(&r.model, r.messages.json().as_bytes()),
        ParsedRequest::Completion(r) => match &r.prompt {
            Prompt::Text(text) => text_blocks(&r.model, text.as_bytes()),
            // A batch is several sequences: the first one stands for the request.
            Prompt::Texts(texts) => texts.first().map_or_else(Vec::new, |t| text_blocks(&r.model, t.as_bytes())),
            Prompt::Tokens(ids) => token_blocks(&r.model, ids),
            Prompt::TokenBatches(batches) => batches.first().map_or_else(Vec::new, |ids| token_blocks(&r.model, ids)),
        },
        ParsedRequest::Embedding(_) => Vec::new(),
        // The body stands for the prompt: its input or messages are most of it, and the members
        // before them (model, instructions or system prompt) are as stable as the prompt's start.
        ParsedRequest::Agent(r) => text_blocks(&r.model, &r.body),
    }
}

fn root(model: &str) -> BlockHash {
    let words: Vec<u32> = model.bytes().map(u32::from).collect();
    BlockHash::chain(None, &words)
}

fn text_blocks(model: &str, text: &[u8]) -> Vec<BlockHash> {
    let mut parent = root(model);
    let mut words = [0u32; BLOCK_BYTES / 4];
    text.chunks_exact(BLOCK_BYTES)
        .take(MAX_BLOCKS)
        .map(|block| {
            for (word, bytes) in words.iter_mut().zip(block.chunks_exact(4)) {
                *word = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
            }
            parent = BlockHash::chain(Some(parent), &words);
            parent
        })
        .collect()
}

fn token_blocks(model: &str, ids: &[u32]) -> Vec<BlockHash> {
    let mut parent = root(model);
    ids.chunks_exact(BLOCK_TOKENS as usize)
        .take(MAX_BLOCKS)
        .map(|block| {
            parent = BlockHash::chain(Some(parent), block);
            parent
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use sluice_metrics::Api;

    use super::*;
    use crate::stages::parse;

    fn chat(model: &str, messages: &str) -> ParsedRequest {
        let body = format!(r#"{{"model":"{model}","messages":{messages}}}"#);
        parse::run(Api::ChatCompletions, &Bytes::from(body)).unwrap_or_else(|e| panic!("{e:?}"))
    }

    fn system(n: usize) -> String {
        "You are a careful assistant. ".repeat(n)
    }

    #[test]
    fn a_next_turn_shares_the_leading_blocks() {
        let first = format!(r#"[{{"role":"system","content":"{}"}},{{"role":"user","content":"hi"}}]"#, system(20));
        let next = format!(
            r#"[{{"role":"system","content":"{}"}},{{"role":"user","content":"hi"}},{{"role":"assistant","content":"hello"}},{{"role":"user","content":"more"}}]"#,
            system(20)
        );
        let (a, b) = (hashes(&chat("m", &first)), hashes(&chat("m", &next)));
        assert!(a.len() >= 9, "{}", a.len());
        let shared = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
        // Everything but the block holding the end of the first request's array.
        assert!(shared + 1 >= a.len(), "{shared} of {}", a.len());
        assert!(b.len() > a.len());
    }

    #[test]
    fn models_and_prompts_keep_apart() {
        let messages = format!(r#"[{{"role":"user","content":"{}"}}]"#, system(10));
        assert_ne!(hashes(&chat("a", &messages))[0], hashes(&chat("b", &messages))[0]);
        let other = format!(r#"[{{"role":"user","content":"x{}"}}]"#, system(10));
        assert!(hashes(&chat("a", &messages)).iter().zip(hashes(&chat("a", &other))).all(|(x, y)| *x != y));
    }

    #[test]
    fn short_prompts_have_no_block_and_long_ones_stop_at_the_cap() {
        assert!(hashes(&chat("m", r#"[{"role":"user","content":"hi"}]"#)).is_empty());
        let huge = format!(r#"[{{"role":"user","content":"{}"}}]"#, "x".repeat(BLOCK_BYTES * (MAX_BLOCKS + 10)));
        assert_eq!(hashes(&chat("m", &huge)).len(), MAX_BLOCKS);
    }

    #[test]
    fn token_prompts_hash_sixteen_ids_a_block() {
        let ids: Vec<u32> = (0..40).collect();
        let body = format!(r#"{{"model":"m","prompt":{}}}"#, serde_json::to_string(&ids).unwrap_or_default());
        let parsed = parse::run(Api::Completions, &Bytes::from(body)).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(hashes(&parsed).len(), 2);
        let embedding =
            parse::run(Api::Embeddings, &Bytes::from_static(br#"{"model":"m","input":"some text to embed"}"#))
                .unwrap_or_else(|e| panic!("{e:?}"));
        assert!(hashes(&embedding).is_empty());
    }
}
