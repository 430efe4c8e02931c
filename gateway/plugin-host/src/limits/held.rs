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
use smallvec::SmallVec;

use super::headers::HeaderSet;
use super::local::{States, TakenCells};
use super::standing::Plan;
use super::{Decision, Ending, Grant, LimitState, Limits, now_us};
use crate::namespace::Namespace;

/// What a hold took.
#[derive(Debug)]
enum Taking {
    /// Through `acquire`: the limits by key, here or in Redis.
    Grant(Grant),
    /// Through a standing plan, from this process's state.
    Planned { plan: Arc<Plan>, taken: TakenCells },
}

#[derive(Debug)]
struct Hold {
    namespace: Namespace,
    taking: Taking,
    /// What a cached prompt token counts for, in percent, when `tokens` limits settle.
    cached_percent: u32,
}

impl Hold {
    /// Ends the hold at once when it needs no network (see [`Limits::end_now`]).
    fn end_now(&self, limits: &Limits, ending: Ending) -> bool {
        match &self.taking {
            Taking::Grant(grant) => limits.end_now(&grant.taken, grant.shared, ending),
            Taking::Planned { plan, taken } => {
                if let Some(local) = limits.local_only() {
                    local.end_planned(&plan.asks, taken, ending, now_us());
                }
                true
            }
        }
    }

    async fn end(&self, limits: &Limits, ending: Ending) {
        match &self.taking {
            Taking::Grant(grant) => limits.end(&grant.taken, grant.shared, ending).await,
            Taking::Planned { .. } => {
                self.end_now(limits, ending);
            }
        }
    }
}

/// A plugin's last decision.
#[derive(Debug)]
enum Last {
    Decision(Decision),
    /// A standing plan's grant: only its states are kept.
    Granted(States),
}

impl Last {
    fn states(&self) -> &[LimitState] {
        match self {
            Last::Decision(d) => &d.states,
            Last::Granted(states) => states,
        }
    }

    fn decision(&self) -> Decision {
        match self {
            Last::Decision(d) => d.clone(),
            Last::Granted(states) => {
                Decision { granted: true, refused_by: None, retry_after_ms: None, states: states.to_vec() }
            }
        }
    }
}

/// The headers a plugin asked for on the request's answer.
#[derive(Debug)]
enum Asked {
    /// Given, or rendered from a decision (`set-response-headers`, `set-ratelimit-headers`).
    Given(Box<HeaderSet>),
    /// OpenAI's from a standing plan's grant, rendered straight into the answer.
    Planned(Arc<Plan>, States),
}

/// Inline for the one plugin that usually takes limits.
#[derive(Debug, Default)]
struct Holds {
    open: SmallVec<[Hold; 1]>,
    last: SmallVec<[(Namespace, Last); 1]>,
    headers: SmallVec<[(Namespace, Asked); 1]>,
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
        holds.last.push((namespace.clone(), Last::Decision(grant.decision.clone())));
        if grant.decision.granted && !grant.taken.is_empty() {
            holds.open.push(Hold { namespace: namespace.clone(), taking: Taking::Grant(grant), cached_percent });
        }
    }

    /// Records what `namespace`'s standing `plan` granted, with the `x-ratelimit-*` headers the
    /// plan names; returns what they say is remaining (requests, tokens).
    pub fn record_planned(
        &self,
        namespace: &Namespace,
        plan: &Arc<Plan>,
        states: States,
        taken: TakenCells,
    ) -> [Option<u64>; 2] {
        let remaining = plan.remaining(&states);
        let Ok(mut holds) = self.holds.lock() else { return remaining };
        holds.last.retain(|(ns, _)| ns != namespace);
        holds.last.push((namespace.clone(), Last::Granted(states.clone())));
        let taking = Taking::Planned { plan: Arc::clone(plan), taken };
        holds.open.push(Hold { namespace: namespace.clone(), taking, cached_percent: plan.cached_percent });
        holds.headers.retain(|(ns, _)| ns != namespace);
        holds.headers.push((namespace.clone(), Asked::Planned(Arc::clone(plan), states)));
        remaining
    }

    pub fn last_decision(&self, namespace: &Namespace) -> Option<Decision> {
        let holds = self.holds.lock().ok()?;
        holds.last.iter().find(|(ns, _)| ns == namespace).map(|(_, d)| d.decision())
    }

    /// Replaces the response headers `namespace` asked for.
    pub fn set_response_headers(&self, namespace: &Namespace, headers: Vec<(HeaderName, HeaderValue)>) {
        let Ok(mut holds) = self.holds.lock() else { return };
        holds.headers.retain(|(ns, _)| ns != namespace);
        holds.headers.push((namespace.clone(), Asked::Given(Box::new(headers.into_iter().collect()))));
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
        let Some((_, last)) = holds.last.iter().find(|(ns, _)| ns == namespace) else {
            return Err("no decision to take the headers from: call acquire first".into());
        };
        let states = last.states();
        let state = |index: Option<u32>| -> Result<Option<&LimitState>, String> {
            index
                .map(|i| states.get(i as usize).ok_or_else(|| format!("no limit at index {i} of the last decision")))
                .transpose()
        };
        let (requests, tokens) = (state(requests)?, state(tokens)?);
        let remaining = [requests.map(|s| s.remaining), tokens.map(|s| s.remaining)];
        let rendered = super::headers::render(requests, tokens);
        holds.headers.retain(|(ns, _)| ns != namespace);
        holds.headers.push((namespace.clone(), Asked::Given(Box::new(rendered))));
        Ok(remaining)
    }

    /// Moves the headers the plugins asked for into the request's answer, where it does not
    /// have them yet. Called once, on the answer: later calls add nothing.
    pub fn apply_response_headers(&self, headers: &mut HeaderMap) {
        let asked = match self.holds.lock() {
            Ok(mut holds) => std::mem::take(&mut holds.headers),
            Err(_) => return,
        };
        for (_, asked) in asked {
            match asked {
                Asked::Given(given) => {
                    headers.reserve(given.len());
                    for (name, value) in *given {
                        if let http::header::Entry::Vacant(slot) = headers.entry(name) {
                            slot.insert(value);
                        }
                    }
                }
                Asked::Planned(plan, states) => plan.write_headers(&states, headers),
            }
        }
    }

    /// Takes `namespace`'s open holds (every one with `None`), to end them.
    fn take(&self, namespace: Option<&Namespace>) -> SmallVec<[Hold; 1]> {
        let Ok(mut holds) = self.holds.lock() else { return SmallVec::new() };
        let all = std::mem::take(&mut holds.open);
        let Some(namespace) = namespace else { return all };
        let (mine, others) = all.into_iter().partition(|h| h.namespace == *namespace);
        holds.open = others;
        mine
    }

    /// Ends `namespace`'s open holds as `ending` says.
    pub async fn end(&self, namespace: &Namespace, ending: Ending) {
        for hold in self.take(Some(namespace)) {
            hold.end(&self.limits, ending).await;
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
            .filter(|(hold, ending)| !hold.end_now(&self.limits, *ending))
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
                    hold.end(&limits, ending).await;
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
            .filter(|(hold, ending)| !hold.end_now(&self.limits, *ending))
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
