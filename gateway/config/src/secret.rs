//! Secrets are referenced, not written, in config files: `env:NAME`, `file:/path`, or (for
//! bootstrap and tests) a literal. They are resolved once at load and never printed.

use std::fmt;

/// A resolved secret. `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Resolves `env:NAME` and `file:/path` references; anything else is taken literally.
/// `env` is passed in so that tests do not depend on the process environment.
pub fn resolve(reference: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Secret, String> {
    if let Some(name) = reference.strip_prefix("env:") {
        return env(name)
            .filter(|v| !v.is_empty())
            .map(Secret)
            .ok_or_else(|| format!("environment variable {name} is not set"));
    }
    if let Some(path) = reference.strip_prefix("file:") {
        return std::fs::read_to_string(path)
            .map(|s| Secret(s.trim_end_matches(['\n', '\r']).to_owned()))
            .map_err(|e| format!("cannot read secret file {path}: {e}"));
    }
    Ok(Secret(reference.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_resolve_and_never_print() {
        let env = |n: &str| (n == "TOKEN").then(|| "s3cret".to_owned());
        let s = resolve("env:TOKEN", &env).unwrap();
        assert_eq!(s.expose(), "s3cret");
        assert_eq!(format!("{s:?} {s}"), "*** ***");
        assert!(resolve("env:MISSING", &env).unwrap_err().contains("MISSING"));
        assert_eq!(resolve("literal", &env).unwrap().expose(), "literal");
        assert!(resolve("file:/nonexistent/x", &env).unwrap_err().contains("/nonexistent/x"));
    }
}
