//! `mall demo` from a fresh data directory: within its run, missing copy is written, weak copy is
//! rewritten and tested, experiments conclude and rankings change — all visible through `mall
//! audit` afterwards.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

use serde_json::Value;

/// Signs in to the dashboard at `url` with `token`; whether the overview then showed.
fn sign_in_and_look(url: &str, token: &str) -> bool {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let c = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let r = c
            .post(format!("{url}/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("token={token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), reqwest::StatusCode::SEE_OTHER, "the demo's admin token signs in");
        let cookie = r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
        let page = c.get(url).header("cookie", cookie).send().await.unwrap().text().await.unwrap();
        page.contains("<h2 id=\"decisions\">Latest decisions</h2>") && page.contains("product_intelligence")
    })
}

#[test]
fn the_demo_shows_the_mall_improving_itself() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data").display().to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_mall"))
        .args([
            "--data-dir",
            &data,
            "demo",
            "--bind",
            "127.0.0.1:0",
            "--duration",
            "45",
            "--products",
            "40",
            "--shoppers",
            "300",
            "--rate",
            "3000",
        ])
        .env_remove("MALL_STORE")
        .env_remove("MALL_ADMIN_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = child.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    // While the demo runs, the operator signs in to the dashboard it names.
    let mut lines = Vec::new();
    let mut signed_in = false;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some(rest) = line.strip_prefix("  watch: ") {
            let url = rest.split_whitespace().next().unwrap().to_string();
            let token = rest.rsplit(' ').next().unwrap().trim_end_matches(')').to_string();
            signed_in = sign_in_and_look(&url, &token);
        }
        lines.push(line);
    }
    let status = child.wait().unwrap();
    let stdout = lines.join("\n");
    assert!(status.success(), "{stdout}\n{}", stderr.join().unwrap());
    assert!(signed_in, "the dashboard during the demo: {stdout}");
    assert!(stdout.contains("serving on http://127.0.0.1:"), "{stdout}");
    let last = stdout.lines().rfind(|l| l.starts_with("mall demo:") && l.contains("signals")).expect("progress lines");
    assert!(last.contains(" 0 still without a description"), "missing descriptions are written: {last}");
    assert!(
        stdout.contains("  autonomous: ") && stdout.contains("jobs run: product_intelligence (1 tasks)"),
        "the core at work: the product intelligence job ran and queued its sweep: {stdout}"
    );
    let healing: Vec<&str> = stdout.lines().filter(|l| l.starts_with("  self-healing: ")).collect();
    assert!(
        healing.len() >= 2 && healing.iter().all(|l| l.contains("broken_image 2") && l.contains("placeholder")),
        "self-healing finds the broken images and shows placeholders: {stdout}"
    );
    assert!(healing[0].contains("missing_copy") && !healing.last().unwrap().contains("missing_copy"), "{stdout}");
    let out = Command::new(env!("CARGO_BIN_EXE_mall"))
        .args(["--data-dir", &data, "replay", "health-mall", "--verify"])
        .output()
        .unwrap();
    assert!(out.status.success(), "every health check replays: {}", String::from_utf8_lossy(&out.stdout));
    assert!(
        stdout.contains("district evolution: outdoor proposed tone")
            && stdout.contains("district evolution: outdoor tone \"technical\" -> "),
        "the district whose shoppers do not respond to its voice evolves: {stdout}"
    );
    assert!(
        stdout.lines().any(|l| l.contains("district evolution: outdoor tone") && l.ends_with("(kept)")),
        "its new voice won its test: {stdout}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_mall"))
        .args(["--data-dir", &data, "replay", "district-outdoor", "--verify"])
        .output()
        .unwrap();
    assert!(out.status.success(), "every evolution replays: {}", String::from_utf8_lossy(&out.stdout));
    let changed: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.trim().strip_prefix("changed: "))
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert!(!changed.is_empty(), "{stdout}");
    assert!(
        stdout.lines().any(|l| l.trim().starts_with("ranking ") && l.contains("(was ")),
        "the rankings change as the mall learns: {stdout}"
    );

    // After the demo, the log explains every change; at least one experiment concluded.
    let mut concluded = 0;
    for id in &changed {
        let out = Command::new(env!("CARGO_BIN_EXE_mall"))
            .args(["--data-dir", &data, "audit", "product", id, "--json"])
            .output()
            .unwrap();
        assert!(out.status.success());
        let h: Value = serde_json::from_slice(&out.stdout).unwrap();
        let changes = h["changes"].as_array().unwrap();
        assert!(changes.iter().any(|c| c["command"] == "rewrite_description"), "{id}: {h}");
        concluded += changes.iter().filter(|c| c["experiment"]["concluded"].is_object()).count();
        let out = Command::new(env!("CARGO_BIN_EXE_mall"))
            .args(["--data-dir", &data, "replay", &format!("product-{id}"), "--verify"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{id}: {}", String::from_utf8_lossy(&out.stdout));
    }
    assert!(concluded > 0, "an experiment concluded within the demo: {stdout}");
    // The scheduled systems, asked during the demo: a social calendar, a narrative, plugins.
    let planned = stdout.lines().find(|l| l.starts_with("  social: ")).expect("a social calendar");
    assert!(planned.contains("18 posts planned for"), "{planned}");
    let narrative = stdout.lines().find(|l| l.starts_with("  analytics: ")).expect("a narrative");
    assert!(narrative.contains("traffic") && narrative.contains("views"), "{narrative}");
    let plugins = stdout.lines().rev().find(|l| l.starts_with("  plugins: ")).expect("plugins at work");
    assert!(plugins.contains("inventory_prediction ok") && plugins.contains("image_generation ok"), "{plugins}");
}
