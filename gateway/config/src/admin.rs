//! `[admin]`: the admin token and how hard guessing it is made.
//!
//! The token is the only credential for the whole admin plane, so a weak one is refused at load
//! rather than accepted with a warning: the gateway does not start with it.

use std::time::Duration;

use crate::raw::RawAdmin;
use crate::{
    ADMIN_MIN_TOKEN_LENGTH_FLOOR, AdminConfig, ConfigError, DEFAULT_ADMIN_FAILURE_WINDOW, DEFAULT_ADMIN_LOCKOUT,
    DEFAULT_ADMIN_MAX_FAILURES, DEFAULT_ADMIN_MIN_TOKEN_LENGTH, Secret, secret,
};

/// The token also comes from `SLUICE_ADMIN_TOKEN`, so a container can be configured without a file.
pub(crate) fn admin(raw: RawAdmin, env: &dyn Fn(&str) -> Option<String>) -> Result<AdminConfig, ConfigError> {
    let min_token_length = raw.min_token_length.unwrap_or(DEFAULT_ADMIN_MIN_TOKEN_LENGTH);
    if min_token_length < ADMIN_MIN_TOKEN_LENGTH_FLOOR {
        return Err(ConfigError::invalid(
            "admin.min_token_length",
            format!("must be at least {ADMIN_MIN_TOKEN_LENGTH_FLOOR}"),
        ));
    }
    let max_failures = raw.max_failures.unwrap_or(DEFAULT_ADMIN_MAX_FAILURES);
    if max_failures == 0 {
        return Err(ConfigError::invalid("admin.max_failures", "must be at least 1"));
    }
    let failure_window = positive("admin.failure_window", raw.failure_window, DEFAULT_ADMIN_FAILURE_WINDOW)?;
    let lockout = positive("admin.lockout", raw.lockout, DEFAULT_ADMIN_LOCKOUT)?;

    let token_ref = raw.token.or_else(|| env("SLUICE_ADMIN_TOKEN").map(|_| "env:SLUICE_ADMIN_TOKEN".to_owned()));
    let token =
        token_ref.map(|r| secret::resolve(&r, env).map_err(|e| ConfigError::invalid("admin.token", e))).transpose()?;
    if let Some(token) = &token {
        check_token(token, min_token_length)?;
    }
    Ok(AdminConfig { token, min_token_length, max_failures, failure_window, lockout })
}

/// The reasons never quote the token, nor its length.
fn check_token(token: &Secret, min_length: usize) -> Result<(), ConfigError> {
    let value = token.expose();
    // Anything else cannot travel in an `Authorization` header, so the token could never match.
    if !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ConfigError::invalid(
            "admin.token",
            "must be printable ASCII without spaces (it travels in an Authorization header)",
        ));
    }
    if value.len() < min_length {
        return Err(ConfigError::invalid(
            "admin.token",
            format!(
                "must be at least {min_length} characters (admin.min_token_length); generate one with \
                 `openssl rand -hex 32`, or leave it unset and `sluice serve` generates one"
            ),
        ));
    }
    Ok(())
}

fn positive(field: &str, value: Option<Duration>, default: Duration) -> Result<Duration, ConfigError> {
    match value {
        Some(d) if d.is_zero() => Err(ConfigError::invalid(field, "must be greater than 0")),
        Some(d) => Ok(d),
        None => Ok(default),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRONG: &str = "0123456789abcdef0123456789abcdef";

    fn raw(token: Option<&str>) -> RawAdmin {
        RawAdmin { token: token.map(str::to_owned), ..RawAdmin::default() }
    }

    fn field(e: ConfigError) -> (String, String) {
        match e {
            ConfigError::Invalid { field, reason } => (field, reason),
            other => panic!("not a field error: {other}"),
        }
    }

    #[test]
    fn defaults_and_a_strong_token() {
        let config = admin(raw(Some(STRONG)), &|_| None).unwrap();
        assert_eq!(config.token.unwrap().expose(), STRONG);
        assert_eq!(config.min_token_length, 32);
        assert_eq!(
            (config.max_failures, config.failure_window, config.lockout),
            (10, DEFAULT_ADMIN_FAILURE_WINDOW, DEFAULT_ADMIN_LOCKOUT)
        );
        assert!(admin(raw(None), &|_| None).unwrap().token.is_none());
    }

    #[test]
    fn a_short_token_is_refused_without_quoting_it() {
        for weak in ["Zq9", "s3cret-but-short", &STRONG[1..]] {
            let (field, reason) = field(admin(raw(Some(weak)), &|_| None).unwrap_err());
            assert_eq!(field, "admin.token");
            assert!(reason.contains("at least 32 characters"), "{reason}");
            assert!(!reason.contains(weak), "{reason}");
        }
        // From the environment too.
        let env = |n: &str| (n == "SLUICE_ADMIN_TOKEN").then(|| "short".to_owned());
        assert_eq!(field(admin(raw(None), &env).unwrap_err()).0, "admin.token");
    }

    #[test]
    fn a_token_that_cannot_be_sent_is_refused() {
        let spaced = format!("{STRONG} x");
        assert!(field(admin(raw(Some(&spaced)), &|_| None).unwrap_err()).1.contains("printable ASCII"));
        let unicode = format!("{STRONG}é");
        assert!(field(admin(raw(Some(&unicode)), &|_| None).unwrap_err()).1.contains("printable ASCII"));
    }

    #[test]
    fn knobs_are_checked() {
        let lowered = RawAdmin { min_token_length: Some(16), ..raw(Some("0123456789abcdef")) };
        assert!(admin(lowered, &|_| None).is_ok());
        let cases = [
            (RawAdmin { min_token_length: Some(8), ..RawAdmin::default() }, "admin.min_token_length"),
            (RawAdmin { max_failures: Some(0), ..RawAdmin::default() }, "admin.max_failures"),
            (RawAdmin { failure_window: Some(Duration::ZERO), ..RawAdmin::default() }, "admin.failure_window"),
            (RawAdmin { lockout: Some(Duration::ZERO), ..RawAdmin::default() }, "admin.lockout"),
        ];
        for (raw, name) in cases {
            assert_eq!(field(admin(raw, &|_| None).unwrap_err()).0, name);
        }
    }
}
