//! The Responses answers a worker stored (`store` unset or `true`), as vLLM keeps them: in the
//! memory of the worker that made them, so that only this worker can continue one
//! (`previous_response_id`); any other answers 404. vLLM keeps every stored response until it
//! restarts (`VLLM_ENABLE_RESPONSES_API_STORE=1`); the simulator keeps the latest
//! [`MAX_STORED`] ids, so a long demo does not grow without bound.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

/// Response ids a worker remembers; the oldest go first.
pub(crate) const MAX_STORED: usize = 65_536;

#[derive(Debug, Default)]
pub(crate) struct StoredResponses {
    ids: Mutex<(HashSet<String>, VecDeque<String>)>,
}

impl StoredResponses {
    pub fn remember(&self, id: &str) {
        let Ok(mut guard) = self.ids.lock() else { return };
        let (set, order) = &mut *guard;
        if !set.insert(id.to_owned()) {
            return;
        }
        order.push_back(id.to_owned());
        while order.len() > MAX_STORED {
            if let Some(oldest) = order.pop_front() {
                set.remove(&oldest);
            }
        }
    }

    pub fn holds(&self, id: &str) -> bool {
        self.ids.lock().is_ok_and(|guard| guard.0.contains(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_ids_go_first() {
        let stored = StoredResponses::default();
        for i in 0..=MAX_STORED {
            stored.remember(&format!("resp_{i}"));
        }
        assert!(!stored.holds("resp_0"));
        assert!(stored.holds("resp_1"));
        assert!(stored.holds(&format!("resp_{MAX_STORED}")));
        assert!(!stored.holds("resp_unknown"));
    }
}
