//! Bearer tokens with scopes: an ingest token may post signals; the admin token may also change
//! the catalog and trigger the autonomous systems; a shopper's profile needs either, or the
//! shopper-profile token the operator configures (`MALL_SHOPPER_TOKEN`). Storefront reads need no
//! token. Tokens are compared in constant time and never logged; the scheme (`Bearer`) is read
//! without regard to case, as HTTP says.

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
    /// Shoppers' profiles (spend, last activity, interests).
    Profiles,
}

/// The configured tokens.
#[derive(Clone)]
pub struct Tokens {
    admin: Vec<u8>,
    ingest: Option<Vec<u8>>,
    shopper: Option<Vec<u8>>,
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
    /// Tokens from configuration; an empty ingest or shopper token means none.
    pub fn new(admin: String, ingest: Option<String>, shopper: Option<String>) -> Self {
        let some = |t: Option<String>| t.filter(|t| !t.is_empty()).map(String::into_bytes);
        Self { admin: admin.into_bytes(), ingest: some(ingest), shopper: some(shopper) }
    }

    /// Whether `token` is the admin token (in constant time).
    pub fn is_admin(&self, token: &[u8]) -> bool {
        same(token, &self.admin)
    }

    /// Which configured token the request carries (`admin`, `ingest`, `shopper`), if any.
    pub fn holder(&self, req: &HttpRequest) -> Option<&'static str> {
        let bytes = req.headers().get(actix_web::http::header::AUTHORIZATION)?.as_bytes();
        let i = bytes.iter().position(|b| *b == b' ').filter(|i| bytes[..*i].eq_ignore_ascii_case(b"bearer"))?;
        let token = bytes[i + 1..].trim_ascii();
        let (a, n, s) = (
            same(token, &self.admin),
            self.ingest.as_deref().is_some_and(|x| same(token, x)),
            self.shopper.as_deref().is_some_and(|x| same(token, x)),
        );
        match (a, n, s) {
            (true, _, _) => Some("admin"),
            (_, true, _) => Some("ingest"),
            (_, _, true) => Some("shopper"),
            _ => None,
        }
    }

    /// Checks the request's `Authorization: Bearer` token for `need`: none or unknown → 401,
    /// known but not enough → 403.
    pub fn check(&self, req: &HttpRequest, need: Scope) -> Result<(), ApiError> {
        let unauthorized =
            || ApiError::new(StatusCode::UNAUTHORIZED, "a bearer token is required (Authorization: Bearer TOKEN)");
        let header = req.headers().get(actix_web::http::header::AUTHORIZATION).ok_or_else(unauthorized)?;
        let bytes = header.as_bytes();
        let token = match bytes.iter().position(|b| *b == b' ') {
            Some(i) if bytes[..i].eq_ignore_ascii_case(b"bearer") => bytes[i + 1..].trim_ascii(),
            _ => {
                return Err(ApiError::new(StatusCode::UNAUTHORIZED, "the Authorization header must be `Bearer TOKEN`"));
            }
        };
        // Every comparison always runs, so timing tells nothing about which one matched.
        let is_admin = same(token, &self.admin);
        let is_ingest = self.ingest.as_deref().is_some_and(|i| same(token, i));
        let is_shopper = self.shopper.as_deref().is_some_and(|s| same(token, s));
        match (need, is_admin, is_ingest, is_shopper) {
            (_, true, _, _) => Ok(()),
            (Scope::Ingest | Scope::Profiles, false, true, _) => Ok(()),
            (Scope::Profiles, false, false, true) => Ok(()),
            (Scope::Admin, false, true, _) => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "this token may post signals only; catalog changes need the admin token",
            )),
            (Scope::Admin | Scope::Ingest, false, false, true) => {
                Err(ApiError::new(StatusCode::FORBIDDEN, "this token may read shopper profiles only"))
            }
            _ => Err(ApiError::new(StatusCode::UNAUTHORIZED, "unknown token")),
        }
    }
}
