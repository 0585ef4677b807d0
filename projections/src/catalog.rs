//! The `catalog` projection: the `products` table (current copy, tags, SEO, embedding, price,
//! stock, district, status, the copy under test, the image shown — self-healing's placeholder
//! while the vendor's is broken, with the vendor's kept in `original_image_url`) and the `product_metrics` table (signal counts
//! and revenue in ten-thousandths of the currency unit, `revenue_e4`), folded from the log
//! without the actors: the decision events carry the copy; and the `districts` table (voice and
//! signal counts, the copy in force and the voice under test beside it).

use mall_events::RecordedEvent;
use mall_events::domain::{Content, DomainEvent, Outcome, Repair};
use mall_events::ids::tag;
use serde_json::{Value, json};

use crate::change::{Change, Op, TableDef};
use crate::row;
use crate::runner::Projection;

pub const PRODUCTS: &str = "products";
pub const PRODUCT_METRICS: &str = "product_metrics";
pub const DISTRICTS: &str = "districts";

const TABLES: &[TableDef] = &[
    TableDef {
        name: PRODUCTS,
        key: "product_id",
        defaults: || {
            row! {
                "district" => "", "title" => "", "description" => "", "tags" => json!([]), "attributes" => json!({}),
                "price" => "0", "currency" => "", "stock" => 0, "image_url" => Value::Null,
                "original_image_url" => Value::Null, "status" => "out_of_stock",
                "seo_title" => Value::Null, "seo_meta_description" => Value::Null, "embedding" => Value::Null,
                "embedding_hash" => Value::Null, "copy_version" => 0, "experiment_id" => Value::Null,
                "challenger" => Value::Null, "price_test_id" => Value::Null, "challenger_price" => Value::Null,
                "listed_position" => 0, "updated_position" => 0,
            }
        },
    },
    TableDef {
        name: PRODUCT_METRICS,
        key: "product_id",
        defaults: || {
            row! {
                "impressions" => 0, "views" => 0, "clicks" => 0, "carts" => 0, "purchases" => 0, "bounces" => 0,
                "revenue_e4" => 0, "dwell_ms" => 0, "last_signal_at" => Value::Null,
            }
        },
    },
    TableDef {
        name: DISTRICTS,
        key: "slug",
        defaults: || {
            row! {
                "name" => "", "tone" => "", "style" => "", "audience" => "", "opened_position" => 0,
                "tagline" => Value::Null, "copy_description" => Value::Null, "seo_title" => Value::Null,
                "seo_description" => Value::Null, "voice_test_id" => Value::Null, "challenger" => Value::Null,
                "impressions" => 0, "views" => 0, "clicks" => 0, "carts" => 0, "purchases" => 0, "bounces" => 0,
                "revenue_e4" => 0,
            }
        },
    },
];

fn status(stock: u32) -> &'static str {
    if stock > 0 { "in_stock" } else { "out_of_stock" }
}

/// Products and their metrics.
pub struct Catalog;

impl Projection for Catalog {
    fn name(&self) -> &'static str {
        "catalog"
    }

    fn version(&self) -> u32 {
        // 2: price tests (`price_test_id`, `challenger_price`).
        2
    }

    fn tables(&self) -> &'static [TableDef] {
        TABLES
    }

    fn apply(&self, e: &RecordedEvent, d: &DomainEvent) -> Vec<Change> {
        if let DomainEvent::DistrictOpened(o) = d {
            return vec![Change::set(
                DISTRICTS,
                o.slug.as_str(),
                row! {
                    "name" => o.name, "tone" => o.personality.tone, "style" => o.personality.style,
                    "audience" => o.personality.audience, "opened_position" => e.position,
                },
            )];
        }
        // A district's voice and copy: the new voice under test beside the old, then the one kept.
        match d {
            DomainEvent::VoiceTestStarted(t) => {
                return vec![Change::set(
                    DISTRICTS,
                    t.slug.as_str(),
                    row! {
                        "tagline" => t.control.tagline, "copy_description" => t.control.description,
                        "seo_title" => t.control.seo_title, "seo_description" => t.control.seo_description,
                        "voice_test_id" => t.test_id.to_string(),
                        "challenger" => json!({"copy": t.challenger, "personality": t.personality}),
                    },
                )];
            }
            DomainEvent::VoiceTestConcluded(c) => {
                return vec![Change::set(
                    DISTRICTS,
                    c.slug.as_str(),
                    row! {
                        "tone" => c.personality.tone, "style" => c.personality.style, "audience" => c.personality.audience,
                        "tagline" => c.copy.tagline, "copy_description" => c.copy.description,
                        "seo_title" => c.copy.seo_title, "seo_description" => c.copy.seo_description,
                        "voice_test_id" => Value::Null, "challenger" => Value::Null,
                    },
                )];
            }
            _ => {}
        }
        let Some(id) = d.product_id().map(|p| p.as_str().to_string()) else { return Vec::new() };
        let pos = e.position;
        let set = |r| Change::set(PRODUCTS, id.clone(), r);
        let mut out = Vec::new();
        match d {
            DomainEvent::ProductListed(l) => out.push(set(row! {
                "district" => l.district, "title" => l.title, "description" => l.description, "tags" => l.tags,
                "attributes" => l.attributes, "price" => l.price, "currency" => l.currency, "stock" => l.stock,
                "image_url" => l.image_url, "status" => status(l.stock), "listed_position" => pos, "updated_position" => pos,
            })),
            DomainEvent::ProductEdited(x) => {
                let mut r = row! { "updated_position" => pos };
                let mut put = |k: &str, v: Value| {
                    r.insert(k.to_string(), v);
                };
                if let Some(v) = &x.district {
                    put("district", json!(v));
                }
                if let Some(v) = &x.title {
                    put("title", json!(v));
                }
                if let Some(v) = &x.description {
                    // A vendor's own copy ends any experiment on the old one.
                    put("description", json!(v));
                    put("experiment_id", Value::Null);
                    put("challenger", Value::Null);
                    out.push(Change::add(PRODUCTS, id.clone(), vec![("copy_version", 1.0)]));
                }
                if let Some(v) = &x.price {
                    put("price", json!(v));
                }
                if let Some(v) = &x.currency {
                    put("currency", json!(v));
                }
                if let Some(v) = &x.tags {
                    put("tags", json!(v));
                }
                if let Some(v) = &x.attributes {
                    put("attributes", json!(v));
                }
                if let Some(v) = &x.image_url {
                    // A vendor's new image ends any placeholder shown for the old one.
                    put("image_url", json!(v));
                    put("original_image_url", Value::Null);
                }
                if let Some(v) = x.stock {
                    put("stock", json!(v));
                    put("status", json!(status(v)));
                }
                out.push(set(r));
            }
            DomainEvent::StockChanged(x) => {
                out.push(set(row! { "stock" => x.stock, "status" => status(x.stock), "updated_position" => pos }))
            }
            DomainEvent::PriceChanged(x) => {
                out.push(set(row! { "price" => x.price, "currency" => x.currency, "updated_position" => pos }))
            }
            DomainEvent::CopyApplied(a) => match &a.content {
                Content::Description { text } => {
                    out.push(set(row! { "description" => text, "updated_position" => pos }));
                    out.push(Change::add(PRODUCTS, id.clone(), vec![("copy_version", 1.0)]));
                }
                Content::Tags { tags } => out.push(set(row! { "tags" => tags, "updated_position" => pos })),
                Content::Seo(s) => out.push(set(row! {
                    "seo_title" => s.title, "seo_meta_description" => s.meta_description, "updated_position" => pos,
                })),
                Content::Embedding { vector, text_hash } => out.push(set(row! {
                    "embedding" => vector, "embedding_hash" => format!("{text_hash:016x}"), "updated_position" => pos,
                })),
            },
            DomainEvent::ProductRepaired(r) => out.push(set(match &r.repair {
                Repair::Placeholder { original, placeholder } => row! {
                    "image_url" => placeholder, "original_image_url" => original, "updated_position" => pos,
                },
                Repair::Restore { image_url } => row! {
                    "image_url" => image_url, "original_image_url" => Value::Null, "updated_position" => pos,
                },
                Repair::Row { title, description, price, currency, stock, district, .. } => row! {
                    "title" => title, "description" => description, "price" => price, "currency" => currency,
                    "stock" => stock, "status" => status(*stock), "district" => district, "updated_position" => pos,
                },
            })),
            DomainEvent::PriceTestStarted(x) => out.push(set(row! {
                "price_test_id" => x.test_id, "challenger_price" => x.challenger, "updated_position" => pos,
            })),
            DomainEvent::PriceTestConcluded(x) => out.push(set(row! {
                "price" => x.price, "price_test_id" => Value::Null, "challenger_price" => Value::Null,
                "updated_position" => pos,
            })),
            DomainEvent::ExperimentStarted(x) => out.push(set(row! {
                "experiment_id" => x.experiment_id, "challenger" => x.challenger, "updated_position" => pos,
            })),
            DomainEvent::ExperimentConcluded(x) => {
                if x.outcome == Outcome::ChallengerWon {
                    out.push(Change { table: PRODUCTS, key: id.clone(), op: Op::Copy { from: "challenger", to: "description" } });
                    out.push(Change::add(PRODUCTS, id.clone(), vec![("copy_version", 1.0)]));
                }
                out.push(set(row! { "experiment_id" => Value::Null, "challenger" => Value::Null, "updated_position" => pos }));
            }
            signal => {
                let delta: Option<Vec<(&'static str, f64)>> = match signal {
                    DomainEvent::ImpressionServed(_) => Some(vec![("impressions", 1.0)]),
                    DomainEvent::ProductViewed(v) => Some(vec![("views", 1.0), ("dwell_ms", v.dwell_ms as f64)]),
                    DomainEvent::ProductClicked(_) => Some(vec![("clicks", 1.0)]),
                    DomainEvent::AddedToCart(_) => Some(vec![("carts", 1.0)]),
                    DomainEvent::Purchased(p) => Some(vec![
                        ("purchases", 1.0),
                        // Money stays exact: ten-thousandths of the currency unit, an integer.
                        ("revenue_e4", p.unit_price.ten_thousandths() as f64 * p.quantity as f64),
                    ]),
                    DomainEvent::Bounced(_) => Some(vec![("bounces", 1.0)]),
                    _ => None,
                };
                if let Some(delta) = delta {
                    // The district a signal counts for is the one its envelope is tagged with
                    // (the product's district when it was stored).
                    if let Some(slug) = e.tags.iter().find_map(|t| tag::district_of(t)) {
                        let district_delta = delta.iter().filter(|(k, _)| *k != "dwell_ms").copied().collect();
                        out.push(Change::add(DISTRICTS, slug, district_delta));
                    }
                    out.push(Change::add(PRODUCT_METRICS, id.clone(), delta));
                    if let Some(at) = signal.signal_at() {
                        out.push(Change::set(PRODUCT_METRICS, id.clone(), row! { "last_signal_at" => at }));
                    }
                }
            }
        }
        out
    }
}
