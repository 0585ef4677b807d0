//! `/admin/autonomous` over HTTP, as a browser uses it: nothing without a session; a wrong token
//! is refused; the admin token opens an HttpOnly, SameSite=Strict session; the page shows every
//! system, job, the queue, the decisions and the engine room; a form without the session's CSRF
//! token is refused and changes nothing; with it a system stops and starts; signing out ends the
//! session.

mod support;

use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use support::http::*;
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
        "id=\"plugins\"",
        "Voice commerce",
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
