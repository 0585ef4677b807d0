//! Self-healing (issue 13, under way): the health check's parts.
//!
//! - [`fetch`]: the image fetcher, safe against server-side request forgery;
//! - [`placeholder`]: the SVG mall draws for a product whose image is broken.

pub mod fetch;
pub mod placeholder;
