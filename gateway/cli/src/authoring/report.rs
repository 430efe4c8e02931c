//! What `sluice plugin test` prints: the component, each sample's decisions with their times,
//! and the timing table; or all of it as JSON with `--json`.

use std::io::Write;
use std::time::Duration;

use serde_json::{Value, json};
use sluice_plugin_host::types::{ChunkDecision, RequestDecision, RequestInfo, ResponseChanges, RouteDecision};
use sluice_plugin_host::{Capability, Contract, Hook, PluginError};

/// The loaded component.
pub struct Loaded {
    pub file: String,
    pub size: usize,
    pub version: String,
    /// The contract the component was built against.
    pub contract: Contract,
    pub hooks: Vec<Hook>,
    pub imports: Vec<Capability>,
    pub granted: Vec<Capability>,
    pub grants_from: String,
    pub wasi_imports: Vec<String>,
    pub compile: Duration,
}

/// What a hook returned.
pub enum Decision {
    Request(RequestDecision),
    Route(RouteDecision),
    Response(ResponseChanges),
    Chunk(ChunkDecision),
    Done,
}

/// One hook call.
pub struct Call {
    pub hook: Hook,
    /// `None`: the plugin does not export the hook (never printed: such hooks are not called).
    pub outcome: Result<Option<Decision>, PluginError>,
    pub took: Duration,
}

impl Call {
    pub fn new(hook: Hook, outcome: Result<Option<Decision>, PluginError>, took: Duration) -> Call {
        Call { hook, outcome, took }
    }
}

pub struct SampleRun {
    pub label: String,
    pub info: RequestInfo,
    pub calls: Vec<Call>,
}

/// Warm calls of one hook over every sample.
pub struct Timing {
    pub hook: Hook,
    pub calls: usize,
    /// Calls that failed (trap, timeout, limit); not in the percentiles.
    pub failed: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Timing {
    pub fn of(hook: Hook, mut times: Vec<Duration>, failed: usize) -> Timing {
        times.sort_unstable();
        let at = |q: f64| {
            let i = ((times.len() as f64 * q).ceil() as usize).clamp(1, times.len().max(1)) - 1;
            times.get(i).copied().unwrap_or_default()
        };
        Timing {
            hook,
            calls: times.len(),
            failed,
            p50: at(0.50),
            p99: at(0.99),
            max: times.last().copied().unwrap_or_default(),
        }
    }
}

fn micros(d: Duration) -> f64 {
    (d.as_nanos() as f64 / 100.0).round() / 10.0
}

fn names<T: std::fmt::Display>(items: &[T]) -> String {
    if items.is_empty() { "none".to_owned() } else { items.iter().map(T::to_string).collect::<Vec<_>>().join(", ") }
}

/// A one-line description and its JSON form.
fn describe(decision: &Decision) -> (String, Value) {
    match decision {
        Decision::Request(RequestDecision::Continue) => ("continue".into(), json!({"continue": {}})),
        Decision::Request(RequestDecision::ContinueWith(c)) => {
            let mut parts = Vec::new();
            if let Some(model) = &c.model {
                parts.push(format!("model → {model}"));
            }
            parts.extend(c.set_headers.iter().map(|h| format!("set {}: {}", h.name, h.value)));
            parts.extend(c.remove_headers.iter().map(|h| format!("remove {h}")));
            if let Some(body) = &c.body {
                parts.push(format!("new body ({} bytes)", body.len()));
            }
            let headers: Vec<Value> = c.set_headers.iter().map(|h| json!([h.name, h.value])).collect();
            let value = json!({"continue_with": {
                "model": c.model, "set_headers": headers, "remove_headers": c.remove_headers,
                "body": c.body.as_ref().map(|b| String::from_utf8_lossy(b).into_owned()),
            }});
            (format!("continue with {}", parts.join(", ")), value)
        }
        Decision::Request(RequestDecision::Respond(r)) => {
            let body = String::from_utf8_lossy(&r.body);
            let short: String = body.chars().take(120).collect();
            let headers: Vec<Value> = r.headers.iter().map(|h| json!([h.name, h.value])).collect();
            (
                format!("respond {}: {short}{}", r.status, if short.len() < body.len() { "…" } else { "" }),
                json!({"respond": {"status": r.status, "headers": headers, "body": body}}),
            )
        }
        Decision::Request(RequestDecision::Deny(d)) => {
            (format!("deny {}: {}", d.status, d.message), json!({"deny": {"status": d.status, "message": d.message}}))
        }
        Decision::Route(RouteDecision::Route(id)) => (format!("route to candidate {id}"), json!({"route": id})),
        Decision::Route(RouteDecision::Abstain) => ("abstain (the host chooses)".into(), json!({"abstain": {}})),
        Decision::Response(c) => {
            let mut parts: Vec<String> = c.set_headers.iter().map(|h| format!("set {}: {}", h.name, h.value)).collect();
            parts.extend(c.remove_headers.iter().map(|h| format!("remove {h}")));
            let text = if parts.is_empty() { "no changes".to_owned() } else { parts.join(", ") };
            let headers: Vec<Value> = c.set_headers.iter().map(|h| json!([h.name, h.value])).collect();
            (text, json!({"set_headers": headers, "remove_headers": c.remove_headers}))
        }
        Decision::Chunk(ChunkDecision::Forward) => ("forward".into(), json!({"forward": {}})),
        Decision::Chunk(ChunkDecision::Drop) => ("drop".into(), json!({"drop": {}})),
        Decision::Chunk(ChunkDecision::Replace(text)) => {
            let short: String = text.chars().take(120).collect();
            let more = if short.len() < text.len() { "…" } else { "" };
            (format!("replace with {short}{more}"), json!({"replace": text}))
        }
        Decision::Done => ("done".into(), json!({"done": {}})),
    }
}

fn outcome(call: &Call) -> (String, Value) {
    match &call.outcome {
        Ok(Some(decision)) => describe(decision),
        Ok(None) => ("not exported".into(), Value::Null),
        Err(e) => {
            (format!("FAILED ({}): {e}", e.kind()), json!({"error": {"kind": e.kind(), "message": e.to_string()}}))
        }
    }
}

fn api(info: &RequestInfo) -> &'static str {
    use sluice_plugin_host::types::Api;
    match info.api {
        Api::ChatCompletions => "chat-completions",
        Api::Completions => "completions",
        Api::Embeddings => "embeddings",
        Api::Responses => "responses",
        Api::Messages => "messages",
    }
}

pub fn print(
    loaded: &Loaded,
    runs: &[SampleRun],
    timings: &[Timing],
    iterations: u32,
    json: bool,
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        let value = json!({
            "component": {
                "file": loaded.file, "bytes": loaded.size, "version": loaded.version,
                "contract": loaded.contract.name(),
                "hooks": loaded.hooks.iter().map(|h| h.name()).collect::<Vec<_>>(),
                "imports": loaded.imports.iter().map(|c| c.name()).collect::<Vec<_>>(),
                "granted": loaded.granted.iter().map(|c| c.name()).collect::<Vec<_>>(),
                "wasi_imports": loaded.wasi_imports,
                "compile_ms": loaded.compile.as_secs_f64() * 1000.0,
            },
            "samples": runs.iter().map(|r| json!({
                "name": r.label, "tenant": r.info.tenant, "model": r.info.model, "api": api(&r.info),
                "hooks": r.calls.iter().map(|c| json!({
                    "hook": c.hook.name(), "decision": outcome(c).1, "micros": micros(c.took),
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "timings": timings.iter().map(|t| json!({
                "hook": t.hook.name(), "calls": t.calls, "failed": t.failed,
                "p50_micros": micros(t.p50), "p99_micros": micros(t.p99), "max_micros": micros(t.max),
            })).collect::<Vec<_>>(),
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
        return Ok(());
    }

    let hook_names: Vec<&str> = loaded.hooks.iter().map(|h| h.name()).collect();
    writeln!(out, "component  {} ({:.1} KiB, {})", loaded.file, loaded.size as f64 / 1024.0, loaded.version)?;
    writeln!(out, "contract   {}", loaded.contract.name())?;
    writeln!(out, "exports    {}", names(&hook_names))?;
    writeln!(out, "imports    {}", names(&loaded.imports))?;
    writeln!(out, "granted    {} ({})", names(&loaded.granted), loaded.grants_from)?;
    if !loaded.wasi_imports.is_empty() {
        writeln!(out, "wasi       {} (linked to traps)", loaded.wasi_imports.len())?;
    }
    writeln!(out, "compiled   in {:.1} ms", loaded.compile.as_secs_f64() * 1000.0)?;
    for (i, run) in runs.iter().enumerate() {
        writeln!(out)?;
        writeln!(
            out,
            "[{}] {} ({}, tenant {}, model {})",
            i + 1,
            run.label,
            api(&run.info),
            run.info.tenant,
            run.info.model
        )?;
        for call in &run.calls {
            let (text, _) = outcome(call);
            writeln!(out, "    {:<20} {:>9.1} µs  {text}", call.hook.name(), micros(call.took))?;
        }
    }
    writeln!(out)?;
    writeln!(
        out,
        "The first call of a binding includes instantiating it (and every call with isolation = \"per-request\")."
    )?;
    if !timings.is_empty() {
        writeln!(out, "Warm calls, {iterations} per hook and sample:")?;
        writeln!(
            out,
            "    {:<20} {:>8} {:>10} {:>10} {:>10} {:>8}",
            "hook", "calls", "p50 µs", "p99 µs", "max µs", "failed"
        )?;
        for t in timings {
            writeln!(
                out,
                "    {:<20} {:>8} {:>10.1} {:>10.1} {:>10.1} {:>8}",
                t.hook.name(),
                t.calls,
                micros(t.p50),
                micros(t.p99),
                micros(t.max),
                t.failed
            )?;
        }
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let t = Timing::of(Hook::OnRequest, (1..=100).map(Duration::from_micros).collect(), 0);
        assert_eq!(
            (t.p50, t.p99, t.max),
            (Duration::from_micros(50), Duration::from_micros(99), Duration::from_micros(100))
        );
        let empty = Timing::of(Hook::OnRequest, Vec::new(), 3);
        assert_eq!(empty.calls, 0);
        assert_eq!(micros(Duration::from_nanos(1_250)), 1.3);
    }
}
