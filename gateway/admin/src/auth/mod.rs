//! The admin token check, run before any data route reads its body, and the live stream's
//! tickets.
//!
//! Never open by default: without a configured token every data route answers 503 saying how to
//! set one (`sluice serve` generates one; see `docs/operations.md`). The presented and
//! configured tokens are compared as SHA-256 digests in constant time, so neither their
//! contents nor their lengths leak through timing. Guessing is bounded per client address
//! ([`lockout`]): after `max_failures` wrong tokens the address gets `429` with `Retry-After`
//! for the lockout's length. Refusals are counted by reason in
//! `sluice_admin_auth_refusals_total` and wrong tokens logged with the client's address, never
//! with what it presented.

mod lockout;
mod tickets;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{StatusCode, header};
use prometheus::{IntCounterVec, Opts, Registry};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use utoipa::ToSchema;

use crate::AdminState;
use crate::error::ApiError;
use lockout::{Failure, Lockout, Policy};
pub use tickets::TICKET_TTL;
use tickets::Tickets;

/// How hard guessing the token is made: `[admin] max_failures`, `failure_window`, `lockout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthSettings {
    /// Wrong tokens one client address (IPv6 by /64) may present within `failure_window`; the
    /// last of them starts its lockout.
    pub max_failures: u32,
    pub failure_window: Duration,
    /// How long an address that reached `max_failures` is refused, whatever it presents.
    pub lockout: Duration,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings { max_failures: 10, failure_window: Duration::from_secs(60), lockout: Duration::from_secs(300) }
    }
}

/// A ticket for one live stream (`GET /admin/api/live?ticket=…`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LiveTicket {
    /// 64 hex digits; opens one stream.
    pub ticket: String,
    /// Seconds left to open it.
    pub expires_in: u64,
}

/// Why an admin request was refused: the `reason` label of `sluice_admin_auth_refusals_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No admin token is configured (503).
    Disabled,
    /// No `Authorization` header (401).
    Missing,
    /// An `Authorization` header that is not `Bearer <token>` (401).
    Malformed,
    /// A wrong token: counted toward the client's lockout (401).
    WrongToken,
    /// The client is locked out (429).
    LockedOut,
    /// An unknown, used or expired live-stream ticket (401).
    InvalidTicket,
    /// The admin token sent in a URL (400).
    TokenInUrl,
}

impl Refusal {
    pub const ALL: [Refusal; 7] = [
        Refusal::Disabled,
        Refusal::Missing,
        Refusal::Malformed,
        Refusal::WrongToken,
        Refusal::LockedOut,
        Refusal::InvalidTicket,
        Refusal::TokenInUrl,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Refusal::Disabled => "disabled",
            Refusal::Missing => "missing",
            Refusal::Malformed => "malformed",
            Refusal::WrongToken => "wrong_token",
            Refusal::LockedOut => "locked_out",
            Refusal::InvalidTicket => "invalid_ticket",
            Refusal::TokenInUrl => "token_in_url",
        }
    }
}

/// The admin plane's credentials check, shared by the admin API and the live stream.
pub struct AdminAuth {
    /// The configured token's SHA-256; `None` keeps the admin plane closed.
    token: Option<[u8; 32]>,
    lockout: Lockout,
    tickets: Tickets,
    refusals: IntCounterVec,
}

impl AdminAuth {
    /// `token`: the configured admin token; `None` or empty keeps every data route closed with 503.
    pub fn new(token: Option<&str>, settings: AuthSettings) -> Self {
        let refusals = refusal_counter();
        for reason in Refusal::ALL {
            refusals.with_label_values(&[reason.label()]);
        }
        AdminAuth {
            token: token.filter(|t| !t.is_empty()).map(|t| Sha256::digest(t.as_bytes()).into()),
            lockout: Lockout::new(Policy {
                max_failures: settings.max_failures.max(1),
                window: settings.failure_window,
                lockout: settings.lockout,
            }),
            tickets: Tickets::new(),
            refusals,
        }
    }

    /// Exposes the refusal counter on the gateway's `/metrics`.
    pub fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.refusals.clone()))
    }

    /// Whether a token is configured (else the admin plane answers 503).
    pub fn is_configured(&self) -> bool {
        self.token.is_some()
    }

    /// Refusals so far for `reason`.
    pub fn refused(&self, reason: Refusal) -> u64 {
        self.refusals.with_label_values(&[reason.label()]).get()
    }

    /// Checks `Authorization: Bearer <token>` from `client`.
    pub fn authenticate(&self, client: Option<IpAddr>, headers: &http::HeaderMap) -> Result<(), ApiError> {
        let configured = self.configured()?;
        let client = client.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let now = Instant::now();
        self.not_locked(client, now)?;
        let presented = match bearer(headers) {
            Ok(presented) => presented,
            Err(refusal) => {
                self.count(refusal);
                let message = match refusal {
                    Refusal::Missing => "missing admin token: send `Authorization: Bearer <token>`",
                    _ => "the Authorization header must be `Bearer <token>`",
                };
                return Err(unauthorized(message));
            }
        };
        let matches: bool = Sha256::digest(presented.as_bytes()).ct_eq(configured).into();
        if matches {
            self.lockout.succeed(client);
            return Ok(());
        }
        self.count(Refusal::WrongToken);
        let max_failures = self.lockout.policy().max_failures;
        match self.lockout.fail(client, now) {
            Failure::Counted { failures } => {
                tracing::warn!(%client, failures, max_failures, "admin API: wrong admin token");
                Err(unauthorized("wrong admin token"))
            }
            Failure::LockedOut { failures } => {
                let lockout = self.lockout.policy().lockout;
                tracing::warn!(
                    %client,
                    failures,
                    lockout_secs = lockout.as_secs(),
                    "admin API: wrong admin token; client address locked out after too many"
                );
                Err(unauthorized(&format!(
                    "wrong admin token; too many from this address, which is now refused for {} s",
                    lockout.as_secs()
                )))
            }
        }
    }

    /// A ticket for one live stream; the caller has authenticated.
    pub fn issue_ticket(&self) -> LiveTicket {
        LiveTicket { ticket: self.tickets.issue(Instant::now()), expires_in: TICKET_TTL.as_secs() }
    }

    /// Lets `client` open the live stream with `ticket`, which is used up.
    pub fn redeem_ticket(&self, client: Option<IpAddr>, ticket: &str) -> Result<(), ApiError> {
        self.configured()?;
        let client = client.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let now = Instant::now();
        self.not_locked(client, now)?;
        if self.tickets.redeem(ticket, now) {
            return Ok(());
        }
        // Tickets are 256 random bits: not worth guessing, so a bad one is not counted toward
        // the lockout (a browser reconnecting with a used ticket would otherwise lock itself out).
        self.count(Refusal::InvalidTicket);
        tracing::info!(%client, "admin API: unknown, used or expired live-stream ticket");
        Err(unauthorized("unknown, used or expired live-stream ticket: get a new one with POST /admin/api/live/ticket"))
    }

    /// The answer to an admin token found in a URL: refused without being compared, so URLs
    /// cannot be used to guess either.
    pub fn refuse_token_in_url(&self) -> ApiError {
        self.count(Refusal::TokenInUrl);
        ApiError::bad_request(
            "token_in_url",
            "the admin token is not accepted in a URL (it would end up in logs and browser history): send \
             `Authorization: Bearer <token>`, or for the live stream get a ticket with POST /admin/api/live/ticket \
             and open /admin/api/live?ticket=<ticket>",
        )
    }

    fn configured(&self) -> Result<&[u8; 32], ApiError> {
        self.token.as_ref().ok_or_else(|| {
            self.count(Refusal::Disabled);
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "admin_token_not_set",
                "the admin API is disabled until an admin token is configured: set `[admin] token` in the config \
                 (e.g. \"env:SLUICE_ADMIN_TOKEN\") or the SLUICE_ADMIN_TOKEN environment variable",
            )
        })
    }

    fn not_locked(&self, client: IpAddr, now: Instant) -> Result<(), ApiError> {
        match self.lockout.locked(client, now) {
            None => Ok(()),
            Some(left) => {
                self.count(Refusal::LockedOut);
                tracing::debug!(%client, left_secs = left.as_secs(), "admin API: refused a locked-out client");
                Err(locked_out(left))
            }
        }
    }

    fn count(&self, refusal: Refusal) {
        self.refusals.with_label_values(&[refusal.label()]).inc();
    }
}

/// The client address the listener put on the request (`ConnectInfo<SocketAddr>`).
pub fn client_address(extensions: &http::Extensions) -> Option<IpAddr> {
    extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(addr)| addr.ip())
}

/// The value of `name` in a query string, as sent (tickets are hex and need no decoding; a
/// `token` is refused whatever its value).
pub fn query_param<'q>(query: Option<&'q str>, name: &str) -> Option<&'q str> {
    query?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then_some(value)
    })
}

pub(crate) async fn require_token(State(state): State<AdminState>, request: Request, next: Next) -> Response {
    if query_param(request.uri().query(), "token").is_some() {
        return state.auth.refuse_token_in_url().into_response();
    }
    match state.auth.authenticate(client_address(request.extensions()), request.headers()) {
        Ok(()) => next.run(request).await,
        Err(error) => error.into_response(),
    }
}

fn bearer(headers: &http::HeaderMap) -> Result<&str, Refusal> {
    let value = headers.get(header::AUTHORIZATION).ok_or(Refusal::Missing)?;
    value
        .to_str()
        .ok()
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .ok_or(Refusal::Malformed)
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
}

fn locked_out(left: Duration) -> ApiError {
    // Rounded up: a client that waits exactly this long is let in.
    let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_auth_failures",
        format!("too many wrong admin tokens from this address; try again in {secs} s"),
    )
    .with_retry_after(secs)
}

#[expect(clippy::expect_used, reason = "a constant, valid metric name and label: building it cannot fail")]
fn refusal_counter() -> IntCounterVec {
    IntCounterVec::new(
        Opts::new(
            "sluice_admin_auth_refusals_total",
            "Admin API and live-stream requests refused for their credentials, by reason",
        ),
        &["reason"],
    )
    .expect("a valid counter definition")
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "s3cret-0123456789abcdef-0123456789";

    fn with_auth(value: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert(header::AUTHORIZATION, value.parse().unwrap());
        h
    }

    fn auth(max_failures: u32) -> AdminAuth {
        AdminAuth::new(Some(TOKEN), AuthSettings { max_failures, ..AuthSettings::default() })
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn checks_the_bearer_token() {
        let auth = auth(100);
        let client = ip("192.0.2.1");
        assert!(auth.authenticate(client, &with_auth(&format!("Bearer {TOKEN}"))).is_ok());
        assert!(auth.authenticate(client, &with_auth(&format!("bearer {TOKEN}"))).is_ok());
        let short = format!("Bearer {}", &TOKEN[1..]);
        let long = format!("Bearer {TOKEN}2");
        let basic = format!("Basic {TOKEN}");
        for bad in [short.as_str(), &long, &basic, TOKEN, "Bearer "] {
            assert_eq!(
                auth.authenticate(client, &with_auth(bad)).unwrap_err().status,
                StatusCode::UNAUTHORIZED,
                "{bad}"
            );
        }
        assert_eq!(auth.authenticate(client, &http::HeaderMap::new()).unwrap_err().status, StatusCode::UNAUTHORIZED);
        assert_eq!(auth.refused(Refusal::WrongToken), 3);
        assert_eq!(auth.refused(Refusal::Malformed), 2);
        assert_eq!(auth.refused(Refusal::Missing), 1);
    }

    #[test]
    fn no_token_means_closed() {
        for configured in [None, Some("")] {
            let auth = AdminAuth::new(configured, AuthSettings::default());
            let e = auth.authenticate(ip("192.0.2.1"), &with_auth("Bearer anything")).unwrap_err();
            assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
            assert!(e.message.contains("SLUICE_ADMIN_TOKEN") && e.message.contains("[admin] token"));
            assert_eq!(auth.refused(Refusal::Disabled), 1);
        }
    }

    #[test]
    fn wrong_tokens_lock_out_their_address_only() {
        let auth = auth(3);
        let (attacker, operator) = (ip("192.0.2.66"), ip("198.51.100.7"));
        let right = with_auth(&format!("Bearer {TOKEN}"));
        for _ in 0..3 {
            assert_eq!(
                auth.authenticate(attacker, &with_auth("Bearer guess")).unwrap_err().status,
                StatusCode::UNAUTHORIZED
            );
        }
        let locked = auth.authenticate(attacker, &with_auth("Bearer guess")).unwrap_err();
        assert_eq!(locked.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(locked.retry_after, Some(300));
        // Even the right token: guessing gains nothing during the lockout.
        let still = auth.authenticate(attacker, &right).unwrap_err();
        assert_eq!(still.status, StatusCode::TOO_MANY_REQUESTS);
        assert!(still.retry_after.is_some_and(|s| (299..=300).contains(&s)));
        assert!(auth.authenticate(operator, &right).is_ok());
        assert_eq!(auth.refused(Refusal::WrongToken), 3);
        assert_eq!(auth.refused(Refusal::LockedOut), 2);
    }

    #[test]
    fn tickets_open_one_stream_and_are_not_counted_as_guesses() {
        let auth = auth(1);
        let client = ip("192.0.2.1");
        let LiveTicket { ticket, expires_in } = auth.issue_ticket();
        assert_eq!(expires_in, 60);
        assert!(auth.redeem_ticket(client, &ticket).is_ok());
        for _ in 0..3 {
            assert_eq!(auth.redeem_ticket(client, &ticket).unwrap_err().status, StatusCode::UNAUTHORIZED);
        }
        assert_eq!(auth.refused(Refusal::InvalidTicket), 3);
        assert!(auth.authenticate(client, &with_auth(&format!("Bearer {TOKEN}"))).is_ok(), "not locked out");
        assert_eq!(auth.refuse_token_in_url().status, StatusCode::BAD_REQUEST);
        assert_eq!(auth.refused(Refusal::TokenInUrl), 1);
    }

    #[test]
    fn query_params_are_found_by_exact_name() {
        assert_eq!(query_param(Some("ticket=ab&x=1"), "ticket"), Some("ab"));
        assert_eq!(query_param(Some("x=1&token"), "token"), Some(""));
        assert_eq!(query_param(Some("tokens=1&mytoken=2"), "token"), None);
        assert_eq!(query_param(None, "token"), None);
    }

    #[test]
    fn refusals_are_exposed_with_every_reason() {
        let auth = auth(3);
        let registry = Registry::new();
        auth.register(&registry).unwrap();
        let families = registry.gather();
        let family = families.iter().find(|f| f.name() == "sluice_admin_auth_refusals_total").unwrap();
        assert_eq!(family.get_metric().len(), Refusal::ALL.len());
    }
}
