//! Builds the plugins in `plugins/` (their own cargo workspace) for `wasm32-wasip2` and leaves
//! the components in `OUT_DIR` for `include_bytes!`.
//!
//! The inner cargo gets its own target directory under `OUT_DIR`: sharing the outer one would
//! deadlock on cargo's build lock. Variables the outer cargo sets for this script that would
//! leak into the inner build (flags for the host target, clippy's wrapper, the jobserver) are
//! removed.

use std::env;
use std::path::PathBuf;
use std::process::Command;

/// (package's artifact name, file name in OUT_DIR): the built-ins, the test guests, and the
/// examples in `plugins/examples/` (embedded for tests behind `test-util`).
const COMPONENTS: &[(&str, &str)] = &[
    ("sluice_plugin_router", "router.wasm"),
    ("sluice_plugin_ratelimit", "ratelimit.wasm"),
    ("sluice_plugin_cache", "cache.wasm"),
    ("sluice_plugin_test_guest", "test_guest.wasm"),
    ("sluice_plugin_test_net_guest", "test_net_guest.wasm"),
    ("sluice_plugin_test_chunk_net_guest", "test_chunk_net_guest.wasm"),
    ("sluice_plugin_test_v0_1_guest", "test_v0_1_guest.wasm"),
    ("sluice_plugin_model_alias", "model_alias.wasm"),
    ("sluice_plugin_deny_list", "deny_list.wasm"),
    ("sluice_plugin_tenant_tagger", "tenant_tagger.wasm"),
    ("sluice_plugin_model_mask", "model_mask.wasm"),
];

#[expect(clippy::print_stderr, reason = "cargo shows a failed build script's stderr")]
fn main() {
    if let Err(e) = run() {
        // Returned from `main`, the error would be printed in its Debug form: on one line, with
        // the command to run buried in escaped newlines.
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let plugins = manifest_dir.join("../../plugins").canonicalize()?;
    for path in [
        "wit",
        "wit-0.1.0",
        "sdk",
        "router",
        "ratelimit",
        "cache",
        "test-guest",
        "test-net-guest",
        "test-chunk-net-guest",
        "test-v0-1-guest",
        "examples",
        "Cargo.toml",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={}", plugins.join(path).display());
    }
    // The router plugin is built from the routing library.
    println!("cargo:rerun-if-changed={}", manifest_dir.join("../routing").display());
    sluice_build_support::ensure_target("wasm32-wasip2", "the built-in plugins (plugins/)")?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    let target_dir = out_dir.join("plugins-target");
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());

    let mut command = Command::new(cargo);
    command
        .args(["build", "--release", "--locked", "--target", "wasm32-wasip2", "--manifest-path"])
        .arg(plugins.join("Cargo.toml"))
        .current_dir(&plugins);
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
        "MFLAGS",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET_DIR",
    ] {
        command.env_remove(var);
    }
    command.env("CARGO_TARGET_DIR", &target_dir);
    let status = command.status()?;
    if !status.success() {
        return Err(format!(
            "building the plugins in {} for wasm32-wasip2 failed ({status}); \
             is the target installed? `rustup target add wasm32-wasip2`",
            plugins.display()
        )
        .into());
    }
    let built = target_dir.join("wasm32-wasip2").join("release");
    for (artifact, file) in COMPONENTS {
        std::fs::copy(built.join(format!("{artifact}.wasm")), out_dir.join(file))?;
    }
    Ok(())
}
