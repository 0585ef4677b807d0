//! `/admin/autonomous`: the operator's pages, rendered here as HTML (a small script from the
//! binary for live updates; nothing fetched from elsewhere). Sign-in with the admin token opens a
//! session held in an HttpOnly, SameSite=Strict cookie (8 hours); every form carries the
//! session's CSRF token, checked in constant time; nothing of it is shown without a session.
//!
//! The overview: each system (running or stopped) with start, stop and optimize; each job with
//! its cadence, last and next run; the task queue (the next tasks with their priorities and
//! reasons, the recent ones with their outcomes); product intelligence's latest decisions, each
//! linked to its before/after diff (`changes`); the engine room. Counts and new decisions arrive
//! live (`live`). Then a page a system: experiments with the statistic over time, district
//! evolution, self-healing, merchandising, social media, analytics (`systems`), and the plugins
//! with their switches and settings.

mod changes;
mod chart;
mod live;
mod systems;

pub use changes::{decision, experiment};
pub use live::{live, script};

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
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

    /// Whether a session is still open (a live stream ends with its session).
    fn alive(&self, id: &str) -> bool {
        self.0.lock().expect("sessions").get(id).is_some_and(|(_, until)| *until > Instant::now())
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
         nav ul{{list-style:none;padding:0;margin:.5rem 0 1rem;display:flex;flex-wrap:wrap;gap:.25rem 1rem}}\
         nav a[aria-current]{{font-weight:700;text-decoration:none;color:#111}}a{{color:#1f4e9c}}\
         del{{background:#fde2e2;color:#7a0b0b}}ins{{background:#dcf5e3;color:#0a4d1f}}.diff{{font-size:1.05rem;line-height:1.7}}\
         .key{{color:#444;font-size:.9rem}}pre{{white-space:pre-wrap;background:#f6f6f6;padding:.5rem;overflow-wrap:anywhere}}\
         dl.facts{{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem}}dt{{font-weight:600}}dd{{margin:0}}\
         figure{{margin:1rem 0}}figcaption{{font-weight:600}}ul.legend{{list-style:none;padding:0;display:flex;gap:1rem}}\
         tr.new{{background:#fff8d6}}header{{display:flex;justify-content:space-between;align-items:center;flex-wrap:wrap}}\
         a:focus,button:focus,input:focus,summary:focus{{outline:3px solid #1f4e9c;outline-offset:2px}}\
         @media (max-width:40rem){{td,th{{display:block;border:0}}tr{{display:block;border-bottom:1px solid #ccc}}dl.facts{{display:block}}}}\
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
            "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ))
        .body(body)
}

/// The pages after the overview: path, name.
const PANELS: &[(&str, &str)] = &[
    ("experiments", "Experiments"),
    ("districts", "Districts"),
    ("health", "Health"),
    ("merchandising", "Merchandising"),
    ("social", "Social"),
    ("analytics", "Analytics"),
    ("plugins", "Plugins"),
];

/// The request's session's CSRF token; else the way to the sign-in page.
fn session(state: &AppState, req: &HttpRequest) -> Result<String, HttpResponse> {
    state.sessions.of(req).map(|(_, csrf)| csrf).ok_or_else(|| see(&format!("{HOME}/login")))
}

/// A hidden-field form posting `action` (and `fields`) to the control endpoint, as one button.
fn button(csrf: &str, action: &str, fields: &[(&str, &str)], label: &str, aria: &str) -> String {
    let hidden: String =
        fields.iter().map(|(k, v)| format!("<input type=\"hidden\" name=\"{k}\" value=\"{}\">", escape(v))).collect();
    format!(
        "<form method=\"post\" action=\"{HOME}/control\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <input type=\"hidden\" name=\"action\" value=\"{action}\">{hidden}\
         <button type=\"submit\" aria-label=\"{}\">{label}</button></form>",
        escape(aria)
    )
}

/// A signed-in page: the header (the mall, the navigation with `current` marked, sign out), then
/// `main`.
fn signed_in(csrf: &str, current: &str, title: &str, main: &str) -> HttpResponse {
    let mut nav = String::from("<nav aria-label=\"Dashboard\"><ul>");
    for (path, name) in std::iter::once(&("", "Overview")).chain(PANELS) {
        let href = if path.is_empty() { HOME.to_string() } else { format!("{HOME}/{path}") };
        let here = if *path == current { " aria-current=\"page\"" } else { "" };
        nav.push_str(&format!("<li><a href=\"{href}\"{here}>{name}</a></li>"));
    }
    nav.push_str("</ul></nav>");
    let body = format!(
        "<header><h1>mall: the autonomous core</h1>{}</header>{nav}<main>{main}</main>",
        button(csrf, "logout", &[], "Sign out", "Sign out")
    );
    html(StatusCode::OK, page(title, &body))
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
    /// The page to go back to (one of the panels; else the overview).
    back: Option<String>,
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
            state.plugins.switch(id, form.action == "enable_plugin", "admin").await?;
        }
        other => {
            return Err(ApiError::invalid("action", format!("{other:?} is not one of start, stop, optimize, logout")));
        }
    }
    let back = form.back.as_deref().and_then(|b| PANELS.iter().find(|(p, _)| *p == b));
    Ok(see(&back.map_or(HOME.to_string(), |(p, _)| format!("{HOME}/{p}"))))
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "—".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `GET /admin/autonomous`: the overview, for a signed-in admin.
pub async fn home(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let csrf = match session(&state, &req) {
        Ok(c) => c,
        Err(answer) => return Ok(answer),
    };
    let now = chrono::Utc::now();
    let (systems, queued, running, view) = state
        .core
        .with_queue(|q| {
            let systems: Vec<(&str, bool)> =
                mall_actors::autonomous::jobs::SYSTEMS.iter().map(|s| (*s, !q.is_stopped(s))).collect();
            (systems, q.queued(), q.running(), super::autonomous::QueueView::of(q, now))
        })
        .await;
    let mut body = String::from(
        "<p id=\"live-status\" role=\"status\" aria-live=\"polite\" class=\"key\">Live updates start when the page has loaded.</p>\
         <h2 id=\"systems\">Systems</h2><table><thead><tr><th scope=\"col\">System</th><th scope=\"col\">State</th><th scope=\"col\">Control</th></tr></thead><tbody>",
    );
    for (s, on) in &systems {
        let state_cell = if *on { "<span class=\"on\">running</span>" } else { "<span class=\"off\">stopped</span>" };
        let control =
            |action: &str, label: &str| button(&csrf, action, &[("system", s)], label, &format!("{label} {s}"));
        let buttons =
            if *on { control("stop", "Stop") + &control("optimize", "Optimize") } else { control("start", "Start") };
        body.push_str(&format!("<tr><td>{s}</td><td>{state_cell}</td><td>{buttons}</td></tr>"));
    }
    body.push_str("</tbody></table>");

    let log = state
        .read
        .rows("optimization", mall_projections::optimization::OPTIMIZATION_LOG, crate::readside::Filter::Last(20))
        .await
        .map_err(super::storefront::sink_error)?;
    let since = log.iter().filter_map(|r| r.get("position").and_then(Value::as_u64)).max().unwrap_or(0);
    body.push_str(&format!(
        "<h2 id=\"decisions\">Latest decisions</h2><p class=\"key\">Product intelligence's log, newest first; \
         a decision's diff shows the copy before and after, the rule, the metrics, the generator and the guardrails' verdicts.</p>\
         <table id=\"decisions-table\" data-live=\"{HOME}/live\" data-since=\"{since}\"><thead><tr><th scope=\"col\">At</th><th scope=\"col\">Product</th>\
         <th scope=\"col\">What</th><th scope=\"col\">Summary</th><th scope=\"col\">Diff</th></tr></thead><tbody>"
    ));
    for r in &log {
        let d = live::decision_json(r);
        let link = d["href"]
            .as_str()
            .map(|h| format!("<a class=\"diff-link\" href=\"{}\">diff</a>", escape(h)))
            .unwrap_or_default();
        body.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{link}</td></tr>",
            escape(&text(&d["at"])),
            escape(&text(&d["product_id"])),
            escape(&text(&d["kind"])),
            escape(&text(&d["summary"])),
        ));
    }
    body.push_str("</tbody></table>");

    let stats = state.store.stats().await?;
    let a = &state.actors;
    let (calls, failed) = state.metrics.model_call_counts();
    body.push_str(&format!(
        "<h2 id=\"engine\">Engine room</h2><table><tbody>\
         <tr><th scope=\"row\">Log position</th><td><span data-count=\"position\">{}</span> (<span data-count=\"rate\">0.0</span> events/s)</td></tr>\
         <tr><th scope=\"row\">Resident actors</th><td><span data-count=\"resident_products\">{}</span> products, \
         <span data-count=\"resident_districts\">{}</span> districts, <span data-count=\"resident_shoppers\">{}</span> shoppers</td></tr>\
         <tr><th scope=\"row\">Model calls since start</th><td><span data-count=\"model_calls\">{calls}</span> answered, \
         <span data-count=\"model_failures\">{failed}</span> failed</td></tr>\
         <tr><th scope=\"row\">Generations the guardrails refused since start</th><td><span data-count=\"rejections\">{}</span></td></tr>\
         <tr><th scope=\"row\">Generation budget</th><td><span data-count=\"budget_left\">{}</span> of {} calls left this hour</td></tr>\
         <tr><th scope=\"row\">Parked events</th><td><span data-count=\"parked\">{}</span></td></tr></tbody></table>",
        stats.last_position,
        a.products.resident(),
        a.districts.resident(),
        a.shoppers.resident(),
        state.metrics.events_of("generation_rejected"),
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

    body.push_str(&format!(
        "<h2 id=\"queue\">Task queue</h2><p><span data-count=\"queued\">{queued}</span> queued, \
         <span data-count=\"running\">{running}</span> running.</p>"
    ));
    body.push_str("<table><caption>Next</caption><thead><tr><th scope=\"col\">Priority</th><th scope=\"col\">System</th><th scope=\"col\">Action</th><th scope=\"col\">Subject</th><th scope=\"col\">Reason</th></tr></thead><tbody>");
    for (t, _) in &view.next {
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
    for t in &view.recent {
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

    body.push_str(&format!("<script src=\"{HOME}/live.js\" defer></script>"));
    Ok(signed_in(&csrf, "", "mall: the autonomous core", &body))
}

/// The plugins with their switches and settings.
async fn plugins(state: &AppState, csrf: &str) -> Result<String, ApiError> {
    let mut body = String::from(
        "<h2 id=\"plugins\">Plugins</h2><table><thead><tr><th scope=\"col\">Plugin</th><th scope=\"col\">State</th>\
         <th scope=\"col\">Switch</th><th scope=\"col\">Settings</th></tr></thead><tbody>",
    );
    for (id, name, on, settings) in state.plugins.switches().await.map_err(ApiError::unavailable)? {
        let (cell, action, label) = if on {
            ("<span class=\"on\">enabled</span>", "disable_plugin", "Disable")
        } else {
            ("<span class=\"off\">disabled</span>", "enable_plugin", "Enable")
        };
        let config: Vec<String> = settings.iter().map(|(k, v)| format!("{} = {v}", escape(k))).collect();
        let config = if config.is_empty() { "none".to_string() } else { config.join(", ") };
        body.push_str(&format!(
            "<tr><td>{}</td><td>{cell}</td><td>{}</td><td><code>{config}</code></td></tr>",
            escape(name),
            button(csrf, action, &[("plugin", id), ("back", "plugins")], label, &format!("{label} {id}"))
        ));
    }
    body.push_str("</tbody></table>");
    Ok(body)
}

/// `GET /admin/autonomous/{panel}`: a system's page.
pub async fn panel(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let csrf = match session(&state, &req) {
        Ok(c) => c,
        Err(answer) => return Ok(answer),
    };
    let name = path.into_inner();
    let Some((panel, title)) = PANELS.iter().find(|(p, _)| *p == name) else {
        return Err(ApiError::not_found(format!("no dashboard page {name:?}")));
    };
    let body = match *panel {
        "experiments" => changes::experiments(&state).await?,
        "districts" => systems::districts(&state).await?,
        "health" => systems::health(&state).await?,
        "merchandising" => systems::merchandising(&state).await?,
        "social" => systems::social(&state).await?,
        "analytics" => systems::analytics(&state, chrono::Utc::now()).await?,
        _ => plugins(&state, &csrf).await?,
    };
    Ok(signed_in(&csrf, panel, &format!("{title} — mall"), &body))
}
