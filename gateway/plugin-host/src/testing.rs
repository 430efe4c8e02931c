//! For tests: the purpose-built guests — `plugins/test-guest`, which exports every hook, imports
//! every capability, and misbehaves on request (see its crate docs for the modes), and the
//! narrower ones below — and the example plugins.

/// The test guest component.
pub const TEST_GUEST: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/test_guest.wasm"));

/// The guest of the I/O capabilities (`plugins/test-net-guest`): its on-request hook sends an
/// outbound HTTP request or embeds the prompt, as its binding's config says. It imports `http`
/// and `embeddings`, so the host calls it asynchronously.
pub const TEST_NET_GUEST: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/test_net_guest.wasm"));

/// A guest the host must refuse (`plugins/test-chunk-net-guest`): it exports
/// on-response-chunk, which runs inside the stream, and imports `http`, which waits.
pub const TEST_CHUNK_NET_GUEST: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/test_chunk_net_guest.wasm"));

/// A guest built against the frozen `sluice:policy@0.1.0` (`plugins/test-v0-1-guest`, bindings
/// from `plugins/wit-0.1.0/`), standing for a plugin never rebuilt: it exports on-request and
/// route and imports `log`, `counters` and `config` (see its crate docs for what it answers).
pub const TEST_V0_1_GUEST: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/test_v0_1_guest.wasm"));

/// The example plugins of `plugins/examples/`, as built for `wasm32-wasip2`.
pub mod examples {
    /// `plugins/examples/model-alias`.
    pub const MODEL_ALIAS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/model_alias.wasm"));
    /// `plugins/examples/deny-list`.
    pub const DENY_LIST: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/deny_list.wasm"));
    /// `plugins/examples/tenant-tagger`.
    pub const TENANT_TAGGER: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/tenant_tagger.wasm"));
    /// `plugins/examples/model-mask`.
    pub const MODEL_MASK: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/model_mask.wasm"));

    /// The example's crate directory (its `plugin.toml` manifest and `requests.json` samples).
    pub fn dir(name: &str) -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../plugins/examples").join(name)
    }
}

/// `component` with a custom section appended: the same behaviour under a different hash, for
/// hot-swap tests that need two versions.
pub fn variant(component: &[u8], tag: &str) -> Vec<u8> {
    let name = b"sluice-test-variant";
    let mut payload = Vec::new();
    leb128(&mut payload, name.len() as u64);
    payload.extend_from_slice(name);
    payload.extend_from_slice(tag.as_bytes());
    let mut out = component.to_vec();
    out.push(0); // custom section id
    leb128(&mut out, payload.len() as u64);
    out.extend_from_slice(&payload);
    out
}

fn leb128(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}
