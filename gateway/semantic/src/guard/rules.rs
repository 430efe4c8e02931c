//! The rules [`super::compatible`] runs, each over the two texts' readings.

use std::collections::HashMap;

use super::Reading;
use super::lexicon::{NEGATIVE_PREFIXES, OPPOSITES, QUESTION_WORDS, RELATIONS, SENTENCE_OPENERS};
use crate::words::{RawToken, expand, is_filler, normalized_words, raw_tokens};

/// A crude stemmer, enough to match inflections of the opposite pairs (`increases`,
/// `increasing`, `increased` → `increas`; `stopped` → `stop`).
pub(super) fn stem(word: &str) -> String {
    let mut w = word;
    for suffix in ["ing", "ed", "es", "s"] {
        if w.len() > suffix.len() + 2 && w.ends_with(suffix) && !w.ends_with("ss") {
            w = &w[..w.len() - suffix.len()];
            break;
        }
    }
    let bytes = w.as_bytes();
    let n = bytes.len();
    // ASCII only: the last two bytes of a longer character can be equal too.
    if n > 3
        && bytes[n - 1] == bytes[n - 2]
        && bytes[n - 1].is_ascii_alphabetic()
        && !matches!(bytes[n - 1], b'l' | b's' | b'e')
    {
        w = &w[..n - 1];
    }
    w.strip_suffix('e').filter(|s| s.len() > 2).unwrap_or(w).to_owned()
}

/// The arithmetic and currency symbols of `text`, with `×`, `÷` and `−` read as `*`, `/`, `-`.
pub(super) fn symbols(text: &str) -> Vec<char> {
    let chars: Vec<char> = text.chars().collect();
    let next_non_space = |i: usize| chars[i + 1..].iter().find(|c| !c.is_whitespace()).copied();
    let mut out = Vec::new();
    for (i, &c) in chars.iter().enumerate() {
        let counted = match c {
            '+' | '*' | '×' | '÷' | '^' | '=' | '<' | '>' | '%' | '$' | '€' | '£' | '¥' => true,
            // A minus or a sign, not a hyphen in a word.
            '-' | '\u{2212}' => next_non_space(i).is_some_and(|n| n.is_ascii_digit()),
            // A fraction or a date, not a path.
            '/' => i > 0 && chars[i - 1].is_ascii_digit() && chars.get(i + 1).is_some_and(|n| n.is_ascii_digit()),
            _ => false,
        };
        if counted {
            out.push(match c {
                '×' => '*',
                '÷' => '/',
                '\u{2212}' => '-',
                other => other,
            });
        }
    }
    out
}

/// The symbol a word spells out.
pub(super) fn word_symbol(word: &str) -> Option<char> {
    match word {
        "plus" => Some('+'),
        "minus" => Some('-'),
        "times" | "multiplied" => Some('*'),
        "divided" => Some('/'),
        "percent" => Some('%'),
        "dollar" | "dollars" | "usd" => Some('$'),
        "euro" | "euros" | "eur" => Some('€'),
        _ => None,
    }
}

fn closing_quote(open: char) -> Option<char> {
    match open {
        '"' => Some('"'),
        '`' => Some('`'),
        '\u{201c}' => Some('\u{201d}'),
        '\u{2018}' => Some('\u{2019}'),
        '\u{00ab}' => Some('\u{00bb}'),
        '\'' => Some('\''),
        _ => None,
    }
}

/// The quoted spans of `text`, in order. A single quote opens only at the start of a word and
/// closes only at the end of one, so apostrophes (`don't`, `cats'`) are not quotes.
pub(super) fn quoted_spans(text: &str) -> Vec<&str> {
    let mut spans = Vec::new();
    let mut i = 0;
    while i < text.len() {
        let rest = &text[i..];
        let Some(c) = rest.chars().next() else { break };
        let width = c.len_utf8();
        if let Some(body) = rest.strip_prefix("```")
            && let Some(end) = body.find("```")
        {
            spans.push(body[..end].trim());
            i += 3 + end + 3;
            continue;
        }
        let Some(close) = closing_quote(c) else {
            i += width;
            continue;
        };
        let before = text[..i].chars().next_back();
        let single = c == '\'' || c == '\u{2018}';
        if single && before.is_some_and(char::is_alphanumeric) {
            i += width;
            continue;
        }
        let body = &rest[width..];
        let end = body.char_indices().find(|&(j, d)| {
            d == close
                && (!single || {
                    let after = body[j + d.len_utf8()..].chars().next();
                    !after.is_some_and(char::is_alphanumeric)
                })
        });
        match end {
            Some((j, d)) => {
                if !body[..j].trim().is_empty() {
                    spans.push(&body[..j]);
                }
                i += width + j + d.len_utf8();
            }
            None => i += width,
        }
    }
    spans
}

pub(super) fn quoted_match(query: &str, candidate: &str) -> bool {
    let q = quoted_spans(query);
    let c = quoted_spans(candidate);
    match (q.is_empty(), c.is_empty()) {
        (true, true) => true,
        (false, false) => q == c,
        (false, true) => q.iter().all(|s| candidate.contains(s)),
        (true, false) => c.iter().all(|s| query.contains(s)),
    }
}

fn swapped(q_has_a: bool, q_has_b: bool, c_has_a: bool, c_has_b: bool) -> bool {
    (q_has_a && !q_has_b && c_has_b && !c_has_a) || (q_has_b && !q_has_a && c_has_a && !c_has_b)
}

pub(super) fn opposites_swapped(q: &Reading, c: &Reading) -> bool {
    if OPPOSITES.iter().any(|(a, b)| swapped(q.has(a), q.has(b), c.has(a), c.has(b))) {
        return true;
    }
    prefix_swapped(q, c) || prefix_swapped(c, q)
}

/// `legal` in one text against `illegal` in the other.
fn prefix_swapped(a: &Reading, b: &Reading) -> bool {
    a.word_set.iter().filter(|w| w.len() >= 3 && w.chars().all(char::is_alphabetic)).any(|w| {
        !b.word_set.contains(w)
            && NEGATIVE_PREFIXES.iter().any(|p| {
                let negative = format!("{p}{w}");
                b.word_set.contains(&negative) && !a.word_set.contains(&negative)
            })
    })
}

pub(super) fn question_swapped(q: &Reading, c: &Reading) -> bool {
    let only_q = QUESTION_WORDS.iter().any(|w| q.word_set.contains(*w) && !c.word_set.contains(*w));
    let only_c = QUESTION_WORDS.iter().any(|w| c.word_set.contains(*w) && !q.word_set.contains(*w));
    only_q && only_c
}

/// The names and identifiers of `text`, lower-cased and with a possessive `'s` dropped.
pub(super) fn entities(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for token in raw_tokens(text) {
        if is_entity(&token) {
            let mut key = Vec::new();
            expand(token.text, &mut key);
            if let Some(first) = key.into_iter().next() {
                out.push(first);
            }
        }
    }
    for chunk in text.split_whitespace() {
        let trimmed = chunk.trim_matches(|c: char| !c.is_alphanumeric() && c != '_' && c != '/');
        if is_literal(trimmed) {
            out.extend(normalized_words(trimmed));
        }
    }
    out
}

fn is_entity(token: &RawToken<'_>) -> bool {
    let text = token.text;
    let mut chars = text.chars();
    let Some(first) = chars.next() else { return false };
    let letters: Vec<char> = text.chars().filter(|c| c.is_alphabetic()).collect();
    let has_digit = text.chars().any(|c| c.is_ascii_digit());
    if has_digit && !letters.is_empty() {
        // gpt4, x86_64, 3rd is an ordinal and is compared as a number.
        return !text.starts_with(|c: char| c.is_ascii_digit());
    }
    if letters.len() >= 2 && letters.iter().all(|c| c.is_uppercase()) {
        return true;
    }
    if letters.iter().skip(1).any(|c| c.is_uppercase()) {
        // camelCase, iPhone, McDonald
        return true;
    }
    if !first.is_uppercase() || text == "I" {
        return false;
    }
    if !token.sentence_start {
        return true;
    }
    let mut lowered = Vec::new();
    expand(text, &mut lowered);
    let head = lowered.first().map(String::as_str).unwrap_or("");
    !(SENTENCE_OPENERS.contains(&head) || is_filler(head))
}

/// File names, paths, URLs, e-mail addresses, dotted or snake-case identifiers.
fn is_literal(chunk: &str) -> bool {
    let inner = |c: char| matches!(c, '.' | '/' | '\\' | '@' | '_' | ':' | '#' | '=');
    let chars: Vec<char> = chunk.chars().collect();
    chars.windows(3).any(|w| w[0].is_alphanumeric() && inner(w[1]) && w[2].is_alphanumeric())
        && chars.iter().any(|c| c.is_alphabetic())
}

/// How many shared words the order rule looks at, so a long prompt costs a bounded amount.
const MAX_ORDERED_WORDS: usize = 64;

/// Each word's count and first position.
fn occurrences(words: &[String]) -> HashMap<&str, (usize, usize)> {
    let mut counts: HashMap<&str, (usize, usize)> = HashMap::new();
    for (i, w) in words.iter().enumerate() {
        counts.entry(w.as_str()).or_insert((0, i)).0 += 1;
    }
    counts
}

pub(super) fn order_swapped(q: &Reading, c: &Reading) -> bool {
    let qc = occurrences(&q.words);
    let cc = occurrences(&c.words);
    let mut shared: Vec<(usize, usize)> = qc
        .iter()
        .filter(|(w, (n, _))| {
            // A name counts even when it is spelled like a filler word ("Go").
            let content = !is_filler(w) || q.entities.iter().chain(&c.entities).any(|e| e == *w);
            *n == 1 && content && !RELATIONS.contains(w) && !w.starts_with(|ch: char| ch.is_ascii_digit())
        })
        .filter_map(|(w, (_, qi))| cc.get(w).filter(|(n, _)| *n == 1).map(|(_, ci)| (*qi, *ci)))
        .collect();
    shared.sort_unstable();
    shared.truncate(MAX_ORDERED_WORDS);
    let relation_prefix = |words: &[String]| {
        let mut prefix = Vec::with_capacity(words.len() + 1);
        prefix.push(0usize);
        for w in words {
            let last = prefix.last().copied().unwrap_or(0);
            prefix.push(last + usize::from(RELATIONS.contains(&w.as_str())));
        }
        prefix
    };
    let qr = relation_prefix(&q.words);
    let cr = relation_prefix(&c.words);
    let relation_between = |prefix: &[usize], a: usize, b: usize| {
        let (lo, hi) = (a.min(b), a.max(b));
        prefix[hi] > prefix[lo + 1]
    };
    for (i, &(qa, ca)) in shared.iter().enumerate() {
        for &(qb, cb) in &shared[i + 1..] {
            // qa < qb by the sort; swapped if the candidate has them the other way round.
            if ca > cb && relation_between(&qr, qa, qb) && relation_between(&cr, ca, cb) {
                return true;
            }
        }
    }
    false
}
