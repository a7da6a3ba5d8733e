//! The OpenAPI 3 document of the JSON API, served at `/api/openapi.json` (a static file:
//! `openapi.json` beside this one).

use axum::http::header;
use axum::response::IntoResponse;

/// The document.
pub const OPENAPI_JSON: &str = include_str!("openapi.json");

pub async fn document() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON)
}

#[cfg(test)]
mod tests {
    use super::OPENAPI_JSON;

    /// The `/api/` paths the router serves, read from its source.
    fn routed_api_paths() -> Vec<String> {
        let source = include_str!("mod.rs");
        let routes = source.split(".route(\"").skip(1);
        routes
            .filter_map(|r| r.split('"').next())
            .filter(|p| p.starts_with("/api/"))
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn every_api_route_is_documented_and_every_documented_path_is_routed() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI_JSON).expect("openapi.json parses");
        assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")), "an OpenAPI 3 document");
        let paths = doc["paths"].as_object().expect("paths");
        let routed = routed_api_paths();
        assert!(routed.len() >= 6, "{routed:?}");
        for path in &routed {
            let op = &paths.get(path).unwrap_or_else(|| panic!("{path} is routed but not documented"))["get"];
            assert!(op["responses"]["200"].is_object(), "{path} documents its answer");
        }
        for path in paths.keys() {
            assert!(routed.contains(path), "{path} is documented but not routed");
        }
    }

    #[test]
    fn every_schema_reference_resolves() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI_JSON).unwrap();
        let schemas = doc["components"]["schemas"].as_object().expect("schemas");
        let mut refs = Vec::new();
        collect_refs(&doc, &mut refs);
        assert!(!refs.is_empty());
        for r in refs {
            let name = r.strip_prefix("#/components/schemas/").unwrap_or_else(|| panic!("{r}"));
            assert!(schemas.contains_key(name), "{r} resolves");
        }
    }

    fn collect_refs(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    match v.as_str() {
                        Some(r) if k == "$ref" => out.push(r.to_owned()),
                        _ => collect_refs(v, out),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
            _ => {}
        }
    }
}
