//! The API's OpenAPI 3.1 description, generated from the handlers' own annotations and types
//! and served at `/v1/openapi.json`. Every operation answers errors in one shape
//! (`{"error": "…"}`), described once as each operation's default response.

use super::{
    access, edge, fleet, handover, images, instances, lifecycle, mail, moves, preview, recover,
};
use axum::Json;
use utoipa::{
    Modify, OpenApi,
    openapi::{
        OpenApi as Doc, RefOr, Response,
        security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
    },
};

/// Every error the API answers: a 4xx names the reason, a 5xx says only "internal error".
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: String,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "berth", description = "berth's management API: instances, domains, \
        certificates, fleet upgrades, backups (long ones run as operations: `202` with the \
        operation, followed at `/v1/operations/{id}`), jobs, tokens and the audit log. Over TCP every \
        call needs `Authorization: Bearer <token>`; the Unix socket is the operator."),
    paths(
        super::agent_show, super::reconcile_run, super::capacity, super::top, serve,
        instances::index, instances::create, instances::show, instances::delete,
        instances::set_state, instances::logs, lifecycle::restart, lifecycle::set_parameters,
        moves::move_tenant, preview::diff, preview::add, preview::rm, preview::set_parameters,
        edge::domain_add, edge::domain_verify, edge::domain_index, edge::cert_index,
        edge::cert_renew, edge::ca_show,
        images::index, images::prune,
        fleet::upgrade_start, fleet::upgrade_preview, fleet::upgrade_show, fleet::upgrade_control, fleet::rollback,
        fleet::backup_index, fleet::backup_create, fleet::backup_verify, fleet::restore,
        recover::recover, fleet::jobs, mail::show, mail::dns,
        handover::prepare, handover::hold, handover::forward, handover::release,
        handover::receive,
        access::token_index, access::token_create, access::token_revoke, access::audit_index,
        super::operations::show,
    ),
    components(schemas(ErrorBody)),
    modifiers(&Common)
)]
struct ApiDoc;

/// Bearer auth on every operation, and the error shape as every operation's default answer.
struct Common;

impl Modify for Common {
    fn modify(&self, doc: &mut Doc) {
        let bearer = HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build();
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(bearer));
        doc.security = Some(vec![utoipa::openapi::security::SecurityRequirement::new(
            "bearer",
            Vec::<String>::new(),
        )]);
        let error = Response::builder()
            .description("An error: the reason in `error`")
            .content(
                "application/json",
                utoipa::openapi::content::Content::new(Some(RefOr::Ref(
                    utoipa::openapi::Ref::from_schema_name("ErrorBody"),
                ))),
            )
            .build();
        for item in doc.paths.paths.values_mut() {
            let ops = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
            ];
            for op in ops.into_iter().flatten() {
                op.operation_id = None;
                op.responses
                    .responses
                    .insert("default".into(), RefOr::T(error.clone()));
            }
        }
    }
}

/// The description as a document. Each operation's id is its audit action (`backup.create`),
/// so the log and the description name calls alike.
pub fn document() -> Doc {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").into();
    for route in crate::api::auth::policy::ROUTES {
        let Some(item) = doc.paths.paths.get_mut(route.path) else {
            continue;
        };
        let op = match route.method.as_str() {
            "GET" => &mut item.get,
            "POST" => &mut item.post,
            "PUT" => &mut item.put,
            "DELETE" => &mut item.delete,
            _ => continue,
        };
        if let Some(op) = op {
            op.operation_id = Some(route.action.to_string());
        }
    }
    doc
}

#[utoipa::path(get, path = "/v1/openapi.json", tag = "host",
    responses((status = 200, description = "This description", body = serde_json::Value)))]
pub async fn serve() -> Json<Doc> {
    Json(document())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::auth::policy::ROUTES;

    #[test]
    fn the_description_lists_exactly_the_routes_the_policy_table_lists() {
        let doc = serde_json::to_value(document()).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
        let mut described = vec![];
        for (path, item) in doc["paths"].as_object().unwrap() {
            for m in ["get", "post", "put", "delete", "patch"] {
                if let Some(op) = item.get(m) {
                    described.push(format!("{} {path}", m.to_uppercase()));
                    assert!(op["operationId"].as_str().is_some_and(|i| i.contains('.')));
                    let default = &op["responses"]["default"]["content"]["application/json"];
                    assert!(default["schema"]["$ref"].is_string(), "{m} {path}");
                }
            }
        }
        let mut routes: Vec<String> = ROUTES
            .iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect();
        described.sort();
        routes.sort();
        assert_eq!(described, routes);
    }
}
