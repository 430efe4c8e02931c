//! `sluice plugin new <name>`: a plugin crate that builds, tests and loads as written, for the
//! author to change. The template implements one hook (`on-request`) with its decision in a
//! plain function that `cargo test` checks natively.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use super::NewArgs;

const CARGO_TOML: &str = r##"[package]
name = "{{name}}"
version = "0.1.0"
edition = "2024"
publish = false

# cdylib: the WebAssembly component; rlib: native `cargo test` of the decision logic.
[lib]
crate-type = ["cdylib", "rlib"]

[dependencies]
{{sdk}}

# A crate of its own, not a member of any workspace it is created in.
[workspace]

# Plugins run on every request: fast, small, and a panic aborts (the host reports a trap).
[profile.release]
opt-level = 3
lto = true
codegen-units = 1
panic = "abort"
strip = true
"##;

const LIB_RS: &str = r##"//! `{{name}}`: a Sluice policy plugin.
//!
//! Refuses requests that ask for more than `max_tokens` output tokens (the binding's config,
//! 4096 by default). Change [`decide`] and the hooks you export to make it yours; the contract
//! is explained hook by hook in Sluice's docs/plugins.md.

use sluice_sdk::types::{Body, Denial, Headers, RequestDecision, RequestInfo};
use sluice_sdk::{Plugin, config};
#[cfg(target_arch = "wasm32")]
use sluice_sdk::export_plugin;

/// The limit when the binding's config does not set `max_tokens`.
const DEFAULT_MAX_TOKENS: u32 = 4096;

pub struct {{Type}};

impl Plugin for {{Type}} {
    fn on_request(request: RequestInfo, _headers: &Headers, _body: &Body) -> RequestDecision {
        let limit = max_tokens_setting(&config::binding()).unwrap_or(DEFAULT_MAX_TOKENS);
        decide(request.summary.max_tokens, limit)
    }
}

// Only the component exports hooks: their names are not valid native symbols, and the native
// build exists for the unit tests.
#[cfg(target_arch = "wasm32")]
export_plugin!({{Type}} => [on_request]);

/// The decision, apart from the bindings so it can be tested natively.
pub fn decide(max_tokens: Option<u32>, limit: u32) -> RequestDecision {
    match max_tokens {
        Some(asked) if asked > limit => RequestDecision::Deny(Denial {
            status: 400,
            message: format!("max_tokens {asked} is above this gateway's limit of {limit}"),
        }),
        _ => RequestDecision::Continue,
    }
}

/// `max_tokens` from the binding's JSON config, e.g. `{"max_tokens": 1024}`. (Add `serde_json`
/// when the config grows beyond a number or two.)
pub fn max_tokens_setting(config: &str) -> Option<u32> {
    let rest = &config[config.find("\"max_tokens\"")? + "\"max_tokens\"".len()..];
    let digits = rest.trim_start().strip_prefix(':')?.trim_start();
    let end = digits.find(|c: char| !c.is_ascii_digit()).unwrap_or(digits.len());
    digits[..end].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_over_the_limit_are_refused() {
        assert!(matches!(decide(Some(5000), 4096), RequestDecision::Deny(Denial { status: 400, .. })));
        assert_eq!(decide(Some(100), 4096), RequestDecision::Continue);
        assert_eq!(decide(None, 4096), RequestDecision::Continue);
    }

    #[test]
    fn the_limit_comes_from_the_config() {
        assert_eq!(max_tokens_setting(r#"{"max_tokens": 1024}"#), Some(1024));
        assert_eq!(max_tokens_setting("{}"), None);
    }
}
"##;

const PLUGIN_TOML: &str = r##"# How the gateway binds this plugin: a `[[plugins]]` entry of its config file. Copy it into
# sluice.toml and point `source` at the built component; `sluice plugin test --manifest
# plugin.toml` grants and configures the plugin the same way. Grant every capability the
# component imports (`sluice plugin test` lists them), and nothing else.
[[plugins]]
name = "{{name}}"
source = "target/wasm32-wasip2/release/{{artifact}}.wasm"
capabilities = ["config"]
failure = "closed"
order = 0
timeout = "5ms"

[plugins.config]
max_tokens = 4096
"##;

const REQUESTS_JSON: &str = r##"[
  {
    "name": "within the limit",
    "tenant": "acme",
    "body": { "model": "llama-3.1-8b-instruct", "max_tokens": 256, "messages": [{ "role": "user", "content": "Hi" }] }
  },
  {
    "name": "over the limit",
    "tenant": "acme",
    "body": { "model": "llama-3.1-8b-instruct", "max_tokens": 9000, "messages": [{ "role": "user", "content": "Write a novel." }] }
  }
]
"##;

const README_MD: &str = r##"# {{name}}

A Sluice policy plugin: refuses requests asking for more than `max_tokens` output tokens.

```sh
cargo test                                    # the decision logic, natively
sluice plugin build                           # the component, for wasm32-wasip2
sluice plugin test target/wasm32-wasip2/release/{{artifact}}.wasm \
    --request requests.json --manifest plugin.toml
```

`plugin test` loads the component in the gateway's plugin host, exactly as the gateway would,
and prints each hook's decision for each sample request with its time in microseconds.

To deploy it, copy `plugin.toml`'s `[[plugins]]` entry into the gateway's config (with `source`
pointing at the component), or upload it: `sluice plugin upload {{name}} <file.wasm>`.
"##;

const GITIGNORE: &str = "/target\n";

pub fn run(args: &NewArgs) -> anyhow::Result<()> {
    check_name(&args.name)?;
    let dir = args.dir.clone().unwrap_or_else(|| PathBuf::from(&args.name));
    if dir.exists() && std::fs::read_dir(&dir).map(|mut d| d.next().is_some()).unwrap_or(true) {
        bail!("{} already exists and is not empty", dir.display());
    }
    std::fs::create_dir_all(dir.join("src")).with_context(|| format!("cannot create {}", dir.display()))?;
    let sdk = sdk_dependency(&dir, args.sdk_path.as_deref())?;
    let artifact = args.name.replace('-', "_");
    let fill = |template: &str| {
        template
            .replace("{{name}}", &args.name)
            .replace("{{Type}}", &type_name(&args.name))
            .replace("{{artifact}}", &artifact)
            .replace("{{sdk}}", &sdk.line)
    };
    for (path, template) in [
        ("Cargo.toml", CARGO_TOML),
        ("src/lib.rs", LIB_RS),
        ("plugin.toml", PLUGIN_TOML),
        ("requests.json", REQUESTS_JSON),
        ("README.md", README_MD),
        (".gitignore", GITIGNORE),
    ] {
        let file = dir.join(path);
        std::fs::write(&file, fill(template)).with_context(|| format!("cannot write {}", file.display()))?;
    }
    let mut out = std::io::stdout();
    writeln!(out, "created plugin {} in {} ({})", args.name, dir.display(), sdk.note)?;
    writeln!(out, "next: cd {} && sluice plugin build && sluice plugin test \\", dir.display())?;
    writeln!(
        out,
        "        target/wasm32-wasip2/release/{artifact}.wasm --request requests.json --manifest plugin.toml"
    )?;
    Ok(())
}

/// The same rule as a binding's name in the gateway's config (it becomes a metric label), and a
/// valid crate name.
fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !ok {
        bail!("plugin name {name:?} must be 1-64 characters of a-z, 0-9, '-' and '_', starting with a letter");
    }
    Ok(())
}

/// `deny-list` → `DenyList`.
fn type_name(name: &str) -> String {
    name.split(['-', '_'])
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map(|first| first.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
        })
        .collect()
}

struct SdkDependency {
    line: String,
    note: String,
}

/// A path dependency on a given or enclosing checkout's SDK, else the published crate.
fn sdk_dependency(dir: &Path, explicit: Option<&Path>) -> anyhow::Result<SdkDependency> {
    let found = match explicit {
        Some(path) => {
            let path = path.canonicalize().with_context(|| format!("--sdk-path {}", path.display()))?;
            if !path.join("Cargo.toml").is_file() {
                bail!("--sdk-path {}: no Cargo.toml there (expected a checkout's plugins/sdk)", path.display());
            }
            Some(path)
        }
        None => dir.canonicalize().ok().and_then(|dir| {
            dir.ancestors().map(|a| a.join("plugins/sdk")).find(|sdk| sdk.join("Cargo.toml").is_file())
        }),
    };
    Ok(match found {
        Some(path) => {
            let path = path.display().to_string();
            SdkDependency {
                line: format!("sluice-sdk = {{ path = {} }}", toml_string(&path)),
                note: format!("sluice-sdk from {path}"),
            }
        }
        None => {
            let version = env!("CARGO_PKG_VERSION");
            SdkDependency {
                line: format!("sluice-sdk = \"{version}\""),
                note: format!(
                    "sluice-sdk {version} from crates.io, where it is not published yet: \
                     pass --sdk-path <checkout>/plugins/sdk to build now"
                ),
            }
        }
    })
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_name("deny-list").is_ok());
        assert!(check_name("a_b2").is_ok());
        for bad in ["", "Deny", "2fa", "a b", "a.b", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(type_name("deny-list"), "DenyList");
        assert_eq!(type_name("a_b-c"), "ABC");
    }

    #[test]
    fn toml_strings_are_escaped() {
        assert_eq!(toml_string(r#"C:\x"y"#), r#""C:\\x\"y""#);
    }
}
