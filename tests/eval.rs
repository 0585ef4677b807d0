//! `mall eval recommendations` on an NDJSON file: the figures of a fixture computed by hand, and
//! bad input refused with a one-line message.

mod support;

use serde_json::{Value, json};
use support::server::*;

/// a: x, y then z; b: x, z; c: y then x; d: w alone — as `product_viewed` records.
fn fixture(dir: &std::path::Path) -> std::path::PathBuf {
    let views = [
        ("a", "x", 0),
        ("a", "y", 1),
        ("b", "x", 2),
        ("b", "z", 3),
        ("c", "y", 4),
        ("a", "z", 5),
        ("c", "x", 6),
        ("d", "w", 7),
    ];
    let lines: Vec<String> = views
        .iter()
        .enumerate()
        .map(|(i, (s, p, minute))| {
            json!({"type": "product_viewed", "id": uuid::Uuid::from_u128(i as u128 + 1), "shopper_id": s,
                   "session_id": "s", "at": format!("2026-01-01T00:{minute:02}:00Z"), "product_id": p, "dwell_ms": 1000})
            .to_string()
        })
        .collect();
    let path = dir.join("fixture.ndjson");
    std::fs::write(&path, lines.join("\n")).unwrap();
    path
}

#[test]
fn the_baselines_figures_are_the_ones_computed_by_hand() {
    let (store, dir) = Store::embedded();
    let file = fixture(dir.path());
    let (code, out, err) =
        mall(&store, &["eval", "recommendations", "--file", file.to_str().unwrap(), "--k", "10", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let popularity = &v["models"][0];
    assert_eq!((popularity["name"].as_str(), popularity["shoppers"].as_u64()), (Some("popularity"), Some(3)));
    // Held out: a→z at rank 2, b→z at rank 3, c→x at rank 1 (seen products left out).
    let ndcg = (1.0 / 3f64.log2() + 0.5 + 1.0) / 3.0;
    assert!((popularity["ndcg_at_10"].as_f64().unwrap() - ndcg).abs() < 1e-9, "{v}");
    assert_eq!(popularity["hr_at_10"], 1.0);
    assert_eq!(v["products"], 4);
    // mall's model, from the file given as the positional FILE: c's y → x transition (a went
    // from x to y) puts x first for c; a and b fall back to popularity, as popularity ranks.
    let (code, out, err) = mall(&store, &["eval", "recommendations", file.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let model = v["models"].as_array().unwrap().iter().find(|m| m["name"] == "mall").expect("mall's model");
    assert!((model["ndcg_at_10"].as_f64().unwrap() - ndcg).abs() < 1e-9, "{v}");
    let (code, out, _) = mall(&store, &["eval", "recommendations", "--file", file.to_str().unwrap(), "--k", "1"]);
    assert_eq!(code, 0);
    assert!(out.contains("HR@1") && out.contains("item-kNN") && out.contains("decayed popularity"), "{out}");
}

#[test]
fn bad_input_gets_one_line_and_a_failing_exit() {
    let (store, dir) = Store::embedded();
    let file = fixture(dir.path());
    let (code, _, err) = mall(&store, &["eval", "recommendations", "--file", file.to_str().unwrap(), "--k", "0"]);
    assert_ne!(code, 0);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("--k"), "{err}");
    let bad = dir.path().join("bad.ndjson");
    std::fs::write(&bad, "{\"type\": \"product_viewed\"}\n").unwrap();
    let (code, _, err) = mall(&store, &["eval", "recommendations", "--file", bad.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.starts_with("mall: line 1:"), "{err}");
}
