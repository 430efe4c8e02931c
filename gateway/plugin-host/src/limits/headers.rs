//! OpenAI's rate-limit headers, rendered by the host from a decision's states, so that a limiter
//! plugin names which of its limits stand for requests and for tokens and formats nothing.

use bytes::BytesMut;
use http::HeaderMap;
use http::header::{Entry, HeaderName, HeaderValue};
use smallvec::SmallVec;

use super::LimitState;

/// Headers one plugin asked for; six at most for the `x-ratelimit-*` ones, kept inline.
pub type HeaderSet = SmallVec<[(HeaderName, HeaderValue); 6]>;

const REQUESTS: [HeaderName; 3] = [
    HeaderName::from_static("x-ratelimit-limit-requests"),
    HeaderName::from_static("x-ratelimit-remaining-requests"),
    HeaderName::from_static("x-ratelimit-reset-requests"),
];
const TOKENS: [HeaderName; 3] = [
    HeaderName::from_static("x-ratelimit-limit-tokens"),
    HeaderName::from_static("x-ratelimit-remaining-tokens"),
    HeaderName::from_static("x-ratelimit-reset-tokens"),
];

/// The `x-ratelimit-*` headers for the limits standing for requests and for tokens.
pub fn render(requests: Option<&LimitState>, tokens: Option<&LimitState>) -> HeaderSet {
    let mut out = HeaderSet::new();
    each(&[None, None], requests, tokens, |name, value| out.push((name, value)));
    out
}

/// [`render`], straight into an answer's `headers` where it does not have them yet, with the
/// `x-ratelimit-limit-*` values already rendered where given (a standing plan's limits do not
/// change from one request to the next).
pub fn write(
    limits: &[Option<HeaderValue>; 2],
    requests: Option<&LimitState>,
    tokens: Option<&LimitState>,
    headers: &mut HeaderMap,
) {
    headers.reserve(6);
    each(limits, requests, tokens, |name, value| {
        if let Entry::Vacant(slot) = headers.entry(name) {
            slot.insert(value);
        }
    });
}

/// Emits the headers in order. This runs for every limited answer: the values that change
/// with each one (remaining, reset) are written into one buffer whose parts the header values
/// share, one allocation rather than one each.
fn each(
    limits: &[Option<HeaderValue>; 2],
    requests: Option<&LimitState>,
    tokens: Option<&LimitState>,
    mut emit: impl FnMut(HeaderName, HeaderValue),
) {
    let states = [requests, tokens];
    let mut text = BytesMut::with_capacity(64);
    let mut lengths = [[0usize; 2]; 2];
    let mut number = itoa::Buffer::new();
    for (state, length) in states.iter().zip(&mut lengths) {
        let Some(state) = state else { continue };
        let start = text.len();
        text.extend_from_slice(number.format(state.remaining).as_bytes());
        length[0] = text.len() - start;
        text.extend_from_slice(&duration_bytes(state.reset_ms));
        length[1] = text.len() - start - length[0];
    }
    let mut text = text.freeze();
    for (((names, state), limit_value), [remaining_len, reset_len]) in
        [&REQUESTS, &TOKENS].into_iter().zip(states).zip(limits).zip(lengths)
    {
        let Some(state) = state else { continue };
        let [limit, remaining, reset] = names.clone();
        emit(limit, limit_value.clone().unwrap_or_else(|| HeaderValue::from(state.limit)));
        // Digits, letters and a dot: always valid header values.
        if let Ok(value) = HeaderValue::from_maybe_shared(text.split_to(remaining_len)) {
            emit(remaining, value);
        }
        if let Ok(value) = HeaderValue::from_maybe_shared(text.split_to(reset_len)) {
            emit(reset, value);
        }
    }
}

/// A duration as OpenAI writes `x-ratelimit-reset-*`: `20ms`, `1.5s`, `6m0s`, `1h2m3s`.
pub fn duration(ms: u64) -> String {
    String::from_utf8_lossy(&duration_bytes(ms)).into_owned()
}

/// [`duration`] on the stack: this runs twice for every limited answer, and the header value
/// copies it once.
fn duration_bytes(ms: u64) -> SmallVec<[u8; 32]> {
    let mut out = SmallVec::new();
    let mut number = itoa::Buffer::new();
    let mut push = |out: &mut SmallVec<[u8; 32]>, n: u64, unit: &[u8]| {
        out.extend_from_slice(number.format(n).as_bytes());
        out.extend_from_slice(unit);
    };
    if ms < 1000 {
        push(&mut out, ms, b"ms");
        return out;
    }
    let (h, m, s, frac) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    if h > 0 {
        push(&mut out, h, b"h");
    }
    if h > 0 || m > 0 {
        push(&mut out, m, b"m");
    }
    push(&mut out, s, b"");
    if frac > 0 {
        let digits = [b'0' + (frac / 100) as u8, b'0' + (frac / 10 % 10) as u8, b'0' + (frac % 10) as u8];
        let kept = digits.iter().rposition(|d| *d != b'0').map_or(0, |i| i + 1);
        out.push(b'.');
        out.extend_from_slice(digits.get(..kept).unwrap_or(&[]));
    }
    out.push(b's');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_openai_writes_them() {
        for (ms, text) in [
            (0, "0ms"),
            (20, "20ms"),
            (999, "999ms"),
            (1000, "1s"),
            (1500, "1.5s"),
            (1050, "1.05s"),
            (60_000, "1m0s"),
            (360_000, "6m0s"),
            (61_500, "1m1.5s"),
            (3_723_000, "1h2m3s"),
            (3_600_000, "1h0m0s"),
        ] {
            assert_eq!(duration(ms), text, "{ms} ms");
        }
    }

    #[test]
    fn renders_the_requests_and_tokens_limits_it_is_given() {
        let requests = LimitState { limit: 120, remaining: 7, reset_ms: 1500 };
        let tokens = LimitState { limit: 90_000, remaining: 80_000, reset_ms: 20 };
        let headers = render(Some(&requests), Some(&tokens));
        let text: Vec<(String, String)> =
            headers.iter().map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_owned())).collect();
        let pair = |n: &str, v: &str| (n.to_owned(), v.to_owned());
        assert_eq!(
            text,
            vec![
                pair("x-ratelimit-limit-requests", "120"),
                pair("x-ratelimit-remaining-requests", "7"),
                pair("x-ratelimit-reset-requests", "1.5s"),
                pair("x-ratelimit-limit-tokens", "90000"),
                pair("x-ratelimit-remaining-tokens", "80000"),
                pair("x-ratelimit-reset-tokens", "20ms"),
            ]
        );
        assert_eq!(render(None, Some(&tokens)).len(), 3);
        assert!(render(None, None).is_empty());
    }
}
