//! The catalog as a decider: which districts are open, which products are listed where, and
//! the tags each product carried at every point of the log. Its rules — a district opens once,
//! a product is listed once and in an open district, an edit names a known product (and, when it
//! moves it, an open district), a signal names a known product and is tagged with its district —
//! live here alone; the HTTP edge and `mall import` both ask [`Catalog::decide`] and map its one
//! error type ([`CatalogError`]) to a status or to `line N: field: reason`.
//!
//! The same fold ([`Catalog::apply`]) keeps the router's shared catalog and the one `mall replay`
//! builds, so the facts a shopper's fold reads — a product's tags *as of the signal's position*
//! ([`Catalog::tags_at`]) — are the same live and in replay.

use std::collections::HashMap;

use mall_events::domain::{Content, DomainEvent, Personality};
use mall_events::ids::{Position, tag};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// An open district.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DistrictEntry {
    pub name: String,
    pub personality: Personality,
    /// The event that opened it (a retried opening carries the same id).
    pub opened_by: Uuid,
}

/// A listed product.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProductEntry {
    /// Its district's slug, now.
    pub district: String,
    /// The position of the event that last set the district.
    district_at: Position,
    /// The event that listed it (a retried listing carries the same id).
    pub listed_by: Uuid,
    /// Its tags from each position on, oldest first.
    tags: Vec<(Position, Vec<String>)>,
}

impl ProductEntry {
    /// Its tags now.
    pub fn tags(&self) -> &[String] {
        self.tags.last().map_or(&[], |(_, t)| t)
    }

    fn set_tags(&mut self, at: Position, tags: &[String]) {
        // Events may be applied out of order (the API notes its own append before the router
        // reaches the ones before it): keep the history sorted, one entry per position.
        match self.tags.binary_search_by_key(&at, |(p, _)| *p) {
            Ok(_) => {}
            Err(i) => self.tags.insert(i, (at, tags.to_vec())),
        }
    }
}

/// Why the catalog refuses a record. The field is the record's; the edge prefixes its path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    /// The record names something that does not exist (HTTP 400 in a body, 404 in a path).
    #[error("{field}: {reason}")]
    Unknown { field: &'static str, reason: String },
    /// The record contradicts what the catalog holds (HTTP 409).
    #[error("{field}: {reason}")]
    Conflict { field: &'static str, reason: String },
    /// Not a catalog record at all (HTTP 422).
    #[error("{field}: {reason}")]
    NotARecord { field: &'static str, reason: String },
}

impl CatalogError {
    /// The field it names.
    pub fn field(&self) -> &'static str {
        match self {
            Self::Unknown { field, .. } | Self::Conflict { field, .. } | Self::NotARecord { field, .. } => field,
        }
    }

    /// The reason, without the field.
    pub fn reason(&self) -> &str {
        match self {
            Self::Unknown { reason, .. } | Self::Conflict { reason, .. } | Self::NotARecord { reason, .. } => reason,
        }
    }
}

/// What an admitted record is appended with: the tags only the catalog knows (a signal's
/// district).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Admitted {
    pub extra_tags: Vec<String>,
}

/// The catalog's state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Catalog {
    districts: HashMap<String, DistrictEntry>,
    products: HashMap<String, ProductEntry>,
    /// Every event up to this position has been applied (the router moves it; 0: none).
    seen: Position,
}

impl Catalog {
    /// An open district.
    pub fn district(&self, slug: &str) -> Option<&DistrictEntry> {
        self.districts.get(slug)
    }

    /// Every open district, by slug.
    pub fn districts(&self) -> impl Iterator<Item = (&str, &DistrictEntry)> {
        self.districts.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// A listed product.
    pub fn product(&self, id: &str) -> Option<&ProductEntry> {
        self.products.get(id)
    }

    /// Every listed product, by id.
    pub fn products(&self) -> impl Iterator<Item = (&str, &ProductEntry)> {
        self.products.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// How many products are listed.
    pub fn len(&self) -> usize {
        self.products.len()
    }

    /// Whether no product is listed.
    pub fn is_empty(&self) -> bool {
        self.products.is_empty()
    }

    /// The product's tags as of `position` (empty before it was listed, or when unknown).
    pub fn tags_at(&self, product: &str, position: Position) -> &[String] {
        let Some(p) = self.products.get(product) else { return &[] };
        let i = p.tags.partition_point(|(at, _)| *at <= position);
        if i == 0 { &[] } else { &p.tags[i - 1].1 }
    }

    /// Every event up to this position has been applied.
    pub fn seen(&self) -> Position {
        self.seen
    }

    /// Records that every event up to `position` has been applied.
    pub fn saw(&mut self, position: Position) {
        self.seen = self.seen.max(position);
    }

    /// Whether an event of this type can change the catalog (the others need not be decoded).
    pub fn concerns(event_type: &str) -> bool {
        matches!(
            event_type,
            "district_opened" | "product_listed" | "product_edited" | "copy_applied" | "voice_test_concluded"
        )
    }

    /// Folds one event at `position` (idempotent: applying it again changes nothing). Total.
    pub fn apply(&mut self, position: Position, event_id: Uuid, d: &DomainEvent) {
        match d {
            DomainEvent::DistrictOpened(o) => {
                self.districts.entry(o.slug.as_str().to_string()).or_insert_with(|| DistrictEntry {
                    name: o.name.clone(),
                    personality: o.personality.clone(),
                    opened_by: event_id,
                });
            }
            DomainEvent::ProductListed(p) => {
                self.products.entry(p.product_id.as_str().to_string()).or_insert_with(|| ProductEntry {
                    district: p.district.as_str().to_string(),
                    district_at: position,
                    listed_by: event_id,
                    tags: vec![(position, p.tags.clone())],
                });
            }
            DomainEvent::ProductEdited(e) => {
                let Some(p) = self.products.get_mut(e.product_id.as_str()) else { return };
                if let Some(d) = &e.district
                    && position >= p.district_at
                {
                    p.district = d.as_str().to_string();
                    p.district_at = position;
                }
                if let Some(t) = &e.tags {
                    p.set_tags(position, t);
                }
            }
            DomainEvent::CopyApplied(a) => {
                if let (Some(p), Content::Tags { tags }) = (self.products.get_mut(a.product_id.as_str()), &a.content) {
                    p.set_tags(position, tags);
                }
            }
            // A voice that won its test is the district's voice: product copy is written in it.
            DomainEvent::VoiceTestConcluded(c) => {
                if let Some(d) = self.districts.get_mut(c.slug.as_str()) {
                    d.personality = c.personality.clone();
                }
            }
            _ => {}
        }
    }

    /// Whether the catalog admits `record` (appended with `event_id`), and with what. Pure.
    pub fn decide(&self, record: &DomainEvent, event_id: Uuid) -> Result<Admitted, CatalogError> {
        let unknown_district =
            |slug: &str| CatalogError::Unknown { field: "district", reason: format!("unknown district {slug}") };
        let unknown_product =
            |id: &str| CatalogError::Unknown { field: "product_id", reason: format!("unknown product {id}") };
        match record {
            DomainEvent::DistrictOpened(o) => match self.districts.get(o.slug.as_str()) {
                Some(d) if d.opened_by != event_id => Err(CatalogError::Conflict {
                    field: "slug",
                    reason: format!("district {} is already open", o.slug),
                }),
                _ => Ok(Admitted::default()),
            },
            DomainEvent::ProductListed(p) => {
                if !self.districts.contains_key(p.district.as_str()) {
                    return Err(unknown_district(p.district.as_str()));
                }
                match self.products.get(p.product_id.as_str()) {
                    Some(known) if known.listed_by != event_id => Err(CatalogError::Conflict {
                        field: "product_id",
                        reason: format!(
                            "product {id} is already listed (a product_edited record, or PUT /api/products/{id}, \
                             changes it)",
                            id = p.product_id
                        ),
                    }),
                    _ => Ok(Admitted::default()),
                }
            }
            DomainEvent::ProductEdited(e) => {
                if !self.products.contains_key(e.product_id.as_str()) {
                    return Err(unknown_product(e.product_id.as_str()));
                }
                match &e.district {
                    Some(d) if !self.districts.contains_key(d.as_str()) => Err(unknown_district(d.as_str())),
                    _ => Ok(Admitted::default()),
                }
            }
            DomainEvent::Searched(_) => Ok(Admitted::default()),
            signal if signal.is_signal() => {
                let id = signal.product_id().expect("every signal but a search names a product");
                let product = self.products.get(id.as_str()).ok_or_else(|| unknown_product(id.as_str()))?;
                Ok(Admitted { extra_tags: vec![format!("{}{}", tag::DISTRICT_PREFIX, product.district)] })
            }
            other => Err(CatalogError::NotARecord {
                field: "type",
                reason: format!("{} is not a catalog record or a signal", other.event_type()),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;

    /// Given events applied in order, when `record` is decided.
    fn given(events: &[DomainEvent]) -> Catalog {
        let mut c = Catalog::default();
        for (i, e) in events.iter().enumerate() {
            c.apply(i as u64 + 1, Uuid::from_u128(i as u128 + 1), e);
        }
        c
    }

    #[test]
    fn a_district_opens_once_and_a_retry_of_the_same_opening_is_admitted() {
        let c = given(&[opened("toys")]);
        assert_eq!(c.decide(&opened("toys"), Uuid::from_u128(1)), Ok(Admitted::default()));
        let e = c.decide(&opened("toys"), Uuid::from_u128(9)).unwrap_err();
        assert!(matches!(e, CatalogError::Conflict { field: "slug", .. }), "{e:?}");
    }

    #[test]
    fn a_product_is_listed_once_and_only_in_an_open_district() {
        let c = given(&[opened("toys"), listed("p1", "toys", "A train")]);
        let e = c.decide(&listed("p2", "books", "A book"), Uuid::from_u128(9)).unwrap_err();
        assert_eq!((e.field(), e.reason()), ("district", "unknown district books"));
        let e = c.decide(&listed("p1", "toys", "A train"), Uuid::from_u128(9)).unwrap_err();
        assert!(matches!(e, CatalogError::Conflict { field: "product_id", .. }), "{e:?}");
        assert!(c.decide(&listed("p1", "toys", "A train"), Uuid::from_u128(2)).is_ok(), "a retry");
        assert!(c.decide(&listed("p2", "toys", "A kite"), Uuid::from_u128(9)).is_ok());
    }

    #[test]
    fn an_edit_names_a_known_product_and_moves_it_only_to_an_open_district() {
        let c = given(&[opened("toys"), listed("p1", "toys", "A train")]);
        let e = c.decide(&moved("p9", "toys"), Uuid::from_u128(9)).unwrap_err();
        assert!(matches!(e, CatalogError::Unknown { field: "product_id", .. }), "{e:?}");
        let e = c.decide(&moved("p1", "books"), Uuid::from_u128(9)).unwrap_err();
        assert_eq!(e.field(), "district");
        assert!(c.decide(&moved("p1", "toys"), Uuid::from_u128(9)).is_ok());
    }

    #[test]
    fn a_signal_names_a_known_product_and_is_tagged_with_its_district_now() {
        let mut c = given(&[opened("toys"), opened("games"), listed("p1", "toys", "A train")]);
        let e = c.decide(&viewed("p9", "s1"), Uuid::from_u128(9)).unwrap_err();
        assert_eq!(e.field(), "product_id");
        assert_eq!(c.decide(&viewed("p1", "s1"), Uuid::from_u128(9)).unwrap().extra_tags, vec!["district:toys"]);
        c.apply(10, Uuid::from_u128(10), &moved("p1", "games"));
        assert_eq!(c.decide(&viewed("p1", "s1"), Uuid::from_u128(9)).unwrap().extra_tags, vec!["district:games"]);
        // A late-applied older edit does not move it back.
        c.apply(5, Uuid::from_u128(5), &moved("p1", "toys"));
        assert_eq!(c.product("p1").unwrap().district, "games");
    }

    #[test]
    fn tags_are_known_as_of_every_position_whatever_order_they_were_applied_in() {
        let mut c = given(&[opened("toys"), listed("p1", "toys", "A train")]);
        c.apply(20, Uuid::from_u128(20), &retagged("p1", &["wood"]));
        c.apply(10, Uuid::from_u128(10), &retagged("p1", &["rail"]));
        c.apply(20, Uuid::from_u128(20), &retagged("p1", &["wood"]));
        assert_eq!(c.tags_at("p1", 1), &[] as &[String]);
        assert_eq!(c.tags_at("p1", 2), &["gift".to_string()]);
        assert_eq!(c.tags_at("p1", 15), &["rail".to_string()]);
        assert_eq!(c.tags_at("p1", 25), &["wood".to_string()]);
        assert_eq!(c.product("p1").unwrap().tags(), &["wood".to_string()]);
        assert_eq!(c.tags_at("p9", 25), &[] as &[String]);
    }
}
