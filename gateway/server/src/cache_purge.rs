//! `POST /admin/api/cache/purge` inside the gateway: the admin API's request, applied to the
//! gateway's response cache.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use http::StatusCode;
use sluice_admin::{ApiError, CachePurge, CachePurgeReport, CachePurgeRequest};
use sluice_proxy::Gateway;
use sluice_proxy::response_cache::key::PurgeScope;

pub struct GatewayCache(pub Arc<Gateway>);

impl CachePurge for GatewayCache {
    fn purge(
        &self,
        request: CachePurgeRequest,
    ) -> Pin<Box<dyn Future<Output = Result<CachePurgeReport, ApiError>> + Send + '_>> {
        Box::pin(async move {
            let cache = &self.0.response_cache;
            let scope = PurgeScope { tenant: request.tenant, model: request.model, key_prefix: request.key_prefix };
            match cache.purge(&scope).await {
                Ok(purged) => {
                    tracing::info!(
                        tenant = scope.tenant.as_deref().unwrap_or("*"),
                        model = scope.model.as_deref().unwrap_or("*"),
                        key_prefix = scope.key_prefix.as_deref().unwrap_or("*"),
                        purged,
                        backend = cache.backend_name(),
                        "response cache purged"
                    );
                    Ok(CachePurgeReport { purged, backend: cache.backend_name().to_owned() })
                }
                Err(error) => {
                    tracing::warn!(%error, "response cache purge failed");
                    Err(ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "cache_unavailable",
                        "the response cache's Redis did not answer; nothing was removed for certain, try again",
                    ))
                }
            }
        })
    }
}
