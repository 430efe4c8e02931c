//! What one request holds: the grants its plugins' `acquire` calls made, per plugin namespace,
//! their last decisions, and the response headers they asked for. The request's end settles
//! every hold still open with the tokens the request was measured to use
//! ([`RequestLimits::finish`]); dropping it without an end (a request abandoned mid-way) ends
//! them as [`Ending::Lapse`]. Either way a plugin that trapped, timed out or was never called
//! again leaks no slot.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};

use super::{Decision, Ending, Grant, Limits};
use crate::namespace::Namespace;

#[derive(Debug)]
struct Hold {
    namespace: Namespace,
    grant: Grant,
    /// What a cached prompt token counts for, in percent, when `tokens` limits settle.
    cached_percent: u32,
}

#[derive(Debug, Default)]
struct Holds {
    open: Vec<Hold>,
    last: Vec<(Namespace, Decision)>,
    headers: Vec<(Namespace, Vec<(HeaderName, HeaderValue)>)>,
}

/// Tokens a request was measured to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Prompt tokens as the worker reported them; 0 when it did not (a stream cut short).
    pub prompt: u64,
    pub cached: u64,
    pub completion: u64,
}

/// How a request ended, for its holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestEnd {
    /// Tokens were measured.
    Used(Usage),
    /// It ended before any work (refused, no endpoint, an upstream error): tokens come back.
    NoWork,
    /// Cancelled with nothing measured: what was reserved stands.
    Unknown,
}

/// A request's holds; shared by the request and the plugin calls serving it.
#[derive(Debug)]
pub struct RequestLimits {
    limits: Arc<Limits>,
    holds: Mutex<Holds>,
    /// The host's estimate of the prompt's tokens, standing in for a prompt never reported.
    prompt_estimate: AtomicU64,
}

impl RequestLimits {
    pub fn new(limits: Arc<Limits>) -> Arc<Self> {
        Arc::new(RequestLimits { limits, holds: Mutex::new(Holds::default()), prompt_estimate: AtomicU64::new(0) })
    }

    pub fn limits(&self) -> &Arc<Limits> {
        &self.limits
    }

    pub fn set_prompt_estimate(&self, tokens: u64) {
        self.prompt_estimate.store(tokens, Ordering::Relaxed);
    }

    /// Records a decision by `namespace`, and the grant it made, if any.
    pub fn record(&self, namespace: &Namespace, grant: Grant, cached_percent: u32) {
        let Ok(mut holds) = self.holds.lock() else { return };
        holds.last.retain(|(ns, _)| ns != namespace);
        holds.last.push((namespace.clone(), grant.decision.clone()));
        if grant.decision.granted && !grant.taken.is_empty() {
            holds.open.push(Hold { namespace: namespace.clone(), grant, cached_percent });
        }
    }

    pub fn last_decision(&self, namespace: &Namespace) -> Option<Decision> {
        let holds = self.holds.lock().ok()?;
        holds.last.iter().find(|(ns, _)| ns == namespace).map(|(_, d)| d.clone())
    }

    /// Replaces the response headers `namespace` asked for.
    pub fn set_response_headers(&self, namespace: &Namespace, headers: Vec<(HeaderName, HeaderValue)>) {
        let Ok(mut holds) = self.holds.lock() else { return };
        holds.headers.retain(|(ns, _)| ns != namespace);
        holds.headers.push((namespace.clone(), headers));
    }

    /// Sets `namespace`'s response headers to OpenAI's `x-ratelimit-*`, rendered from its last
    /// decision's states at these indexes; returns what they say is remaining, for requests and
    /// for tokens.
    pub fn set_ratelimit_headers(
        &self,
        namespace: &Namespace,
        requests: Option<u32>,
        tokens: Option<u32>,
    ) -> Result<[Option<u64>; 2], String> {
        let Ok(mut holds) = self.holds.lock() else { return Err("the request's limits are unusable".into()) };
        let Some((_, decision)) = holds.last.iter().find(|(ns, _)| ns == namespace) else {
            return Err("no decision to take the headers from: call acquire first".into());
        };
        let state = |index: Option<u32>| -> Result<Option<&super::LimitState>, String> {
            index
                .map(|i| {
                    decision.states.get(i as usize).ok_or_else(|| format!("no limit at index {i} of the last decision"))
                })
                .transpose()
        };
        let (requests, tokens) = (state(requests)?, state(tokens)?);
        let remaining = [requests.map(|s| s.remaining), tokens.map(|s| s.remaining)];
        let rendered = super::headers::render(requests, tokens);
        holds.headers.retain(|(ns, _)| ns != namespace);
        holds.headers.push((namespace.clone(), rendered));
        Ok(remaining)
    }

    /// Adds the headers the plugins asked for to an answer, where it does not have them yet.
    pub fn apply_response_headers(&self, headers: &mut HeaderMap) {
        let Ok(holds) = self.holds.lock() else { return };
        headers.reserve(holds.headers.iter().map(|(_, h)| h.len()).sum());
        for (name, value) in holds.headers.iter().flat_map(|(_, h)| h) {
            if let http::header::Entry::Vacant(slot) = headers.entry(name) {
                slot.insert(value.clone());
            }
        }
    }

    /// Takes `namespace`'s open holds, to end them.
    fn take(&self, namespace: Option<&Namespace>) -> Vec<Hold> {
        let Ok(mut holds) = self.holds.lock() else { return Vec::new() };
        let (mine, others) =
            std::mem::take(&mut holds.open).into_iter().partition(|h| namespace.is_none_or(|ns| h.namespace == *ns));
        holds.open = others;
        mine
    }

    /// Ends `namespace`'s open holds as `ending` says.
    pub async fn end(&self, namespace: &Namespace, ending: Ending) {
        for hold in self.take(Some(namespace)) {
            self.limits.end(&hold.grant.taken, hold.grant.shared, ending).await;
        }
    }

    /// The request ended: every hold still open settles as `end` says — at once for holds in
    /// this process, from a task for holds in Redis (the answer does not wait for them).
    pub fn finish(&self, end: RequestEnd) {
        let estimate = self.prompt_estimate.load(Ordering::Relaxed);
        let remote: Vec<(Hold, Ending)> = self
            .take(None)
            .into_iter()
            .map(|hold| {
                let ending = ending(end, estimate, hold.cached_percent);
                (hold, ending)
            })
            .filter(|(hold, ending)| !self.limits.end_now(&hold.grant.taken, hold.grant.shared, *ending))
            .collect();
        spawn_remote(&self.limits, remote);
    }
}

/// What `end` means for a hold whose cached prompt tokens count `cached_percent` %.
fn ending(end: RequestEnd, prompt_estimate: u64, cached_percent: u32) -> Ending {
    match end {
        RequestEnd::Used(u) => {
            let prompt = if u.prompt > 0 { u.prompt } else { prompt_estimate };
            let cached = u.cached.min(prompt);
            let weighted = u128::from(cached) * u128::from(cached_percent) / 100;
            let tokens = u128::from(prompt - cached) + weighted + u128::from(u.completion);
            Ending::Settle(u64::try_from(tokens).unwrap_or(u64::MAX))
        }
        RequestEnd::NoWork => Ending::Settle(0),
        RequestEnd::Unknown => Ending::Lapse,
    }
}

fn spawn_remote(limits: &Arc<Limits>, remote: Vec<(Hold, Ending)>) {
    if remote.is_empty() {
        return;
    }
    let limits = Arc::clone(limits);
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn(async move {
                for (hold, ending) in remote {
                    limits.end(&hold.grant.taken, hold.grant.shared, ending).await;
                }
            });
        }
        // No runtime (a tool driving the host by hand): the holds lapse with their windows
        // and leases.
        Err(_) => tracing::debug!("request ended outside a runtime; its shared holds lapse"),
    }
}

impl Drop for RequestLimits {
    fn drop(&mut self) {
        let open = match self.holds.get_mut() {
            Ok(holds) => std::mem::take(&mut holds.open),
            Err(poisoned) => std::mem::take(&mut poisoned.into_inner().open),
        };
        let remote: Vec<(Hold, Ending)> = open
            .into_iter()
            .map(|hold| (hold, Ending::Lapse))
            .filter(|(hold, ending)| !self.limits.end_now(&hold.grant.taken, hold.grant.shared, *ending))
            .collect();
        spawn_remote(&self.limits, remote);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measured_tokens_weigh_cached_ones_and_estimate_a_missing_prompt() {
        let used = |prompt, cached, completion| RequestEnd::Used(Usage { prompt, cached, completion });
        assert_eq!(ending(used(100, 40, 7,), 0, 50), Ending::Settle(60 + 20 + 7));
        assert_eq!(ending(used(100, 40, 7), 0, 100), Ending::Settle(107));
        assert_eq!(ending(used(0, 0, 3), 25, 100), Ending::Settle(28), "the estimate stands in");
        assert_eq!(ending(RequestEnd::NoWork, 25, 100), Ending::Settle(0));
        assert_eq!(ending(RequestEnd::Unknown, 25, 100), Ending::Lapse);
    }
}
