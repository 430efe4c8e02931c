//! Similar is not the same: the check a candidate above the similarity threshold must pass
//! before its answer is replayed.
//!
//! Embeddings (hashed n-grams or a real model) put "turn on the lights" right next to "turn off
//! the lights". [`compatible`] compares the two texts for the few kinds of difference that change
//! the answer while changing the vector very little, and names the first it finds. It is
//! deliberately one-sided: it may reject a true paraphrase (a missed hit costs one upstream
//! call), it should never let a near miss through (a false hit returns a wrong answer).
//!
//! The rules, in the order they run:
//!
//! - [`Mismatch::Quoted`]: quoted text (`"…"`, `'…'`, `` `…` ``, `“…”`, `‘…’`, `«…»`, code
//!   fences) is literal. When both texts quote, they must quote the same strings in the same
//!   order; when one does, each of its quoted strings must appear byte for byte in the other.
//! - [`Mismatch::Number`]: the numbers, in order, must be equal — digits (`1,000` = `1000`),
//!   number words (`two` = `2`, `twenty two` = `22`), ordinals (`third` = `3rd`) — and so must
//!   the arithmetic and currency symbols (`+ - * / ^ = < > % $ € £ ¥`, and `plus`, `minus`,
//!   `times`, `divided`, `percent`, `dollars`, `euros`).
//! - [`Mismatch::Negation`]: the same number of negations (`not`, `n't`, `no`, `never`,
//!   `without`, `none`, `nothing`, `nobody`, `nowhere`, `neither`, `nor`, `except`, `excluding`).
//! - [`Mismatch::Opposite`]: one word of an opposite pair swapped for the other (on/off,
//!   open/close, enable/disable, increase/decrease, before/after, add/remove, max/min, up/down,
//!   yes/no, true/false, to/from, buy/sell, import/export, … ; inflections included), or a word
//!   against its negative prefix form (`legal`/`illegal`, `lock`/`unlock`, `like`/`dislike`).
//! - [`Mismatch::Question`]: a different question word (why/how/when/where/who).
//! - [`Mismatch::Entity`]: names and identifiers — capitalised words not at a sentence start
//!   (and at a sentence start unless they are common sentence openers), all-caps words,
//!   camelCase, words with digits, file names, paths, URLs — must each appear in the other text
//!   (ignoring case).
//! - [`Mismatch::Order`]: two words both texts share swapped around a relation word ("Celsius to
//!   Fahrenheit" / "Fahrenheit to Celsius", "is Rust faster than Go" / "is Go faster than Rust").
//!
//! What it does not catch: a different lower-case common noun or verb ("flights to paris" vs
//! "flights to london" when neither is capitalised, "boil an egg" vs "fry an egg"), synonyms
//! that flip meaning without an opposite pair listed here, and anything that needs
//! understanding. Those are left to the similarity threshold, which is why the threshold is high
//! (see the crate docs).

mod lexicon;
mod rules;

use std::collections::HashSet;
use std::fmt;

use crate::words::normalized_words;
use lexicon::NEGATIONS;
use rules::{entities, opposites_swapped, order_swapped, question_swapped, quoted_match, stem, symbols, word_symbol};

/// Why two texts were judged different despite a high similarity. `as_str` is a low-cardinality
/// label for metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mismatch {
    /// Different quoted strings.
    Quoted,
    /// Different numbers, or different arithmetic or currency symbols.
    Number,
    /// A different number of negations.
    Negation,
    /// A word swapped for its opposite.
    Opposite,
    /// A different question word.
    Question,
    /// A name or identifier in one text and not in the other.
    Entity,
    /// Shared words swapped around a relation word.
    Order,
}

impl Mismatch {
    pub fn as_str(self) -> &'static str {
        match self {
            Mismatch::Quoted => "quoted",
            Mismatch::Number => "number",
            Mismatch::Negation => "negation",
            Mismatch::Opposite => "opposite",
            Mismatch::Question => "question",
            Mismatch::Entity => "entity",
            Mismatch::Order => "order",
        }
    }
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a cached request's answer may be given to `query`, judged from the texts: `Ok` when
/// none of the rules above finds a difference, else the first rule that did. Symmetric, and
/// always `Ok` for two equal texts.
pub fn compatible(query: &str, candidate: &str) -> Result<(), Mismatch> {
    if query == candidate {
        return Ok(());
    }
    let q = Reading::new(query);
    let c = Reading::new(candidate);
    check(quoted_match(query, candidate), Mismatch::Quoted)?;
    check(q.numbers == c.numbers && q.symbols == c.symbols, Mismatch::Number)?;
    check(q.negations == c.negations, Mismatch::Negation)?;
    check(!opposites_swapped(&q, &c), Mismatch::Opposite)?;
    check(!question_swapped(&q, &c), Mismatch::Question)?;
    check(q.entities.iter().all(|e| c.word_set.contains(e)), Mismatch::Entity)?;
    check(c.entities.iter().all(|e| q.word_set.contains(e)), Mismatch::Entity)?;
    check(!order_swapped(&q, &c), Mismatch::Order)
}

fn check(ok: bool, mismatch: Mismatch) -> Result<(), Mismatch> {
    if ok { Ok(()) } else { Err(mismatch) }
}

/// What the rules read from one text, computed once per comparison.
struct Reading {
    words: Vec<String>,
    word_set: HashSet<String>,
    stems: HashSet<String>,
    numbers: Vec<String>,
    symbols: Vec<char>,
    negations: usize,
    entities: Vec<String>,
}

impl Reading {
    fn new(text: &str) -> Self {
        let words = normalized_words(text);
        let word_set: HashSet<String> = words.iter().cloned().collect();
        let stems = words.iter().map(|w| stem(w)).collect();
        let numbers = words.iter().filter(|w| w.starts_with(|c: char| c.is_ascii_digit())).cloned().collect();
        let mut symbols = symbols(text);
        symbols.extend(words.iter().filter_map(|w| word_symbol(w)));
        symbols.sort_unstable();
        let negations = words.iter().filter(|w| NEGATIONS.contains(&w.as_str())).count();
        let entities = entities(text);
        Self { words, word_set, stems, numbers, symbols, negations, entities }
    }

    fn has(&self, word: &str) -> bool {
        self.word_set.contains(word) || self.stems.contains(&stem(word))
    }
}

#[cfg(test)]
mod tests;
