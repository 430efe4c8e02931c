//! `sluice bench` through the built binary: a short run against its worker and gateways, checked
//! through the JSON it writes (the figures themselves are the machine's), and `sluice bench-role`,
//! which runs each of them in a process of its own.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "test code")]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};

use serde_json::Value;

fn bench(extra: &[&str]) -> (String, Value) {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
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
    (stdout, value)
}

#[test]
fn direct_and_gateway_are_measured_in_alternating_slices() {
    let (table, rows) = bench(&[]);
    assert!(table.contains("alternating in 2 slices"), "{table}");
    assert!(table.contains("processes of their own"), "{table}");
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
fn the_roles_can_run_in_the_bench_process() {
    for (roles, said) in [("runtimes", "runtimes of their own"), ("shared", "on one runtime")] {
        let (table, rows) = bench(&["--roles", roles]);
        assert!(table.contains(said), "{table}");
        for row in rows.as_array().unwrap() {
            assert!(row["gateway"]["requests"].as_u64().unwrap() > 0, "{row}");
            assert_eq!(row["gateway"]["errors"], 0, "{row}");
        }
    }
}

#[test]
fn a_role_process_reports_its_address_and_stops_when_stdin_closes() {
    let mut role = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["bench-role", "sim", "--stream-tokens", "4"])
        .env("SLUICE_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(role.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr: SocketAddr = line.trim().parse().unwrap();

    let mut conn = TcpStream::connect(addr).unwrap();
    conn.write_all(b"GET /v1/models HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("bench-model"), "{response}");

    drop(role.stdin.take());
    let status = role.wait().unwrap();
    assert!(status.success(), "{status}");
}

#[test]
fn a_gateway_role_with_a_bad_config_fails_clearly() {
    let output = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["bench-role", "gateway", "--config", "[server]\nlisten = 7"])
        .env("SLUICE_LOG", "warn")
        .stdin(Stdio::piped())
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(output.stdout.is_empty(), "no address is reported");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("the bench config is invalid"), "{stderr}");
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
