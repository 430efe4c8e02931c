//! KV cache events, shaped after vLLM's (`vllm/distributed/kv_events.py`): a block stored in the
//! prefix cache, blocks evicted from it, the whole cache cleared. The engine records them as
//! they happen; a driver takes them once per step and publishes them in batches.

use serde::Serialize;

use super::prefix_cache::BlockHash;

/// Where the blocks live. The simulator only models GPU memory.
const MEDIUM_GPU: &str = "GPU";

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type")]
pub enum KvCacheEvent {
    /// Full blocks became findable in the prefix cache. `block_hashes` is a chain: each block's
    /// parent is the one before it, the first one's is `parent_block_hash` (`None` at the start
    /// of a prompt). `token_ids` holds every token of those blocks in order.
    BlockStored {
        #[serde(serialize_with = "hashes")]
        block_hashes: Vec<BlockHash>,
        #[serde(serialize_with = "opt_hash")]
        parent_block_hash: Option<BlockHash>,
        token_ids: Vec<u32>,
        block_size: u32,
        lora_id: Option<u32>,
        medium: &'static str,
    },
    /// Blocks evicted from the prefix cache (their memory was reallocated).
    BlockRemoved {
        #[serde(serialize_with = "hashes")]
        block_hashes: Vec<BlockHash>,
        medium: &'static str,
    },
    /// Everything is gone (the worker started, or its cache was reset).
    AllBlocksCleared,
}

impl KvCacheEvent {
    pub(super) fn stored(parent: Option<BlockHash>, hash: BlockHash, tokens: &[u32], block_size: u32) -> Self {
        KvCacheEvent::BlockStored {
            block_hashes: vec![hash],
            parent_block_hash: parent,
            token_ids: tokens.to_vec(),
            block_size,
            lora_id: None,
            medium: MEDIUM_GPU,
        }
    }

    pub(super) fn removed(hash: BlockHash) -> Self {
        KvCacheEvent::BlockRemoved { block_hashes: vec![hash], medium: MEDIUM_GPU }
    }
}

/// Appends to `events`, folding into the last event where vLLM would have sent one: a stored
/// block continuing the last stored chain, or another eviction after an eviction.
pub(super) fn push(events: &mut Vec<KvCacheEvent>, event: KvCacheEvent) {
    match (events.last_mut(), event) {
        (
            Some(KvCacheEvent::BlockStored { block_hashes, token_ids, .. }),
            KvCacheEvent::BlockStored { block_hashes: new, parent_block_hash: Some(parent), token_ids: t, .. },
        ) if block_hashes.last() == Some(&parent) => {
            block_hashes.extend(new);
            token_ids.extend(t);
        }
        (
            Some(KvCacheEvent::BlockRemoved { block_hashes, .. }),
            KvCacheEvent::BlockRemoved { block_hashes: new, .. },
        ) => {
            block_hashes.extend(new);
        }
        (_, event) => events.push(event),
    }
}

fn hashes<S: serde::Serializer>(v: &[BlockHash], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(|h| h.0))
}

fn opt_hash<S: serde::Serializer>(v: &Option<BlockHash>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(h) => s.serialize_some(&h.0),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_fold_into_one_stored_event_and_serialize_like_vllm() {
        let (a, b, c) = (BlockHash(1), BlockHash(2), BlockHash(3));
        let mut events = Vec::new();
        push(&mut events, KvCacheEvent::stored(None, a, &[1, 2], 2));
        push(&mut events, KvCacheEvent::stored(Some(a), b, &[3, 4], 2));
        push(&mut events, KvCacheEvent::stored(Some(a), c, &[5, 6], 2)); // a sibling, not a continuation
        push(&mut events, KvCacheEvent::removed(a));
        push(&mut events, KvCacheEvent::removed(b));
        assert_eq!(events.len(), 3);
        let json = serde_json::to_value(&events).unwrap();
        assert_eq!(
            json[0],
            serde_json::json!({"type": "BlockStored", "block_hashes": [1, 2], "parent_block_hash": null,
                "token_ids": [1, 2, 3, 4], "block_size": 2, "lora_id": null, "medium": "GPU"})
        );
        assert_eq!(json[1]["parent_block_hash"], 1);
        assert_eq!(json[2], serde_json::json!({"type": "BlockRemoved", "block_hashes": [1, 2], "medium": "GPU"}));
        assert_eq!(serde_json::to_value(KvCacheEvent::AllBlocksCleared).unwrap()["type"], "AllBlocksCleared");
    }
}
