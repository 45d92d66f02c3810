//! The OpenAPI 3.1 document, generated from the route table: every route with its declared
//! privilege (`x-zaibei-privilege`), path parameters, and body schemas from the types.

use std::collections::BTreeMap;

use utoipa::openapi::path::{
    HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, PathItem,
};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{ArrayBuilder, Schema};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, PathsBuilder, Ref,
    RefOr, Required, ResponseBuilder, ResponsesBuilder,
};
use zaibei_types::api::ErrorBody;

use crate::routes::{Access, BodySchema, Route};

fn method_of(m: &axum::http::Method) -> HttpMethod {
    match *m {
        axum::http::Method::POST => HttpMethod::Post,
        axum::http::Method::PUT => HttpMethod::Put,
        axum::http::Method::PATCH => HttpMethod::Patch,
        axum::http::Method::DELETE => HttpMethod::Delete,
        axum::http::Method::HEAD => HttpMethod::Head,
        _ => HttpMethod::Get,
    }
}

fn body_ref(body: &BodySchema) -> RefOr<Schema> {
    let r = RefOr::Ref(Ref::from_schema_name(body.name.clone()));
    if body.array {
        RefOr::T(Schema::Array(ArrayBuilder::new().items(r).build()))
    } else {
        r
    }
}

/// The document of `routes`.
pub fn document(routes: &[Route]) -> OpenApi {
    let mut schemas: BTreeMap<String, RefOr<Schema>> = BTreeMap::new();
    let mut collect = |b: &BodySchema| {
        schemas.insert(b.name.clone(), b.schema.clone());
        for (name, s) in &b.refs {
            schemas.insert(name.clone(), s.clone());
        }
    };
    let error = crate::routes::schema::<ErrorBody>();
    collect(&error);
    let mut by_path: BTreeMap<String, Vec<&Route>> = BTreeMap::new();
    for r in routes {
        by_path
            .entry(r.path.replace("{*", "{"))
            .or_default()
            .push(r);
        if let Some(b) = &r.request {
            collect(b);
        }
        if let Some(b) = &r.response {
            collect(b);
        }
    }
    let mut paths = PathsBuilder::new();
    for (path, routes) in by_path {
        for r in routes {
            let mut op = OperationBuilder::new()
                .summary(Some(r.summary))
                .operation_id(Some(format!(
                    "{}_{}",
                    r.method.as_str().to_lowercase(),
                    path.trim_start_matches('/')
                        .replace(['/', '{', '}', '.', '-'], "_")
                )));
            for p in r.params() {
                op = op.parameter(
                    ParameterBuilder::new()
                        .name(p)
                        .parameter_in(ParameterIn::Path)
                        .required(Required::True)
                        .schema(Some(RefOr::T(Schema::Object(
                            utoipa::openapi::schema::ObjectBuilder::new()
                                .schema_type(utoipa::openapi::schema::Type::String)
                                .build(),
                        )))),
                );
            }
            if let Some(b) = &r.request {
                op = op.request_body(Some(
                    RequestBodyBuilder::new()
                        .content(
                            "application/json",
                            ContentBuilder::new().schema(Some(body_ref(b))).build(),
                        )
                        .required(Some(Required::True))
                        .build(),
                ));
            } else if r.binary && r.method == axum::http::Method::PUT {
                op = op.request_body(Some(
                    RequestBodyBuilder::new()
                        .content("application/octet-stream", ContentBuilder::new().build())
                        .required(Some(Required::True))
                        .build(),
                ));
            }
            let ok = match &r.response {
                Some(b) => ResponseBuilder::new().description("success").content(
                    "application/json",
                    ContentBuilder::new().schema(Some(body_ref(b))).build(),
                ),
                None if r.binary && r.method == axum::http::Method::GET => ResponseBuilder::new()
                    .description("the object's bytes")
                    .content("application/octet-stream", ContentBuilder::new().build()),
                None => ResponseBuilder::new().description("success"),
            };
            let err = ResponseBuilder::new()
                .description("an error with a stable code")
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(RefOr::Ref(Ref::from_schema_name(error.name.clone()))))
                        .build(),
                )
                .build();
            let mut responses = ResponsesBuilder::new()
                .response("200", ok.build())
                .response("400", err.clone());
            if let Access::Requires(privilege) = r.access {
                responses = responses
                    .response("401", err.clone())
                    .response("403", err.clone());
                op = op
                    .security(SecurityRequirement::new::<&str, [&str; 0], &str>(
                        "bearer",
                        [],
                    ))
                    .description(Some(format!(
                        "Requires the privilege `{}`.",
                        privilege.code()
                    )));
                let mut ext = utoipa::openapi::extensions::Extensions::default();
                ext.insert(
                    "x-zaibei-privilege".into(),
                    serde_json::json!(privilege.code()),
                );
                op = op.extensions(Some(ext));
            }
            op = op.responses(responses.response("404", err).build());
            paths = paths.path(
                path.clone(),
                PathItem::new(method_of(&r.method), op.build()),
            );
        }
    }
    let mut components = ComponentsBuilder::new().security_scheme(
        "bearer",
        SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
    );
    for (name, schema) in schemas {
        components = components.schema(name, schema);
    }
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("zaibei server API")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some("The platform API of zaibei: tenants, users and roles, repositories, agents, policies, jobs and the audit log. Every route declares the privilege it needs.")),
        )
        .paths(paths.build())
        .components(Some(components.build()))
        .build()
}
