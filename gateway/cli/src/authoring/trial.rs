//! `sluice plugin test`: the component loaded by the gateway's plugin host with the gateway's
//! checks (the contract's imports and exports, the binding's grants), its hooks run against
//! each sample in the order the gateway runs them, then timed over many calls.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use sluice_plugin_host::types::{RequestDecision, ResponseChunk};
use sluice_plugin_host::{
    Binding, BindingSpec, Capability, EngineSettings, FailurePolicy, Hook, HostSettings, PluginError, PluginHost,
    PluginSource,
};
use tracing::instrument::WithSubscriber;

use super::TestArgs;
use super::report::{self, Call, Loaded, SampleRun, Timing};
use super::samples::{self, Sample};

pub async fn run(args: &TestArgs, json: bool) -> anyhow::Result<()> {
    let bytes: Arc<[u8]> =
        std::fs::read(&args.file).map(Arc::from).with_context(|| format!("cannot read {}", args.file.display()))?;
    let samples = samples::load(&args.request)?;
    let (mut spec, grants_from) = match &args.manifest {
        Some(path) => (manifest_spec(path)?, format!("from {}", path.display())),
        None => (BindingSpec::new(default_name(&args.file), PluginSource::Bytes(Arc::clone(&bytes))), String::new()),
    };
    spec.source = PluginSource::Bytes(Arc::clone(&bytes));
    if let Some(path) = &args.config {
        spec.config_json = config_json(path)?;
    }

    // Compiled once: `inspect` leaves the artifact in this cache and `load` reads it back.
    let cache = tempfile::tempdir().context("cannot create a temporary directory")?;
    let settings = HostSettings {
        engine: EngineSettings {
            max_instances: 16,
            max_memory_bytes: spec.limits.memory_bytes.max(EngineSettings::default().max_memory_bytes),
            ..EngineSettings::default()
        },
        cache_dir: Some(cache.path().to_owned()),
        ..HostSettings::default()
    };
    let host = PluginHost::new(settings, &prometheus::Registry::new())?;
    let started = Instant::now();
    let manifest = host.inspect(&spec.name, &bytes).map_err(|e| load_error(&args.file, &bytes, &e))?;
    let compile = started.elapsed();
    let grants_from = if args.manifest.is_none() {
        // Without a manifest, grant exactly what it imports: the list to copy into one.
        spec.capabilities = manifest.capabilities.iter().copied().collect();
        "everything it imports (no --manifest)".to_owned()
    } else {
        grants_from
    };
    let granted: Vec<Capability> = Capability::ALL.into_iter().filter(|&c| spec.capabilities.has(c)).collect();
    let binding = host.load(spec).map_err(|e| load_error(&args.file, &bytes, &e))?;

    let loaded = Loaded {
        file: args.file.display().to_string(),
        size: bytes.len(),
        version: binding.version.version.to_string(),
        contract: manifest.contract,
        hooks: manifest.hooks.clone(),
        imports: manifest.capabilities.clone(),
        granted,
        grants_from,
        wasi_imports: manifest.wasi_imports.clone(),
        compile,
    };
    let mut runs: Vec<SampleRun> = Vec::with_capacity(samples.len());
    for sample in &samples {
        runs.push(run_sample(&binding, sample).await);
    }
    let timings = if args.iterations > 0 { time_hooks(&binding, &samples, args.iterations).await } else { Vec::new() };
    report::print(&loaded, &runs, &timings, args.iterations, json)?;

    let failed = runs.iter().flat_map(|r| &r.calls).filter(|c| c.outcome.is_err()).count();
    if failed > 0 {
        bail!("{failed} hook call(s) failed");
    }
    Ok(())
}

/// The binding a `plugin.toml` describes, converted exactly as the gateway converts its
/// `[[plugins]]` entries.
fn manifest_spec(path: &Path) -> anyhow::Result<BindingSpec> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let config = sluice_config::Config::from_toml(&text, &[], &|_| None)
        .with_context(|| format!("{} is not a valid [[plugins]] manifest", path.display()))?;
    match config.plugins.as_slice() {
        [plugin] => Ok(sluice_proxy::plugins::spec(plugin)),
        other => bail!("{} must hold exactly one [[plugins]] entry (it has {})", path.display(), other.len()),
    }
}

/// A binding name (a metric label in the gateway) from the file name.
fn default_name(file: &Path) -> String {
    let stem = file.file_stem().map(|s| s.to_string_lossy().to_lowercase()).unwrap_or_default();
    let name: String =
        stem.chars().map(|c| if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' { c } else { '-' }).collect();
    if name.is_empty() { "plugin".to_owned() } else { name }
}

fn config_json(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))?;
    if !value.is_object() {
        bail!("{}: a binding's config is a JSON object", path.display());
    }
    Ok(value.to_string())
}

/// The host's load error, with what to do about it.
fn load_error(file: &Path, bytes: &[u8], error: &PluginError) -> anyhow::Error {
    let hint = match error {
        PluginError::Compile { .. } if !bytes.starts_with(b"\0asm") => {
            "this is not a WebAssembly file; build the plugin with `sluice plugin build`"
        }
        PluginError::Compile { .. } if bytes.get(4..8) == Some(&[1, 0, 0, 0]) => {
            "this is a core WebAssembly module, not a component: build it for wasm32-wasip2 (`sluice plugin build`)"
        }
        PluginError::Compile { .. } => "the file is damaged or not a component this gateway's wasmtime can read",
        PluginError::Incompatible { .. } => {
            "build the plugin with sluice-sdk (plugins/sdk), which targets sluice:policy@0.2.0 (the gateway also runs \
             components built against 0.1.0) and exports the hooks named in export_plugin!"
        }
        PluginError::NotGranted { .. } => "grant the capability in the manifest's `capabilities`, or stop using it",
        PluginError::MissingExport { .. } => "export the hook with export_plugin!, or bind it under another name",
        _ => "",
    };
    let hint = if hint.is_empty() { String::new() } else { format!("\nhint: {hint}") };
    anyhow::anyhow!("cannot load {}: {error}{hint}", file.display())
}

/// Each exported hook once, in the gateway's order: a denial, a local response or a fail-closed
/// failure ends the request before routing, and only `on-response-done` still runs.
async fn run_sample(binding: &Binding, sample: &Sample) -> SampleRun {
    let mut calls = Vec::new();
    let mut info = sample.info.clone();
    let mut answered_locally = None;
    if binding.exports(Hook::OnRequest) {
        let started = Instant::now();
        // A slot of its own, so that a cache policy's `use-cache` works as behind the gateway.
        let cache = sluice_plugin_host::CacheSlot::new();
        let result = binding.on_request(&info, &sample.headers, &sample.body, None, Some(&cache)).await;
        let took = started.elapsed();
        if result.is_err() {
            answered_locally = refused_on_failure(binding);
        }
        if let Ok(Some(decision)) = &result {
            match decision {
                RequestDecision::ContinueWith(changes) => {
                    if let Some(model) = &changes.model {
                        info.model.clone_from(model);
                    }
                }
                RequestDecision::Deny(denial) => answered_locally = Some(denial.status),
                RequestDecision::Respond(response) => answered_locally = Some(response.status),
                RequestDecision::Continue => {}
            }
        }
        calls.push(Call::new(Hook::OnRequest, result.map(|d| d.map(report::Decision::Request)), took));
    }
    if answered_locally.is_none() && binding.exports(Hook::Route) {
        let mut route = sample.route.clone();
        route.model.clone_from(&info.model);
        let started = Instant::now();
        let result = binding.route(&info.tenant, &route, &sample.candidates).await;
        if result.is_err() {
            answered_locally = refused_on_failure(binding);
        }
        calls.push(Call::new(Hook::Route, result.map(|d| d.map(report::Decision::Route)), started.elapsed()));
    }
    if answered_locally.is_none() && binding.exports(Hook::OnResponseHeaders) {
        let started = Instant::now();
        let result = binding.on_response_headers(&info, sample.response_status, &sample.response_headers, None).await;
        let took = started.elapsed();
        calls.push(Call::new(Hook::OnResponseHeaders, result.map(|d| d.map(report::Decision::Response)), took));
    }
    if answered_locally.is_none()
        && binding.exports(Hook::OnResponseChunk)
        && (200..300).contains(&sample.response_status)
    {
        let stream = info.summary.stream;
        for (index, data) in (0u32..).zip(&sample.response_chunks) {
            let chunk = ResponseChunk { stream, index, data: data.clone() };
            let started = Instant::now();
            let result = binding.on_response_chunk(&info, &chunk);
            let took = started.elapsed();
            calls.push(Call::new(Hook::OnResponseChunk, result.map(|d| d.map(report::Decision::Chunk)), took));
        }
    }
    if binding.exports(Hook::OnResponseDone) {
        let status = answered_locally.unwrap_or(sample.response_status);
        let done = sample.done(status, answered_locally.is_none());
        let started = Instant::now();
        let result = binding.on_response_done(&info, &done, None).await;
        let took = started.elapsed();
        calls.push(Call::new(Hook::OnResponseDone, result.map(|_| Some(report::Decision::Done)), took));
    }
    SampleRun { label: sample.label.clone(), info: sample.info.clone(), calls }
}

/// A failed call refuses the request with 503 when the binding fails closed, as in the gateway.
fn refused_on_failure(binding: &Binding) -> Option<u16> {
    match binding.failure {
        FailurePolicy::Closed => Some(503),
        FailurePolicy::Open => None,
    }
}

/// `iterations` more calls of each exported hook per sample, on the warm binding. The plugin's
/// own log lines are left out (they were shown with the decisions); failures, timeouts
/// included, are counted.
async fn time_hooks(binding: &Binding, samples: &[Sample], iterations: u32) -> Vec<Timing> {
    let quiet = tracing::subscriber::NoSubscriber::default();
    async {
        let mut timings = Vec::new();
        for hook in Hook::ALL.into_iter().filter(|&hook| binding.exports(hook)) {
            timings.push(time_hook(binding, samples, iterations, hook).await);
        }
        timings
    }
    .with_subscriber(quiet)
    .await
}

async fn time_hook(binding: &Binding, samples: &[Sample], iterations: u32, hook: Hook) -> Timing {
    let mut times = Vec::with_capacity(samples.len() * iterations as usize);
    let mut failed = 0;
    for sample in samples {
        let done = sample.done(sample.response_status, true);
        for _ in 0..iterations {
            let started = Instant::now();
            let ok = match hook {
                Hook::OnRequest => {
                    binding.on_request(&sample.info, &sample.headers, &sample.body, None, None).await.is_ok()
                }
                Hook::Route => binding.route(&sample.info.tenant, &sample.route, &sample.candidates).await.is_ok(),
                Hook::OnResponseHeaders => {
                    let headers = &sample.response_headers;
                    binding.on_response_headers(&sample.info, sample.response_status, headers, None).await.is_ok()
                }
                Hook::OnResponseChunk => {
                    let data = sample.response_chunks.first().cloned().unwrap_or_default();
                    let chunk = ResponseChunk { stream: sample.info.summary.stream, index: 0, data };
                    binding.on_response_chunk(&sample.info, &chunk).is_ok()
                }
                Hook::OnResponseDone => binding.on_response_done(&sample.info, &done, None).await.is_ok(),
            };
            if ok {
                times.push(started.elapsed());
            } else {
                failed += 1;
            }
        }
    }
    Timing::of(hook, times, failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_files() {
        assert_eq!(default_name(Path::new("/x/sluice_plugin_deny_list.wasm")), "sluice-plugin-deny-list");
        assert_eq!(default_name(Path::new("/")), "plugin");
    }
}
