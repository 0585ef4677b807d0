//! The API description: OpenAPI 3.1 at `GET /api/openapi.json`, built from [`OPERATIONS`] — one
//! entry for every method of every path in [`super::ROUTES`] (a test holds the two lists to each
//! other and sends every example to the server) — and `GET /api/docs`, a page that renders it
//! on the server, with no script and nothing fetched from elsewhere (it works offline).

use actix_web::{HttpResponse, web};
use serde_json::{Map, Value, json};

use super::AppState;

/// Who may call an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Public,
    /// The ingest or the admin token.
    Ingest,
    Admin,
    /// The ingest, admin or shopper-profile token.
    Profiles,
}

/// One operation: a method of a path.
#[derive(Debug, Clone, Copy)]
pub struct Operation {
    pub method: &'static str,
    pub path: &'static str,
    pub access: Access,
    pub summary: &'static str,
    /// Query parameters: name and what it is.
    pub query: &'static [(&'static str, &'static str)],
    /// An example query string that the server accepts (without `?`).
    pub example_query: &'static str,
    /// An example body (JSON) that the server accepts.
    pub example_body: Option<&'static str>,
    /// The status of success.
    pub status: u16,
}

const fn op(method: &'static str, path: &'static str, access: Access, summary: &'static str) -> Operation {
    Operation { method, path, access, summary, query: &[], example_query: "", example_body: None, status: 200 }
}

const MIN_POSITION: (&str, &str) =
    ("min_position", "answer once the read side has applied this log position (waits up to 5 s)");

/// Every operation. Path parameters: `{id}` a product id (or a rule's or post's UUID where the
/// path says so), `{slug}` a district's slug; the examples use product `p1` in district `toys`.
pub const OPERATIONS: &[Operation] = &[
    Operation {
        example_body: Some(
            r#"{"slug": "toys", "name": "Toys", "personality": {"tone": "playful", "style": "short sentences", "audience": "parents"}}"#,
        ),
        status: 201,
        ..op(
            "POST",
            "/api/districts",
            Access::Admin,
            "Open a district (`district_opened`); an identical retry is 200, another with the slug 409",
        )
    },
    Operation {
        query: &[MIN_POSITION],
        ..op("GET", "/api/districts", Access::Public, "Every district with its voice, copy and signal counts")
    },
    Operation {
        example_body: Some(
            r#"{"product_id": "p1", "district": "toys", "title": "Wooden train", "description": "Beech, four carriages.", "price": "24.50", "currency": "EUR", "tags": ["wood"], "attributes": {"material": "beech"}, "stock": 12}"#,
        ),
        status: 201,
        ..op("POST", "/api/products", Access::Admin, "List a product (`product_listed`)")
    },
    Operation {
        query: &[("shopper", "a shopper id: their experiment arms' copy and price"), MIN_POSITION],
        example_query: "shopper=s1",
        ..op(
            "GET",
            "/api/products/{id}",
            Access::Public,
            "A product's row and metrics, with the copy and price of the shopper's arms",
        )
    },
    Operation {
        example_body: Some(r#"{"stock": 10}"#),
        ..op("PUT", "/api/products/{id}", Access::Admin, "Edit a product (`product_edited`): any of its fields")
    },
    op(
        "GET",
        "/api/products/{id}/history",
        Access::Public,
        "Every description version and decision; with the admin token the evidence, prompts, raw outputs and verdicts",
    ),
    Operation {
        example_body: Some(
            r#"{"signals": [{"type": "product_viewed", "id": "0190a6c2-5a57-7d1e-8f0e-3b1c2d4e5f60", "shopper_id": "s1", "session_id": "sess-1", "at": "2026-12-01T10:00:00Z", "product_id": "p1", "dwell_ms": 4000}]}"#,
        ),
        status: 202,
        ..op(
            "POST",
            "/api/signals",
            Access::Ingest,
            "Learning signals, at most 10,000 a batch, validated whole; retries stored once",
        )
    },
    Operation {
        query: &[MIN_POSITION],
        ..op(
            "GET",
            "/api/autonomous",
            Access::Admin,
            "Every system and job, the task queue, the budget, the log position, projection lag",
        )
    },
    Operation {
        example_body: Some(r#"{"action": "start", "system": "analytics"}"#),
        ..op(
            "POST",
            "/api/autonomous",
            Access::Admin,
            "Start, stop or optimize a system (`action`: start, stop, optimize)",
        )
    },
    Operation {
        query: &[("product_id", "one product (also `productId`)"), ("limit", "rows of the log, 1 to 1000")],
        example_query: "product_id=p1",
        ..op(
            "GET",
            "/api/autonomous/products",
            Access::Public,
            "Product intelligence: the optimization log and experiments (details with the admin token)",
        )
    },
    Operation {
        example_body: Some(r#"{"product_id": "p1"}"#),
        status: 202,
        ..op("POST", "/api/autonomous/products", Access::Admin, "Queue a look at a product now")
    },
    Operation {
        query: &[("status", "open, closed or all"), MIN_POSITION],
        example_query: "status=open",
        ..op("GET", "/api/autonomous/health", Access::Admin, "Self-healing's report: issues, fixes, notifications")
    },
    op("POST", "/api/autonomous/health", Access::Admin, "Run a health check now"),
    op(
        "GET",
        "/api/autonomous/districts/{slug}",
        Access::Public,
        "District evolution: voice, analysis, test under way, evolutions",
    ),
    op(
        "POST",
        "/api/autonomous/districts/{slug}/evolve",
        Access::Admin,
        "Look at a district now: propose, conclude or hold",
    ),
    op(
        "GET",
        "/api/products/{id}/placeholder.svg",
        Access::Public,
        "The image shown while a product's own is broken (SVG)",
    ),
    Operation {
        query: &[("shopper", "a shopper id: their arm of a voice test"), MIN_POSITION],
        ..op("GET", "/api/districts/{slug}", Access::Public, "A district: voice, copy, signal counts")
    },
    Operation {
        query: &[("shopper", "a shopper id: personalized"), ("page", "from 1"), ("limit", "1 to 100"), MIN_POSITION],
        example_query: "page=1&limit=20",
        ..op(
            "GET",
            "/api/districts/{slug}/products",
            Access::Public,
            "A district's in-stock products, ranked, with the parts of each score",
        )
    },
    Operation {
        query: &[("q", "1 to 200 characters"), ("shopper", "a shopper id"), ("limit", "1 to 100"), MIN_POSITION],
        example_query: "q=wooden%20train",
        ..op("GET", "/api/search", Access::Public, "Keyword and embedding matches, ranked")
    },
    Operation {
        query: &[("userId", "the shopper (also `user_id`)"), ("limit", "1 to 100"), MIN_POSITION],
        example_query: "userId=s1",
        ..op(
            "GET",
            "/api/autonomous/personalize",
            Access::Profiles,
            "A shopper's profile, interests, picks and personal ranking",
        )
    },
    Operation {
        query: &[("kind", "copy, voice or ordering"), MIN_POSITION],
        ..op("GET", "/api/autonomous/merchandising", Access::Admin, "Every merchandising rule and test")
    },
    Operation {
        example_body: Some(
            r#"{"action": "boost", "tags": ["wood"], "strength": 0.5, "reason": "the wooden toys week"}"#,
        ),
        status: 201,
        ..op(
            "POST",
            "/api/autonomous/merchandising/rules",
            Access::Admin,
            "Set a merchandising rule (boost, bury, pin, hide, filter)",
        )
    },
    op("DELETE", "/api/autonomous/merchandising/rules/{id}", Access::Admin, "End a rule now ({id}: the rule's UUID)"),
    Operation {
        query: &[("microstoreId", "a district's slug or `all`"), ("period", "day, week or month"), MIN_POSITION],
        example_query: "microstoreId=all&period=week",
        ..op(
            "GET",
            "/api/autonomous/analytics",
            Access::Admin,
            "A period's metrics, narrative, anomalies, drivers and suggestions",
        )
    },
    Operation {
        query: &[("district", "one district"), ("status", "scheduled, published, failed or superseded"), MIN_POSITION],
        ..op(
            "GET",
            "/api/autonomous/social/calendar",
            Access::Admin,
            "Every post with its performance, and content ideas",
        )
    },
    Operation {
        example_body: Some(r#"{"district": "toys"}"#),
        status: 201,
        ..op(
            "POST",
            "/api/autonomous/social/calendar",
            Access::Admin,
            "Plan a district's (or every district's) week of posts",
        )
    },
    Operation {
        query: &[("until", "posts due by then (RFC 3339); default now")],
        ..op("GET", "/api/autonomous/social/ready", Access::Admin, "The posts due, earliest first")
    },
    Operation {
        example_body: Some(r#"{"status": "published", "platform_post_id": "tw-1"}"#),
        ..op(
            "POST",
            "/api/autonomous/social/posts/{id}",
            Access::Admin,
            "Mark a post published or failed ({id}: the post's UUID)",
        )
    },
    Operation {
        query: &[MIN_POSITION],
        ..op("GET", "/api/autonomous/plugins", Access::Admin, "Every plugin, the latest proposals and price tests")
    },
    Operation {
        example_body: Some(r#"{"id": "inventory_prediction", "config": {"lead_time_days": 14}}"#),
        ..op("POST", "/api/autonomous/plugins", Access::Admin, "Enable, disable or configure a plugin")
    },
    Operation {
        example_body: Some(r#"{"text": "find me a wooden train under 30 euros", "shopper_id": "s1"}"#),
        ..op(
            "POST",
            "/api/autonomous/voice",
            Access::Public,
            "A transcript read as an intent, with products and a reply",
        )
    },
    Operation {
        query: &[
            ("segment", "prospect, new, active, at_risk or lost"),
            ("as_of", "a business date, YYYY-MM-DD"),
            ("limit", "1 to 10000"),
            MIN_POSITION,
        ],
        example_query: "segment=active",
        ..op("GET", "/api/autonomous/segments", Access::Admin, "Shoppers by lifecycle segment, with RFM scores")
    },
    op("GET", "/api/admin/projections", Access::Admin, "Projections: position, lag, parked events"),
    Operation {
        example_body: Some(r#"{"name": "catalog", "verify": true}"#),
        ..op(
            "POST",
            "/api/admin/projections/rebuild",
            Access::Admin,
            "Rebuild a projection (in memory) beside the live one",
        )
    },
    Operation {
        example_body: Some(r#"{"name": "catalog"}"#),
        ..op("POST", "/api/admin/projections/retry", Access::Admin, "Apply a projection's parked events again")
    },
    op("GET", "/healthz", Access::Public, "Health: the store, parked events, log position, resident actors, budget"),
    op("GET", "/metrics", Access::Admin, "Metrics in the Prometheus text format"),
    op("GET", "/api/openapi.json", Access::Public, "This description"),
    op("GET", "/api/docs", Access::Public, "This description as a page"),
];

fn security(a: Access) -> Value {
    match a {
        Access::Public => json!([]),
        Access::Ingest => json!([{"ingest": []}, {"admin": []}]),
        Access::Admin => json!([{"admin": []}]),
        Access::Profiles => json!([{"ingest": []}, {"admin": []}, {"shopper": []}]),
    }
}

/// The OpenAPI 3.1 document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for o in OPERATIONS {
        let mut params: Vec<Value> = Vec::new();
        for name in ["id", "slug"] {
            if o.path.contains(&format!("{{{name}}}")) {
                params.push(json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}));
            }
        }
        for (name, what) in o.query {
            params.push(json!({"name": name, "in": "query", "required": false, "description": what, "schema": {"type": "string"}}));
        }
        let mut operation = json!({
            "summary": o.summary,
            "operationId": format!("{} {}", o.method.to_lowercase(), o.path),
            "parameters": params,
            "security": security(o.access),
            "responses": {
                o.status.to_string(): {"description": "success"},
                "4XX": {"description": "refused: `{\"message\", \"field\"?}`", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
            },
        });
        if !o.example_query.is_empty() {
            operation["x-example-query"] = json!(o.example_query);
        }
        if let Some(b) = o.example_body {
            let example: Value = serde_json::from_str(b).unwrap_or(Value::Null);
            operation["requestBody"] = json!({
                "required": true,
                "content": {"application/json": {"schema": {"type": "object"}, "example": example}},
            });
        }
        paths
            .entry(o.path.to_string())
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("an object")
            .insert(o.method.to_lowercase(), operation);
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "mall", "version": env!("CARGO_PKG_VERSION"),
                 "description": "An event-sourced, self-optimizing commerce backend. Reads carry `X-Mall-Position`; every answer carries `X-Correlation-Id`."},
        "paths": paths,
        "components": {
            "securitySchemes": {
                "admin": {"type": "http", "scheme": "bearer", "description": "MALL_ADMIN_TOKEN"},
                "ingest": {"type": "http", "scheme": "bearer", "description": "MALL_INGEST_TOKEN"},
                "shopper": {"type": "http", "scheme": "bearer", "description": "MALL_SHOPPER_TOKEN"},
            },
            "schemas": {"Error": {"type": "object", "required": ["message"],
                                  "properties": {"message": {"type": "string"}, "field": {"type": "string"}}}},
        },
    })
}

/// `GET /api/openapi.json`.
pub async fn json(_: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(document())
}

use super::dashboard::escape;

/// `GET /api/docs`: the description as a page, rendered here.
pub async fn docs(_: web::Data<AppState>) -> HttpResponse {
    let mut rows = String::new();
    for o in OPERATIONS {
        let who = match o.access {
            Access::Public => "public",
            Access::Ingest => "ingest token",
            Access::Admin => "admin token",
            Access::Profiles => "ingest, admin or shopper token",
        };
        let query: String = o.query.iter().map(|(n, w)| format!("<li><code>{n}</code>: {}</li>", escape(w))).collect();
        let mut example = String::new();
        if !o.example_query.is_empty() {
            example.push_str(&format!("<p>Example: <code>?{}</code></p>", escape(o.example_query)));
        }
        if let Some(b) = o.example_body {
            example.push_str(&format!("<pre>{}</pre>", escape(b)));
        }
        rows.push_str(&format!(
            "<section><h2><span class=\"m\">{}</span> <code>{}</code></h2><p>{} <em>({who}; {} on success)</em></p>{}{example}</section>\n",
            o.method,
            escape(o.path),
            escape(o.summary),
            o.status,
            if query.is_empty() { String::new() } else { format!("<ul>{query}</ul>") },
        ));
    }
    let page = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>mall API</title><style>body{{font:16px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#111}}\
         section{{border-top:1px solid #ccc;padding:.5rem 0}}h2{{font-size:1.05rem}}.m{{display:inline-block;min-width:4.5rem;font-weight:700}}\
         pre{{background:#f4f4f4;padding:.5rem;overflow-x:auto}}</style></head><body><h1>mall API</h1>\
         <p>The machine-readable description: <a href=\"/api/openapi.json\">/api/openapi.json</a> (OpenAPI 3.1). \
         Tokens go in <code>Authorization: Bearer TOKEN</code>; errors are <code>{{\"message\", \"field\"?}}</code>.</p>\n{rows}</body></html>"
    );
    HttpResponse::Ok().content_type("text/html; charset=utf-8").body(page)
}
