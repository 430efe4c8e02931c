//! `POST /v1/embeddings`: deterministic unit vectors in which similar texts are close (hashed
//! n-grams, see `sampling::embedding`), no engine time (pooling requests are short next to
//! generation; modelling them in the batch is left for later).

use std::sync::Arc;

use http::Response;
use hyper::body::Incoming;
use serde_json::json;
use sluice_openai::response::{EmbeddingData, EmbeddingResponse};
use sluice_openai::{EmbeddingRequest, Prompt, Usage};

use super::App;
use super::http::{ApiError, Body, json_response, read_json};
use crate::sampling::{self, EmbeddingInput};
use crate::stats::bump;

const MAX_DIMENSIONS: u32 = 16_384;

pub(crate) async fn embeddings_handler(app: Arc<App>, body: Incoming) -> Result<Response<Body>, ApiError> {
    let req: EmbeddingRequest = read_json(body).await?;
    app.check_model(&req.model)?;
    let faults = app.roll_faults()?;
    // Each input's tokens (for usage) and, when it came as text, the text (for the vector).
    let inputs: Vec<(Vec<u32>, Option<&str>)> = match &req.input {
        Prompt::Text(t) => vec![(app.tokenizer.encode(t), Some(t.as_str()))],
        Prompt::Texts(ts) => ts.iter().map(|t| (app.tokenizer.encode(t), Some(t.as_str()))).collect(),
        Prompt::Tokens(ids) => vec![(ids.clone(), None)],
        Prompt::TokenBatches(b) => b.iter().map(|ids| (ids.clone(), None)).collect(),
    };
    if inputs.is_empty() || inputs.iter().any(|(ids, _)| ids.is_empty()) {
        return Err(ApiError::bad_request("input must not be empty", Some("input")));
    }
    let dim = req.dimensions.unwrap_or(app.config.embedding_dim);
    if dim == 0 || dim > MAX_DIMENSIONS {
        return Err(ApiError::bad_request(
            format!("dimensions must be between 1 and {MAX_DIMENSIONS}"),
            Some("dimensions"),
        ));
    }
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::bad_request(
                format!("unsupported encoding_format `{other}`"),
                Some("encoding_format"),
            ));
        }
    };
    if !faults.stall_first_token.is_zero() {
        tokio::time::sleep(faults.stall_first_token).await;
    }
    let prompt_tokens: usize = inputs.iter().map(|(ids, _)| ids.len()).sum();
    let vectors: Vec<Vec<f32>> = inputs
        .iter()
        .map(|(ids, text)| {
            let input = match text {
                Some(text) => EmbeddingInput::Text(text),
                None => EmbeddingInput::Tokens(ids),
            };
            sampling::embedding(input, dim)
        })
        .collect();
    let usage = Usage::new(prompt_tokens as u64, 0, 0);
    let model = app.model_name(&req.model);
    app.metrics.instant(&model, prompt_tokens as u32, 0, "stop");
    bump(&app.stats.requests_completed, 1);
    bump(&app.stats.prompt_tokens, prompt_tokens as u64);

    if base64 {
        // The OpenAI SDKs ask for base64 by default: little-endian f32s.
        let data: Vec<_> = vectors
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                json!({"object": "embedding", "index": i, "embedding": encode_base64(&bytes)})
            })
            .collect();
        return Ok(json_response(&json!({
            "object": "list", "data": data, "model": req.model, "usage": usage
        })));
    }
    Ok(json_response(&EmbeddingResponse {
        object: "list".to_owned(),
        data: vectors
            .into_iter()
            .enumerate()
            .map(|(i, embedding)| EmbeddingData { object: "embedding".to_owned(), index: i as u32, embedding })
            .collect(),
        model: req.model,
        usage,
    }))
}

fn encode_base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::encode_base64;

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (input, want) in
            [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="), ("foobar", "Zm9vYmFy")]
        {
            assert_eq!(encode_base64(input.as_bytes()), want);
        }
    }
}
