//! The semantic cache's building blocks: find a cached request that means the same as a new
//! one, and refuse the ones that only look the same. Pure library: no async, no I/O, no clock.
//!
//! - [`ngram::embed`]: hashed character n-gram embeddings, the simulator's `/v1/embeddings`, so
//!   the cache is testable without a model.
//! - [`SemanticIndex`] (feature `index`, on by default): approximate nearest neighbours (HNSW,
//!   from USearch) per namespace, bounded per namespace and in total, with the evicted entries
//!   reported so the exact cache can drop them too.
//! - [`guard::compatible`]: "similar is not the same" — negations, numbers, names, quoted
//!   strings, opposites, question words and swapped operands that the vectors barely see.
//!
//! # What the threshold means
//!
//! Similarity is the cosine of the two requests' embeddings: 1 for the same direction, 0 for
//! nothing in common. A cached answer is a candidate when its request's similarity to the new
//! one is at least the threshold; the guard then has the last word. The threshold is a property
//! of the embedding model, not a universal constant: a real model's cosines for paraphrases sit
//! elsewhere than these hashed n-grams', so measure before choosing one for a real model.
//!
//! For [`ngram::embed`] at the simulator's 384 dimensions, on the committed test sets
//! (`tests/data/`; `tests/sets.rs` asserts on them and its ignored `report` test prints the
//! figures):
//!
//! - paraphrases (casing, punctuation, filler words, contractions, word order, small
//!   rewordings, synonyms; 70 pairs): cosine median 0.98, but synonyms with no letters in common
//!   fall as low as 0.07 ("Suggest a gift for my dad" / "Recommend a present for my father");
//! - near misses the guard knows (a negation, number, name, quoted string, opposite, question
//!   word or swapped operands apart; 84 pairs): cosine 0.52 to 1.00, median 0.77 — the vectors
//!   alone cannot tell many of them from paraphrases, and some are identical bags of words;
//! - near misses the guard cannot see (one lower-case word apart: "boil an egg" / "fry an egg";
//!   20 pairs): cosine 0.56 to 0.82;
//! - unrelated requests (each paraphrase query against every other pair's request): at most
//!   0.63.
//!
//! [`DEFAULT_THRESHOLD`] is 0.88: 0.06 above the closest pair only the threshold can keep apart,
//! which keeps 54 of the 70 paraphrases a hit (77%; 53 at 256 dimensions; the test asserts at
//! least 72%). At 0.85 the hit rate would be 83% with a margin of 0.03; at 0.80, 90%, but 3 of
//! the 20 unguarded near misses would be false hits. The guard rejects all 84 near misses on
//! its own, at any threshold; 16 of them are above 0.88.
//!
//! # The false-hit risk
//!
//! A false hit gives one request the answer to another, which is worse than a miss: the client
//! gets a wrong answer with no error. It happens when two requests are close in embedding space,
//! differ in what they ask, and the difference is not one the guard knows. For these embeddings
//! that means a different lower-case noun or verb in a long shared context ("…for a cat" vs
//! "…for a dog" deep inside a long prompt), or a change of meaning by a synonym the vectors share
//! letters with. A higher threshold lowers the risk and the hit rate together; entries are only
//! ever compared within one namespace, so a false hit never crosses tenants or models.
//!
//! # What the guard catches and what it does not
//!
//! It catches, between the query and a candidate: a different number of negations (`not`,
//! `n't`, `never`, `without`…); different numbers, number words or arithmetic and currency
//! symbols; a capitalised name, acronym, identifier or file name present in one and absent from
//! the other; different quoted strings; a word swapped for its opposite (on/off, open/close,
//! increase/decrease, before/after, to/from, legal/illegal…); a different question word (why vs
//! how); and two shared words swapped around a relation word ("Celsius to Fahrenheit" vs
//! "Fahrenheit to Celsius"). It does not understand language: a different lower-case noun, a
//! paraphrase that negates with another word ("fail to" for "not"), or an opposite missing from
//! its list pass it, and the threshold is the only defence there. Its mistakes on the other
//! side (a paraphrase rejected, such as a reordered pair of numbers) cost a miss, not a wrong
//! answer. See [`guard`] for the rules.

mod error;
pub mod guard;
#[cfg(feature = "index")]
mod index;
pub mod ngram;
mod words;

pub use error::SemanticError;
pub use guard::Mismatch;
#[cfg(feature = "index")]
pub use index::{Candidate, EntryId, Evicted, IndexConfig, IndexStats, Lookup, Purged, SemanticIndex};

/// The similarity threshold chosen for [`ngram::embed`] from the committed test sets (see the
/// crate docs for the measurements).
pub const DEFAULT_THRESHOLD: f32 = 0.88;
