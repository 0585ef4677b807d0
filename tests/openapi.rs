//! The API description: every route `mall serve` serves (`mall::serve::ROUTES`) is described once
//! in `/api/openapi.json` (OpenAPI 3.1) and on `/api/docs`, and every documented example is
//! accepted by the server, with the documented status where it succeeds; on both stores.

mod support;

use std::collections::BTreeSet;

use reqwest::StatusCode;
use serde_json::Value;
use support::http::*;
use support::server::*;

async fn described_and_accepted(store: Store) {
    let c = client();
    let s = Server::start(&store, &[]);
    let (code, doc) = get(&c, s.url("/api/openapi.json")).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");

    // Every route and method, described once; nothing described that is not served.
    let served: BTreeSet<(String, String)> = mall::serve::ROUTES
        .iter()
        .flat_map(|(p, ms)| ms.iter().map(move |m| (p.to_string(), m.to_lowercase())))
        .collect();
    let described: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(p, ops)| ops.as_object().unwrap().keys().map(move |m| (p.clone(), m.clone())))
        .collect();
    assert_eq!(served, described, "served and described differ");
    assert_eq!(mall::serve::openapi::OPERATIONS.len(), served.len(), "each described once");

    // The page lists them all, with no script.
    let page = c.get(s.url("/api/docs")).send().await.unwrap().text().await.unwrap();
    assert!(!page.contains("<script"), "works offline, without scripts");
    for (path, _) in &served {
        assert!(page.contains(&format!("<code>{path}</code>")), "{path} on the page");
    }

    // Every example, as documented, with the token its operation needs.
    let mut failures = Vec::new();
    for o in mall::serve::openapi::OPERATIONS {
        let path = o.path.replace("{slug}", "toys").replace(
            "{id}",
            if o.path.contains("rules/") || o.path.contains("posts/") {
                "0190a6c2-5a57-7d1e-8f0e-3b1c2d4e5f61"
            } else {
                "p1"
            },
        );
        let url = if o.example_query.is_empty() { s.url(&path) } else { s.url(&format!("{path}?{}", o.example_query)) };
        let mut req = c.request(reqwest::Method::from_bytes(o.method.as_bytes()).unwrap(), url);
        req = match o.access {
            mall::serve::openapi::Access::Public => req,
            mall::serve::openapi::Access::Ingest => req.bearer_auth(INGEST),
            _ => req.bearer_auth(ADMIN),
        };
        if let Some(b) = o.example_body {
            req = req.header("content-type", "application/json").body(b.to_string());
        }
        let r = req.send().await.unwrap();
        let status = r.status();
        let body = r.text().await.unwrap_or_default();
        let refused = matches!(status.as_u16(), 400 | 401 | 403 | 405 | 413 | 415 | 422) || status.is_server_error();
        let wrong_success = status.is_success() && status.as_u16() != o.status;
        if refused || wrong_success {
            failures.push(format!("{} {}: {status} (documented {}) {body}", o.method, o.path, o.status));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    let _: Value = doc;
}

support::on_both_stores!(described_and_accepted);
