//! `sluice plugin build`: `cargo build --release --target wasm32-wasip2` for a plugin crate, and
//! where the component went. Cargo's own progress and diagnostics go to stderr as usual; the
//! components are taken from its JSON messages, so any target directory or workspace layout
//! works.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

use super::BuildArgs;

const TARGET: &str = "wasm32-wasip2";

pub fn run(args: &BuildArgs, json: bool) -> anyhow::Result<()> {
    let manifest = args.path.join("Cargo.toml");
    if !manifest.is_file() {
        bail!("no Cargo.toml in {}: pass the plugin crate with --path", args.path.display());
    }
    check_target(&args.path)?;
    // `cargo` and `rustc` from PATH (rustup's proxies), so the crate's rust-toolchain file
    // chooses the toolchain for both the check and the build.
    let mut child = Command::new("cargo")
        .args(["build", "--release", "--target", TARGET, "--message-format", "json-render-diagnostics"])
        .arg("--manifest-path")
        .arg(&manifest)
        .args(&args.cargo_args)
        .current_dir(&args.path)
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot run cargo")?;
    let mut components = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines() {
            components.extend(components_in(&line?));
        }
    }
    let status = child.wait().context("waiting for cargo")?;
    if !status.success() {
        bail!("cargo build failed ({status})");
    }
    if components.is_empty() {
        bail!("cargo built no component: is the crate's [lib] crate-type \"cdylib\"?");
    }
    let mut out = std::io::stdout();
    let mut listed = Vec::new();
    for path in components {
        let bytes = std::fs::metadata(&path).with_context(|| format!("cannot read {}", path.display()))?.len();
        if json {
            listed.push(serde_json::json!({ "path": path, "bytes": bytes }));
        } else {
            writeln!(out, "{}  ({:.1} KiB)", path.display(), bytes as f64 / 1024.0)?;
        }
    }
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&listed)?)?;
    }
    Ok(())
}

/// The `.wasm` files of one `compiler-artifact` message.
fn components_in(line: &str) -> Vec<PathBuf> {
    let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else { return Vec::new() };
    if message["reason"] != "compiler-artifact" {
        return Vec::new();
    }
    message["filenames"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f.as_str())
        .filter(|f| f.ends_with(".wasm"))
        .map(PathBuf::from)
        .collect()
}

/// Whether the toolchain that will build `dir` (its rust-toolchain file applies) has the
/// standard library for the target; without it cargo fails with "can't find crate for `core`".
fn check_target(dir: &Path) -> anyhow::Result<()> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let output = Command::new(&rustc)
        .args(["--print", "target-libdir", "--target", TARGET])
        .current_dir(dir)
        .output()
        .with_context(|| format!("cannot run {}", rustc.to_string_lossy()))?;
    let libdir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    let installed = output.status.success()
        && std::fs::read_dir(&libdir).is_ok_and(|mut entries| entries.any(|e| e.is_ok_and(is_std_rlib)));
    if !installed {
        bail!(
            "the {TARGET} target is not installed for the Rust toolchain that builds {}; \
             install it with `rustup target add {TARGET}`",
            dir.display()
        );
    }
    Ok(())
}

fn is_std_rlib(entry: std::fs::DirEntry) -> bool {
    let name = entry.file_name();
    let name = name.to_string_lossy();
    name.starts_with("libstd-") && name.ends_with(".rlib")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_come_from_artifact_messages() {
        let line = r#"{"reason":"compiler-artifact","filenames":["/t/release/deps/x.d","/t/wasm32-wasip2/release/x.wasm","/t/wasm32-wasip2/release/libx.rlib"]}"#;
        assert_eq!(components_in(line), vec![PathBuf::from("/t/wasm32-wasip2/release/x.wasm")]);
        assert!(components_in(r#"{"reason":"build-finished","success":true}"#).is_empty());
        assert!(components_in("not json").is_empty());
    }
}
