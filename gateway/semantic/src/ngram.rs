//! Hashed n-gram embeddings: a cheap, deterministic stand-in for an embedding model, in which
//! texts that share words and word pieces are close.
//!
//! A text's features are its words (lower case, contractions expanded, number words as digits:
//! see `words.rs`) and the character 3-grams of each word with boundary markers (`<ca`, `cat`,
//! `at>`). Each feature is hashed to one of `dim` buckets with a hashed sign (the "hashing
//! trick"), so unrelated features cancel on average instead of piling up, and the sum is scaled
//! to unit length. Cosine similarity is then a dot product.
//!
//! What it captures: shared vocabulary and spelling (`colour`/`color`, `engine`/`engines`);
//! casing, punctuation, word order and filler words do not move the vector, or barely (filler
//! words weigh a quarter). What it does not: synonyms with no shared letters (`car`/`automobile`),
//! and meaning — "turn on the lights" and "turn off the lights" are very close, which is why
//! [`crate::guard`] exists.
//!
//! The simulator's `/v1/embeddings` answers with these vectors, so the semantic cache can be
//! tested end to end without a model. The hash is FNV-1a with a fixed mixer: the vectors are the
//! same on every platform and in every build.

use crate::words::{is_filler, normalized_words};

/// Weight of a whole word.
const WORD_WEIGHT: f32 = 1.0;
/// Weight of all the character 3-grams of one word together, split evenly between them, so a
/// long word does not outweigh a short one.
const TRIGRAMS_WEIGHT: f32 = 1.0;
/// Filler words (articles, auxiliaries, politeness) count this much of a content word.
const FILLER_SCALE: f32 = 0.25;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv1a(kind: u8, bytes: &[u8]) -> u64 {
    let mut h = FNV_OFFSET ^ u64::from(kind);
    h = h.wrapping_mul(FNV_PRIME);
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    // FNV's low bits are weak for short inputs; a finaliser spreads every input bit over the
    // bucket (low bits) and the sign (top bit).
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

fn add_feature(v: &mut [f32], hash: u64, weight: f32) {
    let bucket = (hash % v.len() as u64) as usize;
    let sign = if hash >> 63 == 0 { 1.0 } else { -1.0 };
    v[bucket] += sign * weight;
}

/// Scales `v` to unit length. A vector that came out all zeros (no features, or features that
/// cancelled in a tiny `dim`) becomes a basis vector chosen by `fallback`, so every embedding
/// has length one.
fn normalise(v: &mut [f32], fallback: u64) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 1e-12 && norm.is_finite() {
        v.iter_mut().for_each(|x| *x /= norm);
    } else if !v.is_empty() {
        v.iter_mut().for_each(|x| *x = 0.0);
        let bucket = (fallback % v.len() as u64) as usize;
        v[bucket] = 1.0;
    }
}

fn add_word(v: &mut [f32], word: &str) {
    let scale = if is_filler(word) { FILLER_SCALE } else { 1.0 };
    add_feature(v, fnv1a(b'w', word.as_bytes()), WORD_WEIGHT * scale);
    let marked: Vec<char> = std::iter::once('<').chain(word.chars()).chain(std::iter::once('>')).collect();
    let grams = marked.len().saturating_sub(2);
    if grams == 0 {
        return;
    }
    let weight = TRIGRAMS_WEIGHT * scale / (grams as f32).sqrt();
    let mut buf = String::with_capacity(12);
    for window in marked.windows(3) {
        buf.clear();
        buf.extend(window);
        add_feature(v, fnv1a(b'c', buf.as_bytes()), weight);
    }
}

/// The unit-length embedding of `text` in `dim` dimensions (empty when `dim` is 0).
///
/// Deterministic: the same text and `dim` give the same vector everywhere. A text with no
/// letters or digits is embedded by its characters, and an empty text gets a fixed vector.
pub fn embed(text: &str, dim: usize) -> Vec<f32> {
    let mut v = vec![0.0f32; dim];
    if dim == 0 {
        return v;
    }
    let words = normalized_words(text);
    if words.is_empty() {
        // Punctuation or emoji only: its characters are all there is to compare.
        for c in text.chars().filter(|c| !c.is_whitespace()) {
            let mut buf = [0u8; 4];
            add_feature(&mut v, fnv1a(b'p', c.encode_utf8(&mut buf).as_bytes()), 1.0);
        }
    }
    for word in &words {
        add_word(&mut v, word);
    }
    normalise(&mut v, fnv1a(b'e', text.as_bytes()));
    v
}

/// The unit-length embedding of a sequence of token ids in `dim` dimensions, for inputs that
/// come as ids rather than text: each id and each pair of neighbouring ids is a feature, so
/// sequences sharing most tokens are close.
pub fn embed_tokens(tokens: &[u32], dim: usize) -> Vec<f32> {
    let mut v = vec![0.0f32; dim];
    if dim == 0 {
        return v;
    }
    for t in tokens {
        add_feature(&mut v, fnv1a(b't', &t.to_le_bytes()), 1.0);
    }
    for pair in tokens.windows(2) {
        let mut bytes = [0u8; 8];
        bytes[..4].copy_from_slice(&pair[0].to_le_bytes());
        bytes[4..].copy_from_slice(&pair[1].to_le_bytes());
        add_feature(&mut v, fnv1a(b'b', &bytes), 0.5);
    }
    let all: Vec<u8> = tokens.iter().flat_map(|t| t.to_le_bytes()).collect();
    normalise(&mut v, fnv1a(b'e', &all));
    v
}

/// Cosine similarity of two vectors of equal length (the dot product when both have unit
/// length, as this module's embeddings do). 0 for vectors of different lengths or zero length.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() {
        return 0.0;
    }
    let (dot, na, nb) =
        a.iter().zip(b).fold((0.0f32, 0.0f32, 0.0f32), |(d, x, y), (p, q)| (d + p * q, x + p * p, y + q * q));
    if na <= 0.0 || nb <= 0.0 {
        return 0.0;
    }
    dot / (na.sqrt() * nb.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(v: &[f32]) -> f32 {
        v.iter().map(|x| x * x).sum::<f32>().sqrt()
    }

    #[test]
    fn vectors_are_unit_and_deterministic() {
        for text in ["What is the capital of France?", "", "?!", "\u{1f600}", "a", "x y z"] {
            for dim in [1, 2, 3, 64, 384] {
                let v = embed(text, dim);
                assert_eq!(v.len(), dim);
                assert!((norm(&v) - 1.0).abs() < 1e-4, "{text:?} in {dim}: {}", norm(&v));
                assert_eq!(v, embed(text, dim));
            }
        }
        assert!(embed("anything", 0).is_empty());
        for dim in [1, 3, 384] {
            assert!((norm(&embed_tokens(&[1, 2, 3], dim)) - 1.0).abs() < 1e-4);
            assert!((norm(&embed_tokens(&[], dim)) - 1.0).abs() < 1e-4);
        }
    }

    #[test]
    fn casing_punctuation_and_order_do_not_move_the_vector() {
        let a = embed("What is the capital of France?", 384);
        assert!(cosine(&a, &embed("what is the capital of france", 384)) > 0.999);
        assert!(cosine(&a, &embed("The capital of France is what", 384)) > 0.999);
    }

    #[test]
    fn similar_texts_are_closer_than_unrelated_ones() {
        let a = embed("How do I reverse a list in Python?", 384);
        let paraphrase = embed("how can I reverse a Python list", 384);
        let unrelated = embed("Recommend a good pizza place in Naples", 384);
        assert!(cosine(&a, &paraphrase) > 0.7, "{}", cosine(&a, &paraphrase));
        assert!(cosine(&a, &unrelated) < 0.4, "{}", cosine(&a, &unrelated));
    }

    #[test]
    fn token_sequences_sharing_tokens_are_close() {
        let a = embed_tokens(&[10, 11, 12, 13, 14, 15], 384);
        let b = embed_tokens(&[10, 11, 12, 13, 14, 16], 384);
        let c = embed_tokens(&[90, 91, 92, 93, 94, 95], 384);
        assert!(cosine(&a, &b) > cosine(&a, &c) + 0.5);
        assert_ne!(a, b);
    }

    #[test]
    fn cosine_of_mismatched_or_zero_vectors_is_zero() {
        assert_eq!(cosine(&[1.0], &[1.0, 0.0]), 0.0);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 0.0]), 0.0);
    }

    mod properties {
        use proptest::prelude::*;

        use super::super::{embed, embed_tokens};

        proptest! {
            #[test]
            fn any_input_embeds_to_a_unit_vector(text in proptest::collection::vec(any::<char>(), 0..60), dim in 1usize..512) {
                let text = String::from_iter(text);
                let v = embed(&text, dim);
                prop_assert_eq!(v.len(), dim);
                prop_assert!((v.iter().map(|x| x * x).sum::<f32>().sqrt() - 1.0).abs() < 1e-3);
            }

            #[test]
            fn any_token_sequence_embeds_to_a_unit_vector(ids in proptest::collection::vec(any::<u32>(), 0..60), dim in 1usize..512) {
                let v = embed_tokens(&ids, dim);
                prop_assert!((v.iter().map(|x| x * x).sum::<f32>().sqrt() - 1.0).abs() < 1e-3);
            }
        }
    }
}
