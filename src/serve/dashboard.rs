//! `/admin/autonomous`: the operator's page, rendered here as HTML (no script, nothing fetched
//! from elsewhere). Sign-in with the admin token opens a session held in an HttpOnly,
//! SameSite=Strict cookie (8 hours); every form carries the session's CSRF token, checked in
//! constant time; nothing of it is shown without a session.
//!
//! The page: each system (running or stopped) with start, stop and optimize; each job with its
//! cadence, last and next run; the task queue (queued, running, the next tasks with their
//! priorities and reasons, the recent ones with their outcomes); product intelligence's latest
//! decisions; the engine room (log position, projection lag, resident actors, generation budget,
//! parked events, model calls).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use mall_actors::autonomous::queue::Status;
use serde::Deserialize;
use serde_json::Value;
use subtle::ConstantTimeEq;

use super::AppState;
use super::error::ApiError;

const COOKIE: &str = "mall_session";
const SESSION: Duration = Duration::from_secs(8 * 3_600);
const MAX_SESSIONS: usize = 1_000;
const HOME: &str = "/admin/autonomous";

/// Signed-in sessions: id → (CSRF token, expiry).
#[derive(Default)]
pub struct Sessions(Mutex<HashMap<String, (String, Instant)>>);

fn random() -> String {
    format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple())
}

impl Sessions {
    fn open(&self) -> (String, String) {
        let mut g = self.0.lock().expect("sessions");
        let now = Instant::now();
        g.retain(|_, (_, until)| *until > now);
        if g.len() >= MAX_SESSIONS {
            // The one closest to its end goes first.
            if let Some(k) = g.iter().min_by_key(|(_, (_, until))| *until).map(|(k, _)| k.clone()) {
                g.remove(&k);
            }
        }
        let (id, csrf) = (random(), random());
        g.insert(id.clone(), (csrf.clone(), now + SESSION));
        (id, csrf)
    }

    /// The request's session: its id and CSRF token.
    fn of(&self, req: &HttpRequest) -> Option<(String, String)> {
        let cookies = req.headers().get(header::COOKIE)?.to_str().ok()?;
        let id = cookies.split(';').find_map(|c| c.trim().strip_prefix(COOKIE)?.strip_prefix('='))?.to_string();
        let g = self.0.lock().expect("sessions");
        let (csrf, until) = g.get(&id)?;
        (*until > Instant::now()).then(|| (id.clone(), csrf.clone()))
    }

    fn close(&self, id: &str) {
        self.0.lock().expect("sessions").remove(id);
    }
}

/// Text as HTML text or attribute value.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{}</title><style>\
         body{{font:15px/1.45 system-ui,sans-serif;margin:0 auto;max-width:72rem;padding:1rem;color:#111;background:#fff}}\
         table{{border-collapse:collapse;width:100%;margin:.5rem 0 1.5rem}}th,td{{text-align:left;padding:.3rem .5rem;border-bottom:1px solid #ccc;vertical-align:top}}\
         th{{background:#f2f2f2}}form{{display:inline}}button{{font:inherit;padding:.2rem .6rem;margin:0 .15rem;cursor:pointer}}\
         .on{{color:#0a6b2d;font-weight:600}}.off{{color:#a11;font-weight:600}}.err{{color:#a11}}\
         label{{display:block;margin:.5rem 0 .2rem}}input{{font:inherit;padding:.3rem;width:min(30rem,100%)}}\
         @media (max-width:40rem){{td,th{{display:block;border:0}}tr{{display:block;border-bottom:1px solid #ccc}}}}\
         </style></head><body>{body}</body></html>",
        escape(title)
    )
}

fn html(status: StatusCode, body: String) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((
            "Content-Security-Policy",
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
        ))
        .body(body)
}

fn see(location: &str) -> HttpResponse {
    HttpResponse::SeeOther().insert_header((header::LOCATION, location)).finish()
}

fn sign_in_page(message: Option<&str>) -> String {
    let m = message.map(|m| format!("<p class=\"err\" role=\"alert\">{}</p>", escape(m))).unwrap_or_default();
    page(
        "Sign in — mall",
        &format!(
            "<main><h1>mall: sign in</h1>{m}<form method=\"post\" action=\"{HOME}/login\">\
             <label for=\"token\">Admin token</label><input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"current-password\" required>\
             <p><button type=\"submit\">Sign in</button></p></form></main>"
        ),
    )
}

/// `GET /admin/autonomous/login`.
pub async fn login_form() -> HttpResponse {
    html(StatusCode::OK, sign_in_page(None))
}

#[derive(Deserialize)]
pub struct LoginForm {
    token: String,
}

/// `POST /admin/autonomous/login` (form `token`): a session for the admin token.
pub async fn login(state: web::Data<AppState>, form: web::Form<LoginForm>) -> HttpResponse {
    if !state.tokens.is_admin(form.token.trim().as_bytes()) {
        return html(StatusCode::UNAUTHORIZED, sign_in_page(Some("That is not the admin token.")));
    }
    let (id, _) = state.sessions.open();
    let cookie = format!("{COOKIE}={id}; Path=/admin; HttpOnly; SameSite=Strict; Max-Age={}", SESSION.as_secs());
    let mut res = see(HOME);
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res
}

#[derive(Deserialize)]
pub struct ControlForm {
    /// Missing is refused like wrong (403).
    #[serde(default)]
    csrf: String,
    action: String,
    system: Option<String>,
    plugin: Option<String>,
}

/// The session of a form's request whose CSRF token matches; else the answer to give.
fn checked(state: &AppState, req: &HttpRequest, csrf: &str) -> Result<String, HttpResponse> {
    let Some((id, expected)) = state.sessions.of(req) else { return Err(see(&format!("{HOME}/login"))) };
    if csrf.is_empty() || !bool::from(expected.as_bytes().ct_eq(csrf.as_bytes())) {
        return Err(html(
            StatusCode::FORBIDDEN,
            page(
                "Refused — mall",
                "<main><h1>Refused</h1><p>The form is stale or came from elsewhere. Go back, reload and try again.</p></main>",
            ),
        ));
    }
    Ok(id)
}

/// `POST /admin/autonomous/control` (form `csrf`, `action` start|stop|optimize|logout, `system`).
pub async fn control(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<ControlForm>,
) -> Result<HttpResponse, ApiError> {
    let id = match checked(&state, &req, &form.csrf) {
        Ok(id) => id,
        Err(answer) => return Ok(answer),
    };
    let systems: Vec<&str> = match form.system.as_deref() {
        Some(s) => match mall_actors::autonomous::jobs::SYSTEMS.iter().copied().find(|x| *x == s) {
            Some(x) => vec![x],
            None => return Err(ApiError::invalid("system", format!("no system {s:?}"))),
        },
        None => mall_actors::autonomous::jobs::SYSTEMS.to_vec(),
    };
    match form.action.as_str() {
        "logout" => {
            state.sessions.close(&id);
            let mut res = see(&format!("{HOME}/login"));
            res.headers_mut().insert(
                header::SET_COOKIE,
                HeaderValue::from_static("mall_session=; Path=/admin; HttpOnly; SameSite=Strict; Max-Age=0"),
            );
            return Ok(res);
        }
        "start" | "stop" => {
            for s in &systems {
                state.core.switch(s, form.action == "start", "admin").await?;
            }
        }
        "optimize" => {
            super::autonomous::optimize(&state, &systems).await?;
        }
        "enable_plugin" | "disable_plugin" => {
            let id = form.plugin.as_deref().ok_or_else(|| ApiError::invalid("plugin", "which plugin"))?;
            state
                .plugins
                .switch(id, form.action == "enable_plugin", "admin")
                .await
                .map_err(|e| ApiError::invalid("plugin", e))?;
        }
        other => {
            return Err(ApiError::invalid("action", format!("{other:?} is not one of start, stop, optimize, logout")));
        }
    }
    Ok(see(HOME))
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "—".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `GET /admin/autonomous`: the page, for a signed-in admin.
pub async fn home(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let Some((_, csrf)) = state.sessions.of(&req) else { return Ok(see(&format!("{HOME}/login"))) };
    let form = |action: &str, system: &str, label: &str| {
        format!(
            "<form method=\"post\" action=\"{HOME}/control\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <input type=\"hidden\" name=\"action\" value=\"{action}\"><input type=\"hidden\" name=\"system\" value=\"{system}\">\
             <button type=\"submit\" aria-label=\"{label} {system}\">{label}</button></form>"
        )
    };
    let now = chrono::Utc::now();
    let (systems, queued, running, next, recent) = state
        .core
        .with_queue(|q| {
            let systems: Vec<(&str, bool)> =
                mall_actors::autonomous::jobs::SYSTEMS.iter().map(|s| (*s, !q.is_stopped(s))).collect();
            let mut next: Vec<_> = q.tasks().filter(|t| t.status == Status::Queued).cloned().collect();
            next.sort_by(|a, b| q.standing(b, now).total_cmp(&q.standing(a, now)));
            next.truncate(20);
            let mut recent: Vec<_> =
                q.tasks().filter(|t| !matches!(t.status, Status::Queued | Status::Running)).cloned().collect();
            recent.sort_by_key(|t| std::cmp::Reverse(t.updated_at));
            recent.truncate(20);
            (systems, q.queued(), q.running(), next, recent)
        })
        .await;
    let mut body = format!(
        "<header><h1>mall: the autonomous core</h1><form method=\"post\" action=\"{HOME}/control\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"action\" value=\"logout\">\
         <button type=\"submit\">Sign out</button></form></header><main>"
    );
    body.push_str("<h2 id=\"systems\">Systems</h2><table><thead><tr><th scope=\"col\">System</th><th scope=\"col\">State</th><th scope=\"col\">Control</th></tr></thead><tbody>");
    for (s, on) in &systems {
        let state_cell = if *on { "<span class=\"on\">running</span>" } else { "<span class=\"off\">stopped</span>" };
        let buttons =
            if *on { form("stop", s, "Stop") + &form("optimize", s, "Optimize") } else { form("start", s, "Start") };
        body.push_str(&format!("<tr><td>{s}</td><td>{state_cell}</td><td>{buttons}</td></tr>"));
    }
    body.push_str("</tbody></table>");

    body.push_str("<h2 id=\"jobs\">Jobs</h2><table><thead><tr><th scope=\"col\">Job</th><th scope=\"col\">System</th><th scope=\"col\">Every</th><th scope=\"col\">Last run</th><th scope=\"col\">Next run</th></tr></thead><tbody>");
    for j in state.jobs.status().await {
        let last = j
            .last_run
            .as_ref()
            .map(|r| format!("{} — {}", r.finished_at.format("%Y-%m-%d %H:%M:%S"), escape(&r.outcome)))
            .unwrap_or_else(|| "—".into());
        let every = if j.enabled { format!("{} s", j.every_seconds) } else { "off".into() };
        body.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{every}</td><td>{last}</td><td>{}</td></tr>",
            j.name,
            j.system,
            j.next_run.format("%Y-%m-%d %H:%M:%S")
        ));
    }
    body.push_str("</tbody></table>");

    body.push_str(&format!("<h2 id=\"queue\">Task queue</h2><p>{queued} queued, {running} running.</p>"));
    body.push_str("<table><caption>Next</caption><thead><tr><th scope=\"col\">Priority</th><th scope=\"col\">System</th><th scope=\"col\">Action</th><th scope=\"col\">Subject</th><th scope=\"col\">Reason</th></tr></thead><tbody>");
    for t in &next {
        body.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            t.priority,
            escape(&t.system),
            escape(&t.action),
            escape(&t.subject),
            escape(&t.reason)
        ));
    }
    body.push_str("</tbody></table><table><caption>Recent</caption><thead><tr><th scope=\"col\">Status</th><th scope=\"col\">System</th><th scope=\"col\">Action</th><th scope=\"col\">Subject</th><th scope=\"col\">Outcome</th></tr></thead><tbody>");
    for t in &recent {
        body.push_str(&format!(
            "<tr><td>{:?}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            t.status,
            escape(&t.system),
            escape(&t.action),
            escape(&t.subject),
            escape(t.outcome.as_deref().unwrap_or("—"))
        ));
    }
    body.push_str("</tbody></table>");

    body.push_str("<h2 id=\"decisions\">Latest decisions</h2><table><thead><tr><th scope=\"col\">At</th><th scope=\"col\">Product</th><th scope=\"col\">What</th><th scope=\"col\">Summary</th></tr></thead><tbody>");
    let log = state
        .read
        .rows("optimization", mall_projections::optimization::OPTIMIZATION_LOG, crate::readside::Filter::Last(20))
        .await
        .map_err(super::storefront::sink_error)?;
    for r in &log {
        let get = |k: &str| r.get(k).cloned().unwrap_or(Value::Null);
        body.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&text(&get("at"))),
            escape(&text(&get("product_id"))),
            escape(&text(&get("kind"))),
            escape(&text(&get("summary")))
        ));
    }
    body.push_str("</tbody></table>");

    body.push_str("<h2 id=\"plugins\">Plugins</h2><table><thead><tr><th scope=\"col\">Plugin</th><th scope=\"col\">State</th><th scope=\"col\">Switch</th></tr></thead><tbody>");
    for (id, name, on) in state.plugins.switches().await.map_err(ApiError::unavailable)? {
        let (cell, action, label) = if on {
            ("<span class=\"on\">enabled</span>", "disable_plugin", "Disable")
        } else {
            ("<span class=\"off\">disabled</span>", "enable_plugin", "Enable")
        };
        body.push_str(&format!(
            "<tr><td>{}</td><td>{cell}</td><td><form method=\"post\" action=\"{HOME}/control\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"action\" value=\"{action}\">\
             <input type=\"hidden\" name=\"plugin\" value=\"{id}\"><button type=\"submit\" aria-label=\"{label} {id}\">{label}</button></form></td></tr>",
            escape(name)
        ));
    }
    body.push_str("</tbody></table>");

    let stats = state.store.stats().await?;
    let a = &state.actors;
    body.push_str(&format!(
        "<h2 id=\"engine\">Engine room</h2><table><tbody><tr><th scope=\"row\">Log position</th><td>{}</td></tr>\
         <tr><th scope=\"row\">Resident actors</th><td>{} products, {} districts, {} shoppers</td></tr>\
         <tr><th scope=\"row\">Generation budget</th><td>{} of {} calls left this hour</td></tr>\
         <tr><th scope=\"row\">Parked events</th><td>{}</td></tr></tbody></table>",
        stats.last_position,
        a.products.resident(),
        a.districts.resident(),
        a.shoppers.resident(),
        a.rt.budget.left(),
        a.rt.budget.per_hour(),
        a.rt.parked().len()
    ));
    body.push_str("<table><caption>Projection lag</caption><thead><tr><th scope=\"col\">Projection</th><th scope=\"col\">Positions behind</th><th scope=\"col\">Seconds behind</th></tr></thead><tbody>");
    for (name, _, lag, _, _) in state.read.status().await {
        body.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{:.1}</td></tr>",
            escape(&name),
            lag.positions,
            lag.seconds
        ));
    }
    body.push_str("</tbody></table></main>");
    Ok(html(StatusCode::OK, page("mall: the autonomous core", &body)))
}
