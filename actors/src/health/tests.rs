//! Given/when/then for every detection rule, every decision rule and the verifier.

use std::collections::{BTreeMap, BTreeSet};

use mall_events::RecordedEvent;
use mall_events::domain::{AttributeValue, DomainEvent, NotificationDelivered};
use mall_events::health::{Finding, HealthChecked, Remedy, Repair, Severity};
use mall_events::ids::{Currency, DistrictSlug, Price, ProductId, StreamId};
use uuid::Uuid;

use super::*;
use crate::testing::t0;

fn view(id: &str) -> ProductView {
    ProductView {
        product_id: ProductId::parse(id).unwrap(),
        district: DistrictSlug::parse("toys").unwrap(),
        title: format!("Train {id}"),
        description: "A train of beech wood.".into(),
        has_tags: true,
        has_seo: true,
        has_embedding: true,
        price: Price::parse("19.90").unwrap(),
        currency: Currency::parse("EUR").unwrap(),
        stock: 4,
        image_url: None,
        attributes: BTreeMap::new(),
        version: 3,
        position: 10,
        rejections: None,
    }
}

fn row_of(s: &ProductView) -> RowView {
    RowView {
        district: s.district.as_str().into(),
        title: s.title.clone(),
        description: s.description.clone(),
        price: s.price.as_str().into(),
        currency: s.currency.as_str().into(),
        stock: s.stock as i64,
        image_url: s.image_url.clone(),
        listed_position: s.position,
    }
}

fn healthy(id: &str) -> ProductFacts {
    let state = view(id);
    ProductFacts { row: Some(row_of(&state)), state, image: None }
}

fn facts(products: Vec<ProductFacts>) -> Facts {
    Facts {
        products,
        districts: BTreeSet::from(["toys".to_string()]),
        rows_position: 100,
        images_checked: true,
        ..Facts::default()
    }
}

fn kinds(f: &[Finding]) -> Vec<(String, String)> {
    f.iter().map(|f| (f.kind.clone(), f.subject.clone())).collect()
}

fn one(f: &[Finding], kind: &str) -> Finding {
    let mut of: Vec<&Finding> = f.iter().filter(|x| x.kind == kind).collect();
    assert_eq!(of.len(), 1, "{f:#?}");
    of.pop().unwrap().clone()
}

fn detect_default(f: &Facts) -> Vec<Finding> {
    detect(f, &Thresholds::default())
}

#[test]
fn given_a_healthy_catalog_then_nothing_is_found() {
    let mut p = healthy("p1");
    p.state.image_url = Some("https://img.example.com/1.jpg".into());
    p.row.as_mut().unwrap().image_url = p.state.image_url.clone();
    p.image = Some(ImageCheck::Works);
    assert_eq!(detect_default(&facts(vec![p, healthy("p2")])), Vec::new());
}

#[test]
fn given_missing_copy_then_a_task_is_called_for_naming_what_is_missing() {
    let mut p = healthy("p1");
    p.state.description = "  ".into();
    p.state.has_seo = false;
    let f = one(&detect_default(&facts(vec![p])), "missing_copy");
    assert_eq!((f.remedy, f.severity), (Remedy::Task, Severity::Medium));
    assert_eq!(f.evidence["missing"], "description, seo");
    let mut q = healthy("p2");
    q.state.has_embedding = false;
    let f = one(&detect_default(&facts(vec![q])), "missing_copy");
    assert_eq!((f.severity, f.evidence["missing"].as_str()), (Severity::Low, "embedding"));
}

#[test]
fn given_a_product_whose_district_is_not_open_then_it_is_an_orphan_for_a_person() {
    let mut p = healthy("p1");
    p.state.district = DistrictSlug::parse("closed-shop").unwrap();
    p.row.as_mut().unwrap().district = "closed-shop".into();
    let f = one(&detect_default(&facts(vec![p])), "orphan");
    assert_eq!((f.remedy, f.severity, f.repair.clone()), (Remedy::Person, Severity::High, None));
    assert_eq!(f.evidence["district"], "closed-shop");
}

#[test]
fn given_a_zero_price_then_it_is_flagged_for_a_person() {
    let mut p = healthy("p1");
    p.state.price = Price::parse("0.00").unwrap();
    p.row.as_mut().unwrap().price = "0.00".into();
    let f = one(&detect_default(&facts(vec![p])), "invalid_price");
    assert_eq!((f.remedy, f.repair.clone()), (Remedy::Person, None));
}

#[test]
fn given_two_listings_with_the_same_title_and_attributes_then_the_later_is_a_duplicate() {
    let mut a = healthy("a");
    let mut b = healthy("b");
    let mut c = healthy("c");
    for (p, at) in [(&mut a, 7), (&mut b, 3), (&mut c, 9)] {
        p.state.title = "Wooden  Train".into();
        p.state.attributes = BTreeMap::from([("colour".into(), AttributeValue::Text("red".into()))]);
        p.row = Some(RowView { listed_position: at, ..row_of(&p.state) });
    }
    b.state.title = "wooden train".into();
    b.row.as_mut().unwrap().title = b.state.title.clone();
    c.state.attributes.insert("colour".into(), AttributeValue::Text("blue".into()));
    let found = detect_default(&facts(vec![a, b, c]));
    // b was listed first (position 3); c differs in colour.
    assert_eq!(kinds(&found), vec![("duplicate_listing".to_string(), "product:a".to_string())]);
    assert_eq!(found[0].evidence["duplicate_of"], "b");
    assert_eq!(found[0].remedy, Remedy::Person);
}

#[test]
fn given_a_read_row_that_disagrees_with_the_product_then_it_is_repaired_from_the_product() {
    let mut p = healthy("p1");
    {
        let r = p.row.as_mut().unwrap();
        r.title = "Tampered".into();
        r.price = "1.00".into();
    }
    let f = one(&detect_default(&facts(vec![p.clone()])), "row_mismatch");
    assert_eq!(f.remedy, Remedy::Fix);
    assert_eq!(f.evidence["fields"], "title, price");
    assert_eq!(f.evidence["price"], "row 1.00, state 19.90");
    assert!(!f.evidence["title"].contains("Tampered"), "vendor text is not evidence: {:?}", f.evidence);
    match f.repair.unwrap() {
        Repair::Row { title, price, stock, as_of, .. } => {
            assert_eq!((title.as_str(), price.as_str(), stock, as_of), ("Train p1", "19.90", 4, 3));
        }
        other => panic!("{other:?}"),
    }
    // The same price written differently is the same price.
    let mut q = healthy("p2");
    q.row.as_mut().unwrap().price = "19.9".into();
    assert_eq!(detect_default(&facts(vec![q])), Vec::new());
}

#[test]
fn given_a_row_the_read_side_has_not_caught_up_with_then_it_is_not_compared() {
    let mut p = healthy("p1");
    p.row.as_mut().unwrap().title = "An older title".into();
    p.state.position = 101;
    assert_eq!(detect_default(&facts(vec![p])), Vec::new());
}

#[test]
fn given_a_negative_stock_in_the_read_row_then_it_is_repaired_from_the_product() {
    let mut p = healthy("p1");
    p.row.as_mut().unwrap().stock = -3;
    let found = detect_default(&facts(vec![p]));
    assert_eq!(kinds(&found), vec![("negative_stock".to_string(), "product:p1".to_string())]);
    assert!(matches!(found[0].repair, Some(Repair::Row { stock: 4, .. })));
}

#[test]
fn given_a_broken_or_refused_image_then_the_placeholder_is_called_for_and_the_original_kept() {
    for check in [ImageCheck::Broken("404".into()), ImageCheck::Refused("10.0.0.1 is private".into())] {
        let mut p = healthy("p1");
        p.state.image_url = Some("https://img.example.com/1.jpg".into());
        p.row.as_mut().unwrap().image_url = p.state.image_url.clone();
        p.image = Some(check.clone());
        let f = one(&detect_default(&facts(vec![p])), "broken_image");
        assert_eq!((f.remedy, f.severity), (Remedy::Fix, Severity::High));
        assert_eq!(f.evidence["refused"], matches!(check, ImageCheck::Refused(_)).to_string());
        assert_eq!(
            f.repair,
            Some(Repair::Placeholder {
                original: "https://img.example.com/1.jpg".into(),
                placeholder: "/api/products/p1/placeholder.svg".into()
            })
        );
    }
}

#[test]
fn given_a_placeholder_shown_for_an_image_that_works_again_then_the_original_is_restored() {
    let mut p = healthy("p1");
    p.state.image_url = Some("https://img.example.com/1.jpg".into());
    p.row.as_mut().unwrap().image_url = Some(placeholder_url("p1"));
    p.image = Some(ImageCheck::Works);
    let f = one(&detect_default(&facts(vec![p])), "image_recovered");
    assert_eq!(f.repair, Some(Repair::Restore { image_url: "https://img.example.com/1.jpg".into() }));
}

#[test]
fn given_performance_measures_past_their_thresholds_then_they_are_logged_for_optimization() {
    let mut p = healthy("p1");
    p.state.rejections = Some(("rewrite_description".into(), 4));
    let mut f = facts(vec![p, healthy("p2")]);
    f.lags = vec![
        Lag { projection: "catalog".into(), positions: 20_000, seconds: 3.0 },
        Lag { projection: "optimization".into(), positions: 10, seconds: 0.1 },
    ];
    f.failed_calls = 5;
    f.last_call_error = Some("the model answered 503".into());
    f.read_ms = Some(900.0);
    let found = detect_default(&f);
    assert_eq!(
        kinds(&found),
        vec![
            ("rejection_streak".to_string(), "product:p1".to_string()),
            ("projection_lag".to_string(), "projection:catalog".to_string()),
            ("failing_llm".to_string(), "mall".to_string()),
            ("slow_read".to_string(), "reads".to_string()),
        ]
    );
    assert!(found.iter().all(|f| f.remedy == Remedy::Log && f.repair.is_none()));
    // Below the thresholds: nothing.
    f.products[0].state.rejections = Some(("rewrite_description".into(), 2));
    f.lags.truncate(0);
    f.failed_calls = 2;
    f.read_ms = Some(12.0);
    assert_eq!(detect_default(&f), Vec::new());
}

// --- decide ---

fn check(n: u128, findings: Vec<Finding>, scopes: &[&str]) -> HealthChecked {
    HealthChecked {
        check_id: Uuid::from_u128(n),
        trigger: "job".into(),
        checked: scopes.iter().map(|s| (s.to_string(), 1)).collect(),
        findings,
        truncated: false,
        at: t0(),
    }
}

const ALL: &[&str] = &["products", "images", "performance"];

/// Records a check and the events its decisions call for, folding each into `state`.
fn run(state: &mut HealthState, log: &mut Vec<(RecordedEvent, DomainEvent)>, c: HealthChecked) -> Vec<Decision> {
    let decided = decide(state, &c);
    let check_event = record(state, log, DomainEvent::HealthChecked(c.clone()), None);
    for e in events(&c, &decided, &BTreeMap::new()) {
        record(state, log, e, Some(check_event));
    }
    decided
}

fn record(
    state: &mut HealthState,
    log: &mut Vec<(RecordedEvent, DomainEvent)>,
    d: DomainEvent,
    cause: Option<Uuid>,
) -> Uuid {
    let position = log.len() as u64 + 1;
    let e = RecordedEvent {
        event_id: Uuid::from_u128(1_000 + position as u128),
        stream_id: StreamId::parse(mall_events::health::STREAM).unwrap(),
        stream_version: position,
        position,
        event_type: d.event_type().into(),
        schema_version: 1,
        recorded_at: t0(),
        tags: vec![mall_events::health::TAG.into()],
        correlation_id: None,
        causation_id: cause,
        payload: Vec::new(),
    };
    state.evolve(&e, &d);
    let id = e.event_id;
    log.push((e, d));
    id
}

fn broken(id: &str, url: &str) -> Finding {
    let mut p = healthy(id);
    p.state.image_url = Some(url.into());
    p.image = Some(ImageCheck::Broken("404".into()));
    one(&detect_default(&facts(vec![p])), "broken_image")
}

fn person(id: &str) -> Finding {
    let mut p = healthy(id);
    p.state.price = Price::parse("0").unwrap();
    one(&detect_default(&facts(vec![p])), "invalid_price")
}

#[test]
fn given_new_findings_then_issues_open_and_known_fixes_are_made() {
    let mut s = HealthState::default();
    let mut log = Vec::new();
    let d = run(&mut s, &mut log, check(1, vec![broken("p1", "https://x/1.jpg"), person("p2")], ALL));
    assert_eq!(d.len(), 3, "{d:#?}");
    assert!(matches!(&d[0], Decision::Open { finding, .. } if finding.kind == "broken_image"));
    assert!(
        matches!(&d[1], Decision::Repair { repair: Repair::Placeholder { .. }, product_id, .. } if product_id == "p1")
    );
    assert!(matches!(&d[2], Decision::Open { finding, .. } if finding.kind == "invalid_price"));
    assert_eq!(s.open.len(), 2);
    // The repair and the issue for a person are notifications.
    assert_eq!(s.outbox.len(), 2);
}

#[test]
fn given_the_same_findings_again_then_a_second_check_decides_nothing() {
    let mut s = HealthState::default();
    let mut log = Vec::new();
    let findings = vec![broken("p1", "https://x/1.jpg"), person("p2")];
    run(&mut s, &mut log, check(1, findings.clone(), ALL));
    assert_eq!(run(&mut s, &mut log, check(2, findings, ALL)), Vec::new());
}

#[test]
fn given_an_issue_the_check_no_longer_finds_then_it_is_closed_but_only_by_a_check_of_its_scope() {
    let mut s = HealthState::default();
    let mut log = Vec::new();
    run(&mut s, &mut log, check(1, vec![broken("p1", "https://x/1.jpg"), person("p2")], ALL));
    // Images not checked this time: the image issue stays; the price was fixed by its vendor.
    let d = run(&mut s, &mut log, check(2, Vec::new(), &["products", "performance"]));
    assert_eq!(d.len(), 1, "{d:#?}");
    assert!(matches!(&d[0], Decision::Close { .. }));
    assert_eq!(s.open.keys().collect::<Vec<_>>(), vec!["broken_image|product:p1"]);
    assert_eq!(s.closed, 1);
}

#[test]
fn given_a_replaced_image_that_works_again_then_the_original_is_restored_and_the_issue_closed() {
    let mut s = HealthState::default();
    let mut log = Vec::new();
    run(&mut s, &mut log, check(1, vec![broken("p1", "https://x/1.jpg")], ALL));
    let issue = s.open["broken_image|product:p1"].issue_id;
    let mut p = healthy("p1");
    p.state.image_url = Some("https://x/1.jpg".into());
    p.row.as_mut().unwrap().image_url = Some(placeholder_url("p1"));
    p.image = Some(ImageCheck::Works);
    let d = run(&mut s, &mut log, check(2, detect_default(&facts(vec![p])), ALL));
    assert_eq!(
        d,
        vec![
            Decision::Repair {
                issue_id: issue,
                product_id: "p1".into(),
                repair: Repair::Restore { image_url: "https://x/1.jpg".into() },
                reason: "the original image works again".into(),
            },
            Decision::Close { issue_id: issue, reason: "the image works again".into() },
        ]
    );
    assert!(s.open.is_empty());
}

#[test]
fn given_a_vendor_who_replaces_a_broken_image_with_another_broken_one_then_the_placeholder_covers_the_new_one() {
    let mut s = HealthState::default();
    let mut log = Vec::new();
    run(&mut s, &mut log, check(1, vec![broken("p1", "https://x/1.jpg")], ALL));
    let d = run(&mut s, &mut log, check(2, vec![broken("p1", "https://x/2.jpg")], ALL));
    assert!(
        matches!(&d[..], [Decision::Repair { repair: Repair::Placeholder { original, .. }, .. }] if original == "https://x/2.jpg"),
        "{d:#?}"
    );
}

#[test]
fn given_a_notification_delivered_then_it_leaves_the_outbox() {
    let mut s = HealthState::default();
    let mut log = Vec::new();
    run(&mut s, &mut log, check(1, vec![person("p2")], ALL));
    let id = *s.outbox.keys().next().unwrap();
    record(
        &mut s,
        &mut log,
        DomainEvent::NotificationDelivered(NotificationDelivered {
            notification_id: id,
            attempts: 2,
            status: 200,
            at: t0(),
        }),
        None,
    );
    assert!(s.outbox.is_empty());
}

#[test]
fn given_a_recorded_history_then_the_verifier_reproduces_every_check_and_catches_a_forged_one() {
    let mut s = HealthState::default();
    let mut log = Vec::new();
    run(&mut s, &mut log, check(1, vec![broken("p1", "https://x/1.jpg"), person("p2")], ALL));
    run(&mut s, &mut log, check(2, vec![person("p2")], ALL));
    let verify = |log: &[(RecordedEvent, DomainEvent)]| {
        let mut state = HealthState::default();
        let mut v = Verifier::default();
        for (e, d) in log {
            v.observe(&state, e, d);
            state.evolve(e, d);
        }
        v.finish()
    };
    let (checked, mismatches) = verify(&log);
    assert_eq!((checked, mismatches.len()), (2, 0), "{mismatches:#?}");
    // A close the second check never decided.
    let forged = log.iter().position(|(_, d)| matches!(d, DomainEvent::HealthIssueClosed(_))).unwrap();
    log.remove(forged);
    let (_, mismatches) = verify(&log);
    assert_eq!(mismatches.len(), 1);
    assert_eq!(mismatches[0].check_id, Uuid::from_u128(2));
}

#[test]
fn given_more_findings_than_a_check_records_then_the_most_severe_are_kept_and_nothing_is_closed() {
    let max = mall_events::health::MAX_FINDINGS;
    let mut all: Vec<Finding> = (0..max)
        .map(|i| {
            let mut f = person(&format!("p{i}"));
            f.severity = Severity::Low;
            f
        })
        .collect();
    all.push(broken("x", "https://x/1.jpg"));
    let (kept, truncated) = recorded(all);
    assert!(truncated);
    assert_eq!(kept.len(), max);
    assert_eq!(kept[0].kind, "broken_image", "the most severe first");
    let mut s = HealthState::default();
    let mut log = Vec::new();
    run(&mut s, &mut log, check(1, vec![person("open-one")], ALL));
    let mut c = check(2, kept, ALL);
    c.truncated = true;
    let d = decide(&s, &c);
    assert!(!d.iter().any(|d| matches!(d, Decision::Close { .. })), "an issue past the cut is not closed");
    assert_eq!(recorded(vec![person("a")]), (vec![person("a")], false));
}
