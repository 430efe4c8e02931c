//! The gateway's transport for the plugins' network capabilities ([`PluginIo`]): outbound HTTP
//! with a client of its own (the allow-list was checked by the host), and embeddings from the
//! pool serving the model, through that pool's pooled connections.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::{Bytes, BytesMut};
use http::{Method, Request, header};
use http_body::Body;
use http_body_util::{BodyExt, Full};
use sluice_config::UpstreamConfig;
use sluice_metrics::Api;
use sluice_plugin_host::{IoFuture, PluginIo};

use crate::upstream::{HttpClient, Upstreams, outbound_client};

/// The largest embeddings response read for a plugin.
const MAX_EMBEDDINGS_RESPONSE: usize = 8 << 20;

pub struct GatewayIo {
    /// For `http`: its own connections, so a plugin's outbound calls never take an upstream
    /// worker's pooled connection.
    outbound: HttpClient,
    upstreams: Arc<ArcSwap<Upstreams>>,
}

impl std::fmt::Debug for GatewayIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayIo").finish_non_exhaustive()
    }
}

impl GatewayIo {
    pub fn new(upstreams: Arc<ArcSwap<Upstreams>>) -> Self {
        GatewayIo { outbound: outbound_client(&UpstreamConfig::default()), upstreams }
    }
}

impl PluginIo for GatewayIo {
    fn send(&self, request: Request<Bytes>, timeout: Duration, max_body: usize) -> IoFuture<http::Response<Bytes>> {
        let client = self.outbound.clone();
        Box::pin(async move {
            let request = request.map(Full::new);
            let exchange = async {
                let response = client.request(request).await.map_err(|e| format!("request failed: {e}"))?;
                let (parts, body) = response.into_parts();
                let body = read_capped(body, max_body).await?;
                Ok(http::Response::from_parts(parts, body))
            };
            tokio::time::timeout(timeout, exchange).await.map_err(|_| format!("timed out after {timeout:?}"))?
        })
    }

    fn embed(&self, model: String, input: String, timeout: Duration) -> IoFuture<Vec<f32>> {
        let upstreams = self.upstreams.load_full();
        Box::pin(async move {
            let pool = upstreams.pool_for(&model).ok_or_else(|| format!("no pool serves model {model:?}"))?;
            let (_, endpoint) = pool.pick(&[]).ok_or_else(|| format!("no healthy endpoint serves model {model:?}"))?;
            let endpoint = Arc::clone(endpoint);
            let _in_flight = endpoint.begin();
            let body = serde_json::json!({ "model": model, "input": input }).to_string();
            let request = Request::builder()
                .method(Method::POST)
                .uri(endpoint.uri(Api::Embeddings).clone())
                .header(header::CONTENT_TYPE, "application/json")
                .body(Bytes::from(body))
                .map_err(|e| format!("building the embeddings request: {e}"))?;
            let client = pool.client.clone();
            let exchange = async {
                let response = client
                    .send(endpoint.http2, request)
                    .await
                    .map_err(|e| format!("embeddings request failed: {e}"))?;
                let status = response.status();
                let body = read_capped(response.into_body(), MAX_EMBEDDINGS_RESPONSE).await?;
                if !status.is_success() {
                    return Err(format!("{} answered HTTP {}", endpoint.name, status.as_u16()));
                }
                first_embedding(&body)
            };
            tokio::time::timeout(timeout, exchange).await.map_err(|_| format!("timed out after {timeout:?}"))?
        })
    }
}

async fn read_capped<B>(body: B, max: usize) -> Result<Bytes, String>
where
    B: Body<Data = Bytes>,
    B::Error: std::fmt::Display,
{
    let mut body = std::pin::pin!(body);
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("response body broke: {e}"))?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > max {
                return Err(format!("response body over the {max}-byte limit"));
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

/// `data[0].embedding` of an OpenAI embeddings response.
fn first_embedding(body: &[u8]) -> Result<Vec<f32>, String> {
    let response: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("not an OpenAI embeddings response: {e}"))?;
    let values = response
        .get("data")
        .and_then(|d| d.get(0))
        .and_then(|item| item.get("embedding"))
        .and_then(|e| e.as_array())
        .ok_or_else(|| "the response holds no embedding".to_owned())?;
    // Embeddings travel as JSON numbers; f32 is what models produce and plugins receive.
    values
        .iter()
        .map(|v| v.as_f64().map(|x| x as f32).ok_or_else(|| "an embedding value is not a number".to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_first_embedding() {
        let body = br#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.5,-1.0]}],"model":"m"}"#;
        assert_eq!(first_embedding(body).unwrap(), vec![0.5, -1.0]);
        assert!(first_embedding(br#"{"data":[]}"#).unwrap_err().contains("no embedding"));
        assert!(first_embedding(b"nope").unwrap_err().contains("not an OpenAI"));
        assert!(first_embedding(br#"{"data":[{"embedding":["x"]}]}"#).unwrap_err().contains("not a number"));
    }
}
