//! `sluice serve --check-config`: good configs pass with a summary, bad ones fail with the
//! field and the reason on stderr and a non-zero exit, never a panic.

use std::process::Output;

use sluice_e2e::{TempDir, bins};

use crate::acceptance::ACCEPTANCE_TOML;

fn check(config: &std::path::Path, env: &[(&str, &str)]) -> Output {
    let mut cmd = bins::sluice();
    cmd.arg("serve").arg("--config").arg(config).arg("--check-config");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap_or_else(|e| panic!("running sluice: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts a clean refusal: exit code 1, every needle on stderr, no panic, nothing on stdout.
fn assert_refused(out: &Output, needles: &[&str]) {
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "expected exit code 1\nstdout: {stdout}\nstderr: {stderr}");
    assert!(!stderr.contains("panicked"), "a bad config must not panic:\n{stderr}");
    assert!(!stdout.contains("config OK"), "{stdout}");
    for needle in needles {
        assert!(stderr.contains(needle), "stderr should mention {needle:?}:\n{stderr}");
    }
}

#[test]
fn accepts_the_acceptance_config_and_summarises_it() {
    let dir = TempDir::new("check-ok");
    let out = check(&dir.write("sluice.toml", ACCEPTANCE_TOML), &[]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "exit {}\nstdout: {stdout}\nstderr: {stderr}", out.status);
    for needle in ["config OK", "127.0.0.1:18080", "127.0.0.1:19090", "pool llama", "2 endpoint(s)", "tenants       1"]
    {
        assert!(stdout.contains(needle), "summary should mention {needle:?}:\n{stdout}");
    }
    assert!(!stdout.contains("sk-acme-0123456789"), "the summary must not print keys:\n{stdout}");
}

#[test]
fn environment_overrides_apply_and_are_validated() {
    let dir = TempDir::new("check-env");
    let config = dir.write("sluice.toml", ACCEPTANCE_TOML);
    let out = check(&config, &[("SLUICE__SERVER__LISTEN", "127.0.0.1:28080")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("127.0.0.1:28080"), "{}", text(&out.stdout));

    let out = check(&config, &[("SLUICE__SERVER__ADMIN_LISTEN", "not-an-address")]);
    assert_refused(&out, &["server.admin_listen", "not-an-address"]);
}

#[test]
fn rejects_broken_configs_naming_the_field() {
    let dir = TempDir::new("check-bad");
    let cases: [(&str, String, &[&str]); 5] = [
        (
            "bad endpoint scheme",
            ACCEPTANCE_TOML.replace("http://127.0.0.1:18002", "ftp://127.0.0.1:18002"),
            &["pools[0].endpoints[1]", "http://"],
        ),
        ("unknown field", ACCEPTANCE_TOML.replace("\nlisten = ", "\nlisten_addr = "), &["listen_addr"]),
        ("short API key", ACCEPTANCE_TOML.replace("sk-acme-0123456789", "sk-1"), &["tenants[0].api_keys[0]"]),
        (
            "model in two pools",
            format!(
                "{ACCEPTANCE_TOML}\n[[pools]]\nname = \"other\"\nmodels = [\"llama-3-8b\"]\n\
                 endpoints = [\"http://127.0.0.1:18003\"]\n"
            ),
            &["pools[1].models[0]", "llama-3-8b"],
        ),
        (
            "unset secret reference",
            ACCEPTANCE_TOML.replace("\"sk-acme-0123456789\"", "\"env:SLUICE_E2E_SURELY_UNSET\""),
            &["tenants[0].api_keys[0]", "SLUICE_E2E_SURELY_UNSET"],
        ),
    ];
    for (name, toml, needles) in cases {
        let path = dir.write(&format!("{}.toml", name.replace(' ', "-")), &toml);
        let out = check(&path, &[]);
        eprintln!("case {name}: {}", text(&out.stderr).trim());
        assert_refused(&out, needles);
    }
}

#[test]
fn a_missing_config_file_is_a_clear_error() {
    let dir = TempDir::new("check-missing");
    let missing = dir.path().join("nope").join("sluice.toml");
    for extra in [&["--check-config"][..], &[]] {
        let out = bins::sluice().arg("serve").arg("--config").arg(&missing).args(extra).output().unwrap();
        assert_refused(&out, &["cannot read config file", &missing.display().to_string()]);
    }
}

/// The configs shipped in deploy/ stay valid as the config format evolves, and their secret
/// references fail loudly when the environment does not provide them.
#[test]
fn deploy_configs_pass_check_config() {
    let deploy = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    for file in ["sluice.compose.toml", "k8s/sluice.toml"] {
        let path = deploy.join(file);
        let env =
            [("SLUICE_ADMIN_TOKEN", "test-admin-token-0123456789abcdef"), ("ACME_API_KEY", "sk-acme-test-0123456789")];
        let out = check(&path, &env);
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert!(out.status.success(), "{file}: exit {}\nstdout: {stdout}\nstderr: {stderr}", out.status);
        for needle in ["config OK", "0.0.0.0:8080", "0.0.0.0:9090", "pool llama", "2 endpoint(s)"] {
            assert!(stdout.contains(needle), "{file}: summary should mention {needle:?}:\n{stdout}");
        }
        let out = check(&path, &[]);
        assert_refused(&out, &["admin.token", "SLUICE_ADMIN_TOKEN"]);
    }
}
