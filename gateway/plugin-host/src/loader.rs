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
use crate::v0_1;

/// The contract version plugins are built against now.
pub const CONTRACT: &str = "sluice:policy@0.2.0";
const PACKAGE: &str = "sluice:policy/";

/// A version of `sluice:policy` this host runs: the current one, and the versions before it,
/// each frozen, whose components keep running unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Contract {
    /// `plugins/wit/policy.wit`.
    V0_2,
    /// `plugins/wit-0.1.0/policy.wit`.
    V0_1,
}

impl Contract {
    pub const CURRENT: Contract = Contract::V0_2;
    pub const ALL: [Contract; 2] = [Contract::V0_2, Contract::V0_1];

    pub fn version(self) -> &'static str {
        match self {
            Contract::V0_2 => "0.2.0",
            Contract::V0_1 => "0.1.0",
        }
    }

    /// `sluice:policy@<version>`.
    pub fn name(self) -> &'static str {
        match self {
            Contract::V0_2 => "sluice:policy@0.2.0",
            Contract::V0_1 => "sluice:policy@0.1.0",
        }
    }

    fn parse(version: &str) -> Option<Contract> {
        Contract::ALL.into_iter().find(|c| c.version() == version)
    }

    /// What this host runs, for messages: `sluice:policy@0.2.0 (or 0.1.0)`.
    fn supported() -> String {
        let older: Vec<&str> = Contract::ALL[1..].iter().map(|c| c.version()).collect();
        format!("{CONTRACT} (or {})", older.join(", "))
    }
}

/// A hook's export of a component built against the current contract or against 0.1.0.
#[derive(Clone)]
pub(crate) enum Versioned<C, O> {
    Current(C),
    V0_1(O),
}

/// Looks a hook's export up in `pre` with the bindings of the component's contract.
macro_rules! indices {
    ($contract:expr, $current:path, $old:path) => {{
        let contract = $contract;
        move |pre: &InstancePre<HostState>| match contract {
            Contract::V0_2 => <$current>::new(pre).map(Versioned::Current),
            Contract::V0_1 => <$old>::new(pre).map(Versioned::V0_1),
        }
    }};
}

/// `|indices, store, instance|`: loads a hook's typed functions of either contract.
macro_rules! load_versioned {
    () => {
        |i, s, n| match i {
            $crate::loader::Versioned::Current(i) => i.load(s, n).map($crate::loader::Versioned::Current),
            $crate::loader::Versioned::V0_1(i) => i.load(s, n).map($crate::loader::Versioned::V0_1),
        }
    };
}
pub(crate) use load_versioned;

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

    /// The exported instance's full name in the current contract, e.g. `sluice:policy/route@0.2.0`.
    pub fn export_name(self) -> String {
        self.export_name_in(Contract::CURRENT)
    }

    /// The exported instance's full name in `contract`.
    pub fn export_name_in(self, contract: Contract) -> String {
        format!("{PACKAGE}{}@{}", self.name(), contract.version())
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

/// A hook's export: either contract, called either way.
pub(crate) type HookExport<S, A, OS, OA> = Export<Versioned<S, OS>, Versioned<A, OA>>;

/// The hooks a component exports, looked up once at load.
pub(crate) struct Hooks {
    pub on_request: Option<
        HookExport<
            on_request::GuestIndices,
            asynchronous::on_request::GuestIndices,
            v0_1::on_request::GuestIndices,
            v0_1::asynchronous::on_request::GuestIndices,
        >,
    >,
    pub route: Option<
        HookExport<
            route::GuestIndices,
            asynchronous::route::GuestIndices,
            v0_1::route::GuestIndices,
            v0_1::asynchronous::route::GuestIndices,
        >,
    >,
    pub on_response_headers: Option<
        HookExport<
            on_response_headers::GuestIndices,
            asynchronous::on_response_headers::GuestIndices,
            v0_1::on_response_headers::GuestIndices,
            v0_1::asynchronous::on_response_headers::GuestIndices,
        >,
    >,
    /// Never `Async`: the loader refuses a component that exports it and calls asynchronously.
    pub on_response_chunk: Option<Versioned<on_response_chunk::GuestIndices, v0_1::on_response_chunk::GuestIndices>>,
    pub on_response_done: Option<
        HookExport<
            on_response_done::GuestIndices,
            asynchronous::on_response_done::GuestIndices,
            v0_1::on_response_done::GuestIndices,
            v0_1::asynchronous::on_response_done::GuestIndices,
        >,
    >,
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
    /// The contract it was built against.
    pub contract: Contract,
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

        let contract = contract_of(engine, &component).map_err(incompatible)?;
        let imported = check_imports(engine, &component, contract, grants).map_err(|problem| match problem {
            ImportProblem::Foreign(reason) => incompatible(reason),
            ImportProblem::NotGranted { import, capability } => PluginError::NotGranted {
                plugin: name.to_owned(),
                version: version.clone(),
                import,
                capability: capability.name().to_owned(),
            },
        })?;

        let mut linker: Linker<HostState> = Linker::new(engine.engine());
        match contract {
            Contract::V0_2 => add_host_to_linker(&mut linker),
            Contract::V0_1 => v0_1::add_host_to_linker(&mut linker),
        }
        .map_err(|e| incompatible(format!("{e:#}")))?;
        // WASI imports the guest's standard library may carry (it prints panics to stderr,
        // say) are linked to functions that trap: policy plugins get no WASI at all.
        linker.define_unknown_imports_as_traps(&component).map_err(|e| incompatible(format!("{e:#}")))?;
        let pre = linker.instantiate_pre(&component).map_err(|e| incompatible(format!("{e:#}")))?;

        let waits_on = imported.into_iter().filter(|c| c.is_async()).map(Capability::name).collect::<Vec<_>>();
        let calls_async = !waits_on.is_empty();
        let present = |hook: Hook| component.get_export_index(None, hook.export_name_in(contract).as_str()).is_some();
        if let Some(hook) = Hook::ALL.into_iter().find(|&h| h.runs_in_stream() && present(h))
            && calls_async
        {
            return Err(incompatible(format!(
                "it exports {} and imports {}: that hook runs inside the response stream, where \
                 nothing may wait on I/O (split the plugin in two)",
                hook.export_name_in(contract),
                waits_on.join(" and ")
            )));
        }
        let shape = |hook: Hook, e: wasmtime::Error| {
            incompatible(format!("{} has the wrong shape: {e:#}", hook.export_name_in(contract)))
        };
        let hooks = Hooks {
            on_request: present(Hook::OnRequest)
                .then(|| {
                    Export::find(
                        &pre,
                        calls_async,
                        indices!(contract, on_request::GuestIndices, v0_1::on_request::GuestIndices),
                        indices!(
                            contract,
                            asynchronous::on_request::GuestIndices,
                            v0_1::asynchronous::on_request::GuestIndices
                        ),
                    )
                    .map_err(|e| shape(Hook::OnRequest, e))
                })
                .transpose()?,
            route: present(Hook::Route)
                .then(|| {
                    Export::find(
                        &pre,
                        calls_async,
                        indices!(contract, route::GuestIndices, v0_1::route::GuestIndices),
                        indices!(contract, asynchronous::route::GuestIndices, v0_1::asynchronous::route::GuestIndices),
                    )
                    .map_err(|e| shape(Hook::Route, e))
                })
                .transpose()?,
            on_response_headers: present(Hook::OnResponseHeaders)
                .then(|| {
                    Export::find(
                        &pre,
                        calls_async,
                        indices!(contract, on_response_headers::GuestIndices, v0_1::on_response_headers::GuestIndices),
                        indices!(
                            contract,
                            asynchronous::on_response_headers::GuestIndices,
                            v0_1::asynchronous::on_response_headers::GuestIndices
                        ),
                    )
                    .map_err(|e| shape(Hook::OnResponseHeaders, e))
                })
                .transpose()?,
            on_response_chunk: present(Hook::OnResponseChunk)
                .then(|| {
                    indices!(contract, on_response_chunk::GuestIndices, v0_1::on_response_chunk::GuestIndices)(&pre)
                        .map_err(|e| shape(Hook::OnResponseChunk, e))
                })
                .transpose()?,
            on_response_done: present(Hook::OnResponseDone)
                .then(|| {
                    Export::find(
                        &pre,
                        calls_async,
                        indices!(contract, on_response_done::GuestIndices, v0_1::on_response_done::GuestIndices),
                        indices!(
                            contract,
                            asynchronous::on_response_done::GuestIndices,
                            v0_1::asynchronous::on_response_done::GuestIndices
                        ),
                    )
                    .map_err(|e| shape(Hook::OnResponseDone, e))
                })
                .transpose()?,
        };
        if !Hook::ALL.iter().any(|&h| hooks.has(h)) {
            let all: Vec<String> = Hook::ALL.iter().map(|h| h.export_name_in(contract)).collect();
            return Err(incompatible(format!("it exports none of the hooks ({})", all.join(", "))));
        }
        if let Some(missing) = required.iter().find(|&&h| !hooks.has(h)) {
            let export = missing.export_name_in(contract);
            return Err(PluginError::MissingExport { plugin: name.to_owned(), version, export });
        }
        Ok(PluginVersion {
            name: Arc::from(name),
            version: Arc::from(version),
            sha256,
            provenance,
            pre,
            hooks,
            calls_async,
            contract,
        })
    }
}

enum ImportProblem {
    Foreign(String),
    NotGranted { import: String, capability: Capability },
}

/// The contract a component was built against, from the versions of the `sluice:policy`
/// interfaces it imports and exports: one version, and one this host runs.
fn contract_of(engine: &PluginEngine, component: &Component) -> Result<Contract, String> {
    let ty = component.component_type();
    let names = ty.imports(engine.engine()).map(|(n, _)| n).chain(ty.exports(engine.engine()).map(|(n, _)| n));
    let mut found: Option<(Contract, &str)> = None;
    for name in names {
        let Some(rest) = name.strip_prefix(PACKAGE) else { continue };
        let version = rest.split_once('@').map_or("", |(_, v)| v);
        let Some(contract) = Contract::parse(version) else {
            return Err(format!(
                "it uses {name}; this gateway runs {} (rebuild the plugin against {CONTRACT})",
                Contract::supported()
            ));
        };
        match found {
            Some((first, first_name)) if first != contract => {
                return Err(format!("it mixes contract versions: {first_name} and {name}"));
            }
            Some(_) => {}
            None => found = Some((contract, name)),
        }
    }
    Ok(found.map_or(Contract::CURRENT, |(c, _)| c))
}

/// Every import must be an interface of `contract` the binding grants (or `types`), or a WASI
/// interface (stubbed to trap). Returns the capabilities imported.
fn check_imports(
    engine: &PluginEngine,
    component: &Component,
    contract: Contract,
    grants: Capabilities,
) -> Result<Vec<Capability>, ImportProblem> {
    let mut imported = Vec::new();
    let ty = component.component_type();
    for (import, item) in ty.imports(engine.engine()) {
        if import.starts_with("wasi:") {
            continue;
        }
        let Some(rest) = import.strip_prefix(PACKAGE) else {
            return Err(ImportProblem::Foreign(format!(
                "it imports {import}, which is not part of {}",
                contract.name()
            )));
        };
        let interface = rest.split_once('@').map_or(rest, |(i, _)| i);
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
                return Err(ImportProblem::Foreign(format!(
                    "it imports {import}, which {} does not define",
                    contract.name()
                )));
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
