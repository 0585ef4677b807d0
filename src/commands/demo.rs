//! `mall demo`: the server on the chosen store (embedded by default), a seeded catalog, and
//! simulated shoppers whose hidden tastes the mall can only learn from their signals.
//!
//! The catalog (deterministic for a seed, so a second run adds no duplicates) has four districts
//! with distinct voices and products of every kind: good vendor copy, weak copy ("Nice."), no
//! description, no tags. Shoppers go through the public API like any storefront: they read the
//! products (and so see their experiment arm's copy) and post their signals in batches. How
//! likely a shopper is to buy depends on taste (district and tags) and on the copy they were
//! shown — short, empty copy sells badly — so weak copy is diagnosed, rewritten, tested and kept.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use mall_actors::experiment::{self, Arm};
use mall_events::ids::ShopperId;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::cli::Exit;
use crate::serve::{self, ServeArgs};
use crate::store::StoreArgs;

/// `mall demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    #[command(flatten)]
    pub serve: ServeArgs,
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    pub duration: Option<u64>,
    /// Products in the seeded catalog.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(8..=5_000))]
    pub products: u32,
    /// Simulated shoppers.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub shoppers: u32,
    /// Shopper visits per second.
    #[arg(long, default_value_t = 2_000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub rate: u32,
    /// Seed of the catalog and of the shoppers' tastes.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

struct District {
    slug: &'static str,
    name: &'static str,
    tone: &'static str,
    style: &'static str,
    audience: &'static str,
    nouns: &'static [&'static str],
    tags: &'static [&'static str],
}

const DISTRICTS: &[District] = &[
    District {
        slug: "toys",
        name: "Toy Town",
        tone: "playful",
        style: "short, bright sentences",
        audience: "parents and grandparents",
        nouns: &["train", "puzzle", "kite", "doll house", "stacking rings", "marble run", "rocking horse", "block set"],
        tags: &["wooden", "educational", "outdoor", "toddler", "creative", "classic"],
    },
    District {
        slug: "kitchen",
        name: "The Kitchen",
        tone: "warm",
        style: "sensory storytelling",
        audience: "home cooks",
        nouns: &[
            "skillet",
            "chef's knife",
            "dutch oven",
            "cutting board",
            "spice rack",
            "teapot",
            "mixing bowl",
            "ladle",
        ],
        tags: &["cast iron", "stainless", "baking", "everyday", "gift", "handmade"],
    },
    District {
        slug: "outdoor",
        name: "Trailhead",
        tone: "technical",
        style: "plain and practical",
        audience: "hikers and campers",
        nouns: &[
            "tent",
            "headlamp",
            "rain jacket",
            "sleeping bag",
            "trail pack",
            "water filter",
            "camp stove",
            "trekking poles",
        ],
        tags: &["lightweight", "waterproof", "camping", "hiking", "winter", "ultralight"],
    },
    District {
        slug: "home",
        name: "Maison",
        tone: "elegant",
        style: "measured, unhurried prose",
        audience: "people furnishing a first home",
        nouns: &["table lamp", "linen throw", "vase", "wall clock", "side table", "mirror", "candle set", "rug"],
        tags: &["linen", "brass", "minimal", "scandinavian", "cozy", "ceramic"],
    },
];

/// The voice the demo's outdoor shoppers do not respond to (they convert half as often while
/// the district speaks in it): what district evolution should find and change.
const UNLOVED: (&str, &str) = ("outdoor", "technical");

const ADJECTIVES: &[&str] =
    &["Classic", "Compact", "Sturdy", "Bright", "Field", "Heritage", "Everyday", "Folding", "Grand", "Little"];
const MATERIALS: &[&str] = &["beech", "oak", "cotton", "steel", "linen", "wool", "ceramic", "nylon"];

/// What the simulator knows of a product (refreshed from the API).
#[derive(Clone)]
struct Known {
    tags: Vec<String>,
    description: String,
    experiment: Option<(Uuid, String, String)>,
    copy_version: u64,
}

/// A seeded product: its id, its district's index and its tags.
type Seeded = (String, usize, Vec<String>);

fn catalog(seed: u64, n: u32) -> (Vec<Value>, Vec<Seeded>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut records = Vec::new();
    let mut products = Vec::new();
    for i in 0..n as usize {
        let d = i % DISTRICTS.len();
        let district = &DISTRICTS[d];
        let noun = district.nouns[rng.random_range(0..district.nouns.len())];
        let adjective = ADJECTIVES[rng.random_range(0..ADJECTIVES.len())];
        let material = MATERIALS[rng.random_range(0..MATERIALS.len())];
        let title = format!("{adjective} {noun}");
        let mut tags: Vec<String> = Vec::new();
        while tags.len() < 2 {
            let t = district.tags[rng.random_range(0..district.tags.len())].to_string();
            if !tags.contains(&t) {
                tags.push(t);
            }
        }
        let kind = rng.random_range(0..10);
        let description = match kind {
            0 => String::new(),
            1 | 2 => "Nice.".to_string(),
            _ => format!(
                "A {} {noun} in {material}, made for {}. It is built to be used often and looks good doing it.",
                adjective.to_lowercase(),
                district.audience
            ),
        };
        let record_tags: Vec<String> = if kind == 3 { Vec::new() } else { tags.clone() };
        let id = format!("{}-{i}", district.slug);
        let price = format!("{}.{:02}", rng.random_range(9..180), [0, 50, 90, 99][rng.random_range(0..4)]);
        records.push(json!({
            "product_id": id, "district": district.slug, "title": title, "description": description,
            "price": price, "currency": "EUR", "tags": record_tags,
            "attributes": {"material": material}, "stock": rng.random_range(1..60),
        }));
        products.push((id, d, tags));
    }
    (records, products)
}

/// Runs `mall demo` (inside an actix system).
pub async fn run(store_args: &StoreArgs, args: &DemoArgs) -> Result<(), Exit> {
    let started = serve::start(store_args, &args.serve).await?;
    let base = started.base.clone();
    let admin = started.admin.clone();
    let stopper = started.stopper();
    let finished = actix_web::rt::spawn(started.finish());
    // Ctrl-C ends the simulation and then the server, which saves the actors' snapshots.
    let outcome = tokio::select! {
        r = simulate(&base, &admin, args) => r,
        _ = serve::stop_signal() => {
            println!("mall demo: stopping");
            Ok(())
        }
    };
    stopper.stop().await;
    finished.await.context("the server task failed")??;
    outcome?;
    Ok(())
}

async fn simulate(base: &str, admin: &str, args: &DemoArgs) -> anyhow::Result<()> {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
    println!("mall demo: serving on {base}");
    for d in DISTRICTS {
        let r = client
            .post(format!("{base}/api/districts"))
            .bearer_auth(admin)
            .json(&json!({"slug": d.slug, "name": d.name, "personality": {"tone": d.tone, "style": d.style, "audience": d.audience}}))
            .send()
            .await?;
        if !(r.status().is_success() || r.status() == reqwest::StatusCode::CONFLICT) {
            anyhow::bail!("cannot open district {}: {}", d.slug, r.text().await?);
        }
    }
    let (records, products) = catalog(args.seed, args.products);
    let prices: HashMap<String, String> = records
        .iter()
        .map(|r| {
            (r["product_id"].as_str().unwrap_or("").to_string(), r["price"].as_str().unwrap_or("1.00").to_string())
        })
        .collect();
    for r in &records {
        let resp = client.post(format!("{base}/api/products")).bearer_auth(admin).json(r).send().await?;
        if !(resp.status().is_success() || resp.status() == reqwest::StatusCode::CONFLICT) {
            anyhow::bail!("cannot list {}: {}", r["product_id"], resp.text().await?);
        }
    }
    // A few listings with what self-healing is for: an image on an address no shopper's browser
    // should be sent to, one on a host that does not exist, a price of zero, a duplicate.
    let first = &DISTRICTS[0];
    let problems = [
        ("broken-image", "Lantern", "http://10.11.12.13/lantern.jpg", "14.90"),
        ("lost-image", "Compass", "https://img.mall.invalid/compass.jpg", "22.00"),
        ("no-price", "Whistle", "", "0"),
        ("duplicate", &*records[0]["title"].as_str().unwrap_or("").to_lowercase(), "", "12.00"),
    ];
    for (id, title, image, price) in problems {
        let mut r = json!({
            "product_id": format!("{}-{id}", first.slug), "district": first.slug, "title": title,
            "description": format!("A {} for {}, made to last and easy to carry on every outing.", title.to_lowercase(), first.audience),
            "price": price, "currency": "EUR", "tags": [first.tags[0]], "stock": 5,
            "attributes": if id == "duplicate" { records[0]["attributes"].clone() } else { json!({"material": "steel"}) },
        });
        if !image.is_empty() {
            r["image_url"] = json!(image);
        }
        let resp = client.post(format!("{base}/api/products")).bearer_auth(admin).json(&r).send().await?;
        if !(resp.status().is_success() || resp.status() == reqwest::StatusCode::CONFLICT) {
            anyhow::bail!("cannot list {id}: {}", resp.text().await?);
        }
    }
    health(&client, base, admin).await;
    let example = &products[0].0;
    println!(
        "mall demo: {} districts and {} products listed; {} shoppers browsing at {} visits/s",
        DISTRICTS.len(),
        products.len(),
        args.shoppers,
        args.rate
    );
    println!("  watch: {base}/admin/autonomous in a browser (sign in with the admin token {admin})");
    println!("  try:  curl {base}/api/products/{example}");
    println!("        curl {base}/api/products/{example}/history");
    println!("        curl {base}/api/districts/{}/products?limit=5", DISTRICTS[0].slug);
    println!("        curl -H 'Authorization: Bearer {admin}' '{base}/api/autonomous/personalize?userId=shopper-1'");
    println!("        curl -H 'Authorization: Bearer {admin}' {base}/api/autonomous/merchandising");
    println!("        curl '{base}/api/autonomous/products?limit=10'");
    println!("        curl -H 'Authorization: Bearer {admin}' {base}/api/autonomous");
    println!("        curl -H 'Authorization: Bearer {admin}' '{base}/api/autonomous/health?status=open'");
    println!("        curl {base}/api/autonomous/districts/{}", UNLOVED.0);
    println!(
        "        curl -H 'Authorization: Bearer {admin}' '{base}/api/autonomous/analytics?microstoreId=all&period=day'"
    );
    println!("        curl -H 'Authorization: Bearer {admin}' {base}/api/autonomous/social/calendar");
    println!("        curl -H 'Authorization: Bearer {admin}' {base}/api/autonomous/plugins");
    println!("        curl {base}/healthz");
    println!("        mall events stats     (beside the running demo; read-only)");
    println!("        MALL_SERVER={base} MALL_ADMIN_TOKEN={admin} mall projections status");
    println!("        MALL_SERVER={base} MALL_ADMIN_TOKEN={admin} mall projections rebuild --all --verify");

    // Hidden tastes: a favourite district and two favourite tags per shopper.
    let mut rng = StdRng::seed_from_u64(args.seed ^ 0x5eed);
    let tastes: Vec<(usize, Vec<&str>)> = (0..args.shoppers)
        .map(|_| {
            let d = rng.random_range(0..DISTRICTS.len());
            let t = DISTRICTS[d].tags;
            (d, vec![t[rng.random_range(0..t.len())], t[rng.random_range(0..t.len())]])
        })
        .collect();
    let mut known: HashMap<String, Known> = HashMap::new();
    let started = Instant::now();
    let mut last_refresh = Instant::now() - Duration::from_secs(60);
    let mut last_report = Instant::now();
    let mut posted: u64 = 0;
    let mut reported_changes: Vec<String> = Vec::new();
    let mut tops: HashMap<String, Vec<String>> = HashMap::new();
    let mut voices: HashMap<String, Voice> = HashMap::new();
    let mut evolutions: HashMap<String, usize> = HashMap::new();
    let mut showcased = false;
    let tick = Duration::from_millis(250);
    loop {
        if args.duration.is_some_and(|d| started.elapsed() >= Duration::from_secs(d)) {
            break;
        }
        let tick_started = Instant::now();
        if last_refresh.elapsed() >= Duration::from_secs(2) {
            refresh(&client, base, &products, &mut known).await;
            voices = district_voices(&client, base).await;
            last_refresh = Instant::now();
        }
        let visits = (args.rate as f64 * tick.as_secs_f64()).ceil() as usize;
        let mut signals = Vec::with_capacity(visits * 3);
        for _ in 0..visits {
            let s = rng.random_range(0..tastes.len());
            let (fav_district, fav_tags) = &tastes[s];
            let candidates: Vec<&Seeded> = if rng.random_bool(0.6) {
                products.iter().filter(|p| p.1 == *fav_district).collect()
            } else {
                products.iter().collect()
            };
            let (id, district, _) = candidates[rng.random_range(0..candidates.len())];
            let Some(k) = known.get(id) else { continue };
            let shopper = format!("shopper-{s}");
            let shown = match &k.experiment {
                Some((x, control, challenger)) => {
                    let sid = ShopperId::parse(shopper.clone()).expect("valid shopper id");
                    if experiment::arm(*x, &sid) == Arm::Challenger { challenger.clone() } else { control.clone() }
                }
                None => k.description.clone(),
            };
            let at = chrono::Utc::now().to_rfc3339();
            let signal = |kind: &str, extra: Value| {
                let mut v = json!({"type": kind, "id": Uuid::now_v7(), "shopper_id": shopper, "session_id": format!("{shopper}-s"), "at": at, "product_id": id});
                v.as_object_mut().expect("object").extend(extra.as_object().expect("object").clone());
                v
            };
            signals.push(signal(
                "impression_served",
                json!({"list": district_list(*district), "position": rng.random_range(1..25)}),
            ));
            if !rng.random_bool(0.5) {
                continue;
            }
            signals.push(signal("product_viewed", json!({"dwell_ms": rng.random_range(800..40_000)})));
            // Short or empty copy tells the shopper little: they leave, or buy less.
            let quality = (shown.chars().count() as f64 / 120.0).clamp(0.12, 1.0);
            if shown.trim().is_empty() && rng.random_bool(0.6) {
                signals.push(signal("bounced", json!({})));
                continue;
            }
            // The voice the shopper reads on the district's page: while a new one is tested,
            // their arm's.
            let tone = voices.get(DISTRICTS[*district].slug).map(|v| v.shown(&shopper)).unwrap_or_default();
            let voice = if (DISTRICTS[*district].slug, tone.as_str()) == UNLOVED { 0.5 } else { 1.0 };
            let taste = voice
                * if district == fav_district { 1.6 } else { 0.8 }
                * if k.tags.iter().any(|t| fav_tags.contains(&t.as_str())) { 1.4 } else { 1.0 };
            if rng.random_bool((0.12 * taste * quality).min(0.95)) {
                signals.push(signal("added_to_cart", json!({"quantity": 1})));
                // Two carts in five are bought.
                if rng.random_bool(0.4) {
                    let price = prices.get(id).cloned().unwrap_or_else(|| "1.00".into());
                    signals.push(signal(
                        "purchased",
                        json!({"quantity": 1, "unit_price": price, "currency": "EUR", "order_id": format!("o-{}", Uuid::now_v7().simple())}),
                    ));
                }
            }
        }
        for chunk in signals.chunks(2_000) {
            let r = client
                .post(format!("{base}/api/signals"))
                .bearer_auth(admin)
                .json(&json!({"signals": chunk}))
                .send()
                .await?;
            if r.status() != reqwest::StatusCode::ACCEPTED {
                anyhow::bail!("signals refused: {}", r.text().await?);
            }
            posted += chunk.len() as u64;
        }
        if last_report.elapsed() >= Duration::from_secs(10) {
            last_report = Instant::now();
            report(&known, started.elapsed(), posted, &mut reported_changes);
            rankings(&client, base, &mut tops).await;
            core(&client, base, admin).await;
            evolve(&client, base, admin, &voices, &mut evolutions).await;
            if !showcased && started.elapsed() >= Duration::from_secs(20) {
                showcase(&client, base, admin).await;
                showcased = true;
            }
        }
        if let Some(rest) = tick.checked_sub(tick_started.elapsed()) {
            tokio::time::sleep(rest).await;
        }
    }
    refresh(&client, base, &products, &mut known).await;
    report(&known, started.elapsed(), posted, &mut reported_changes);
    rankings(&client, base, &mut tops).await;
    core(&client, base, admin).await;
    let voices = district_voices(&client, base).await;
    evolve(&client, base, admin, &voices, &mut evolutions).await;
    health(&client, base, admin).await;
    showcase(&client, base, admin).await;
    Ok(())
}

/// The systems that work on a schedule, asked now: the first district's social calendar, the
/// mall's narrative, the plugins' proposals.
async fn showcase(client: &reqwest::Client, base: &str, admin: &str) {
    let post = |path: &str, body: Value| client.post(format!("{base}{path}")).bearer_auth(admin).json(&body).send();
    let get = |path: &str| client.get(format!("{base}{path}")).bearer_auth(admin).send();
    if let Ok(r) = post("/api/autonomous/social/calendar", json!({"district": DISTRICTS[0].slug})).await
        && let Ok(v) = r.json::<Value>().await
    {
        let posts = v["posts"].as_array().cloned().unwrap_or_default();
        println!("  social: {} posts planned for {}", posts.len(), DISTRICTS[0].slug);
        for p in posts.iter().take(3) {
            let words = p["text"].as_str().map(str::to_string).unwrap_or_else(|| {
                p["tweets"].as_array().and_then(|t| t.first()).and_then(Value::as_str).unwrap_or("").to_string()
            });
            println!(
                "    {} {:<9} {}",
                p["scheduled_at"].as_str().unwrap_or("?"),
                p["platform"].as_str().unwrap_or("?"),
                words.replace('\n', " / ")
            );
        }
    }
    if let Ok(r) = get("/api/autonomous/analytics?microstoreId=all&period=day").await
        && let Ok(v) = r.json::<Value>().await
    {
        println!("  analytics: {}", v["narrative"].as_str().unwrap_or("(no narrative)"));
        if let Some(s) = v["executive_summary"].as_str() {
            println!("  analytics, by district: {s}");
        }
    }
    let _ = post("/api/autonomous", json!({"action": "optimize", "system": "plugins"})).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    if let Ok(r) = get("/api/autonomous/plugins").await
        && let Ok(v) = r.json::<Value>().await
    {
        let runs: Vec<String> = (v["plugins"].as_array().into_iter().flatten())
            .map(|p| {
                format!(
                    "{} {} ({} proposals)",
                    p["id"].as_str().unwrap_or("?"),
                    p["last_outcome"].as_str().unwrap_or("not run"),
                    p["proposals"]
                )
            })
            .collect();
        println!("  plugins: {}", runs.join(", "));
        for p in v["proposals"].as_array().into_iter().flatten().filter(|p| p["kind"] == "reorder").take(3) {
            println!("    reorder {}: {}", p["subject"].as_str().unwrap_or("?"), p["note"].as_str().unwrap_or(""));
        }
    }
}

/// A district's voice as the simulator sees it.
#[derive(Default)]
struct Voice {
    tone: String,
    /// The running test and the tone under test.
    test: Option<(Uuid, String)>,
    /// Evolutions so far (kept, rolled back, abandoned), as `tone: was -> to (outcome)`.
    history: Vec<String>,
}

impl Voice {
    /// The tone `shopper` reads.
    fn shown(&self, shopper: &str) -> String {
        match &self.test {
            Some((x, tone)) if ShopperId::parse(shopper).is_ok_and(|s| experiment::arm(*x, &s) == Arm::Challenger) => {
                tone.clone()
            }
            _ => self.tone.clone(),
        }
    }
}

async fn district_voices(client: &reqwest::Client, base: &str) -> HashMap<String, Voice> {
    let mut out = HashMap::new();
    for d in DISTRICTS {
        let Ok(r) = client.get(format!("{base}/api/autonomous/districts/{}", d.slug)).send().await else { continue };
        let Ok(v) = r.json::<Value>().await else { continue };
        let test = v["test"]["test_id"]
            .as_str()
            .and_then(|x| x.parse().ok())
            .map(|x| (x, v["test"]["personality"]["tone"].as_str().unwrap_or_default().to_string()));
        let history = (v["history"].as_array().into_iter().flatten())
            .map(|h| {
                format!(
                    "{} {:?} -> {:?} ({})",
                    h["attribute"].as_str().unwrap_or("?"),
                    h["from"].as_str().unwrap_or("?"),
                    h["to"].as_str().unwrap_or("?"),
                    h["outcome"].as_str().unwrap_or("?")
                )
            })
            .collect();
        let tone = v["personality"]["tone"].as_str().unwrap_or(d.tone).to_string();
        out.insert(d.slug.to_string(), Voice { tone, test, history });
    }
    out
}

/// Asks each district without a running test to evolve, and says what was decided and what
/// became of earlier evolutions.
async fn evolve(
    client: &reqwest::Client,
    base: &str,
    admin: &str,
    voices: &HashMap<String, Voice>,
    reported: &mut HashMap<String, usize>,
) {
    for d in DISTRICTS {
        let Some(v) = voices.get(d.slug) else { continue };
        let seen = reported.entry(d.slug.to_string()).or_default();
        for h in v.history.iter().skip(*seen) {
            println!("  district evolution: {} {h}", d.slug);
        }
        *seen = v.history.len();
        if v.test.is_some() {
            continue;
        }
        let url = format!("{base}/api/autonomous/districts/{}/evolve", d.slug);
        let Ok(r) = client.post(url).bearer_auth(admin).json(&json!({})).send().await else { continue };
        let Ok(decision) = r.json::<Value>().await else { continue };
        if decision["decision"] == "propose" {
            println!(
                "  district evolution: {} proposed {} {:?} (was {:?}), testing it: {}",
                d.slug,
                decision["attribute"].as_str().unwrap_or("?"),
                decision["to"].as_str().unwrap_or("?"),
                decision["from"].as_str().unwrap_or("?"),
                decision["reason"].as_str().unwrap_or("")
            );
        }
    }
}

/// Runs a health check and says what it found and fixed.
async fn health(client: &reqwest::Client, base: &str, admin: &str) {
    let asked = client.post(format!("{base}/api/autonomous/health")).bearer_auth(admin).json(&json!({})).send().await;
    let Ok(v) = (match asked {
        Ok(r) => r.json::<Value>().await,
        Err(e) => Err(e),
    }) else {
        return;
    };
    let kinds: Vec<String> =
        v["open"]["by_kind"].as_object().into_iter().flatten().map(|(k, n)| format!("{k} {n}")).collect();
    let repairs: Vec<String> = (v["fixes"].as_array().into_iter().flatten())
        .map(|f| {
            format!(
                "{} {}",
                f["repair"]["change"]["kind"].as_str().unwrap_or("?"),
                f["subject"].as_str().unwrap_or("?")
            )
        })
        .collect();
    println!(
        "  self-healing: {} open issues ({}); repairs: {}",
        v["open"]["total"],
        if kinds.is_empty() { "none".to_string() } else { kinds.join(", ") },
        if repairs.is_empty() { "none".to_string() } else { repairs.join(", ") }
    );
}

/// One line on the autonomous core: the queue and the jobs that ran.
async fn core(client: &reqwest::Client, base: &str, admin: &str) {
    let Ok(r) = client.get(format!("{base}/api/autonomous")).bearer_auth(admin).send().await else { return };
    let Ok(v) = r.json::<Value>().await else { return };
    let q = &v["queue"];
    let done = q["recent"].as_array().map_or(0, |r| r.iter().filter(|t| t["status"] == "succeeded").count());
    let ran: Vec<String> = (v["jobs"].as_array().into_iter().flatten())
        .filter(|j| !j["last_run"].is_null())
        .map(|j| {
            format!(
                "{} ({} tasks)",
                j["name"].as_str().unwrap_or("?"),
                j["last_run"]["tasks"].as_array().map_or(0, Vec::len)
            )
        })
        .collect();
    println!(
        "  autonomous: {} queued, {} running, {done} of the last 20 tasks succeeded; jobs run: {}",
        q["queued"],
        q["running"],
        if ran.is_empty() { "none yet".to_string() } else { ran.join(", ") }
    );
}

/// Prints each district's top five when it has changed since the last look (the storefront
/// ranking, read from the read side like any storefront would).
async fn rankings(client: &reqwest::Client, base: &str, tops: &mut HashMap<String, Vec<String>>) {
    for d in DISTRICTS {
        let url = format!("{base}/api/districts/{}/products?limit=5", d.slug);
        let Ok(r) = client.get(url).send().await else { continue };
        let Ok(v) = r.json::<Value>().await else { continue };
        let top: Vec<String> = v["products"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["product_id"].as_str().map(str::to_string))
            .collect();
        let before = tops.insert(d.slug.to_string(), top.clone());
        match before {
            None => println!("  ranking {:<10} top 5: {}", d.slug, top.join(", ")),
            Some(b) if b != top => {
                println!("  ranking {:<10} top 5: {}   (was {})", d.slug, top.join(", "), b.join(", "))
            }
            _ => {}
        }
    }
}

fn district_list(d: usize) -> String {
    format!("district-{}", DISTRICTS[d].slug)
}

async fn refresh(client: &reqwest::Client, base: &str, products: &[Seeded], known: &mut HashMap<String, Known>) {
    let fetches = products.iter().map(|(id, d, _)| async move {
        let v: Option<Value> = match client.get(format!("{base}/api/products/{id}")).send().await {
            Ok(r) if r.status().is_success() => r.json().await.ok(),
            _ => None,
        };
        (id.clone(), *d, v)
    });
    for (id, d, v) in futures_util::future::join_all(fetches).await {
        let Some(v) = v else { continue };
        let experiment = v["experiment"]["experiment_id"].as_str().and_then(|x| x.parse().ok()).map(|x| {
            // The arms' copy comes from the history's open experiment; the product read gives
            // the control (what a shopper without an arm sees).
            (x, v["description"].as_str().unwrap_or_default().to_string(), String::new())
        });
        let _ = d;
        let entry = Known {
            tags: v["tags"]
                .as_array()
                .map(|t| t.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
                .unwrap_or_default(),
            description: v["description"].as_str().unwrap_or_default().to_string(),
            experiment,
            copy_version: v["copy_version"].as_u64().unwrap_or(0),
        };
        known.insert(id, entry);
    }
    // The challenger's text: asked for as a shopper in the challenger arm would see it.
    let open: Vec<(String, Uuid)> =
        known.iter().filter_map(|(id, k)| k.experiment.as_ref().map(|x| (id.clone(), x.0))).collect();
    for (id, x) in open {
        let challenger_shopper = (0..64)
            .map(|i| format!("probe-{i}"))
            .find(|s| experiment::arm(x, &ShopperId::parse(s.clone()).expect("valid")) == Arm::Challenger);
        let Some(s) = challenger_shopper else { continue };
        let Ok(r) = client.get(format!("{base}/api/products/{id}?shopper={s}")).send().await else { continue };
        let Ok(v) = r.json::<Value>().await else { continue };
        if let (Some(Known { experiment: Some(e), .. }), Some(text)) = (known.get_mut(&id), v["description"].as_str()) {
            e.2 = text.to_string();
        }
    }
}

fn report(known: &HashMap<String, Known>, elapsed: Duration, posted: u64, reported: &mut Vec<String>) {
    let testing = known.values().filter(|k| k.experiment.is_some()).count();
    let mut changed: Vec<&String> = known.iter().filter(|(_, k)| k.copy_version > 0).map(|(id, _)| id).collect();
    changed.sort();
    let missing = known.values().filter(|k| k.description.trim().is_empty()).count();
    println!(
        "mall demo: {:>4}s  {posted} signals  {} products with new copy  {testing} experiments running  {missing} still without a description",
        elapsed.as_secs(),
        changed.len()
    );
    for id in changed {
        if !reported.contains(id) {
            println!("  changed: {id}  →  mall audit product {id}");
            reported.push(id.clone());
        }
    }
}
