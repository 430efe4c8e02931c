//! `sluice bench` through the built binary: a short run against its in-process worker and
//! gateways, checked through the JSON it writes (the figures themselves are the machine's).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "test code")]

use std::process::Command;

use serde_json::Value;

fn bench(extra: &[&str]) -> (String, Value) {
    let dir = std::env::temp_dir().join(format!("sluice-bench-test-{}-{}", std::process::id(), extra.len()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("bench.json");
    let output = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["bench", "--seconds", "0.4", "--concurrency", "2", "--slices", "2", "--only", "non-streaming"])
        .args(extra)
        .arg("--json")
        .arg(&json)
        .env("SLUICE_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "bench failed: {}\n{stdout}", String::from_utf8_lossy(&output.stderr));
    let value: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    (stdout, value)
}

#[test]
fn direct_and_gateway_are_measured_in_alternating_slices() {
    let (table, rows) = bench(&[]);
    assert!(table.contains("alternating in 2 slices"), "{table}");
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2, "both non-streaming scenarios: {rows:?}");
    for row in rows {
        for side in ["direct", "gateway"] {
            assert!(row[side]["requests"].as_u64().unwrap() > 0, "{row}");
            assert_eq!(row[side]["errors"], 0, "{row}");
        }
        assert!(row.get("baseline").is_none(), "{row}");
    }
}

#[test]
fn the_roles_can_share_the_clients_runtime() {
    let (_, rows) = bench(&["--shared-runtime"]);
    for row in rows.as_array().unwrap() {
        assert!(row["gateway"]["requests"].as_u64().unwrap() > 0, "{row}");
        assert_eq!(row["gateway"]["errors"], 0, "{row}");
    }
}

#[test]
fn a_baseline_gateway_is_measured_beside_the_first() {
    // The baseline runs with no plugin at all; the gateway under test with its defaults.
    let no_plugins = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/bench/no-plugins.toml");
    let (table, rows) = bench(&["--baseline-append", no_plugins]);
    assert!(table.contains("vs baseline"), "{table}");
    assert!(table.lines().any(|l| l.trim_start().starts_with("baseline")), "{table}");
    for row in rows.as_array().unwrap() {
        assert!(row["baseline"]["requests"].as_u64().unwrap() > 0, "{row}");
        assert_eq!(row["baseline"]["errors"], 0, "{row}");
    }
}

#[test]
fn an_unreadable_baseline_is_a_clear_error() {
    let output = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["bench", "--seconds", "0.1", "--baseline-append", "/nonexistent/chain.toml"])
        .env("SLUICE_LOG", "warn")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("/nonexistent/chain.toml"), "{stderr}");
}
