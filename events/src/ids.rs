//! Identifiers and values that are parsed once at the edge, so no raw string reaches the log.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A global log position: 1 for the first event ever appended, then rising per event (with no gaps
/// on the embedded store; on PostgreSQL an aborted append leaves a hole).
pub type Position = u64;

/// Why a value was refused when parsed at the edge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidValue(pub String);

fn check_token(what: &str, s: &str, max: usize, allowed: impl Fn(char) -> bool) -> Result<(), InvalidValue> {
    if s.is_empty() {
        return Err(InvalidValue(format!("{what} must not be empty")));
    }
    if s.len() > max {
        return Err(InvalidValue(format!("{what} is longer than {max} bytes")));
    }
    if let Some(c) = s.chars().find(|c| !allowed(*c)) {
        return Err(InvalidValue(format!("{what} contains the character {c:?}")));
    }
    Ok(())
}

fn id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')
}

macro_rules! token_newtype {
    ($(#[$doc:meta])* $name:ident, $what:literal, $max:expr, $allowed:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Parses and validates the value.
            pub fn parse(s: impl Into<String>) -> Result<Self, InvalidValue> {
                let s = s.into();
                check_token($what, &s, $max, $allowed)?;
                Ok(Self(s))
            }

            /// The value as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidValue;
            fn try_from(s: String) -> Result<Self, InvalidValue> {
                Self::parse(s)
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

token_newtype!(
    /// A product's id, chosen by the vendor: letters, digits, `-`, `_`, `.`, `:`; at most 64 bytes.
    ProductId, "product id", 64, id_char
);
token_newtype!(
    /// A district's slug: lowercase letters, digits and `-`; at most 64 bytes.
    DistrictSlug, "district slug", 64, |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
);
token_newtype!(
    /// A shopper's id, chosen by the storefront; at most 128 bytes.
    ShopperId, "shopper id", 128, id_char
);
token_newtype!(
    /// A shopping session's id, chosen by the storefront; at most 128 bytes.
    SessionId, "session id", 128, id_char
);
token_newtype!(
    /// An order's id, chosen by the storefront; at most 128 bytes.
    OrderId, "order id", 128, id_char
);
token_newtype!(
    /// A product list a shopper saw (`search`, `district:toys`, `home`, ...); at most 128 bytes.
    ListName, "list name", 128, id_char
);

/// A stream id: `<category>-<id>`, such as `product-42`, `district-toys`, `shopper-7`.
///
/// The category is lowercase ASCII letters and `_`; the id uses the characters of [`ProductId`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct StreamId(String);

/// The longest stream id the stores accept, in bytes.
pub const MAX_STREAM_ID_LEN: usize = 200;

impl StreamId {
    /// Parses a stream id, refusing empty or malformed ones.
    pub fn parse(s: impl Into<String>) -> Result<Self, InvalidValue> {
        let s = s.into();
        check_token("stream id", &s, MAX_STREAM_ID_LEN, id_char)?;
        let Some((category, id)) = s.split_once('-') else {
            return Err(InvalidValue(format!("stream id {s:?} is not of the form <category>-<id>")));
        };
        if category.is_empty() || !category.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
            return Err(InvalidValue(format!("stream id {s:?} has a malformed category")));
        }
        if id.is_empty() {
            return Err(InvalidValue(format!("stream id {s:?} has an empty id")));
        }
        Ok(Self(s))
    }

    /// Builds `<category>-<id>` from parts that are already valid.
    pub fn of(category: &str, id: &str) -> Self {
        Self::parse(format!("{category}-{id}")).expect("parts of a stream id are validated newtypes")
    }

    /// The stream of one product.
    pub fn product(id: &ProductId) -> Self {
        Self::of("product", id.as_str())
    }

    /// The stream of one district.
    pub fn district(slug: &DistrictSlug) -> Self {
        Self::of("district", slug.as_str())
    }

    /// The stream of one shopper.
    pub fn shopper(id: &ShopperId) -> Self {
        Self::of("shopper", id.as_str())
    }

    /// The category: the part before the first `-`.
    pub fn category(&self) -> &str {
        self.0.split_once('-').map(|(c, _)| c).unwrap_or("")
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for StreamId {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Self, InvalidValue> {
        Self::parse(s)
    }
}

impl From<StreamId> for String {
    fn from(v: StreamId) -> String {
        v.0
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Secondary keys an event is indexed under besides its stream.
pub mod tag {
    use super::{DistrictSlug, ShopperId};

    /// The prefix of district tags.
    pub const DISTRICT_PREFIX: &str = "district:";
    /// The prefix of shopper tags.
    pub const SHOPPER_PREFIX: &str = "shopper:";

    /// The tag every event about a shopper carries.
    pub fn shopper(id: &ShopperId) -> String {
        format!("{SHOPPER_PREFIX}{id}")
    }

    /// The tag every event about a district carries.
    pub fn district(slug: &DistrictSlug) -> String {
        format!("{DISTRICT_PREFIX}{slug}")
    }

    /// The district a tag names, if it is a district's tag.
    pub fn district_of(tag: &str) -> Option<&str> {
        tag.strip_prefix(DISTRICT_PREFIX)
    }
}

/// The longest tag the stores accept, in bytes.
pub const MAX_TAG_LEN: usize = 200;

/// A non-negative amount of money as a canonical decimal string (`"12.50"`), at most 4 decimals.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Price(String);

impl Price {
    /// Parses a decimal string: up to 9 digits, optionally `.` and 1 to 4 digits; no sign, no
    /// exponent. The most is 999,999,999.9999.
    pub fn parse(s: impl Into<String>) -> Result<Self, InvalidValue> {
        let s = s.into();
        let (int, frac) = match s.split_once('.') {
            Some((i, f)) => (i, Some(f)),
            None => (s.as_str(), None),
        };
        let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
        if !digits(int) || int.len() > 9 || frac.is_some_and(|f| !digits(f) || f.len() > 4) {
            return Err(InvalidValue(format!(
                "price {s:?} is not a non-negative decimal such as \"12.50\" (at most 999999999.9999, 4 decimals)"
            )));
        }
        Ok(Self(s))
    }

    /// The amount in ten-thousandths of the currency unit, for arithmetic without floats.
    pub fn ten_thousandths(&self) -> u64 {
        let (int, frac) = self.0.split_once('.').unwrap_or((&self.0, ""));
        let mut f = frac.to_string();
        while f.len() < 4 {
            f.push('0');
        }
        int.parse::<u64>().unwrap_or(0) * 10_000 + f.parse::<u64>().unwrap_or(0)
    }

    /// The decimal text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Price {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Price {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Self, InvalidValue> {
        Self::parse(s)
    }
}

impl From<Price> for String {
    fn from(v: Price) -> String {
        v.0
    }
}

/// An ISO 4217 currency code: three uppercase letters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency(String);

impl Currency {
    /// Parses a currency code such as `EUR`.
    pub fn parse(s: impl Into<String>) -> Result<Self, InvalidValue> {
        let s = s.into();
        if s.len() != 3 || !s.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(InvalidValue(format!("currency {s:?} is not a three-letter code such as \"EUR\"")));
        }
        Ok(Self(s))
    }

    /// The code.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Currency {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Self, InvalidValue> {
        Self::parse(s)
    }
}

impl From<Currency> for String {
    fn from(v: Currency) -> String {
        v.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_need_a_category_and_an_id() {
        assert!(StreamId::parse("product-42").is_ok());
        assert_eq!(StreamId::parse("product-a-b").unwrap().category(), "product");
        for bad in ["", "product", "-42", "product-", "Product-1", "pro duct-1", "product-1/2"] {
            assert!(StreamId::parse(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(StreamId::parse(format!("p-{}", "x".repeat(MAX_STREAM_ID_LEN))).is_err());
    }

    #[test]
    fn prices_are_plain_non_negative_decimals() {
        assert_eq!(Price::parse("12.5").unwrap().ten_thousandths(), 125_000);
        assert_eq!(Price::parse("0").unwrap().ten_thousandths(), 0);
        assert!(Price::parse("999999999.9999").is_ok());
        for bad in ["", "-1", "1e3", "1.", ".5", "1.23456", "NaN", "1,5", "1000000000", "999999999999.9999"] {
            assert!(Price::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn slugs_are_lowercase() {
        assert!(DistrictSlug::parse("toys-and-games").is_ok());
        assert!(DistrictSlug::parse("Toys").is_err());
        assert!(Currency::parse("eur").is_err());
        assert!(Currency::parse("EUR").is_ok());
    }
}
