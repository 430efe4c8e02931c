//! A plugin the host must refuse at load: on-response-chunk runs inside the response stream,
//! where nothing may wait, and this plugin imports `http`, which waits on the network.

use sluice_sdk::http::OutboundRequest;
use sluice_sdk::types::{ChunkDecision, RequestInfo, ResponseChunk};
use sluice_sdk::{Plugin, export_plugin, http};

struct ChunkNetGuest;

impl Plugin for ChunkNetGuest {
    fn on_response_chunk(_request: RequestInfo, chunk: ResponseChunk) -> ChunkDecision {
        let request = OutboundRequest {
            method: "POST".to_owned(),
            url: "http://127.0.0.1:9/audit".to_owned(),
            headers: Vec::new(),
            body: chunk.data.into_bytes(),
            timeout_ms: 10,
        };
        match http::send(&request) {
            Ok(_) => ChunkDecision::Forward,
            Err(_) => ChunkDecision::Drop,
        }
    }
}

export_plugin!(ChunkNetGuest => [on_response_chunk]);
