//! The guard's word lists. Plain data, kept dense on purpose: one entry per line would make the
//! lists harder to read, not easier.

/// Words that negate, counted in each text.
#[rustfmt::skip]
pub(super) const NEGATIONS: &[&str] = &[
    "not", "no", "never", "without", "none", "nothing", "nobody", "nowhere", "neither", "nor", "except",
    "excluding",
];

/// Pairs whose swap changes the answer, compared by stem so inflections count. Ordinals are
/// compared as digits (`first` reads `1st`).
#[rustfmt::skip]
pub(super) const OPPOSITES: &[(&str, &str)] = &[
    ("on", "off"), ("open", "close"), ("open", "shut"), ("enable", "disable"), ("activate", "deactivate"),
    ("increase", "decrease"), ("increase", "reduce"), ("raise", "lower"), ("grow", "shrink"),
    ("expand", "collapse"), ("maximize", "minimize"), ("maximise", "minimise"), ("before", "after"),
    ("add", "remove"), ("add", "delete"), ("add", "subtract"), ("insert", "delete"), ("create", "delete"),
    ("create", "destroy"), ("include", "exclude"), ("max", "min"), ("maximum", "minimum"), ("up", "down"),
    ("upper", "lower"), ("uppercase", "lowercase"), ("yes", "no"), ("true", "false"), ("to", "from"), ("in", "out"),
    ("into", "out"), ("inside", "outside"), ("internal", "external"), ("above", "below"), ("over", "under"),
    ("left", "right"), ("north", "south"), ("east", "west"), ("1st", "last"), ("start", "stop"), ("start", "end"),
    ("begin", "end"), ("begin", "finish"), ("early", "late"), ("earliest", "latest"), ("past", "future"),
    ("yesterday", "tomorrow"), ("today", "tomorrow"), ("today", "yesterday"), ("day", "night"),
    ("morning", "evening"), ("morning", "night"), ("summer", "winter"), ("sunrise", "sunset"), ("import", "export"),
    ("upload", "download"), ("push", "pull"), ("send", "receive"), ("input", "output"), ("read", "write"),
    ("get", "set"), ("buy", "sell"), ("lend", "borrow"), ("deposit", "withdraw"), ("credit", "debit"),
    ("profit", "loss"), ("gain", "loss"), ("win", "lose"), ("pass", "fail"), ("success", "failure"),
    ("accept", "reject"), ("allow", "deny"), ("allow", "block"), ("approve", "reject"), ("lock", "unlock"),
    ("encrypt", "decrypt"), ("encode", "decode"), ("compress", "decompress"), ("connect", "disconnect"),
    ("mount", "unmount"), ("install", "uninstall"), ("subscribe", "unsubscribe"), ("follow", "unfollow"),
    ("show", "hide"), ("visible", "hidden"), ("ascending", "descending"), ("asc", "desc"), ("positive", "negative"),
    ("pros", "cons"), ("advantage", "disadvantage"), ("best", "worst"), ("better", "worse"), ("good", "bad"),
    ("more", "less"), ("more", "fewer"), ("most", "least"), ("high", "low"), ("higher", "lower"),
    ("highest", "lowest"), ("big", "small"), ("bigger", "smaller"), ("biggest", "smallest"), ("large", "small"),
    ("larger", "smaller"), ("largest", "smallest"), ("long", "short"), ("longer", "shorter"),
    ("longest", "shortest"), ("fast", "slow"), ("faster", "slower"), ("fastest", "slowest"), ("hot", "cold"),
    ("warm", "cool"), ("heavy", "light"), ("light", "dark"), ("wide", "narrow"), ("thick", "thin"),
    ("deep", "shallow"), ("wet", "dry"), ("hard", "soft"), ("hard", "easy"), ("easy", "difficult"),
    ("cheap", "expensive"), ("cheapest", "expensive"), ("rich", "poor"), ("old", "new"), ("old", "young"),
    ("oldest", "newest"), ("full", "empty"), ("safe", "dangerous"), ("safe", "unsafe"), ("love", "hate"),
    ("happy", "sad"), ("male", "female"), ("men", "women"), ("man", "woman"), ("boy", "girl"), ("client", "server"),
    ("local", "remote"), ("online", "offline"), ("public", "private"), ("static", "dynamic"), ("sync", "async"),
    ("synchronous", "asynchronous"), ("horizontal", "vertical"), ("horizontally", "vertically"), ("row", "column"),
    ("inner", "outer"), ("parent", "child"), ("prefix", "suffix"), ("previous", "next"), ("forward", "backward"),
    ("forwards", "backwards"), ("rise", "fall"), ("sunny", "rainy"), ("alive", "dead"), ("valid", "invalid"),
    ("plus", "minus"),
];

/// Prefixes that negate the word they are put in front of (`legal`/`illegal`).
pub(super) const NEGATIVE_PREFIXES: &[&str] = &["un", "in", "im", "il", "ir", "dis", "non"];

/// Question words that ask different questions.
pub(super) const QUESTION_WORDS: &[&str] = &["why", "how", "when", "where", "who"];

/// Words that open a request and are capitalised only because they open it.
#[rustfmt::skip]
pub(super) const SENTENCE_OPENERS: &[&str] = &[
    "what", "how", "why", "when", "where", "who", "whom", "whose", "which", "is", "are", "was", "were", "am", "do",
    "does", "did", "can", "could", "would", "will", "should", "shall", "may", "might", "must", "have", "has", "had",
    "please", "tell", "give", "show", "list", "explain", "describe", "write", "make", "create", "generate", "find",
    "help", "summarize", "summarise", "translate", "convert", "compare", "calculate", "compute", "define",
    "suggest", "recommend", "provide", "let", "i", "my", "we", "our", "you", "your", "the", "a", "an", "in",
    "on", "for", "to", "from", "with", "at", "by", "of", "if", "and", "but", "or", "so", "hey", "hi", "hello",
    "thanks", "thank", "ok", "okay", "quick", "yes", "no", "not", "it", "its", "this", "that", "these", "those",
    "there", "here", "now", "then", "also", "best", "good", "fix", "add", "remove", "turn", "set", "get", "open",
    "close", "enable", "disable", "increase", "decrease", "sort", "search", "count", "reverse", "replace", "round",
    "return", "print", "read", "use", "install", "run", "build", "start", "stop", "check", "any", "some", "all",
    "each", "every", "one", "new", "simple", "short", "brief", "detailed", "quickly", "briefly", "question", "just",
    "really", "actually", "basically", "dear", "need", "want", "looking", "trying",
    "wondering", "name", "draft", "rewrite", "edit", "debug", "implement", "design", "plan", "outline", "proofread",
    "improve", "tips", "ideas", "steps", "ways", "benefits", "difference", "meaning",
    "definition", "example", "examples",
];

/// Words that relate the words on either side of them, so swapping those changes the request
/// ("Celsius to Fahrenheit").
#[rustfmt::skip]
pub(super) const RELATIONS: &[&str] = &[
    "to", "from", "into", "onto", "than", "vs", "versus", "over", "under", "before", "after", "then", "with", "by",
    "for", "against", "toward", "towards", "instead",
];
