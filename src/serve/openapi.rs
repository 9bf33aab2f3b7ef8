//! `GET /v1/openapi.json`: the OpenAPI 3.1 description of the HTTP API, generated at compile time from the
//! handlers' `#[utoipa::path]` annotations and the answer types, so it cannot drift from the code silently (a test
//! checks it lists exactly the routes of [`super::auth::ROUTE_ACCESS`]).

use super::{admin, format, ApplianceStatus, CycleSummary, ErrorBody, ErrorDetail, PairStatus, PairWait, QueryRequest};
use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// The API description.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "ccmart",
        description = "Contact-center reporting appliance: read-only SQL over an Info Mart-style star schema, saved \
                       reports, Parquet export, status and disaster-recovery operations. Every call except /healthz, \
                       / and this document needs `Authorization: Bearer <token>` once tokens are configured; roles \
                       reader, operator, peer. Prometheus metrics are served separately (appliance.metrics_listen, \
                       GET /metrics)."
    ),
    paths(
        super::healthz,
        super::status,
        super::tables,
        super::query,
        super::reports,
        super::run_report,
        super::export,
        super::digest,
        super::digest_rows,
        admin::change_source,
        admin::request_maintenance,
        admin::promote,
        admin::demote,
        admin::fence,
        super::replication::manifest,
        super::replication::file,
        openapi_json,
        super::page::status_page,
    ),
    components(schemas(
        ErrorBody,
        ErrorDetail,
        QueryRequest,
        format::QueryAnswer,
        ApplianceStatus,
        PairStatus,
        PairWait,
        CycleSummary,
        crate::extract::IdbHealth,
        admin::SourceChange,
    )),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "query", description = "SQL, tables and export"),
        (name = "reports", description = "Saved, parameterised reports"),
        (name = "operations", description = "Health, status and disaster recovery"),
        (name = "replication", description = "Comparing sites"),
    )
)]
pub struct ApiDoc;

/// Declares the bearer-token scheme every secured operation refers to.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("ccm_<hex>").build()),
        );
    }
}

/// This document.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "operations", security(()),
    responses((status = 200, description = "OpenAPI 3.1 description of this API", content_type = "application/json")))]
pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
