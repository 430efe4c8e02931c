//! A deterministic stand-in for a real tokenizer.
//!
//! Text splits into words (runs of alphanumerics), single punctuation marks and `<|special|>`
//! markers; whitespace only separates. Each piece maps to an id through a fixed vocabulary of
//! `VOCAB_SIZE` entries (special tokens, ASCII punctuation, common English words, then generated
//! syllable words). Words outside the vocabulary map to a stable hash inside the word range, so
//! any text tokenizes the same way on every run. Decoding vocabulary ids and re-encoding the text
//! gives back the same ids, which is what the simulator relies on for its own output.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::sync::OnceLock;

use sluice_openai::ChatMessage;

use crate::hash;

/// Number of token ids; like Llama 2's vocabulary.
pub const VOCAB_SIZE: u32 = 32_000;

const SPECIALS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
const PUNCTUATION: &str = "!\"#$%&'()*+,-./:;<=>?@[\\]^`{|}~";
const COMMON_WORDS: &str = "the of and to a in is it you that he was for on are with as I his they \
    be at one have this from or had by hot word but what some we can out other were all there when \
    up use your how said an each she which do their time if will way about many then them write \
    would like so these her long make thing see him two has look more day could go come did number \
    sound no most people my over know water than call first who may down side been now find any \
    new work part take get place made live where after back little only round man year came show \
    every good me give our under name very through just form sentence great think say help low \
    line differ turn cause much mean before move right boy old too same tell does set three want \
    air well also play small end put home read hand port large spell add even land here must big \
    high such follow act why ask men change went light kind off need house picture try us again \
    animal point mother world near build self earth father model token cache batch engine \
    system user assistant tool developer";

/// Where word ids start: everything below is a special token or punctuation.
const FIRST_WORD_ID: u32 = (SPECIALS.len() + PUNCTUATION.len()) as u32;

struct Vocab {
    pieces: Vec<String>,
    ids: HashMap<String, u32>,
}

fn vocab() -> &'static Vocab {
    static VOCAB: OnceLock<Vocab> = OnceLock::new();
    VOCAB.get_or_init(build_vocab)
}

fn build_vocab() -> Vocab {
    let mut pieces: Vec<String> = Vec::with_capacity(VOCAB_SIZE as usize);
    let mut ids = HashMap::with_capacity(VOCAB_SIZE as usize);
    let mut push = |piece: String, pieces: &mut Vec<String>| {
        if pieces.len() < VOCAB_SIZE as usize && !ids.contains_key(&piece) {
            ids.insert(piece.clone(), pieces.len() as u32);
            pieces.push(piece);
        }
    };
    for s in SPECIALS {
        push(s.to_owned(), &mut pieces);
    }
    for c in PUNCTUATION.chars() {
        push(c.to_string(), &mut pieces);
    }
    for w in COMMON_WORDS.split_whitespace() {
        push(w.to_owned(), &mut pieces);
    }
    let syllables: Vec<String> =
        "bcdfghjklmnprstvwz".chars().flat_map(|c| "aeiou".chars().map(move |v| format!("{c}{v}"))).collect();
    'fill: for len in 1.. {
        let mut idx = vec![0usize; len];
        loop {
            if pieces.len() >= VOCAB_SIZE as usize {
                break 'fill;
            }
            push(idx.iter().map(|&i| syllables[i].as_str()).collect(), &mut pieces);
            // Odometer over syllable indices.
            let mut pos = len;
            loop {
                if pos == 0 {
                    continue 'fill;
                }
                pos -= 1;
                idx[pos] += 1;
                if idx[pos] < syllables.len() {
                    break;
                }
                idx[pos] = 0;
            }
        }
    }
    Vocab { pieces, ids }
}

/// The deterministic tokenizer. Cheap to copy; the vocabulary is built once per process.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tokenizer;

impl Tokenizer {
    pub fn new() -> Self {
        vocab();
        Tokenizer
    }

    /// Text to token ids.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::with_capacity(text.len() / 4 + 1);
        self.encode_into(text, &mut out);
        out
    }

    fn encode_into(&self, text: &str, out: &mut Vec<u32>) {
        let v = vocab();
        let mut rest = text;
        while let Some(c) = rest.chars().next() {
            if c.is_whitespace() {
                rest = &rest[c.len_utf8()..];
            } else if let Some(special) = SPECIALS.iter().position(|s| rest.starts_with(s)) {
                out.push(special as u32);
                rest = &rest[SPECIALS[special].len()..];
            } else if c.is_alphanumeric() || c == '_' {
                let end = rest.find(|ch: char| !(ch.is_alphanumeric() || ch == '_')).unwrap_or(rest.len());
                out.push(word_id(v, &rest[..end]));
                rest = &rest[end..];
            } else {
                let piece = &rest[..c.len_utf8()];
                out.push(word_id(v, piece));
                rest = &rest[c.len_utf8()..];
            }
        }
    }

    /// Renders chat messages with a ChatML-style template and tokenizes the result, ending with
    /// the assistant header the model continues from. Takes a request's `&Messages` (read one
    /// at a time) or any list of messages.
    pub fn encode_chat(&self, messages: impl IntoIterator<Item = impl Borrow<ChatMessage>>) -> Vec<u32> {
        let mut out = Vec::new();
        for m in messages {
            let m = m.borrow();
            out.push(1); // <|im_start|>
            self.encode_into(&m.role, &mut out);
            if let Some(content) = &m.content {
                for text in content.text() {
                    self.encode_into(text, &mut out);
                }
            }
            out.push(2); // <|im_end|>
        }
        out.push(1);
        self.encode_into("assistant", &mut out);
        out
    }

    /// The text of one token as it appears in a stream: words after the first carry a leading
    /// space, punctuation and special tokens attach directly.
    pub fn piece(&self, id: u32, first: bool) -> String {
        let v = vocab();
        let Some(text) = v.pieces.get(id as usize) else {
            return String::new();
        };
        if first || id < FIRST_WORD_ID { text.clone() } else { format!(" {text}") }
    }

    /// Token ids to text; the concatenation of [`Tokenizer::piece`] over the ids.
    pub fn decode(&self, ids: &[u32]) -> String {
        ids.iter().enumerate().map(|(i, &id)| self.piece(id, i == 0)).collect()
    }

    /// Whether an id exists in the vocabulary (token-id prompts are checked against it).
    pub fn is_valid(&self, id: u32) -> bool {
        id < VOCAB_SIZE
    }

    /// The first id that is a word; ids below are special tokens and punctuation.
    pub fn first_word_id(&self) -> u32 {
        FIRST_WORD_ID
    }

    /// Number of leading word ids that are common English words (the generator favours them).
    pub fn common_words(&self) -> u32 {
        COMMON_WORDS.split_whitespace().count() as u32
    }
}

fn word_id(v: &Vocab, piece: &str) -> u32 {
    match v.ids.get(piece) {
        Some(&id) => id,
        None => FIRST_WORD_ID + (hash::bytes(piece.as_bytes()) % u64::from(VOCAB_SIZE - FIRST_WORD_ID)) as u32,
    }
}

impl std::fmt::Debug for Vocab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vocab").field("len", &self.pieces.len()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn vocabulary_is_full_and_unique() {
        let v = vocab();
        assert_eq!(v.pieces.len(), VOCAB_SIZE as usize);
        assert_eq!(v.ids.len(), VOCAB_SIZE as usize);
    }

    #[test]
    fn splits_words_and_punctuation() {
        let t = Tokenizer::new();
        let ids = t.encode("Hello, world!  the  end.");
        assert_eq!(ids.len(), 7);
        assert_eq!(t.decode(&ids[1..2]), ",");
    }

    #[test]
    fn encoding_is_deterministic_and_distinguishes_text() {
        let t = Tokenizer::new();
        assert_eq!(t.encode("zebra crossing 42"), t.encode("zebra  crossing\n42"));
        assert_ne!(t.encode("zebra crossing"), t.encode("crossing zebra"));
        assert!(t.encode("ünïcödé ✓ 漢字").iter().all(|&id| id < VOCAB_SIZE));
    }

    #[test]
    fn vocabulary_ids_round_trip_through_text() {
        let t = Tokenizer::new();
        let ids: Vec<u32> = (0..VOCAB_SIZE).step_by(7).collect();
        assert_eq!(t.encode(&t.decode(&ids)), ids);
    }

    #[test]
    fn known_text_round_trips() {
        let t = Tokenizer::new();
        let text = "the model said: water, fire (and air) <|im_end|>";
        let ids = t.encode(text);
        assert_eq!(t.encode(&t.decode(&ids)), ids);
    }

    #[test]
    fn chat_template_wraps_messages() {
        let t = Tokenizer::new();
        let msgs: Vec<ChatMessage> = serde_json::from_value(json!([
            {"role": "system", "content": "be good"},
            {"role": "user", "content": [{"type": "text", "text": "hi"}]}
        ]))
        .unwrap();
        let ids = t.encode_chat(&msgs);
        assert_eq!(
            t.decode(&ids),
            "<|im_start|> system be good<|im_end|><|im_start|> user hi<|im_end|><|im_start|> assistant"
        );
    }
}
