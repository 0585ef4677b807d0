//! The query-string extractor of every read: strict (unknown parameters refused) and precise —
//! a bad value is answered with the parameter's name (`limit`), never a guess.

use std::ops::Deref;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest};
use futures_util::future::{Ready, ready};
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// A parsed query string.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<T> Deref for Query<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// Parses a query string into `T`, naming the parameter at fault.
pub fn parse<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let message = e.inner().to_string();
        // Unknown and missing parameters are named in the message; others by the path.
        let named = message.split('`').nth(1).map(str::to_string);
        let field = if path.is_empty() || path == "." { named.unwrap_or_else(|| "query".into()) } else { path };
        ApiError::invalid(field, message)
    })
}

impl<T: DeserializeOwned> FromRequest for Query<T> {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(parse(req.query_string()).map(Query))
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Q {
        #[allow(dead_code)]
        limit: Option<usize>,
        #[allow(dead_code)]
        q: String,
    }

    #[test]
    fn errors_name_the_parameter() {
        assert_eq!(parse::<Q>("q=a&limit=x").unwrap_err().field.as_deref(), Some("limit"));
        assert_eq!(parse::<Q>("q=a&mood=x").unwrap_err().field.as_deref(), Some("mood"));
        assert_eq!(parse::<Q>("limit=1").unwrap_err().field.as_deref(), Some("q"));
        assert!(parse::<Q>("q=a&limit=3").is_ok());
    }
}
