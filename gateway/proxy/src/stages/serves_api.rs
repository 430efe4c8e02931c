//! Whether the model's pool speaks the request's API (the pool's `apis`), and if not, whether
//! the gateway can translate. Only the Messages API is translated, to chat completions, for a
//! documented subset (`sluice_openai::agents::translate`); any other API the workers are not
//! declared to speak is refused before a worker sees it, rather than answered with whatever 404
//! the worker would give.

use sluice_metrics::Api;

use crate::error::GatewayError;
use crate::upstream::Pool;

/// How the request reaches the pool's workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// In its own API, untouched.
    Natively,
    /// A Messages request, translated to chat completions and its answer back.
    ThroughChat,
}

pub fn run(pool: &Pool, api: Api, model: &str) -> Result<Served, GatewayError> {
    decide(|name| pool.apis.speaks(name), api, model)
}

fn decide(speaks: impl Fn(&str) -> bool, api: Api, model: &str) -> Result<Served, GatewayError> {
    if speaks(api.label()) {
        return Ok(Served::Natively);
    }
    if api == Api::Messages && speaks(Api::ChatCompletions.label()) {
        return Ok(Served::ThroughChat);
    }
    Err(GatewayError::ApiNotServed { model: model.chars().take(256).collect(), path: api.path() })
}

#[cfg(test)]
mod tests {
    use sluice_config::WorkerApis;

    use super::*;

    #[test]
    fn every_api_label_is_a_pool_api_name() {
        // `speaks` is asked by label: a label that is not one of the names would refuse all.
        for api in Api::ALL {
            assert!(WorkerApis::NAMES.contains(&api.label()), "{api:?}");
        }
    }

    #[test]
    fn messages_go_through_chat_only_when_the_pool_does_not_speak_them() {
        let apis =
            |names: &[&str]| WorkerApis::parse(&names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        let chat_only = apis(&["chat"]);
        let both = apis(&["chat", "messages"]);
        let embeddings = apis(&["embeddings"]);
        let served = |set: WorkerApis, api| decide(|n| set.speaks(n), api, "m");
        assert_eq!(served(chat_only, Api::Messages).unwrap(), Served::ThroughChat);
        assert_eq!(served(both, Api::Messages).unwrap(), Served::Natively);
        assert_eq!(served(chat_only, Api::ChatCompletions).unwrap(), Served::Natively);
        // Responses carries server-side state a chat worker cannot keep: never translated.
        assert!(matches!(served(chat_only, Api::Responses), Err(GatewayError::ApiNotServed { .. })));
        assert!(matches!(served(embeddings, Api::Messages), Err(GatewayError::ApiNotServed { .. })));
    }
}
