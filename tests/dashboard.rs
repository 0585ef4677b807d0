//! `/admin/autonomous` over HTTP, as a browser uses it: nothing without a session; a wrong token
//! is refused; the admin token opens an HttpOnly, SameSite=Strict session; the page shows every
//! system, job, the queue, the decisions and the engine room; a form without the session's CSRF
//! token is refused and changes nothing; with it a system stops and starts; signing out ends the
//! session.

mod support;

use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use serde_json::Value;
use support::http::*;
use support::scenario::*;
use support::server::*;

fn browser() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

async fn form(c: &reqwest::Client, url: String, cookie: Option<&str>, body: &str) -> reqwest::Response {
    let mut r = c.post(url).header(CONTENT_TYPE, "application/x-www-form-urlencoded").body(body.to_string());
    if let Some(k) = cookie {
        r = r.header(COOKIE, k);
    }
    r.send().await.unwrap()
}

async fn page(c: &reqwest::Client, s: &Server, cookie: &str) -> (StatusCode, String) {
    let r = c.get(s.url("/admin/autonomous")).header(COOKIE, cookie).send().await.unwrap();
    (r.status(), r.text().await.unwrap())
}

async fn running(s: &Server, system: &str) -> bool {
    let (_, st) = get_as(&client(), s.url("/api/autonomous"), ADMIN).await;
    st["systems"].as_array().unwrap().iter().find(|x| x["name"] == system).unwrap()["running"].as_bool().unwrap()
}

async fn the_operator_signs_in_and_controls_the_mall(store: Store) {
    let s = Server::start(&store, &[]);
    let c = browser();

    let r = c.get(s.url("/admin/autonomous")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "nothing without a session");
    assert_eq!(r.headers()[LOCATION], "/admin/autonomous/login");
    let r = c.get(s.url("/admin/autonomous")).header(COOKIE, "mall_session=made-up").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "nor with a made-up one");
    let login = c.get(s.url("/admin/autonomous/login")).send().await.unwrap().text().await.unwrap();
    assert!(login.contains("<label for=\"token\">") && !login.contains("<script"), "{login}");

    let r = form(&c, s.url("/admin/autonomous/login"), None, "token=wrong").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers().get(SET_COOKIE).is_none());
    assert!(r.text().await.unwrap().contains("not the admin token"));

    let r = form(&c, s.url("/admin/autonomous/login"), None, &format!("token={ADMIN}")).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let set = r.headers()[SET_COOKIE].to_str().unwrap().to_string();
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"), "{set}");
    let cookie = set.split(';').next().unwrap().to_string();

    let r = c.get(s.url("/admin/autonomous")).header(COOKIE, &cookie).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-security-policy"].to_str().unwrap().contains("default-src 'none'"));
    let html = r.text().await.unwrap();
    for part in [
        "id=\"systems\"",
        "id=\"jobs\"",
        "id=\"queue\"",
        "id=\"decisions\"",
        "id=\"engine\"",
        "analytics",
        "anomaly_detection",
    ] {
        assert!(html.contains(part), "{part}: {html}");
    }
    assert!(!html.contains(ADMIN), "the token is not on the page");
    let csrf = html.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_string();

    // A form without the session's CSRF token (another site's, say) changes nothing.
    for body in ["action=stop&system=analytics", "csrf=forged&action=stop&system=analytics"] {
        let r = form(&c, s.url("/admin/autonomous/control"), Some(&cookie), body).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{body}");
        assert!(running(&s, "analytics").await, "{body}");
    }
    // Nor a form without a session.
    let r =
        form(&c, s.url("/admin/autonomous/control"), None, &format!("csrf={csrf}&action=stop&system=analytics")).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(running(&s, "analytics").await);

    // Stop and start a system.
    let r = form(
        &c,
        s.url("/admin/autonomous/control"),
        Some(&cookie),
        &format!("csrf={csrf}&action=stop&system=analytics"),
    )
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(!running(&s, "analytics").await, "stopped");
    let (_, html) = page(&c, &s, &cookie).await;
    assert!(html.contains("<tr><td>analytics</td><td><span class=\"off\">stopped</span>"), "{html}");
    let r = form(
        &c,
        s.url("/admin/autonomous/control"),
        Some(&cookie),
        &format!("csrf={csrf}&action=start&system=analytics"),
    )
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(running(&s, "analytics").await, "started again");

    // Signing out ends the session.
    let r = form(&c, s.url("/admin/autonomous/control"), Some(&cookie), &format!("csrf={csrf}&action=logout")).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(page(&c, &s, &cookie).await.0, StatusCode::SEE_OTHER);
}

support::on_both_stores!(the_operator_signs_in_and_controls_the_mall);

/// Signs in; the session cookie.
async fn sign_in(c: &reqwest::Client, s: &Server) -> String {
    let r = form(c, s.url("/admin/autonomous/login"), None, &format!("token={ADMIN}")).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    r.headers()[SET_COOKIE].to_str().unwrap().split(';').next().unwrap().to_string()
}

async fn html_of(c: &reqwest::Client, s: &Server, path: &str, cookie: &str) -> (StatusCode, String) {
    let r = c.get(s.url(path)).header(COOKIE, cookie).send().await.unwrap();
    (r.status(), r.text().await.unwrap())
}

/// Reads the live stream until an event `pred` accepts arrives; every event read.
async fn read_events(live: &mut reqwest::Response, pred: impl Fn(&str, &Value) -> bool) -> Vec<(String, Value)> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    let (mut buf, mut seen) = (String::new(), Vec::new());
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let chunk = tokio::time::timeout(left, live.chunk()).await.expect("the awaited event in time").unwrap();
        buf.push_str(std::str::from_utf8(&chunk.expect("the stream goes on")).unwrap());
        while let Some(end) = buf.find("\n\n") {
            let frame: String = buf.drain(..end + 2).collect();
            let mut event = "message".to_string();
            let mut data = None;
            for line in frame.lines() {
                if let Some(e) = line.strip_prefix("event: ") {
                    event = e.to_string();
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data = Some(serde_json::from_str::<Value>(d).unwrap());
                }
            }
            if let Some(d) = data {
                let done = pred(&event, &d);
                seen.push((event, d));
                if done {
                    return seen;
                }
            }
        }
    }
}

/// The operator watches product intelligence at work: the live stream brings the rewrite's
/// decision as signals flow; its page shows the copy as a word diff with the rule, the metrics,
/// the generator and every guardrail's verdict; the experiment's page shows its arms, sample
/// sizes, outcome and the statistic over time as charts; every system has its page.
async fn the_operator_watches_a_rewrite_live_and_reads_its_diff(store: Store) {
    let s = Server::start(&store, &[]);
    let c = browser();
    catalog(&c, &s).await;
    let cookie = sign_in(&c, &s).await;

    // The live stream: a session's only.
    let r = c.get(s.url("/admin/autonomous/live")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = c.get(s.url("/admin/autonomous/live.js")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let (_, home) = html_of(&c, &s, "/admin/autonomous", &cookie).await;
    let since: u64 = home.split("data-since=\"").nth(1).unwrap().split('"').next().unwrap().parse().unwrap();
    assert!(home.contains("<script src=\"/admin/autonomous/live.js\" defer></script>"), "{home}");
    let (status, js) = html_of(&c, &s, "/admin/autonomous/live.js", &cookie).await;
    assert!(status == StatusCode::OK && js.contains("new EventSource(url)"), "{js}");
    let mut live =
        c.get(s.url(&format!("/admin/autonomous/live?since={since}"))).header(COOKIE, &cookie).send().await.unwrap();
    assert_eq!(live.status(), StatusCode::OK);
    assert_eq!(live.headers()[CONTENT_TYPE], "text/event-stream");
    let first = read_events(&mut live, |e, _| e == "counts").await;
    let at_start = first.last().unwrap().1["position"].as_u64().unwrap();

    // Signals flow: the weak product's rewrite arrives on the stream, with the way to its diff.
    signals(&c, &s, weak_traffic()).await;
    let seen = read_events(&mut live, |e, d| {
        e == "decision" && d["product_id"] == "weak" && d["summary"].as_str().unwrap().starts_with("weak_description")
    })
    .await;
    let counts: Vec<&Value> = seen.iter().filter(|(e, _)| e == "counts").map(|(_, d)| d).collect();
    assert!(counts.iter().any(|d| d["position"].as_u64().unwrap() > at_start), "the counts move: {counts:?}");
    let decided = &seen.last().unwrap().1;
    assert!(decided["summary"].as_str().unwrap().starts_with("weak_description"), "{decided}");
    let href = decided["href"].as_str().unwrap().to_string();
    assert!(href.starts_with("/admin/autonomous/decisions/weak/"), "{href}");
    assert!(
        seen.iter().filter(|(e, _)| e == "decision").all(|(_, d)| d["position"].as_u64().unwrap() > since),
        "only decisions the page did not show"
    );

    // The diff, once the challenger is generated and under test.
    let h = until(&c, &s, "/api/products/weak/history", "the rewrite under test", |h| {
        h["changes"].as_array().unwrap().iter().any(|c| c["status"] == "testing")
    })
    .await;
    let change = h["changes"].as_array().unwrap().iter().find(|c| c["status"] == "testing").unwrap().clone();
    let (status, diff) = html_of(&c, &s, &href, &cookie).await;
    assert_eq!(status, StatusCode::OK, "{diff}");
    assert!(diff.contains("<h4>Before</h4><blockquote>Rings.</blockquote>"), "the old copy: {diff}");
    let first_new_word = change["new"]["text"].as_str().unwrap().split_whitespace().next().unwrap().to_string();
    assert!(diff.contains(&format!("<ins>{first_new_word}")), "the new copy underlined: {diff}");
    assert!(diff.contains("<dd id=\"rule\">weak_description</dd>"), "{diff}");
    assert!(diff.contains(&format!(
        "<strong id=\"generator\">{}</strong>",
        change["generation"]["generator"].as_str().unwrap()
    )));
    for v in change["generation"]["verdicts"].as_array().unwrap() {
        assert!(
            diff.contains(&format!(
                "<tr><td>{}</td><td><span class=\"on\">passed</span>",
                v["check"].as_str().unwrap()
            )),
            "{v}: {diff}"
        );
    }
    assert!(diff.contains("<td>window_views</td>"), "the metrics: {diff}");
    assert!(diff.contains("<summary>The model's raw output</summary>"), "{diff}");
    let experiment_id = change["experiment"]["experiment_id"].as_str().unwrap().to_string();
    let x_href = format!("/admin/autonomous/experiments/weak/{experiment_id}");
    assert!(diff.contains(&format!("href=\"{x_href}\"")), "the experiment is linked: {diff}");
    let (_, x) = html_of(&c, &s, &x_href, &cookie).await;
    assert!(x.contains("<dd id=\"outcome\">running</dd>") && x.contains("<caption>Arms</caption>"), "{x}");

    // The experiment runs to its end: its page shows the outcome, the samples and the chart.
    signals(&c, &s, experiment_traffic(&c, &s).await).await;
    let h = until(&c, &s, "/api/products/weak/history", "the experiment's end", |h| {
        h["changes"].as_array().unwrap().iter().any(|c| c["status"] == "kept")
    })
    .await;
    let kept = h["changes"].as_array().unwrap().iter().find(|c| c["status"] == "kept").unwrap();
    let concluded = &kept["experiment"]["concluded"];
    let (_, x) = html_of(&c, &s, &x_href, &cookie).await;
    assert!(x.contains("<dd id=\"outcome\">challenger won: "), "{x}");
    for arm in ["control", "challenger"] {
        let (views, conversions) = (&concluded[arm]["views"], &concluded[arm]["conversions"]);
        assert!(x.contains(&format!("<td>{views}</td><td>{conversions}</td>")), "{arm} {views}/{conversions}: {x}");
    }
    assert!(
        x.contains("aria-labelledby=\"lr-title lr-desc\"") && x.contains("aria-labelledby=\"prob-title prob-desc\"")
    );
    let points = x.split("<polyline").nth(1).unwrap().split("points=\"").nth(1).unwrap().split('"').next().unwrap();
    assert!(points.split(' ').count() > 100, "a look after each signal: {points}");
    let (_, list) = html_of(&c, &s, "/admin/autonomous/experiments", &cookie).await;
    assert!(list.contains(&format!("href=\"{x_href}\"")) && list.contains("challenger won"), "{list}");

    // Every system's page; an unknown one is not there; none without a session.
    for (panel, heading) in [
        ("districts", "District evolution"),
        ("health", "Self-healing"),
        ("merchandising", "Merchandising"),
        ("social", "Social media"),
        ("analytics", "Analytics"),
        ("plugins", "Plugins"),
    ] {
        let (status, html) = html_of(&c, &s, &format!("/admin/autonomous/{panel}"), &cookie).await;
        assert_eq!(status, StatusCode::OK, "{panel}: {html}");
        assert!(html.contains(&format!(">{heading}</h2>")), "{panel}: {html}");
        assert!(html.contains(&format!("href=\"/admin/autonomous/{panel}\" aria-current=\"page\"")), "{panel}");
        let r = c.get(s.url(&format!("/admin/autonomous/{panel}"))).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{panel} without a session");
    }
    let (_, plugins) = html_of(&c, &s, "/admin/autonomous/plugins", &cookie).await;
    assert!(plugins.contains("Voice commerce") && plugins.contains("max_daily_change"), "{plugins}");
    assert_eq!(html_of(&c, &s, "/admin/autonomous/nowhere", &cookie).await.0, StatusCode::NOT_FOUND);
    let r = c.get(s.url("/admin/autonomous/decisions/weak/not-a-uuid")).header(COOKIE, &cookie).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.json::<Value>().await.unwrap()["field"], "decision");
    let r = c.get(s.url(&href.replace("/weak/", "/nope/"))).header(COOKIE, &cookie).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // Signing out ends the stream.
    let (_, home) = html_of(&c, &s, "/admin/autonomous", &cookie).await;
    let csrf = home.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
    form(&c, s.url("/admin/autonomous/control"), Some(&cookie), &format!("csrf={csrf}&action=logout")).await;
    let ended = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while let Ok(Some(_)) = live.chunk().await {}
    })
    .await;
    assert!(ended.is_ok(), "the stream ends with the session");
}

support::on_both_stores!(the_operator_watches_a_rewrite_live_and_reads_its_diff);
