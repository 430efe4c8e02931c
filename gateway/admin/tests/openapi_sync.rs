//! The committed OpenAPI document (`docs/admin-api.openapi.json`) is the one the code generates.

use std::path::PathBuf;

#[test]
fn committed_openapi_document_matches_the_code() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/admin-api.openapi.json");
    let generated = sluice_admin::openapi_json();
    if std::env::var_os("SLUICE_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is out of date with the admin API's code; regenerate it with\n\n    \
         SLUICE_BLESS=1 cargo test -p sluice-admin --test openapi_sync\n\nand commit the result",
        path.display()
    );
}

#[test]
fn every_data_route_requires_the_token_and_documents_errors() {
    let doc = serde_json::to_value(sluice_admin::openapi()).unwrap();
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 20, "{} paths", paths.len());
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            if path == sluice_admin::OPENAPI_PATH {
                assert_eq!(op["security"], serde_json::json!([{}]));
                continue;
            }
            assert_eq!(op["security"][0]["admin_token"], serde_json::json!([]), "{method} {path}");
            for status in ["400", "401", "500", "503"] {
                assert!(op["responses"][status].is_object(), "{method} {path} lacks {status}");
            }
            assert!(op["operationId"].is_string(), "{method} {path}");
        }
    }
    assert_eq!(doc["components"]["securitySchemes"]["admin_token"]["scheme"], "bearer");
}

/// The document's bounds for stored plugins come from the same constants the handlers check.
#[test]
fn binding_limits_and_grants_match_the_validation() {
    use sluice_store_model::validate::{CAPABILITIES, MAX_BINDING_TIMEOUT_MS, MIN_BINDING_MEMORY_BYTES};
    let doc = serde_json::to_value(sluice_admin::openapi()).unwrap();
    let binding = &doc["components"]["schemas"]["NewBinding"]["properties"];
    assert_eq!(binding["timeout_ms"]["maximum"], serde_json::json!(MAX_BINDING_TIMEOUT_MS), "{binding}");
    assert_eq!(binding["max_memory_bytes"]["minimum"], serde_json::json!(MIN_BINDING_MEMORY_BYTES), "{binding}");
    let grants = &doc["components"]["schemas"]["ActivateBody"]["properties"]["grants"];
    assert_eq!(grants["items"]["enum"], serde_json::json!(CAPABILITIES), "{grants}");
}
