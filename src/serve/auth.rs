//! Bearer tokens with scopes: an ingest token may post signals; the admin token may also change
//! the catalog and trigger the autonomous systems. Reads need no token. Tokens are compared in
//! constant time and never logged.

use actix_web::HttpRequest;
use actix_web::http::StatusCode;
use subtle::ConstantTimeEq;

use super::error::ApiError;

/// What a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Posting signals.
    Ingest,
    /// Catalog changes and administration.
    Admin,
}

/// The configured tokens.
#[derive(Clone)]
pub struct Tokens {
    admin: Vec<u8>,
    ingest: Option<Vec<u8>>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tokens { .. }")
    }
}

/// Equal lengths and equal bytes, in time that depends on the lengths only.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

impl Tokens {
    /// Tokens from configuration; an empty ingest token means none.
    pub fn new(admin: String, ingest: Option<String>) -> Self {
        Self { admin: admin.into_bytes(), ingest: ingest.filter(|t| !t.is_empty()).map(String::into_bytes) }
    }

    /// Checks the request's `Authorization: Bearer` token for `need`: none or unknown → 401,
    /// known but not enough → 403.
    pub fn check(&self, req: &HttpRequest, need: Scope) -> Result<(), ApiError> {
        let unauthorized =
            || ApiError::new(StatusCode::UNAUTHORIZED, "a bearer token is required (Authorization: Bearer TOKEN)");
        let header = req.headers().get(actix_web::http::header::AUTHORIZATION).ok_or_else(unauthorized)?;
        let token = header.as_bytes().strip_prefix(b"Bearer ").ok_or_else(|| {
            ApiError::new(StatusCode::UNAUTHORIZED, "the Authorization header must be `Bearer TOKEN`")
        })?;
        // Both comparisons always run, so timing tells nothing about which one matched.
        let is_admin = same(token, &self.admin);
        let is_ingest = self.ingest.as_deref().is_some_and(|i| same(token, i));
        match (need, is_admin, is_ingest) {
            (_, true, _) => Ok(()),
            (Scope::Ingest, false, true) => Ok(()),
            (Scope::Admin, false, true) => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "this token may post signals only; catalog changes need the admin token",
            )),
            _ => Err(ApiError::new(StatusCode::UNAUTHORIZED, "unknown token")),
        }
    }
}
