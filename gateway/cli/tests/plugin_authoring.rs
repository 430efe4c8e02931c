//! `sluice plugin new|build|test` through the built binary, with no gateway running: the example
//! components (built for wasm32-wasip2 by the plugin host's build script) against their
//! manifests and sample requests, malformed components, and a new crate from the template built
//! and tested end to end.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "test code")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use sluice_plugin_host::testing::examples;

fn sluice(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .env("SLUICE_LOG", "warn")
        // Authoring needs no admin API: an unusable URL must not matter.
        .env("SLUICE_ADMIN_URL", "not a url")
        .output()
        .unwrap()
}

fn success(output: &Output) -> String {
    assert!(
        output.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn failure(output: &Output) -> String {
    assert!(!output.status.success(), "unexpected success: {}", String::from_utf8_lossy(&output.stdout));
    String::from_utf8(output.stderr.clone()).unwrap()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path.display().to_string()
}

fn example(name: &str, file: &str) -> String {
    examples::dir(name).join(file).display().to_string()
}

#[test]
fn test_runs_an_example_against_its_manifest_and_samples() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = write(dir.path(), "deny_list.wasm", examples::DENY_LIST);
    let out = success(&sluice(&[
        "plugin",
        "test",
        &wasm,
        "--request",
        &example("deny-list", "requests.json"),
        "--manifest",
        &example("deny-list", "plugin.toml"),
        "--iterations",
        "20",
    ]));
    assert!(out.contains("exports    on-request"), "{out}");
    assert!(out.contains("granted    log, config (from "), "{out}");
    assert!(
        out.contains(r#"deny 403: the prompt contains the denied pattern "ignore previous instructions""#),
        "{out}"
    );
    assert!(out.contains(r#"deny 403: the prompt contains the denied pattern "reveal your system prompt""#), "{out}");
    assert!(
        out.contains("[2] ordinary question (chat-completions, tenant acme, model llama-3.1-8b-instruct)"),
        "{out}"
    );
    assert!(out.contains(" µs  continue"), "{out}");
    let table = out.lines().find(|l| l.trim_start().starts_with("on-request") && l.split_whitespace().count() == 6);
    let calls: usize =
        table.unwrap_or_else(|| panic!("no timing row in {out}")).split_whitespace().nth(1).unwrap().parse().unwrap();
    let failed: usize = table.unwrap().split_whitespace().nth(5).unwrap().parse().unwrap();
    assert_eq!(calls + failed, 3 * 20, "each call is timed or counted as failed");
}

#[test]
fn test_prints_json_and_takes_a_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = write(dir.path(), "model_alias.wasm", examples::MODEL_ALIAS);
    let config = write(dir.path(), "config.json", br#"{"aliases": {"fast": "tiny-1b"}}"#);
    let out = success(&sluice(&[
        "plugin",
        "test",
        &wasm,
        "--request",
        &example("model-alias", "requests.json"),
        "--config",
        &config,
        "--iterations",
        "0",
        "--json",
    ]));
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["component"]["hooks"], serde_json::json!(["on-request"]));
    assert_eq!(v["component"]["granted"], serde_json::json!(["config"]), "no manifest: what it imports");
    let decision = |i: usize| v["samples"][i]["hooks"][0]["decision"].clone();
    assert_eq!(decision(0)["continue_with"]["model"], "tiny-1b");
    assert!(decision(1).get("continue").is_some(), "smart is no alias in this config: {}", decision(1));
    assert_eq!(decision(2)["deny"]["status"], 400);
    assert!(v["samples"][0]["hooks"][0]["micros"].as_f64().unwrap() > 0.0);
    assert_eq!(v["timings"], serde_json::json!([]));
}

#[test]
fn test_refuses_malformed_components_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let request = example("deny-list", "requests.json");
    let run = |name: &str, bytes: &[u8]| {
        let wasm = write(dir.path(), name, bytes);
        failure(&sluice(&["plugin", "test", &wasm, "--request", &request]))
    };
    let e = run("text.wasm", b"hello, world");
    assert!(e.contains("cannot load") && e.contains("not a WebAssembly file"), "{e}");
    let e = run("core.wasm", b"\0asm\x01\0\0\0");
    assert!(e.contains("a core WebAssembly module, not a component"), "{e}");
    // The smallest valid component: it exports none of the contract's hooks.
    let e = run("empty.wasm", b"\0asm\x0d\0\x01\0");
    assert!(e.contains("does not satisfy sluice:policy@0.2.0") && e.contains("exports none of the hooks"), "{e}");
    let mut truncated = examples::DENY_LIST.to_vec();
    truncated.truncate(truncated.len() / 2);
    let e = run("truncated.wasm", &truncated);
    assert!(e.contains("not a valid WebAssembly component"), "{e}");
    let e = failure(&sluice(&["plugin", "test", "/nonexistent.wasm", "--request", &request]));
    assert!(e.contains("cannot read /nonexistent.wasm"), "{e}");
}

#[test]
fn test_applies_the_manifests_grants_like_the_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = write(dir.path(), "deny_list.wasm", examples::DENY_LIST);
    let text = std::fs::read_to_string(example("deny-list", "plugin.toml")).unwrap();
    let manifest = write(dir.path(), "plugin.toml", text.replace(r#"["config", "log"]"#, r#"["config"]"#).as_bytes());
    let e = failure(&sluice(&[
        "plugin",
        "test",
        &wasm,
        "--request",
        &example("deny-list", "requests.json"),
        "--manifest",
        &manifest,
    ]));
    assert!(e.contains("does not grant capability `log`") && e.contains("hint: grant the capability"), "{e}");

    let bad = write(dir.path(), "bad.toml", b"[[plugins]]\nname = \"Bad Name\"\nsource = \"x.wasm\"\n");
    let e = failure(&sluice(&[
        "plugin",
        "test",
        &wasm,
        "--request",
        &example("deny-list", "requests.json"),
        "--manifest",
        &bad,
    ]));
    assert!(e.contains("not a valid [[plugins]] manifest") && e.contains("plugins[0].name"), "{e}");
}

#[test]
fn a_failing_hook_is_reported_and_fails_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = write(dir.path(), "guest.wasm", sluice_plugin_host::testing::TEST_GUEST);
    let config = write(dir.path(), "config.json", br#"{"mode": "trap"}"#);
    let output =
        sluice(&["plugin", "test", &wasm, "--request", &example("deny-list", "requests.json"), "--config", &config]);
    let e = failure(&output);
    assert!(e.contains("3 hook call(s) failed"), "{e}");
    let out = String::from_utf8(output.stdout).unwrap();
    assert!(out.contains("on-request") && out.contains("FAILED (trap)"), "{out}");
    assert!(
        out.contains("exports    on-request, route, on-response-headers, on-response-chunk, on-response-done"),
        "{out}"
    );
}

#[test]
fn new_writes_a_crate_and_refuses_bad_names_and_full_directories() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("p");
    let out =
        success(&sluice(&["plugin", "new", "rate-guard", "--dir", target.to_str().unwrap(), "--sdk-path", &sdk()]));
    assert!(out.contains("created plugin rate-guard"), "{out}");
    for file in ["Cargo.toml", "src/lib.rs", "plugin.toml", "requests.json", "README.md", ".gitignore"] {
        assert!(target.join(file).is_file(), "{file}");
    }
    let cargo = std::fs::read_to_string(target.join("Cargo.toml")).unwrap();
    assert!(cargo.contains("name = \"rate-guard\"") && cargo.contains("sluice-sdk = { path = "), "{cargo}");
    let lib = std::fs::read_to_string(target.join("src/lib.rs")).unwrap();
    assert!(lib.contains("pub struct RateGuard;") && lib.contains("export_plugin!(RateGuard => [on_request]);"));

    let e = failure(&sluice(&["plugin", "new", "rate-guard", "--dir", target.to_str().unwrap()]));
    assert!(e.contains("already exists and is not empty"), "{e}");
    let e = failure(&sluice(&["plugin", "new", "Rate Guard", "--dir", dir.path().join("q").to_str().unwrap()]));
    assert!(e.contains("must be 1-64 characters"), "{e}");
}

#[test]
fn build_explains_a_missing_target_or_crate() {
    let dir = tempfile::tempdir().unwrap();
    let e = failure(&sluice(&["plugin", "build", "--path", dir.path().to_str().unwrap()]));
    assert!(e.contains("no Cargo.toml"), "{e}");

    let target = dir.path().join("p");
    success(&sluice(&["plugin", "new", "p", "--dir", target.to_str().unwrap(), "--sdk-path", &sdk()]));
    // A toolchain without the target: its rustc names a library directory that is not there.
    let rustc = write(dir.path(), "rustc", b"#!/bin/sh\necho /nonexistent/lib/rustlib/wasm32-wasip2/lib\n");
    make_executable(Path::new(&rustc));
    let output = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["plugin", "build", "--path", target.to_str().unwrap()])
        .env("RUSTC", &rustc)
        .output()
        .unwrap();
    let e = failure(&output);
    assert!(
        e.contains("wasm32-wasip2 target is not installed") && e.contains("rustup target add wasm32-wasip2"),
        "{e}"
    );
}

/// `new` → `build` → `test`: the template builds as written and its component passes the host's
/// checks and decides as its samples expect. Builds the SDK and wit-bindgen for wasm32-wasip2
/// once (about a minute on two cores), then reuses the target directory.
#[test]
fn new_build_test_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let krate = dir.path().join("rate-guard");
    success(&sluice(&["plugin", "new", "rate-guard", "--dir", krate.to_str().unwrap(), "--sdk-path", &sdk()]));
    // The plugins workspace's lock file pins the SDK's dependencies to versions already
    // downloaded for the gateway's own build, so the build needs no network.
    std::fs::copy(plugins_dir().join("Cargo.lock"), krate.join("Cargo.lock")).unwrap();
    let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("plugin-round-trip");
    let output = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["plugin", "build", "--path", krate.to_str().unwrap(), "--json", "--", "--offline"])
        .env("CARGO_TARGET_DIR", &target_dir)
        .output()
        .unwrap();
    let built: Value = serde_json::from_str(&success(&output)).unwrap();
    let wasm = built[0]["path"].as_str().unwrap().to_owned();
    assert!(wasm.ends_with("wasm32-wasip2/release/rate_guard.wasm"), "{built}");
    assert!(built[0]["bytes"].as_u64().unwrap() > 1000);

    let out = success(&sluice(&[
        "plugin",
        "test",
        &wasm,
        "--request",
        krate.join("requests.json").to_str().unwrap(),
        "--manifest",
        krate.join("plugin.toml").to_str().unwrap(),
        "--iterations",
        "10",
    ]));
    assert!(out.contains("[1] within the limit") && out.contains(" µs  continue"), "{out}");
    assert!(out.contains("deny 400: max_tokens 9000 is above this gateway's limit of 4096"), "{out}");
}

fn plugins_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../plugins").canonicalize().unwrap()
}

fn sdk() -> String {
    plugins_dir().join("sdk").display().to_string()
}

#[cfg(unix)]
fn make_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[cfg(not(unix))]
fn make_executable(_path: &Path) {}
