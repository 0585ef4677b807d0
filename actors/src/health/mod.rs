//! Self-healing (issue 13, under way): the health check's parts.
//!
//! - [`fetch`]: the image fetcher, safe against server-side request forgery.

pub mod fetch;
