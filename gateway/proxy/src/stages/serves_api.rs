//! Whether the model's pool speaks the request's API (the pool's `apis`). The gateway does not
//! translate between APIs: a request for one the workers are not declared to speak is refused
//! before any worker sees it, rather than answered with whatever 404 the worker would give.

use sluice_metrics::Api;

use crate::error::GatewayError;
use crate::upstream::Pool;

pub fn run(pool: &Pool, api: Api, model: &str) -> Result<(), GatewayError> {
    if pool.apis.speaks(api.label()) {
        return Ok(());
    }
    Err(GatewayError::ApiNotServed { model: model.chars().take(256).collect(), path: api.path() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_api_label_is_a_pool_api_name() {
        // `speaks` is asked by label: a label that is not one of the names would refuse all.
        for api in Api::ALL {
            assert!(sluice_config::WorkerApis::NAMES.contains(&api.label()), "{api:?}");
        }
    }
}
