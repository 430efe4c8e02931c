//! Checking an uploaded component before it is stored (the admin API's plugin upload): it is
//! loaded exactly as a binding would load it — the same engine, the contract's imports, linked,
//! its hooks' shapes checked — with every capability granted, and what it exports and imports is
//! reported as its manifest. A binding's own grants are checked again when it is loaded.
//!
//! Given the gateway's artifact cache, the compiled artifact stays there, so activating the
//! version later does not compile it again.

use crate::artifacts::ArtifactCache;
use crate::capability::{Capabilities, Capability};
use crate::engine::PluginEngine;
use crate::error::PluginError;
use crate::loader::{Contract, Hook, PluginVersion};

/// What a component offers and needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The contract it was built against.
    pub contract: Contract,
    /// The hooks it exports, in contract order (`on-request`, `route`, …).
    pub hooks: Vec<Hook>,
    /// The host capabilities it imports; a binding must grant all of them.
    pub capabilities: Vec<Capability>,
    /// WASI interfaces its standard library imports; linked to functions that trap.
    pub wasi_imports: Vec<String>,
}

impl Manifest {
    /// `{"contract", "hooks", "capabilities", "wasi_imports"}`, as stored beside the version.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "contract": self.contract.name(),
            "hooks": self.hooks.iter().map(|h| h.name()).collect::<Vec<_>>(),
            "capabilities": self.capabilities.iter().map(|c| c.name()).collect::<Vec<_>>(),
            "wasi_imports": self.wasi_imports,
        })
    }
}

/// Compiles and checks `bytes` against the contract; `name` labels errors.
pub fn inspect(
    engine: &PluginEngine,
    artifacts: &ArtifactCache,
    name: &str,
    bytes: &[u8],
) -> Result<Manifest, PluginError> {
    let version = PluginVersion::load(engine, artifacts, name, bytes, Capabilities::all(), &[])?;
    let hooks = Hook::ALL.into_iter().filter(|&h| version.exports(h)).collect();
    let mut capabilities = Vec::new();
    let mut wasi_imports = Vec::new();
    let component_type = version.pre.component().component_type();
    for (import, _) in component_type.imports(engine.engine()) {
        if import.starts_with("wasi:") {
            wasi_imports.push(import.to_owned());
            continue;
        }
        // The loader accepted every other import as `sluice:policy/<interface>@<version>`.
        let interface = import.rsplit_once('/').map_or(import, |(_, rest)| rest);
        let interface = interface.split_once('@').map_or(interface, |(i, _)| i);
        if let Some(capability) = Capability::parse(interface) {
            capabilities.push(capability);
        }
    }
    capabilities.sort_by_key(|c| Capability::ALL.iter().position(|x| x == c));
    capabilities.dedup();
    wasi_imports.sort();
    Ok(Manifest { contract: version.contract, hooks, capabilities, wasi_imports })
}

#[cfg(all(test, feature = "test-util"))]
mod tests {
    use super::*;
    use crate::engine::EngineSettings;

    #[expect(clippy::unwrap_used, reason = "test helper")]
    fn engine() -> PluginEngine {
        PluginEngine::new(EngineSettings { max_instances: 4, ..EngineSettings::default() }).unwrap()
    }

    #[test]
    fn reports_the_test_guests_hooks_and_capabilities() {
        let manifest = inspect(&engine(), &ArtifactCache::default(), "guest", crate::testing::TEST_GUEST).unwrap();
        assert_eq!(manifest.hooks, Hook::ALL.to_vec());
        assert!(manifest.capabilities.contains(&Capability::Log), "{manifest:?}");
        let json = manifest.to_json();
        assert_eq!(json["contract"], crate::CONTRACT);
        assert_eq!(json["hooks"][0], "on-request");
    }

    #[test]
    fn reports_the_contract_a_component_was_built_against() {
        let manifest = inspect(&engine(), &ArtifactCache::default(), "old", crate::testing::TEST_V0_1_GUEST).unwrap();
        assert_eq!(manifest.contract, Contract::V0_1);
        assert_eq!(manifest.to_json()["contract"], "sluice:policy@0.1.0");
        assert_eq!(manifest.hooks, vec![Hook::OnRequest, Hook::Route]);
        assert_eq!(manifest.capabilities, vec![Capability::Log, Capability::Counters, Capability::Config]);
    }

    #[test]
    fn the_router_exports_route() {
        let manifest = inspect(&engine(), &ArtifactCache::default(), "router", crate::builtin::ROUTER).unwrap();
        assert_eq!(manifest.hooks, vec![Hook::Route]);
    }

    #[test]
    fn refuses_what_is_not_a_component() {
        let e = inspect(&engine(), &ArtifactCache::default(), "junk", b"\0asm\x01\0\0\0").unwrap_err();
        assert_eq!(e.kind(), "compile", "{e}");
        let e = inspect(&engine(), &ArtifactCache::default(), "junk", b"hello").unwrap_err();
        assert_eq!(e.kind(), "compile", "{e}");
    }
}
