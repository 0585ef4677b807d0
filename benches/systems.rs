//! Benchmarks of self-healing's and district evolution's pure parts, at catalog sizes:
//! - `health/detect_10k`: the detection rules over 10,000 products (states, rows, images);
//! - `health/decide`: the findings of a check over 10,000 products (7,399) against the half of them
//!   open already;
//! - `evolution/decide`: a district's look (30 days of days, 12 peers);
//! - `evolution/fold_signal`: what district evolution adds to each signal a district folds;
//! - `district_copy/write_check`: a district's copy written and checked by the guardrails;
//! - `fetch/refused`: the image fetcher refusing a private address (no connection);
//! - `analytics/detect_4_metrics`: anomaly detection on one district's four hourly series (five
//!   weeks, the last looked at);
//! - `analytics/report_month`: a month's report of a district with 500 products (the facts, the
//!   narrative, the drivers) from its rows;
//! - `analytics/narrative_guardrail`: a narrative checked (every number one of the facts);
//! - `social/week`: a district's week of posts written and checked by the built-in writer;
//! - `plugins/inventory_10k`: inventory prediction over 10,000 products' 56 days.
//!
//! `cargo bench --bench systems` runs them.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{Duration, TimeZone, Utc};
use criterion::{Criterion, Throughput};
use mall_actors::district::evolution::{self, Policy};
use mall_actors::district::{DistrictState, copy};
use mall_actors::health::fetch::Fetcher;
use mall_actors::health::{self, Facts, HealthState, ImageCheck, Lag, ProductFacts, ProductView, RowView, Thresholds};
use mall_events::RecordedEvent;
use mall_events::domain::*;
use mall_events::ids::*;
use uuid::Uuid;

fn product(i: usize) -> ProductFacts {
    let state = ProductView {
        product_id: ProductId::parse(format!("p{i}")).unwrap(),
        district: DistrictSlug::parse(format!("d{}", i % 10)).unwrap(),
        title: format!("Wooden train {}", i % 7_000),
        description: if i.is_multiple_of(13) { String::new() } else { "A train of beech wood, sanded smooth.".into() },
        has_tags: !i.is_multiple_of(11),
        has_seo: !i.is_multiple_of(17),
        has_embedding: true,
        price: Price::parse(if i.is_multiple_of(101) { "0" } else { "19.90" }).unwrap(),
        currency: Currency::parse("EUR").unwrap(),
        stock: 4,
        image_url: Some(format!("https://img.example.com/{i}.jpg")),
        attributes: BTreeMap::from([("material".to_string(), AttributeValue::Text("beech".into()))]),
        version: 10,
        position: i as u64,
        rejections: i.is_multiple_of(29).then(|| ("rewrite_description".to_string(), 4)),
    };
    let mut row = RowView {
        district: state.district.as_str().into(),
        title: state.title.clone(),
        description: state.description.clone(),
        price: state.price.as_str().into(),
        currency: "EUR".into(),
        stock: 4,
        image_url: state.image_url.clone(),
        listed_position: i as u64,
    };
    if i.is_multiple_of(31) {
        row.title = "tampered".into();
    }
    let image = Some(if i.is_multiple_of(19) { ImageCheck::Broken("404".into()) } else { ImageCheck::Works });
    ProductFacts { state, row: Some(row), image }
}

fn facts(n: usize) -> Facts {
    Facts {
        products: (0..n).map(product).collect(),
        districts: (0..9).map(|d| format!("d{d}")).collect::<BTreeSet<_>>(),
        rows_position: u64::MAX,
        images_checked: true,
        lags: vec![Lag { projection: "catalog".into(), positions: 12, seconds: 0.1 }],
        failed_calls: 0,
        last_call_error: None,
        read_ms: Some(3.0),
    }
}

fn recorded(position: u64, d: &DomainEvent) -> RecordedEvent {
    RecordedEvent {
        event_id: Uuid::from_u128(position as u128),
        stream_id: d.stream_id(),
        stream_version: position,
        position,
        event_type: d.event_type().into(),
        schema_version: 1,
        recorded_at: Utc::now(),
        tags: Vec::new(),
        correlation_id: None,
        causation_id: None,
        payload: Vec::new(),
    }
}

fn voice(tone: &str) -> Personality {
    Personality { tone: tone.into(), style: "storytelling".into(), audience: "families".into() }
}

fn signal(i: u64, at: chrono::DateTime<Utc>) -> DomainEvent {
    let shopper = ShopperId::parse(format!("s{}", i % 5_000)).unwrap();
    let session_id = SessionId::parse("s").unwrap();
    let product_id = ProductId::parse("p1").unwrap();
    if i.is_multiple_of(10) {
        DomainEvent::AddedToCart(AddedToCart {
            campaign: None,
            id: Uuid::from_u128(i as u128 + 1),
            shopper_id: shopper,
            session_id,
            at,
            product_id,
            quantity: 1,
        })
    } else {
        DomainEvent::ProductViewed(ProductViewed {
            campaign: None,
            id: Uuid::from_u128(i as u128 + 1),
            shopper_id: shopper,
            session_id,
            at,
            product_id,
            dwell_ms: 4_000,
        })
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let mut g = c.benchmark_group("health");
    let f = facts(10_000);
    g.throughput(Throughput::Elements(10_000));
    g.bench_function("detect_10k", |b| b.iter(|| health::detect(&f, &Thresholds::default())));
    let findings = health::detect(&f, &Thresholds::default());
    // Half of what the check finds is open already.
    let mut state = HealthState::default();
    let first = HealthChecked {
        check_id: Uuid::from_u128(1),
        trigger: "job".into(),
        checked: health::checked(&f),
        findings: findings.iter().step_by(2).cloned().collect(),
        truncated: false,
        at: Utc::now(),
    };
    for (i, e) in health::events(&first, &health::decide(&state, &first), &BTreeMap::new()).iter().enumerate() {
        state.evolve(&recorded(i as u64 + 1, e), e);
    }
    let check = HealthChecked { check_id: Uuid::from_u128(2), findings: findings.clone(), ..first.clone() };
    g.throughput(Throughput::Elements(findings.len() as u64));
    g.bench_function("decide", |b| b.iter(|| health::decide(&state, &check)));
    g.finish();
    eprintln!("health: {} findings over 10,000 products, {} open before the check", findings.len(), state.open.len());

    let mut g = c.benchmark_group("evolution");
    let now = Utc.with_ymd_and_hms(2026, 11, 29, 12, 0, 0).unwrap();
    let mut d = DistrictState::default();
    let opened = DomainEvent::DistrictOpened(DistrictOpened {
        slug: DistrictSlug::parse("toys").unwrap(),
        name: "Toys".into(),
        personality: voice("technical"),
    });
    d.evolve(&opened, 1);
    for i in 0..60_000u64 {
        d.evolve(&signal(i, now - Duration::minutes((i % 43_200) as i64)), i + 2);
    }
    let peers: Vec<Peer> = (0..12)
        .map(|k| Peer {
            slug: DistrictSlug::parse(format!("d{k}")).unwrap(),
            personality: voice(if k % 2 == 0 { "warm" } else { "playful" }),
            views: 10_000,
            conversions: 1_000 + 100 * k,
        })
        .collect();
    let input = EvolutionInput { now, peers, trigger: "job".into() };
    let (slug, personality) = (d.slug.clone().unwrap(), d.personality.clone().unwrap());
    g.bench_function("decide", |b| {
        b.iter(|| evolution::decide(&slug, &personality, &d.evolution, d.position, &input, &Policy::default()))
    });
    let mut next = 70_000u64;
    g.throughput(Throughput::Elements(1));
    g.bench_function("fold_signal", |b| {
        b.iter(|| {
            next += 1;
            d.evolve(&signal(next, now), next);
        })
    });
    g.finish();

    let mut g = c.benchmark_group("district_copy");
    let categories = vec!["wooden toys".to_string(), "puzzles".to_string(), "kites".to_string()];
    g.bench_function("write_check", |b| {
        b.iter(|| {
            let written = copy::write("Toy Town", &voice("warm"), &categories);
            assert!(copy::check(&written, "Toy Town", &categories).1.is_some());
        })
    });
    g.finish();

    let mut g = c.benchmark_group("analytics");
    let hours = 35 * 24;
    let series: Vec<f64> = (0..hours)
        .map(|t| 20.0 + 15.0 * ((t % 24) as f64 / 24.0 * std::f64::consts::TAU).sin() + (t % 7) as f64)
        .collect();
    g.bench_function("detect_4_metrics", |b| {
        b.iter(|| {
            for (counts, floor) in [(true, 1.0), (false, 24.5), (false, 1.0), (false, 1.0)] {
                mall_actors::analytics::anomaly::detect_with(&series, hours - 168, counts, floor);
            }
        })
    });
    use mall_actors::analytics::report::{self, HourRow, Period, ProductDay};
    let rows: Vec<HourRow> = (0..60 * 24)
        .map(|h| HourRow {
            district: "toys".into(),
            hour: now - Duration::hours(h),
            views: 40 + (h % 24) as u64,
            clicks: 10,
            carts: 5,
            purchases: 2,
            units: 2,
            bounces: 3,
            revenue_e4: 490_000,
        })
        .collect();
    let days: Vec<ProductDay> = (0..30)
        .flat_map(|d| {
            (0..500).map(move |p| ProductDay {
                day: (now - Duration::days(d)).date_naive(),
                product_id: format!("p{p}"),
                district: "toys".into(),
                views: 10 + p % 7,
                carts: p % 3,
                purchases: p % 2,
                revenue_e4: (p % 2) as i64 * 245_000,
            })
        })
        .collect();
    let titles: std::collections::HashMap<String, String> =
        (0..500).map(|p| (format!("p{p}"), format!("Toy {p}"))).collect();
    let input = report::Input {
        microstore: "toys",
        name: "Toy Town",
        period: Period::Month,
        now,
        hours: &rows,
        products: &days,
        titles: &titles,
        terms: &[],
        anomalies: &[],
    };
    g.bench_function("report_month", |b| b.iter(|| report::report(&input)));
    let r = report::report(&input);
    let evidence = report::evidence("Toy Town");
    g.bench_function("narrative_guardrail", |b| {
        b.iter(|| {
            let o = mall_actors::guardrails::check_figures(
                &r.narrative,
                &mall_actors::guardrails::NARRATIVE,
                &evidence,
                &r.figures(),
                &r.names(),
            );
            assert!(o.passed(), "{:?}\n{}", o.verdicts.iter().filter(|v| !v.passed).collect::<Vec<_>>(), r.narrative);
        })
    });
    g.finish();

    let mut g = c.benchmark_group("social");
    let facts = mall_actors::executors::Facts {
        product_id: "p1".into(),
        title: "Wooden train".into(),
        description: String::new(),
        tags: vec!["wood".into()],
        attributes: BTreeMap::from([("material".to_string(), AttributeValue::Text("beech".into()))]),
        price: "24.50".into(),
        currency: "EUR".into(),
        stock: 5,
        district: "Toy Town".into(),
        personality: Some(voice("playful")),
        diagnosis: "social_post".into(),
        reason: "bench".into(),
    };
    let week = mall_actors::social::slots(mall_actors::social::week_of(now), &[9, 13, 19]);
    g.throughput(Throughput::Elements(week.len() as u64));
    g.bench_function("week", |b| {
        b.iter(|| {
            for slot in &week {
                let d = mall_actors::social::write(slot.platform, &facts);
                assert!(mall_actors::social::check(&d, &facts).1.is_some());
            }
        })
    });
    g.finish();

    let mut g = c.benchmark_group("plugins");
    use mall_actors::plugins::{Context, Hook, InventoryPrediction, Plugin};
    let products: Vec<mall_actors::plugins::ProductFacts> = (0..10_000)
        .map(|i| mall_actors::plugins::ProductFacts {
            product_id: format!("p{i}"),
            title: format!("Toy {i}"),
            district: "toys".into(),
            price: 24.5,
            currency: "EUR".into(),
            stock: (i % 40) as u32,
            image_url: None,
            units_by_day: (0..mall_actors::plugins::DAYS).map(|d| if (d + i) % 3 == 0 { 1.0 } else { 0.0 }).collect(),
            views_by_day: vec![10.0; mall_actors::plugins::DAYS],
            numbers: BTreeMap::new(),
        })
        .collect();
    let ctx = Context { now, config: BTreeMap::new(), products, reviews: Vec::new() };
    g.throughput(Throughput::Elements(10_000));
    g.bench_function("inventory_10k", |b| b.iter(|| InventoryPrediction.run(Hook::Schedule, &ctx).unwrap()));
    g.finish();

    // What every request pays (the public limiter) and what a scrape costs.
    let mut g = c.benchmark_group("operations");
    let limits = mall::serve::limits::Limits::new(
        mall::serve::limits::Limit { per_second: 1_000_000_000, burst: 1_000_000_000 },
        mall::serve::limits::Limit { per_second: 1_000_000_000, burst: 1_000_000_000 },
    );
    let addrs: Vec<std::net::IpAddr> =
        (0..1_000u32).map(|i| std::net::IpAddr::from((0x0a00_0000 + i).to_be_bytes())).collect();
    let mut i = 0;
    g.bench_function("read_limit_check", |b| {
        b.iter(|| {
            i = (i + 1) % addrs.len();
            assert!(limits.read_wait(addrs[i]).is_none());
        })
    });
    let metrics = mall::serve::metrics::Metrics::new();
    for t in mall_events::domain::EVENT_TYPES {
        metrics.saw(t);
    }
    g.bench_function("metrics_encode", |b| b.iter(|| metrics.encode().unwrap().len()));
    g.finish();

    let mut g = c.benchmark_group("fetch");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let fetcher = Fetcher::default();
    g.bench_function("refused", |b| {
        b.iter(|| assert!(rt.block_on(fetcher.image("http://0x7f.1/latest/meta-data")).is_err()))
    });
    g.finish();
    c.final_summary();
}
