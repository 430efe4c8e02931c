//! From component bytes to a checked, ready-to-instantiate plugin version: compiled (or read
//! from the artifact cache), its imports checked against the contract and the binding's grants,
//! linked once (`InstancePre`), and its hook exports looked up once.

use std::sync::Arc;

use sha2::{Digest, Sha256};
use wasmtime::Store;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, HasSelf, Instance, InstancePre, Linker};

use crate::artifacts::{ArtifactCache, Provenance};
use crate::bindings::{
    self, asynchronous, on_request, on_response_chunk, on_response_done, on_response_headers, route,
};
use crate::capability::{Capabilities, Capability};
use crate::engine::PluginEngine;
use crate::error::PluginError;
use crate::state::HostState;

/// The contract version this host speaks.
pub const CONTRACT: &str = "sluice:policy@0.1.0";
const PACKAGE: &str = "sluice:policy/";
const VERSION: &str = "0.1.0";

/// A hook of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hook {
    OnRequest,
    Route,
    OnResponseHeaders,
    OnResponseChunk,
    OnResponseDone,
}

impl Hook {
    pub const COUNT: usize = 5;
    pub const ALL: [Hook; Hook::COUNT] =
        [Hook::OnRequest, Hook::Route, Hook::OnResponseHeaders, Hook::OnResponseChunk, Hook::OnResponseDone];

    /// The hook's position in [`Hook::ALL`], for per-hook tables.
    pub fn index(self) -> usize {
        match self {
            Hook::OnRequest => 0,
            Hook::Route => 1,
            Hook::OnResponseHeaders => 2,
            Hook::OnResponseChunk => 3,
            Hook::OnResponseDone => 4,
        }
    }

    /// The metric label and the WIT interface name.
    pub fn name(self) -> &'static str {
        match self {
            Hook::OnRequest => "on-request",
            Hook::Route => "route",
            Hook::OnResponseHeaders => "on-response-headers",
            Hook::OnResponseChunk => "on-response-chunk",
            Hook::OnResponseDone => "on-response-done",
        }
    }

    /// Whether the hook runs inside the response stream's poll, where nothing may wait: a
    /// plugin exporting it cannot import a capability served asynchronously.
    pub fn runs_in_stream(self) -> bool {
        self == Hook::OnResponseChunk
    }

    /// The exported instance's full name, e.g. `sluice:policy/route@0.1.0`.
    pub fn export_name(self) -> String {
        format!("{PACKAGE}{}@{VERSION}", self.name())
    }
}

/// One hook's export, looked up once: called directly, or with `call_async` when the component
/// imports a capability the host serves asynchronously (see [`crate::bindings`]).
#[derive(Clone)]
pub(crate) enum Export<S, A> {
    Sync(S),
    Async(A),
}

impl<S, A> Export<S, A> {
    fn find(
        pre: &InstancePre<HostState>,
        calls_async: bool,
        sync: impl FnOnce(&InstancePre<HostState>) -> wasmtime::Result<S>,
        asynchronous: impl FnOnce(&InstancePre<HostState>) -> wasmtime::Result<A>,
    ) -> wasmtime::Result<Self> {
        if calls_async { asynchronous(pre).map(Export::Async) } else { sync(pre).map(Export::Sync) }
    }

    /// The hook's typed functions in `instance`, from `cache` or looked up (and type-checked)
    /// and cached there: the lookup costs more than a small hook's own work.
    pub(crate) fn guest<G: Clone, H: Clone>(
        &self,
        cache: &mut Option<Export<G, H>>,
        store: &mut Store<HostState>,
        instance: &Instance,
        load_sync: fn(&S, &mut Store<HostState>, &Instance) -> wasmtime::Result<G>,
        load_async: fn(&A, &mut Store<HostState>, &Instance) -> wasmtime::Result<H>,
    ) -> wasmtime::Result<Export<G, H>> {
        if let Some(guest) = cache {
            return Ok(guest.clone());
        }
        let guest = match self {
            Export::Sync(indices) => Export::Sync(load_sync(indices, store, instance)?),
            Export::Async(indices) => Export::Async(load_async(indices, store, instance)?),
        };
        *cache = Some(guest.clone());
        Ok(guest)
    }
}

/// The hooks a component exports, looked up once at load.
pub(crate) struct Hooks {
    pub on_request: Option<Export<on_request::GuestIndices, asynchronous::on_request::GuestIndices>>,
    pub route: Option<Export<route::GuestIndices, asynchronous::route::GuestIndices>>,
    pub on_response_headers:
        Option<Export<on_response_headers::GuestIndices, asynchronous::on_response_headers::GuestIndices>>,
    /// Never `Async`: the loader refuses a component that exports it and calls asynchronously.
    pub on_response_chunk: Option<on_response_chunk::GuestIndices>,
    pub on_response_done: Option<Export<on_response_done::GuestIndices, asynchronous::on_response_done::GuestIndices>>,
}

impl Hooks {
    pub fn has(&self, hook: Hook) -> bool {
        match hook {
            Hook::OnRequest => self.on_request.is_some(),
            Hook::Route => self.route.is_some(),
            Hook::OnResponseHeaders => self.on_response_headers.is_some(),
            Hook::OnResponseChunk => self.on_response_chunk.is_some(),
            Hook::OnResponseDone => self.on_response_done.is_some(),
        }
    }
}

/// One compiled, checked version of a plugin.
pub struct PluginVersion {
    pub name: Arc<str>,
    /// `sha256:` and the first 12 hex digits of the component's SHA-256.
    pub version: Arc<str>,
    pub sha256: String,
    pub provenance: Provenance,
    pub(crate) pre: InstancePre<HostState>,
    pub(crate) hooks: Hooks,
    /// Whether it imports a capability served asynchronously, so its calls run on a fiber.
    pub calls_async: bool,
}

impl std::fmt::Debug for PluginVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginVersion").field("name", &self.name).field("version", &self.version).finish()
    }
}

impl PluginVersion {
    pub fn exports(&self, hook: Hook) -> bool {
        self.hooks.has(hook)
    }

    /// Compiles and checks `bytes`. `grants` are the capabilities its binding allows;
    /// `required` the hooks the binding needs it to export.
    pub fn load(
        engine: &PluginEngine,
        artifacts: &ArtifactCache,
        name: &str,
        bytes: &[u8],
        grants: Capabilities,
        required: &[Hook],
    ) -> Result<PluginVersion, PluginError> {
        let sha256 = hex::encode(Sha256::digest(bytes));
        let version = format!("sha256:{}", &sha256[..12]);
        let incompatible =
            |reason: String| PluginError::Incompatible { plugin: name.to_owned(), version: version.clone(), reason };
        let (component, provenance) = artifacts.load(engine.engine(), bytes).map_err(|e| PluginError::Compile {
            plugin: name.to_owned(),
            version: version.clone(),
            reason: format!("{e:#}"),
        })?;

        let imported = check_imports(engine, &component, grants).map_err(|problem| match problem {
            ImportProblem::Foreign(reason) => incompatible(reason),
            ImportProblem::NotGranted { import, capability } => PluginError::NotGranted {
                plugin: name.to_owned(),
                version: version.clone(),
                import,
                capability: capability.name().to_owned(),
            },
        })?;

        let mut linker: Linker<HostState> = Linker::new(engine.engine());
        add_host_to_linker(&mut linker).map_err(|e| incompatible(format!("{e:#}")))?;
        // WASI imports the guest's standard library may carry (it prints panics to stderr,
        // say) are linked to functions that trap: policy plugins get no WASI at all.
        linker.define_unknown_imports_as_traps(&component).map_err(|e| incompatible(format!("{e:#}")))?;
        let pre = linker.instantiate_pre(&component).map_err(|e| incompatible(format!("{e:#}")))?;

        let waits_on = imported.into_iter().filter(|c| c.is_async()).map(Capability::name).collect::<Vec<_>>();
        let calls_async = !waits_on.is_empty();
        let present = |hook: Hook| component.get_export_index(None, hook.export_name().as_str()).is_some();
        if let Some(hook) = Hook::ALL.into_iter().find(|&h| h.runs_in_stream() && present(h))
            && calls_async
        {
            return Err(incompatible(format!(
                "it exports {} and imports {}: that hook runs inside the response stream, where \
                 nothing may wait on I/O (split the plugin in two)",
                hook.export_name(),
                waits_on.join(" and ")
            )));
        }
        let shape =
            |hook: Hook, e: wasmtime::Error| incompatible(format!("{} has the wrong shape: {e:#}", hook.export_name()));
        let hooks = Hooks {
            on_request: present(Hook::OnRequest)
                .then(|| {
                    Export::find(
                        &pre,
                        calls_async,
                        on_request::GuestIndices::new,
                        asynchronous::on_request::GuestIndices::new,
                    )
                    .map_err(|e| shape(Hook::OnRequest, e))
                })
                .transpose()?,
            route: present(Hook::Route)
                .then(|| {
                    Export::find(&pre, calls_async, route::GuestIndices::new, asynchronous::route::GuestIndices::new)
                        .map_err(|e| shape(Hook::Route, e))
                })
                .transpose()?,
            on_response_headers: present(Hook::OnResponseHeaders)
                .then(|| {
                    Export::find(
                        &pre,
                        calls_async,
                        on_response_headers::GuestIndices::new,
                        asynchronous::on_response_headers::GuestIndices::new,
                    )
                    .map_err(|e| shape(Hook::OnResponseHeaders, e))
                })
                .transpose()?,
            on_response_chunk: present(Hook::OnResponseChunk)
                .then(|| on_response_chunk::GuestIndices::new(&pre).map_err(|e| shape(Hook::OnResponseChunk, e)))
                .transpose()?,
            on_response_done: present(Hook::OnResponseDone)
                .then(|| {
                    Export::find(
                        &pre,
                        calls_async,
                        on_response_done::GuestIndices::new,
                        asynchronous::on_response_done::GuestIndices::new,
                    )
                    .map_err(|e| shape(Hook::OnResponseDone, e))
                })
                .transpose()?,
        };
        if !Hook::ALL.iter().any(|&h| hooks.has(h)) {
            let all: Vec<String> = Hook::ALL.iter().map(|h| h.export_name()).collect();
            return Err(incompatible(format!("it exports none of the hooks ({})", all.join(", "))));
        }
        if let Some(missing) = required.iter().find(|&&h| !hooks.has(h)) {
            return Err(PluginError::MissingExport { plugin: name.to_owned(), version, export: missing.export_name() });
        }
        Ok(PluginVersion {
            name: Arc::from(name),
            version: Arc::from(version),
            sha256,
            provenance,
            pre,
            hooks,
            calls_async,
        })
    }
}

enum ImportProblem {
    Foreign(String),
    NotGranted { import: String, capability: Capability },
}

/// Every import must be a `sluice:policy@0.1.0` interface the binding grants (or `types`), or a
/// WASI interface (stubbed to trap). Returns the capabilities imported.
fn check_imports(
    engine: &PluginEngine,
    component: &Component,
    grants: Capabilities,
) -> Result<Vec<Capability>, ImportProblem> {
    let mut imported = Vec::new();
    let ty = component.component_type();
    for (import, item) in ty.imports(engine.engine()) {
        if import.starts_with("wasi:") {
            continue;
        }
        let Some(rest) = import.strip_prefix(PACKAGE) else {
            return Err(ImportProblem::Foreign(format!("it imports {import}, which is not part of {CONTRACT}")));
        };
        let (interface, version) = rest.split_once('@').unwrap_or((rest, ""));
        if version != VERSION {
            return Err(ImportProblem::Foreign(format!(
                "it imports {import}; this gateway provides {CONTRACT} (rebuild the plugin against it)"
            )));
        }
        if !matches!(item.ty, ComponentItem::ComponentInstance(_)) {
            return Err(ImportProblem::Foreign(format!("it imports {import} as something other than an interface")));
        }
        if interface == "types" {
            continue;
        }
        match Capability::parse(interface) {
            Some(capability) if grants.has(capability) => imported.push(capability),
            Some(capability) => return Err(ImportProblem::NotGranted { import: import.to_owned(), capability }),
            None => {
                return Err(ImportProblem::Foreign(format!("it imports {import}, which {CONTRACT} does not define")));
            }
        }
    }
    Ok(imported)
}

fn add_host_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    use bindings::sluice::policy::{
        cache, clock, config, counters, embeddings, http, limits, log, metrics, response_cache, types,
    };
    types::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
    log::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
    clock::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
    counters::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
    cache::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
    response_cache::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
    limits::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
    config::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
    metrics::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
    embeddings::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
    http::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
    Ok(())
}
