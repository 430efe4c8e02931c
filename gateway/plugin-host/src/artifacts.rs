//! A content-addressed cache of precompiled components, so a restart deserializes a plugin in
//! about a millisecond instead of compiling it again.
//!
//! The key is the SHA-256 of the component's bytes and of the engine's compatibility hash
//! (wasmtime version, target, and every setting that affects code generation): a different
//! engine never reads another's artifact. Files are written to a temporary name and renamed,
//! so a reader never sees half an artifact.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Where precompiled artifacts live; `None` compiles in memory every time.
#[derive(Debug, Clone, Default)]
pub struct ArtifactCache {
    dir: Option<PathBuf>,
}

/// Feeds `Hash` output into SHA-256, so the engine's compatibility hash is stable across
/// processes.
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        0
    }
}

/// Where a component came from: compiled now, or read from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provenance {
    Compiled,
    Cached,
}

impl ArtifactCache {
    pub fn new(dir: Option<PathBuf>) -> Self {
        ArtifactCache { dir }
    }

    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The cache key of `bytes` for `engine`.
    pub fn key(engine: &Engine, bytes: &[u8]) -> String {
        let mut hasher = Sha256Hasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_hash = hasher.0.finalize();
        format!("{}-{}", hex::encode(Sha256::digest(bytes)), &hex::encode(engine_hash)[..16])
    }

    /// The compiled component for `bytes`: from the cache when present and readable, otherwise
    /// compiled (and stored, when there is a cache directory). Cache trouble is logged, never
    /// fatal.
    pub fn load(&self, engine: &Engine, bytes: &[u8]) -> Result<(Component, Provenance), wasmtime::Error> {
        let Some(dir) = &self.dir else {
            return Ok((Component::new(engine, bytes)?, Provenance::Compiled));
        };
        let path = dir.join(format!("{}.cwasm", Self::key(engine, bytes)));
        if path.is_file() {
            match deserialize(engine, &path) {
                Ok(component) => return Ok((component, Provenance::Cached)),
                Err(e) => tracing::warn!(path = %path.display(), error = %e, "ignoring unreadable plugin artifact"),
            }
        }
        let artifact = engine.precompile_component(bytes)?;
        if let Err(e) = store(dir, &path, &artifact) {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot store plugin artifact");
        }
        Ok((deserialize_fresh(engine, &artifact)?, Provenance::Compiled))
    }
}

#[expect(
    unsafe_code,
    reason = "the artifact was produced a moment ago by `Engine::precompile_component` on this engine"
)]
fn deserialize_fresh(engine: &Engine, artifact: &[u8]) -> Result<Component, wasmtime::Error> {
    // SAFETY: `artifact` comes straight from `precompile_component` on `engine`.
    unsafe { Component::deserialize(engine, artifact) }
}

#[expect(
    unsafe_code,
    reason = "wasmtime trusts precompiled artifacts; ours are written only by this process into a \
              directory the operator configures, under a name that binds the source hash and the \
              engine's compatibility hash, and wasmtime checks the engine compatibility header"
)]
fn deserialize(engine: &Engine, path: &Path) -> Result<Component, wasmtime::Error> {
    // SAFETY: see the `expect` reason above: the file is an artifact this cache produced with
    // `Engine::precompile_component` for an engine with the same compatibility hash.
    unsafe { Component::deserialize_file(engine, path) }
}

fn store(dir: &Path, path: &Path, artifact: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, artifact)?;
    std::fs::rename(&tmp, path)
}
