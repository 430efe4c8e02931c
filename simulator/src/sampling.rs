//! What the simulated model "says": output lengths and output tokens, pure functions of the
//! worker seed and the prompt so repeated requests get repeated answers, and embedding vectors,
//! functions of the input alone.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use sluice_semantic::ngram;

use crate::hash;
use crate::tokenizer::{Tokenizer, VOCAB_SIZE};

/// How many tokens to generate when the client set no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputLength {
    /// Inclusive bounds for a seeded length.
    pub min: u32,
    pub max: u32,
    /// When set, every unlimited request produces exactly this many tokens.
    pub fixed: Option<u32>,
}

impl Default for OutputLength {
    fn default() -> Self {
        Self { min: 16, max: 256, fixed: None }
    }
}

/// Why generation stopped, in OpenAI's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// The model chose to stop (the simulated end-of-sequence).
    Stop,
    /// The client's `max_tokens` was reached.
    Length,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }
}

/// Output length and finish reason for a prompt. A client limit is always used in full (the
/// simulated model never stops early), so its finish reason is `length`.
pub fn output_plan(seed: u64, prompt: &[u32], client_limit: Option<u32>, lengths: OutputLength) -> (u32, FinishReason) {
    if let Some(limit) = client_limit {
        return (limit, FinishReason::Length);
    }
    if let Some(fixed) = lengths.fixed {
        return (fixed, FinishReason::Stop);
    }
    let mut rng = SmallRng::seed_from_u64(hash::combine(hash::tokens(seed, prompt), 1));
    let (lo, hi) = (lengths.min.min(lengths.max), lengths.max.max(lengths.min));
    (rng.random_range(lo..=hi), FinishReason::Stop)
}

/// The output tokens for a prompt: mostly common words, some generated words, and a punctuation
/// mark now and then, so the text looks like (meaningless) prose.
pub fn output_tokens(tokenizer: &Tokenizer, seed: u64, prompt: &[u32], len: u32) -> Vec<u32> {
    let mut rng = SmallRng::seed_from_u64(hash::combine(hash::tokens(seed, prompt), 2));
    let first_word = tokenizer.first_word_id();
    let common = tokenizer.common_words().max(1);
    let period = tokenizer.encode(".").first().copied().unwrap_or(0);
    let comma = tokenizer.encode(",").first().copied().unwrap_or(0);
    (0..len)
        .map(|i| {
            let roll: f64 = rng.random();
            if i > 0 && roll < 0.06 {
                period
            } else if i > 0 && roll < 0.10 {
                comma
            } else if roll < 0.65 {
                first_word + rng.random_range(0..common)
            } else {
                rng.random_range(first_word..VOCAB_SIZE.min(first_word + 4_000))
            }
        })
        .collect()
}

/// What `/v1/embeddings` embeds: the text when the client sent text, else the token ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmbeddingInput<'a> {
    Text(&'a str),
    Tokens(&'a [u32]),
}

/// A unit-length embedding of `dim` dimensions in which similar inputs are close, so a semantic
/// cache in front of the simulator can be tested: for text, hashed words and character 3-grams
/// (`sluice_semantic::ngram::embed`, the function the cache's own tests use); for token ids,
/// hashed ids and id pairs. Not seeded: like a real embedding model, every worker of a pool gives
/// the same vector for the same input, whatever its seed.
pub fn embedding(input: EmbeddingInput<'_>, dim: u32) -> Vec<f32> {
    match input {
        EmbeddingInput::Text(text) => ngram::embed(text, dim as usize),
        EmbeddingInput::Tokens(ids) => ngram::embed_tokens(ids, dim as usize),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_follow_limits_and_bounds() {
        let l = OutputLength::default();
        assert_eq!(output_plan(1, &[1, 2], Some(5), l), (5, FinishReason::Length));
        let fixed = OutputLength { fixed: Some(9), ..l };
        assert_eq!(output_plan(1, &[1, 2], None, fixed), (9, FinishReason::Stop));
        for p in 0..50u32 {
            let (n, r) = output_plan(3, &[p], None, l);
            assert!((16..=256).contains(&n));
            assert_eq!(r, FinishReason::Stop);
            assert_eq!(output_plan(3, &[p], None, l).0, n, "deterministic");
        }
    }

    #[test]
    fn outputs_depend_on_seed_and_prompt_only() {
        let t = Tokenizer::new();
        let a = output_tokens(&t, 1, &[10, 11], 40);
        assert_eq!(a, output_tokens(&t, 1, &[10, 11], 40));
        assert_ne!(a, output_tokens(&t, 2, &[10, 11], 40));
        assert_ne!(a, output_tokens(&t, 1, &[10, 12], 40));
        assert_eq!(t.encode(&t.decode(&a)), a, "generated text re-tokenizes to itself");
    }

    #[test]
    fn embeddings_are_unit_and_deterministic() {
        let inputs = [EmbeddingInput::Text("What is the capital of France?"), EmbeddingInput::Tokens(&[1, 2, 3])];
        for input in inputs {
            for dim in [3, 64, 384] {
                let e = embedding(input, dim);
                assert_eq!(e.len(), dim as usize);
                let norm: f32 = e.iter().map(|x| x * x).sum::<f32>().sqrt();
                assert!((norm - 1.0).abs() < 1e-4);
                assert_eq!(e, embedding(input, dim));
            }
        }
        let tokens = embedding(EmbeddingInput::Tokens(&[1, 2, 3]), 384);
        assert_ne!(tokens, embedding(EmbeddingInput::Tokens(&[1, 2, 4]), 384));
        let text = embedding(EmbeddingInput::Text("alpha beta"), 384);
        assert_ne!(text, embedding(EmbeddingInput::Text("alpha gamma"), 384));
    }

    fn cosine(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn a_paraphrase_is_closer_than_an_unrelated_text() {
        let text = |t| embedding(EmbeddingInput::Text(t), 384);
        let asked = text("How do I reverse a list in Python?");
        let paraphrase = text("how can i reverse a python list");
        let unrelated = text("Recommend a hiking trail near Denver");
        let (near, far) = (cosine(&asked, &paraphrase), cosine(&asked, &unrelated));
        assert!(near > 0.8, "paraphrase {near}");
        assert!(far < 0.3, "unrelated {far}");
        let tokens = |t: &[u32]| embedding(EmbeddingInput::Tokens(t), 384);
        let ids = tokens(&[10, 11, 12, 13, 14, 15]);
        assert!(cosine(&ids, &tokens(&[10, 11, 12, 13, 14, 16])) > cosine(&ids, &tokens(&[90, 91, 92, 93, 94, 95])));
    }
}
