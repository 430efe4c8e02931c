//! The OpenAPI document: the handlers' `#[utoipa::path]` annotations plus what every data route
//! shares (the bearer token, and the 400/401/500/503 answers any of them may give).

use utoipa::OpenApi;
use utoipa::openapi::path::{HttpMethod, Operation, OperationBuilder, PathItem};
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{Content, ObjectBuilder, Ref, RefOr};

use crate::OPENAPI_PATH;
use crate::error::ErrorBody;

const SCHEME: &str = "admin_token";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Sluice admin API",
        description = "Tenants, API keys, limits, SLOs, pools and endpoints, plugins and bindings, usage and the \
                       audit log of a Sluice gateway, and reloading its config file. Every route but this document needs \
                       `Authorization: Bearer <admin token>`; errors are `{\"error\":{\"message\",\"type\",\"param\",\"code\"}}`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    components(schemas(ErrorBody)),
    tags(
        (name = "tenants", description = "Tenants, their limits and SLOs"),
        (name = "keys", description = "API keys: the secret is shown once, at creation"),
        (name = "pools", description = "Pools of inference workers and their endpoints"),
        (name = "plugins", description = "Policy plugins (WebAssembly components), their versions and bindings"),
        (name = "usage", description = "Usage aggregated per minute, tenant and model"),
        (name = "audit", description = "Every admin change: who, what, when"),
        (name = "operations", description = "Running the gateway: reloading its config file, purging its response cache, tickets for the live stream"),
        (name = "meta", description = "This document"),
    )
)]
struct ApiDoc;

pub(crate) fn document(routes: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi().merge_from(routes);
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        SCHEME,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some("The admin token: `[admin] token` in the config or SLUICE_ADMIN_TOKEN"))
                .build(),
        ),
    );
    for item in doc.paths.paths.values_mut() {
        for operation in operations(item) {
            operation.security = Some(vec![SecurityRequirement::new(SCHEME, Vec::<String>::new())]);
            let responses = &mut operation.responses.responses;
            for (status, description) in [
                (
                    "400",
                    "The request does not parse: not JSON, the wrong shape or content type, a bad path or query value",
                ),
                ("401", "Missing or wrong admin token"),
                (
                    "429",
                    "Too many wrong admin tokens from this client address: it is locked out, whatever it presents, \
                     for `[admin] lockout` (`Retry-After` says how long is left)",
                ),
                ("500", "Internal error (details in the gateway's log)"),
                ("503", "No admin token is configured, or the database is unavailable"),
            ] {
                responses.entry(status.to_owned()).or_insert_with(|| error_response(description));
            }
        }
    }
    let document = ResponseBuilder::new()
        .description("The OpenAPI 3 document")
        .content("application/json", Content::new(Some(ObjectBuilder::new().build())))
        .build();
    let openapi_op = OperationBuilder::new()
        .tag("meta")
        .operation_id(Some("openapi"))
        .summary(Some("This OpenAPI document (no authentication)"))
        .response("200", document)
        .security(SecurityRequirement::default())
        .build();
    doc.paths.paths.insert(OPENAPI_PATH.to_owned(), PathItem::new(HttpMethod::Get, openapi_op));
    doc
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch].into_iter().flatten()
}

fn error_response(description: &str) -> RefOr<Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content("application/json", Content::new(Some(Ref::from_schema_name("ErrorBody"))))
            .build(),
    )
}
