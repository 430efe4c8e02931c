use super::rules::{quoted_spans, stem, symbols};
use super::*;

fn rejects(a: &str, b: &str) -> Option<Mismatch> {
    let forward = compatible(a, b).err();
    assert_eq!(forward, compatible(b, a).err(), "asymmetric on {a:?} / {b:?}");
    forward
}

#[test]
fn equal_and_paraphrased_texts_pass() {
    for (a, b) in [
        ("What is the capital of France?", "what is the capital of france"),
        ("What's the capital of France?", "What is the capital of France?"),
        ("In Python, how do I read a file?", "How do I read a file in Python?"),
        ("translate good morning into Spanish", "Translate \"good morning\" into Spanish"),
        ("Summarize the book 1984 by George Orwell", "Summarize George Orwell's book 1984"),
        ("I have two cats", "I have 2 cats"),
        ("Don't use tabs", "Do not use tabs"),
    ] {
        assert_eq!(rejects(a, b), None, "{a:?} / {b:?}");
    }
}

#[test]
fn each_rule_names_itself() {
    for (a, b, want) in [
        ("Reverse the string \"hello\"", "Reverse the string \"world\"", Mismatch::Quoted),
        ("Replace \"foo\" with \"bar\"", "Replace \"bar\" with \"foo\"", Mismatch::Quoted),
        ("Count the letters in 'banana'", "Count the letters in 'bananas'", Mismatch::Quoted),
        ("what is 2+2", "what is 2+3", Mismatch::Number),
        ("what is 2+2", "what is 2*2", Mismatch::Number),
        ("what is 10 - 3", "what is 3 - 10", Mismatch::Number),
        ("Round to two decimals", "Round to three decimals", Mismatch::Number),
        ("Is it safe to swim here?", "Is it not safe to swim here?", Mismatch::Negation),
        ("coffee with sugar", "coffee without sugar", Mismatch::Negation),
        ("Why do cats purr?", "Why don't cats purr?", Mismatch::Negation),
        ("turn on the lights", "turn off the lights", Mismatch::Opposite),
        ("increase the volume", "decreasing the volume", Mismatch::Opposite),
        ("Is it legal to park here", "Is it illegal to park here", Mismatch::Opposite),
        ("Why do birds migrate?", "How do birds migrate?", Mismatch::Question),
        ("flights to Paris", "flights to London", Mismatch::Entity),
        ("What is in config.toml", "What is in config.yaml", Mismatch::Entity),
        ("Paris weather tomorrow", "London weather tomorrow", Mismatch::Entity),
        ("convert celsius to fahrenheit", "convert fahrenheit to celsius", Mismatch::Order),
        ("Is Rust faster than Go?", "Is Go faster than Rust?", Mismatch::Order),
    ] {
        assert_eq!(rejects(a, b), Some(want), "{a:?} / {b:?}");
    }
}

#[test]
fn apostrophes_are_not_quotes() {
    assert_eq!(quoted_spans("don't say 'hi' to the cats' owner"), ["hi"]);
    assert_eq!(quoted_spans("run ```ls -la``` and `pwd`"), ["ls -la", "pwd"]);
    assert_eq!(quoted_spans("an \"unclosed quote"), Vec::<&str>::new());
}

#[test]
fn stems_match_inflections() {
    for (a, b) in [("increase", "increasing"), ("increase", "increased"), ("stop", "stopped"), ("close", "closes")] {
        assert_eq!(stem(a), stem(b), "{a} / {b}");
    }
}

#[test]
fn hyphens_and_paths_are_not_arithmetic() {
    assert_eq!(rejects("an e-mail about src/main.rs", "an e-mail about src/main.rs please"), None);
    assert_eq!(symbols("10 - 3 and 1/2 of x-ray"), vec!['-', '/']);
}

mod properties {
    use proptest::prelude::*;

    use super::super::compatible;

    /// Words the rules look at, and characters that have tripped byte-slicing code before.
    const WORDS: &[&str] = &[
        "not",
        "on",
        "off",
        "to",
        "from",
        "2",
        "two",
        "3.14",
        "1,000",
        "Paris",
        "paris",
        "Go",
        "go",
        "'",
        "\"",
        "`",
        "```",
        "'quoted'",
        "\"x\"",
        "-",
        "+",
        "/",
        "don't",
        "legal",
        "illegal",
        "why",
        "how",
        "than",
        "config.toml",
        "\u{fff}\u{fff}",
        "ÿÿ",
        "\u{1f600}",
        "é",
        "İ",
        ".",
        "?",
        "\n",
    ];

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            proptest::collection::vec(proptest::sample::select(WORDS), 0..14).prop_map(|w| w.join(" ")),
            proptest::collection::vec(any::<char>(), 0..40).prop_map(String::from_iter),
        ]
    }

    proptest! {
        #[test]
        fn any_two_texts_are_judged_the_same_both_ways(a in text(), b in text()) {
            prop_assert_eq!(compatible(&a, &b), compatible(&b, &a));
            prop_assert_eq!(compatible(&a, &a), Ok(()));
        }
    }
}
