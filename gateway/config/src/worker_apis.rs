//! Which inference APIs a pool's workers speak (`[[pools]] apis`).

use std::fmt;

/// A set of API names: `chat` (`/v1/chat/completions`), `completions`, `embeddings`,
/// `responses` (OpenAI's Responses API) and `messages` (Anthropic's Messages API).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct WorkerApis(u8);

impl WorkerApis {
    /// Every name, in the order of the set's bits.
    pub const NAMES: [&'static str; 5] = ["chat", "completions", "embeddings", "responses", "messages"];

    /// What a pool speaks unless it says otherwise: the three OpenAI APIs every
    /// OpenAI-compatible server has. Responses and Messages are served by some engines only
    /// (vLLM has both), so a pool declares them.
    pub const DEFAULT: WorkerApis = WorkerApis(0b00111);

    /// The set of `names`; an unknown name is an error naming the ones allowed.
    pub fn parse(names: &[String]) -> Result<Self, String> {
        let mut bits = 0u8;
        for name in names {
            let Some(i) = Self::NAMES.iter().position(|n| n == name) else {
                return Err(format!("unknown API {name:?}; expected some of {}", Self::NAMES.join(", ")));
            };
            bits |= 1 << i;
        }
        if bits == 0 {
            return Err(format!("a pool must speak at least one API ({})", Self::NAMES.join(", ")));
        }
        Ok(WorkerApis(bits))
    }

    /// Whether the set holds the API named `name` (one of [`WorkerApis::NAMES`]).
    pub fn speaks(self, name: &str) -> bool {
        Self::NAMES.iter().position(|n| *n == name).is_some_and(|i| self.0 & (1 << i) != 0)
    }

    pub fn names(self) -> impl Iterator<Item = &'static str> {
        Self::NAMES.into_iter().enumerate().filter(move |(i, _)| self.0 & (1 << i) != 0).map(|(_, n)| n)
    }
}

impl Default for WorkerApis {
    fn default() -> Self {
        WorkerApis::DEFAULT
    }
}

impl fmt::Debug for WorkerApis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_default() {
        let d = WorkerApis::default();
        assert!(d.speaks("chat") && d.speaks("completions") && d.speaks("embeddings"));
        assert!(!d.speaks("responses") && !d.speaks("messages"));
        let set = WorkerApis::parse(&["messages".into(), "chat".into()]).unwrap();
        assert_eq!(set.names().collect::<Vec<_>>(), ["chat", "messages"]);
        assert!(!set.speaks("embeddings") && !set.speaks("nope"));
        assert!(WorkerApis::parse(&["anthropic".into()]).unwrap_err().contains("unknown API \"anthropic\""));
        assert!(WorkerApis::parse(&[]).is_err());
    }
}
