//! Which inference APIs a pool's workers speak (`[[pools]] apis`).

use std::fmt;

use sluice_store_model::PoolApi;

/// A set of API names: `chat` (`/v1/chat/completions`), `completions`, `embeddings`,
/// `responses` (OpenAI's Responses API) and `messages` (Anthropic's Messages API). The names
/// are the store's [`PoolApi`]s, so a pool made through the admin API and one in the config
/// file say the same thing the same way.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct WorkerApis(u8);

impl WorkerApis {
    /// Every name, in the order of the set's bits ([`PoolApi::ALL`]'s order).
    pub const NAMES: [&'static str; 5] = PoolApi::NAMES;

    /// What a pool speaks unless it says otherwise ([`PoolApi::DEFAULT`]): the three OpenAI
    /// APIs every OpenAI-compatible server has. Responses and Messages are served by some
    /// engines only (vLLM has both), so a pool declares them.
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

    /// The set of a stored pool's APIs; an empty list is the default, as the stores read it.
    pub fn of(apis: &[PoolApi]) -> Self {
        match apis.iter().fold(0u8, |bits, api| bits | (1 << (*api as u8))) {
            0 => WorkerApis::DEFAULT,
            bits => WorkerApis(bits),
        }
    }

    /// The set as the stores keep it, in [`PoolApi::ALL`] order.
    pub fn to_pool_apis(self) -> Vec<PoolApi> {
        PoolApi::ALL.into_iter().filter(|api| self.0 & (1 << (*api as u8)) != 0).collect()
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

    #[test]
    fn the_stores_apis_are_the_same_set() {
        assert_eq!(WorkerApis::DEFAULT.to_pool_apis(), PoolApi::DEFAULT);
        assert_eq!(WorkerApis::of(&[]), WorkerApis::DEFAULT, "an empty stored list is the default");
        for api in PoolApi::ALL {
            let one = WorkerApis::of(&[api]);
            assert_eq!(one.names().collect::<Vec<_>>(), [api.name()]);
            assert_eq!(one.to_pool_apis(), [api]);
        }
        let set = WorkerApis::of(&[PoolApi::Messages, PoolApi::Chat]);
        assert_eq!(set, WorkerApis::parse(&["chat".into(), "messages".into()]).unwrap());
        assert_eq!(set.to_pool_apis(), [PoolApi::Chat, PoolApi::Messages]);
    }
}
