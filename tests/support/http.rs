//! Requests to a test server, answered as (status, JSON body or null).

use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{Client, Method, StatusCode};
use serde_json::Value;

/// A client that gives up on a request after 30 s (a hung server fails the test, not CI).
pub fn client() -> Client {
    Client::builder().timeout(Duration::from_secs(30)).build().unwrap()
}

/// Any request: a JSON content type, an optional bearer token, optional raw body bytes.
pub async fn send(
    c: &Client,
    method: Method,
    url: String,
    token: Option<&str>,
    body: Option<Vec<u8>>,
) -> (StatusCode, HeaderMap, Value) {
    let mut r = c.request(method, url).header("content-type", "application/json");
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    if let Some(b) = body {
        r = r.body(b);
    }
    let r = r.send().await.unwrap();
    let (status, headers) = (r.status(), r.headers().clone());
    (status, headers, r.json().await.unwrap_or(Value::Null))
}

/// A write with a bearer token.
pub async fn post(c: &Client, url: String, token: &str, body: &Value) -> (StatusCode, Value) {
    let (status, _, body) = send(c, Method::POST, url, Some(token), Some(body.to_string().into_bytes())).await;
    (status, body)
}

/// A public read.
pub async fn get(c: &Client, url: String) -> (StatusCode, Value) {
    let (status, _, body) = send(c, Method::GET, url, None, None).await;
    (status, body)
}

/// A read with a bearer token (decision internals need the admin token).
pub async fn get_as(c: &Client, url: String, token: &str) -> (StatusCode, Value) {
    let (status, _, body) = send(c, Method::GET, url, Some(token), None).await;
    (status, body)
}
