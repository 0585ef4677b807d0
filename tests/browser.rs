//! `/admin/autonomous` in a real browser: headless Chromium driven over WebDriver (chromedriver,
//! fantoccini). Sign in (a wrong token is refused, on the page), see the page, stop and start a
//! system with its buttons, sign out; a screenshot of each page is written to
//! `target/screenshots/` (not committed). Without chromedriver on the PATH the test says it was
//! skipped, unless `MALL_REQUIRE_BROWSER` is set (CI installs Chromium and sets it).

mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use support::http::*;
use support::server::*;

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// chromedriver on a free port, and its URL; `None` when it is not installed.
async fn chromedriver() -> Option<(Driver, String)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let driver = Driver(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not listen");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Some((driver, format!("http://127.0.0.1:{port}")))
}

async fn shot(b: &Client, name: &str) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}.png")), b.screenshot().await.unwrap()).unwrap();
}

/// The text of the first element `css` finds, once a page that has it is loaded (a click's new
/// page replaces the old one under the driver: elements of the old one go stale).
async fn text(b: &Client, css: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(e) = b.find(Locator::Css(css)).await
            && let Ok(t) = e.text().await
        {
            return t;
        }
        assert!(Instant::now() < deadline, "no {css}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Clicks the first element `css` finds once it is there.
async fn click(b: &Client, css: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(e) = b.find(Locator::Css(css)).await
            && e.click().await.is_ok()
        {
            return;
        }
        assert!(Instant::now() < deadline, "no {css} to click");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn running(s: &Server, system: &str) -> bool {
    let (_, st) = get_as(&client(), s.url("/api/autonomous"), ADMIN).await;
    st["systems"].as_array().unwrap().iter().find(|x| x["name"] == system).unwrap()["running"].as_bool().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_in_chromium() {
    let Some((_driver, url)) = chromedriver().await else {
        assert!(std::env::var_os("MALL_REQUIRE_BROWSER").is_none(), "chromedriver is required (MALL_REQUIRE_BROWSER)");
        eprintln!("SKIPPED: the browser test (chromedriver is not installed)");
        return;
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (store, _dir) = Store::embedded();
    let s = Server::start(&store, &[]);
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"]}),
    );
    let b = ClientBuilder::rustls().unwrap().capabilities(caps).connect(&url).await.expect("a Chromium session");

    // No session: the sign-in page.
    b.goto(&s.url("/admin/autonomous")).await.unwrap();
    assert!(b.current_url().await.unwrap().path().ends_with("/admin/autonomous/login"));
    shot(&b, "sign-in").await;

    // A wrong token is refused, on the page.
    b.find(Locator::Css("#token")).await.unwrap().send_keys("wrong").await.unwrap();
    click(&b, "button[type=submit]").await;
    let alert = text(&b, "[role=alert]").await;
    assert!(alert.contains("not the admin token"), "{alert}");

    // The admin token: the dashboard.
    b.find(Locator::Css("#token")).await.unwrap().send_keys(ADMIN).await.unwrap();
    click(&b, "button[type=submit]").await;
    assert_eq!(text(&b, "header h1").await, "mall: the autonomous core");
    for id in ["systems", "jobs", "queue", "plugins", "decisions", "engine"] {
        text(&b, &format!("#{id}")).await;
    }
    assert!(!b.source().await.unwrap().contains(ADMIN), "the token is not on the page");
    shot(&b, "dashboard").await;

    // Stop a system with its button, and start it again.
    click(&b, "button[aria-label='Stop analytics']").await;
    text(&b, "button[aria-label='Start analytics']").await;
    assert!(!running(&s, "analytics").await);
    shot(&b, "stopped").await;
    click(&b, "button[aria-label='Start analytics']").await;
    text(&b, "button[aria-label='Stop analytics']").await;
    assert!(running(&s, "analytics").await);

    // Toggle a plugin.
    click(&b, "button[aria-label='Enable dynamic_pricing']").await;
    text(&b, "button[aria-label='Disable dynamic_pricing']").await;
    let (_, p) = get_as(&client(), s.url("/api/autonomous/plugins"), ADMIN).await;
    let pricing = p["plugins"].as_array().unwrap().iter().find(|x| x["id"] == "dynamic_pricing").unwrap().clone();
    assert_eq!(pricing["enabled"], true, "{pricing}");
    shot(&b, "plugin-enabled").await;

    // Sign out: the session ends.
    click(&b, "header button[type=submit]").await;
    text(&b, "#token").await;
    b.goto(&s.url("/admin/autonomous")).await.unwrap();
    assert!(b.current_url().await.unwrap().path().ends_with("/admin/autonomous/login"), "the session ended");
    b.close().await.unwrap();
}
