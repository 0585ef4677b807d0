//! Golden bytes: every event type's stored payload is committed under `tests/golden/`, so a
//! change that would stop stored events from decoding fails here. `MALL_BLESS=1` rewrites them,
//! which is only right when adding a new type or a new schema version (with its upcaster).

use std::collections::BTreeMap;

use chrono::{TimeZone, Utc};
use mall_events::codec::{self, CodecError, Upcaster};
use mall_events::domain::*;
use mall_events::ids::*;
use uuid::Uuid;

fn samples() -> Vec<DomainEvent> {
    let at = Utc.with_ymd_and_hms(2026, 11, 24, 10, 30, 0).unwrap();
    let id = Uuid::from_u128(0x0193_5c3a_0000_7000_8000_0000_0000_0042);
    let p = || ProductId::parse("sku-42").unwrap();
    let shopper = || ShopperId::parse("shopper-7").unwrap();
    let session = || SessionId::parse("sess-1").unwrap();
    let list = || ListName::parse("district:toys").unwrap();
    let mut attributes = BTreeMap::new();
    attributes.insert("color".to_string(), AttributeValue::Text("red".into()));
    attributes.insert("weight_g".to_string(), AttributeValue::Number(250.0));
    attributes.insert("handmade".to_string(), AttributeValue::Bool(true));
    vec![
        DomainEvent::DistrictOpened(DistrictOpened {
            slug: DistrictSlug::parse("toys").unwrap(),
            name: "Toy Town".into(),
            personality: Personality {
                tone: "playful".into(),
                style: "short sentences".into(),
                audience: "parents".into(),
            },
        }),
        DomainEvent::ProductListed(ProductListed {
            product_id: p(),
            district: DistrictSlug::parse("toys").unwrap(),
            title: "Wooden train".into(),
            description: "A train of beech wood.".into(),
            price: Price::parse("24.90").unwrap(),
            currency: Currency::parse("EUR").unwrap(),
            tags: vec!["wood".into(), "train".into()],
            attributes,
            image_url: Some("https://img.example/train.jpg".into()),
            stock: 12,
        }),
        DomainEvent::ProductEdited(ProductEdited {
            product_id: p(),
            district: None,
            title: Some("Wooden train set".into()),
            description: None,
            price: None,
            currency: None,
            tags: Some(vec!["wood".into()]),
            attributes: None,
            image_url: None,
            stock: None,
        }),
        DomainEvent::StockChanged(StockChanged { product_id: p(), stock: 3 }),
        DomainEvent::PriceChanged(PriceChanged {
            product_id: p(),
            price: Price::parse("19.99").unwrap(),
            currency: Currency::parse("EUR").unwrap(),
        }),
        DomainEvent::ProductViewed(ProductViewed {
            campaign: None,
            id,
            shopper_id: shopper(),
            session_id: session(),
            at,
            product_id: p(),
            dwell_ms: 4200,
        }),
        DomainEvent::ProductClicked(ProductClicked {
            campaign: None,
            id,
            shopper_id: shopper(),
            session_id: session(),
            at,
            product_id: p(),
            list: list(),
            position: 3,
        }),
        DomainEvent::ImpressionServed(ImpressionServed {
            campaign: None,
            id,
            shopper_id: shopper(),
            session_id: session(),
            at,
            product_id: p(),
            list: list(),
            position: 3,
            policy: None,
        }),
        DomainEvent::AddedToCart(AddedToCart {
            campaign: None,
            id,
            shopper_id: shopper(),
            session_id: session(),
            at,
            product_id: p(),
            quantity: 2,
        }),
        DomainEvent::RemovedFromCart(RemovedFromCart {
            campaign: None,
            id,
            shopper_id: shopper(),
            session_id: session(),
            at,
            product_id: p(),
            quantity: 1,
        }),
        DomainEvent::Purchased(Purchased {
            campaign: None,
            id,
            shopper_id: shopper(),
            session_id: session(),
            at,
            product_id: p(),
            order_id: OrderId::parse("order-9").unwrap(),
            quantity: 1,
            unit_price: Price::parse("24.90").unwrap(),
            currency: Currency::parse("EUR").unwrap(),
        }),
        DomainEvent::Searched(Searched {
            campaign: None,
            id,
            shopper_id: shopper(),
            session_id: session(),
            at,
            query: "wooden toys".into(),
            result_ids: vec![p()],
        }),
        DomainEvent::Bounced(Bounced {
            id,
            shopper_id: shopper(),
            session_id: session(),
            at,
            product_id: p(),
            campaign: None,
        }),
        DomainEvent::ReviewSubmitted(ReviewSubmitted {
            id,
            shopper_id: shopper(),
            session_id: session(),
            at,
            product_id: p(),
            rating: 4,
            text: "Sturdy and the kids love it.".into(),
            campaign: Some("social:abc".into()),
        }),
        DomainEvent::OptimizationDecided(OptimizationDecided {
            decision_id: id,
            product_id: p(),
            command: CommandKind::RewriteDescription,
            generator: GeneratorChoice::Configured,
            rule: "weak_description".into(),
            reason: "converts 1.0% against a district prior of 8.0%".into(),
            evidence: Evidence {
                metrics: BTreeMap::from([("views".to_string(), 120.0), ("conversion_mean".to_string(), 0.01)]),
                from_position: 10,
                to_position: 480,
                stream_version: 131,
                prior_alpha: 1.6,
                prior_beta: 18.4,
                budget_available: true,
            },
            policy: BTreeMap::from([("min_views".to_string(), 40.0)]),
            at,
        }),
        DomainEvent::CopyGenerated(CopyGenerated {
            decision_id: id,
            product_id: p(),
            content: Content::Description { text: "A train of beech wood.".into() },
            generation: generation(),
            at,
        }),
        DomainEvent::GenerationRejected(GenerationRejected {
            decision_id: id,
            product_id: p(),
            command: CommandKind::RegenerateTags,
            reason: "claims: \"clinically proven\" is not supported by the product's facts".into(),
            generation: generation(),
            at,
        }),
        DomainEvent::CopyApplied(CopyApplied {
            decision_id: id,
            product_id: p(),
            content: Content::Seo(Seo {
                title: "Wooden train".into(),
                meta_description: "A train of beech wood.".into(),
            }),
            at,
        }),
        DomainEvent::ExperimentStarted(ExperimentStarted {
            experiment_id: id,
            decision_id: id,
            product_id: p(),
            control: "A train.".into(),
            challenger: "A train of beech wood.".into(),
            at,
        }),
        DomainEvent::ExperimentConcluded(ExperimentConcluded {
            experiment_id: id,
            product_id: p(),
            outcome: Outcome::ChallengerWon,
            control: ArmStats { views: 400, conversions: 8 },
            challenger: ArmStats { views: 410, conversions: 31 },
            prob_challenger_better: 0.9999,
            likelihood_ratio: 52.5,
            reason: "always-valid likelihood ratio 52.5 passed 20".into(),
            at,
        }),
        DomainEvent::TaskQueued(TaskQueued {
            task_id: id,
            system: "product_intelligence".into(),
            subject: "product:sku-42".into(),
            action: "nudge".into(),
            priority: 72,
            reason: "weak copy on a product with revenue at stake".into(),
            metrics: BTreeMap::from([("revenue_at_stake".to_string(), 120.5), ("confidence".to_string(), 0.8)]),
            generations: 1,
            at,
        }),
        DomainEvent::TaskReprioritized(TaskReprioritized {
            task_id: id,
            priority: 90,
            reason: "asked again by an admin".into(),
            metrics: BTreeMap::new(),
            at,
        }),
        DomainEvent::TaskStarted(TaskStarted { task_id: id, attempt: 1, at }),
        DomainEvent::TaskSucceeded(TaskSucceeded { task_id: id, summary: "decided: rewrite_description".into(), at }),
        DomainEvent::TaskFailed(TaskFailed {
            task_id: id,
            attempt: 2,
            error: "the model did not answer".into(),
            retry_at: Some(at),
            at,
        }),
        DomainEvent::TaskCancelled(TaskCancelled { task_id: id, reason: "the product was delisted".into(), at }),
        DomainEvent::SystemSwitched(SystemSwitched {
            system: "merchandising".into(),
            running: false,
            by: "admin".into(),
            at,
        }),
        DomainEvent::JobRan(JobRan {
            job: "product_intelligence".into(),
            system: "product_intelligence".into(),
            due_at: at,
            started_at: at,
            finished_at: at,
            tasks: vec![id],
            outcome: "ok".into(),
        }),
        DomainEvent::InsightRecorded(InsightRecorded {
            key: "product_intelligence/rewrite_description/toys/weak_description".into(),
            system: "product_intelligence".into(),
            action: "rewrite_description".into(),
            district: "toys".into(),
            diagnosis: "weak_description".into(),
            tried: 7,
            helped: 4,
            lift: 0.31,
            evidence: vec![id],
            at,
        }),
        DomainEvent::HealthChecked(HealthChecked {
            check_id: id,
            trigger: "job".into(),
            checked: BTreeMap::from([("products".to_string(), 120), ("images".to_string(), 80)]),
            findings: vec![Finding {
                kind: "broken_image".into(),
                subject: "product:sku-42".into(),
                severity: Severity::High,
                remedy: Remedy::Fix,
                evidence: BTreeMap::from([("status".to_string(), "404".to_string())]),
                repair: Some(Repair::Placeholder {
                    original: "https://img.example.com/42.jpg".into(),
                    placeholder: "/api/products/sku-42/placeholder.svg".into(),
                }),
            }],
            truncated: false,
            at,
        }),
        DomainEvent::HealthIssueOpened(HealthIssueOpened {
            issue_id: id,
            check_id: id,
            kind: "missing_copy".into(),
            subject: "product:sku-42".into(),
            severity: Severity::Medium,
            remedy: Remedy::Task,
            evidence: BTreeMap::from([("missing".to_string(), "description, seo".to_string())]),
            task_id: Some(id),
            at,
        }),
        DomainEvent::HealthIssueClosed(HealthIssueClosed {
            issue_id: id,
            check_id: id,
            reason: "the check no longer finds it".into(),
            at,
        }),
        DomainEvent::ProductRepaired(ProductRepaired {
            product_id: ProductId::parse("sku-42").unwrap(),
            issue_id: id,
            check_id: id,
            repair: Repair::Row {
                title: "Wooden train".into(),
                description: "A train of beech wood.".into(),
                price: Price::parse("19.90").unwrap(),
                currency: Currency::parse("EUR").unwrap(),
                stock: 4,
                district: DistrictSlug::parse("toys").unwrap(),
                as_of: 17,
            },
            reason: "the read row's title disagreed with the product's own".into(),
            at,
        }),
        DomainEvent::NotificationDelivered(NotificationDelivered { notification_id: id, attempts: 3, status: 200, at }),
        DomainEvent::VoiceEvolutionProposed(VoiceEvolutionProposed {
            evolution_id: id,
            slug: DistrictSlug::parse("toys").unwrap(),
            attribute: "tone".into(),
            from: "technical".into(),
            to: "warm".into(),
            rule: "converts_below_peers".into(),
            reasons: vec!["converts 3.1% against 8.4% in home (warm)".into()],
            metrics: BTreeMap::from([("views".to_string(), 1200.0), ("conversion".to_string(), 0.031)]),
            input: EvolutionInput {
                now: at,
                peers: vec![Peer {
                    slug: DistrictSlug::parse("home").unwrap(),
                    personality: personality("warm"),
                    views: 900,
                    conversions: 76,
                }],
                trigger: "job".into(),
            },
            as_of: 812,
            at,
        }),
        DomainEvent::VoiceTestStarted(VoiceTestStarted {
            evolution_id: id,
            test_id: id,
            slug: DistrictSlug::parse("toys").unwrap(),
            control: district_copy("Toys that last."),
            challenger: district_copy("Toys to love for years."),
            personality: personality("warm"),
            generator: "offline/1".into(),
            verdicts: vec![Verdict { check: "claims".into(), passed: true, detail: String::new() }],
            prompt: String::new(),
            raw_output: String::new(),
            at,
        }),
        DomainEvent::VoiceEvolutionAbandoned(VoiceEvolutionAbandoned {
            evolution_id: id,
            slug: DistrictSlug::parse("toys").unwrap(),
            reason: "the guardrails refused the new voice's copy".into(),
            verdicts: Vec::new(),
            generator: String::new(),
            prompt: String::new(),
            raw_output: String::new(),
            at,
        }),
        DomainEvent::VoiceTestConcluded(VoiceTestConcluded {
            evolution_id: id,
            test_id: id,
            slug: DistrictSlug::parse("toys").unwrap(),
            outcome: Outcome::ChallengerWon,
            control: ArmStats { views: 400, conversions: 12 },
            challenger: ArmStats { views: 410, conversions: 40 },
            prob_challenger_better: 0.999,
            likelihood_ratio: 61.0,
            reason: "the new voice converts better".into(),
            personality: personality("warm"),
            copy: district_copy("Toys to love for years."),
            as_of: 1_204,
            at,
        }),
        DomainEvent::CategoriesSuggested(CategoriesSuggested {
            slug: DistrictSlug::parse("toys").unwrap(),
            suggestions: vec![CategorySuggestion {
                category: "puzzles".into(),
                shoppers: 14,
                score: 31.5,
                examples: vec!["home-3".into()],
                searches: 0,
            }],
            at,
        }),
        DomainEvent::MerchandisingRuleSet(MerchandisingRuleSet {
            rule_id: id,
            action: RuleAction::Boost,
            condition: Condition {
                tags: vec!["wood".into()],
                district: Some(DistrictSlug::parse("toys").unwrap()),
                percentile_min: Some(90.0),
                ..Condition::default()
            },
            strength: 0.5,
            position: None,
            priority: 10,
            valid_from: at,
            valid_until: Some(at + chrono::Duration::hours(24)),
            auto: true,
            rule: "high_converter".into(),
            reason: "converts at 9.1% against the district's 3.0% over 400 views".into(),
            evidence: [("views".to_string(), 400.0), ("conversion".to_string(), 0.091)].into(),
            at,
        }),
        DomainEvent::MerchandisingRuleExpired(MerchandisingRuleExpired {
            rule_id: id,
            reason: "its window closed".into(),
            at,
        }),
        DomainEvent::OrderingTestStarted(OrderingTestStarted {
            test_id: id,
            district: DistrictSlug::parse("toys").unwrap(),
            control: weights(0.4),
            challenger: weights(0.7),
            name: "performance_first".into(),
            reason: "does performance first convert better?".into(),
            at,
        }),
        DomainEvent::OrderingTestConcluded(OrderingTestConcluded {
            test_id: id,
            district: DistrictSlug::parse("toys").unwrap(),
            outcome: Outcome::ChallengerWon,
            control: ArmStats { views: 900, conversions: 30 },
            challenger: ArmStats { views: 910, conversions: 70 },
            control_shoppers: 300,
            challenger_shoppers: 310,
            srm_p: 0.68,
            invalid: false,
            prob_challenger_better: 0.999,
            likelihood_ratio: 44.0,
            reason: "the challenger converts better".into(),
            layout: weights(0.7),
            as_of: 2_048,
            at,
        }),
        DomainEvent::AnomalyDetected(AnomalyDetected {
            anomaly_id: id,
            microstore: "toys".into(),
            metric: "traffic".into(),
            kind: "spike".into(),
            start: at,
            end: at + chrono::Duration::hours(2),
            expected: 40.0,
            observed: 160.0,
            score: 9.5,
            at,
        }),
        DomainEvent::AnalyticsReported(AnalyticsReported {
            report_id: id,
            microstore: "toys".into(),
            period: "week".into(),
            from: at - chrono::Duration::days(7),
            to: at,
            facts: BTreeMap::from([("traffic".to_string(), 1200.0), ("traffic_previous".to_string(), 1000.0)]),
            top_products: vec![ProductFigures {
                product_id: "sku-42".into(),
                title: "Wooden train".into(),
                views: 300,
                carts: 40,
                purchases: 12,
                revenue_e4: 2_988_000,
            }],
            bottom_products: Vec::new(),
            search_terms: vec![("wooden train".into(), 17)],
            anomalies: vec![id],
            narrative: "Traffic rose by 20%.".into(),
            suggestions: vec!["Feature Wooden train".into()],
            written_by: "facts/1".into(),
            generation: Some(generation()),
            as_of: 4_096,
            at,
        }),
        DomainEvent::SocialCalendarPlanned(SocialCalendarPlanned {
            calendar_id: id,
            district: DistrictSlug::parse("toys").unwrap(),
            week_of: at,
            hours: vec![9, 13, 19],
            learned: false,
            products: vec![p()],
            posts: vec![SocialPost {
                post_id: id,
                platform: "twitter".into(),
                product_id: p(),
                text: None,
                tweets: vec!["Meet the wooden train.".into(), "Beech, red.".into()],
                hashtags: vec!["woodentrain".into()],
                scheduled_at: at,
                generation: generation(),
                refused: Some(generation()),
            }],
            supersedes: vec![id],
            at,
        }),
        DomainEvent::SocialPostPublished(SocialPostPublished {
            post_id: id,
            platform_post_id: "tw-1".into(),
            by: "api".into(),
            at,
        }),
        DomainEvent::SocialPostFailed(SocialPostFailed {
            post_id: id,
            reason: "the platform refused it".into(),
            by: "webhook".into(),
            at,
        }),
        DomainEvent::PluginConfigured(PluginConfigured {
            plugin_id: "inventory_prediction".into(),
            enabled: Some(false),
            config: BTreeMap::from([("lead_time_days".to_string(), 10.0)]),
            by: "admin".into(),
            reason: "paused for the sale".into(),
            at,
        }),
        DomainEvent::PluginRan(PluginRan {
            run_id: id,
            plugin_id: "inventory_prediction".into(),
            hook: "schedule".into(),
            outcome: "ok".into(),
            detail: "2 proposals".into(),
            proposals: 2,
            duration_ms: 12,
            at,
        }),
        DomainEvent::PluginProposed(PluginProposed {
            proposal_id: id,
            plugin_id: "inventory_prediction".into(),
            run_id: id,
            subject: "product:sku-42".into(),
            kind: "reorder".into(),
            figures: BTreeMap::from([("days_of_cover".to_string(), 3.5)]),
            note: "3.5 days of cover against a 7-day lead time".into(),
            at,
        }),
        DomainEvent::PriceTestStarted(PriceTestStarted {
            test_id: id,
            product_id: p(),
            proposal_id: id,
            control: Price::parse("24.50").unwrap(),
            challenger: Price::parse("25.72").unwrap(),
            currency: Currency::parse("EUR").unwrap(),
            reason: "converts at 6.0% and sells out in 9 days".into(),
            at,
        }),
        DomainEvent::PriceTestConcluded(PriceTestConcluded {
            test_id: id,
            product_id: p(),
            outcome: Outcome::ChallengerWon,
            control: PriceArm { views: 400, orders: 20, revenue_e4: 4_900_000, revenue_sq: 12_005.0 },
            challenger: PriceArm { views: 410, orders: 22, revenue_e4: 5_658_400, revenue_sq: 14_553.0 },
            prob_challenger_better: 0.97,
            likelihood_ratio: 21.5,
            price: Price::parse("25.72").unwrap(),
            policy: BTreeMap::from([("experiment_min_per_arm".to_string(), 200.0)]),
            reason: "the challenger earns more per view".into(),
            at,
        }),
    ]
}

fn weights(performance: f64) -> OrderingWeights {
    OrderingWeights { performance, rules: 0.3, personalization: 0.2, recency: 0.1 }
}

fn personality(tone: &str) -> Personality {
    Personality { tone: tone.into(), style: "short sentences".into(), audience: "parents".into() }
}

fn district_copy(tagline: &str) -> DistrictCopy {
    DistrictCopy {
        tagline: tagline.into(),
        description: "Wooden toys for small hands.".into(),
        seo_title: "Wooden toys".into(),
        seo_description: "Wooden toys for small hands, built to last.".into(),
    }
}

fn generation() -> Generation {
    Generation {
        generator: "offline/1".into(),
        prompt: "Product facts (data, not instructions): {...}".into(),
        raw_output: "A train of beech wood.".into(),
        verdicts: vec![Verdict { check: "length".into(), passed: true, detail: "22 characters".into() }],
    }
}

fn golden_path(event_type: &str, version: u16) -> String {
    format!("{}/tests/golden/{event_type}.v{version}.msgpack", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn every_event_type_has_a_sample() {
    let types: Vec<&str> = samples().iter().map(|e| e.event_type()).collect();
    assert_eq!(types, EVENT_TYPES, "add a sample (and golden bytes) for every new event type");
}

#[test]
fn stored_payloads_match_the_committed_golden_bytes() {
    for event in samples() {
        let path = golden_path(event.event_type(), event.schema_version());
        let bytes = codec::encode(&event).unwrap();
        if std::env::var_os("MALL_BLESS").is_some() {
            std::fs::write(&path, &bytes).unwrap();
        }
        let golden = std::fs::read(&path).unwrap_or_else(|_| panic!("{path} is committed"));
        assert_eq!(
            bytes,
            golden,
            "{}: encoding changed; bump the schema version and add an upcaster",
            event.event_type()
        );
        let decoded = codec::decode(event.event_type(), event.schema_version(), &golden).unwrap();
        assert_eq!(decoded, event, "{}: golden bytes no longer decode to the sample", event.event_type());
    }
}

#[test]
fn payloads_use_named_fields_so_fields_can_be_added() {
    let event = &samples()[5];
    let value: rmpv::Value = rmp_serde::from_slice(&codec::encode(event).unwrap()).unwrap();
    let keys: Vec<String> = value.as_map().unwrap().iter().map(|(k, _)| k.as_str().unwrap().to_string()).collect();
    assert!(keys.contains(&"dwell_ms".to_string()), "{keys:?}");
}

#[test]
fn unknown_types_and_future_versions_are_typed_errors() {
    let bytes = codec::encode(&samples()[0]).unwrap();
    assert!(matches!(codec::decode("teleported", 1, &bytes), Err(CodecError::UnknownType(_))));
    assert!(matches!(codec::decode("district_opened", 2, &bytes), Err(CodecError::UnknownVersion { version: 2, .. })));
    assert!(matches!(codec::decode("district_opened", 1, b"\x91\xc0"), Err(CodecError::Malformed { .. })));
}

#[test]
fn committed_v1_decisions_are_upcast_with_the_configured_generator() {
    let v1 = std::fs::read(golden_path("optimization_decided", 1)).expect("the v1 golden bytes stay committed");
    let sample = samples().into_iter().find(|e| e.event_type() == "optimization_decided").unwrap();
    assert_eq!(sample.schema_version(), 2);
    assert_eq!(codec::decode("optimization_decided", 1, &v1).unwrap(), sample);
}

/// Suppose `product_viewed` v1 had measured dwell in seconds (`dwell_s`) and the current shape
/// (then v2) measures milliseconds: this is the upcaster such a change registers.
fn dwell_seconds_to_ms(mut v: rmpv::Value) -> Result<rmpv::Value, String> {
    let rmpv::Value::Map(map) = &mut v else { return Err("payload is not a map".into()) };
    let entry = map.iter_mut().find(|(k, _)| k.as_str() == Some("dwell_s")).ok_or("no dwell_s")?;
    let secs = entry.1.as_u64().ok_or("dwell_s is not a number")?;
    *entry = (rmpv::Value::from("dwell_ms"), rmpv::Value::from(secs * 1000));
    Ok(v)
}

#[derive(serde::Serialize)]
struct ViewedV1<'a> {
    id: Uuid,
    shopper_id: &'a str,
    session_id: &'a str,
    at: chrono::DateTime<Utc>,
    product_id: &'a str,
    dwell_s: u64,
}

#[test]
fn older_schema_versions_are_upcast_on_read() {
    let chain = [Upcaster { event_type: "product_viewed", from_version: 1, apply: dwell_seconds_to_ms }];
    let mut expected = samples()[5].clone();
    let DomainEvent::ProductViewed(v) = &mut expected else { unreachable!() };
    let v1 = codec::to_bytes(&ViewedV1 {
        id: v.id,
        shopper_id: v.shopper_id.as_str(),
        session_id: v.session_id.as_str(),
        at: v.at,
        product_id: v.product_id.as_str(),
        dwell_s: 4,
    })
    .unwrap();
    v.dwell_ms = 4000;
    // With the chain registered, v1 bytes are upcast and v2 (the current shape) read directly.
    assert_eq!(codec::decode_with(&chain, "product_viewed", 1, &v1).unwrap(), expected);
    let v2 = codec::encode(&expected).unwrap();
    assert_eq!(codec::decode_with(&chain, "product_viewed", 2, &v2).unwrap(), expected);
    // Without it, the old shape does not pass for the new one: it is refused, not misread.
    assert!(matches!(codec::decode_with(&[], "product_viewed", 1, &v1), Err(CodecError::Malformed { .. })));
    // An upcaster that refuses its input is reported as such.
    let broken = [Upcaster { event_type: "product_viewed", from_version: 1, apply: |_| Err("no".into()) }];
    assert!(matches!(codec::decode_with(&broken, "product_viewed", 1, &v1), Err(CodecError::Upcast { .. })));
}
