//! How the embedding and the guard read a text: words, sentence starts, contractions and number
//! words. One reading for both, so what the guard compares is what the embedding saw.

/// A run of letters and digits in the text as written (apostrophes inside a word and `.` or `,`
/// between digits stay in it, so `don't` and `3.14` are one token each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RawToken<'a> {
    pub text: &'a str,
    /// Byte offset in the text.
    pub start: usize,
    /// First token of the text or of a sentence (after `.`, `!`, `?`, `:` or a line break),
    /// where a capital letter says nothing about a name.
    pub sentence_start: bool,
}

fn is_apostrophe(c: char) -> bool {
    matches!(c, '\'' | '\u{2019}' | '\u{02bc}')
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The tokens of `text`, in order.
pub(crate) fn raw_tokens(text: &str) -> Vec<RawToken<'_>> {
    let mut out = Vec::new();
    let mut chars = text.char_indices().peekable();
    let mut sentence_start = true;
    while let Some((i, c)) = chars.next() {
        if !is_word_char(c) {
            if matches!(c, '.' | '!' | '?' | ':' | '\n' | ';') {
                sentence_start = true;
            }
            continue;
        }
        let mut end = i + c.len_utf8();
        let mut prev = c;
        while let Some(&(j, d)) = chars.peek() {
            let joins = if is_word_char(d) {
                true
            } else if is_apostrophe(d) || ((d == '.' || d == ',') && prev.is_ascii_digit()) {
                // Only inside a word: a closing quote or a full stop after a number ends it.
                let rest = &text[j + d.len_utf8()..];
                rest.chars()
                    .next()
                    .is_some_and(|n| if is_apostrophe(d) { n.is_alphabetic() } else { n.is_ascii_digit() })
            } else {
                false
            };
            if !joins {
                break;
            }
            chars.next();
            end = j + d.len_utf8();
            prev = d;
        }
        out.push(RawToken { text: &text[i..end], start: i, sentence_start });
        sentence_start = false;
    }
    out
}

/// Pronouns and question words whose `'s` means "is" (or "us" in `let's`); anywhere else it is a
/// possessive and dropped.
const IS_CONTRACTIONS: &[&str] =
    &["it", "that", "what", "where", "who", "how", "there", "here", "he", "she", "this", "when", "why"];

/// A lower-cased token split into the words it stands for: `don't` → `do not`, `what's` →
/// `what is`, `France's` → `france`.
pub(crate) fn expand(token: &str, out: &mut Vec<String>) {
    let lower: String =
        token.chars().map(|c| if is_apostrophe(c) { '\'' } else { c }).flat_map(char::to_lowercase).collect();
    if lower.chars().next().is_some_and(|c| c.is_ascii_digit()) {
        // Thousands separators are not part of the value.
        out.push(lower.replace(',', ""));
        return;
    }
    let Some(apostrophe) = lower.find('\'') else {
        match lower.as_str() {
            "cannot" => out.extend(["can".to_owned(), "not".to_owned()]),
            "gonna" => out.extend(["going".to_owned(), "to".to_owned()]),
            "wanna" => out.extend(["want".to_owned(), "to".to_owned()]),
            _ => out.push(lower),
        }
        return;
    };
    let (stem, suffix) = lower.split_at(apostrophe);
    match suffix {
        "'t" if stem.ends_with('n') => {
            let base = match stem {
                "won" => "will",
                "can" => "can",
                "shan" => "shall",
                "ain" => "is",
                _ => &stem[..stem.len() - 1],
            };
            out.extend([base.to_owned(), "not".to_owned()]);
        }
        "'re" => out.extend([stem.to_owned(), "are".to_owned()]),
        "'ve" => out.extend([stem.to_owned(), "have".to_owned()]),
        "'ll" => out.extend([stem.to_owned(), "will".to_owned()]),
        "'m" => out.extend([stem.to_owned(), "am".to_owned()]),
        "'d" => out.extend([stem.to_owned(), "would".to_owned()]),
        "'s" if stem == "let" => out.extend([stem.to_owned(), "us".to_owned()]),
        "'s" if IS_CONTRACTIONS.contains(&stem) => out.extend([stem.to_owned(), "is".to_owned()]),
        "'s" | "'" => out.push(stem.to_owned()),
        _ => out.push(lower.replace('\'', "")),
    }
}

fn unit_value(word: &str) -> Option<u64> {
    const UNITS: [&str; 20] = [
        "zero",
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "eleven",
        "twelve",
        "thirteen",
        "fourteen",
        "fifteen",
        "sixteen",
        "seventeen",
        "eighteen",
        "nineteen",
    ];
    const TENS: [&str; 8] = ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"];
    if let Some(i) = UNITS.iter().position(|u| *u == word) {
        return Some(i as u64);
    }
    TENS.iter().position(|t| *t == word).map(|i| (i as u64 + 2) * 10)
}

fn scale_value(word: &str) -> Option<u64> {
    match word {
        "hundred" => Some(100),
        "thousand" => Some(1_000),
        "million" => Some(1_000_000),
        "billion" => Some(1_000_000_000),
        _ => None,
    }
}

fn ordinal(word: &str) -> Option<&'static str> {
    const ORDINALS: [(&str, &str); 12] = [
        ("first", "1st"),
        ("second", "2nd"),
        ("third", "3rd"),
        ("fourth", "4th"),
        ("fifth", "5th"),
        ("sixth", "6th"),
        ("seventh", "7th"),
        ("eighth", "8th"),
        ("ninth", "9th"),
        ("tenth", "10th"),
        ("eleventh", "11th"),
        ("twelfth", "12th"),
    ];
    ORDINALS.iter().find(|(w, _)| *w == word).map(|(_, o)| *o)
}

/// Number words become digits (`twenty two` → `22`, `a dozen` stays words but `dozen` → `12`,
/// `third` → `3rd`), so "two apples" and "2 apples" read the same.
fn numbers_to_digits(words: Vec<String>) -> Vec<String> {
    let mut out = Vec::with_capacity(words.len());
    let mut i = 0;
    while i < words.len() {
        let word = &words[i];
        if let Some(o) = ordinal(word) {
            out.push(o.to_owned());
            i += 1;
            continue;
        }
        if word == "dozen" {
            out.push("12".to_owned());
            i += 1;
            continue;
        }
        if unit_value(word).is_none() {
            out.push(word.clone());
            i += 1;
            continue;
        }
        let (mut total, mut current) = (0u64, 0u64);
        while i < words.len() {
            let w = words[i].as_str();
            if let Some(v) = unit_value(w) {
                current = current.saturating_add(v);
            } else if w == "hundred" {
                current = current.max(1).saturating_mul(100);
            } else if let Some(scale) = scale_value(w) {
                total = total.saturating_add(current.max(1).saturating_mul(scale));
                current = 0;
            } else if w == "and" && words.get(i + 1).is_some_and(|n| unit_value(n).is_some()) {
                // "one hundred and five"
            } else {
                break;
            }
            i += 1;
        }
        out.push(total.saturating_add(current).to_string());
    }
    out
}

/// The words of `text` as the embedding and the guard compare them: lower case, contractions
/// expanded, number words as digits.
pub(crate) fn normalized_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    for token in raw_tokens(text) {
        expand(token.text, &mut words);
    }
    numbers_to_digits(words)
}

/// Words that carry little of a request's meaning: articles, auxiliaries, pronouns, politeness
/// and filler. The embedding gives them less weight and the guard's word-order rule ignores them.
/// Negations and the guard's opposites are deliberately absent.
pub(crate) fn is_filler(word: &str) -> bool {
    const FILLER: &[&str] = &[
        "a",
        "an",
        "the",
        "is",
        "are",
        "am",
        "was",
        "were",
        "be",
        "been",
        "being",
        "do",
        "does",
        "did",
        "have",
        "has",
        "had",
        "will",
        "would",
        "shall",
        "should",
        "can",
        "could",
        "may",
        "might",
        "must",
        "i",
        "me",
        "my",
        "mine",
        "you",
        "your",
        "yours",
        "we",
        "us",
        "our",
        "it",
        "its",
        "this",
        "that",
        "these",
        "those",
        "there",
        "here",
        "please",
        "kindly",
        "just",
        "really",
        "actually",
        "basically",
        "quick",
        "question",
        "hey",
        "hi",
        "hello",
        "um",
        "uh",
        "so",
        "ok",
        "okay",
        "well",
        "tell",
        "know",
        "wondering",
        "wonder",
        "want",
        "like",
        "need",
        "some",
        "any",
        "of",
        "and",
        "or",
        "but",
        "if",
        "about",
        "as",
        "at",
        "by",
        "for",
        "with",
        "to",
        "in",
        "into",
        "what",
        "which",
        "whether",
        "let",
        "give",
        "show",
        "help",
        "explain",
        "describe",
        "thanks",
        "thank",
        "also",
        "very",
        "quite",
        "bit",
        "little",
        "get",
        "go",
        "going",
        "make",
    ];
    FILLER.contains(&word)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(tokens: &[RawToken<'_>]) -> Vec<String> {
        tokens.iter().map(|t| t.text.to_owned()).collect()
    }

    #[test]
    fn tokens_keep_contractions_and_decimals_together() {
        let t = raw_tokens("Don't round 3.14 or 1,000. 'Quoted' end.");
        assert_eq!(texts(&t), ["Don't", "round", "3.14", "or", "1,000", "Quoted", "end"]);
        assert!(t[0].sentence_start);
        assert!(!t[1].sentence_start);
        assert!(t[5].sentence_start, "after a full stop");
    }

    #[test]
    fn contractions_expand() {
        let w = normalized_words("I can't, what's up, it's France's, won't we'll let's don\u{2019}t");
        assert_eq!(
            w,
            [
                "i", "can", "not", "what", "is", "up", "it", "is", "france", "will", "not", "we", "will", "let", "us",
                "do", "not"
            ]
        );
    }

    #[test]
    fn number_words_become_digits() {
        assert_eq!(normalized_words("two apples"), ["2", "apples"]);
        assert_eq!(normalized_words("twenty two"), ["22"]);
        assert_eq!(normalized_words("one hundred and five days"), ["105", "days"]);
        assert_eq!(normalized_words("three thousand two hundred"), ["3200"]);
        assert_eq!(normalized_words("the first 1,000"), ["the", "1st", "1000"]);
        assert_eq!(normalized_words("salt and pepper"), ["salt", "and", "pepper"]);
    }
}
