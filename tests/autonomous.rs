//! The autonomous core over HTTP on both stores: `GET /api/autonomous` shows every system, job
//! and the queue; `POST /api/autonomous` starts, stops (surviving a restart) and optimizes; the
//! admin trigger goes through the task queue and its task runs.

#[path = "support/model.rs"]
mod model;
mod support;

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::http::*;
use support::server::*;

async fn status(c: &reqwest::Client, s: &Server) -> Value {
    let (code, body) = get_as(c, s.url("/api/autonomous"), ADMIN).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    body
}

/// Polls the core's status until a task of its queue's `list` (`recent`, `next`) matches;
/// returns it.
async fn task_in(c: &reqwest::Client, s: &Server, list: &str, matches: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let body = status(c, s).await;
        if let Some(t) = body["queue"][list].as_array().unwrap().iter().find(|t| matches(t)) {
            return t.clone();
        }
        assert!(std::time::Instant::now() < deadline, "no such task in queue.{list}: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the task is finished (in the queue's recent tasks); returns it.
async fn finished(c: &reqwest::Client, s: &Server, id: &Value) -> Value {
    task_in(c, s, "recent", |t| t["id"] == *id).await
}

/// Waits for a finished `generate` task of `subject`; returns it.
async fn generation_of(c: &reqwest::Client, s: &Server, subject: &str) -> Value {
    task_in(c, s, "recent", |t| t["action"] == "generate" && t["subject"] == subject).await
}

/// Waits for a queued `generate` task of `subject`; returns it.
async fn queued_generation_of(c: &reqwest::Client, s: &Server, subject: &str) -> Value {
    task_in(c, s, "next", |t| t["action"] == "generate" && t["subject"] == subject).await
}

fn system<'a>(body: &'a Value, name: &str) -> &'a Value {
    body["systems"].as_array().unwrap().iter().find(|s| s["name"] == name).unwrap_or_else(|| panic!("{name}: {body}"))
}

async fn the_core_is_controlled_over_http(store: Store) {
    let c = client();
    let mut s = Server::start(&store, &[]);
    let (code, _) = get(&c, s.url("/api/autonomous")).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED, "the core's status is an admin's");
    let body = status(&c, &s).await;
    assert_eq!(body["systems"].as_array().unwrap().len(), 8, "{body}");
    assert_eq!(system(&body, "product_intelligence")["running"], true);
    let jobs = body["jobs"].as_array().unwrap();
    let names: Vec<&str> = jobs.iter().map(|j| j["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "product_intelligence",
            "merchandising",
            "district_evolution",
            "health_check",
            "social_calendar",
            "analytics_narratives",
            "anomaly_detection",
            "ab_test_analysis",
            "user_profiles",
            "plugin_hooks",
            "learning_cycle"
        ]
    );
    let every: Vec<i64> = jobs.iter().map(|j| j["every_seconds"].as_i64().unwrap()).collect();
    assert_eq!(every, [1800, 900, 21600, 3600, 604800, 86400, 7200, 14400, 300, 1200, 60]);
    assert!(jobs.iter().all(|j| j["next_run"].is_string() && j["enabled"] == true), "{body}");
    for k in ["queued", "running", "by_priority"] {
        assert!(!body["queue"][k].is_null(), "queue.{k}: {body}");
    }

    let (code, _) = post(&c, s.url("/api/districts"), ADMIN, &district("toys", "warm")).await;
    assert_eq!(code, StatusCode::CREATED);
    let (code, _) = post(&c, s.url("/api/products"), ADMIN, &product("p1", "toys", "Wooden train", "")).await;
    assert_eq!(code, StatusCode::CREATED);

    // The admin trigger is a task: queued, run, recorded.
    let (code, body) = post(&c, s.url("/api/autonomous/products"), ADMIN, &json!({"product_id": "p1"})).await;
    assert_eq!(code, StatusCode::ACCEPTED, "{body}");
    let task = &body["tasks"][0];
    let t = finished(&c, &s, task).await;
    assert_eq!((t["status"].as_str(), t["subject"].as_str()), (Some("succeeded"), Some("product:p1")), "{t}");
    assert_eq!(t["priority"], 90, "an admin's priority: {t}");
    // The product decided to have its missing description written; the queue ran the generation.
    let generate = generation_of(&c, &s, "product:p1").await;
    assert_eq!(generate["status"], "succeeded", "{generate}");
    assert!(generate["outcome"].as_str().unwrap().contains("copy_generated"), "{generate}");
    assert!(generate["reason"].as_str().unwrap().contains("(missing_"), "the rule that fired: {generate}");

    // Optimize: a sweep of each running system, which queues a look at every product with work.
    let (code, body) = post(&c, s.url("/api/autonomous"), ADMIN, &json!({"action": "optimize"})).await;
    assert_eq!(code, StatusCode::ACCEPTED, "{body}");
    let sweep = finished(&c, &s, &body["tasks"][0]).await;
    assert_eq!(sweep["action"], "sweep", "{sweep}");
    assert!(sweep["outcome"].as_str().unwrap().contains("queued for a look"), "{sweep}");

    // Bad control bodies name their field.
    let (code, body) = post(&c, s.url("/api/autonomous"), ADMIN, &json!({"action": "explode"})).await;
    assert_eq!((code, body["field"].as_str()), (StatusCode::BAD_REQUEST, Some("action")), "{body}");
    let (code, body) = post(&c, s.url("/api/autonomous"), ADMIN, &json!({"action": "stop", "system": "nope"})).await;
    assert_eq!((code, body["field"].as_str()), (StatusCode::BAD_REQUEST, Some("system")), "{body}");
    let (code, _) = post(&c, s.url("/api/autonomous"), INGEST, &json!({"action": "stop"})).await;
    assert_eq!(code, StatusCode::FORBIDDEN);

    // A stopped system stays stopped across a restart, and its tasks wait.
    let stop = json!({"action": "stop", "system": "product_intelligence"});
    let (code, body) = post(&c, s.url("/api/autonomous"), ADMIN, &stop).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    s.stop();
    let s = Server::start(&store, &[]);
    let body = status(&c, &s).await;
    assert_eq!(system(&body, "product_intelligence")["running"], false, "{body}");
    assert_eq!(system(&body, "merchandising")["running"], true);
    let (_, body) = post(&c, s.url("/api/autonomous/products"), ADMIN, &json!({"product_id": "p1"})).await;
    let task = body["tasks"][0].clone();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let body = status(&c, &s).await;
    assert!(
        body["queue"]["next"].as_array().unwrap().iter().any(|t| t["id"] == task),
        "the stopped system's task waits: {body}"
    );
    // A product listed now decides, but its generation waits in the queue with the system.
    let (code, _) = post(&c, s.url("/api/products"), ADMIN, &product("p2", "toys", "Rocking horse", "")).await;
    assert_eq!(code, StatusCode::CREATED);
    let waiting = queued_generation_of(&c, &s, "product:p2").await;
    let (_, p2) = get(&c, s.url("/api/products/p2")).await;
    assert!(p2["description"] == "" && p2["seo"].is_null(), "nothing was written while the system is stopped: {p2}");
    let (code, _) =
        post(&c, s.url("/api/autonomous"), ADMIN, &json!({"action": "start", "system": "product_intelligence"})).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(finished(&c, &s, &task).await["status"], "succeeded");
    assert_eq!(finished(&c, &s, &waiting["id"]).await["status"], "succeeded");

    // The CLI shows the same queue and jobs.
    let env = [("MALL_SERVER", s.base.as_str()), ("MALL_ADMIN_TOKEN", ADMIN)];
    let (code, out, err) = mall_with(&store, &["tasks", "--json"], &env);
    assert_eq!(code, 0, "{err}");
    let q: Value = serde_json::from_str(&out).unwrap();
    assert!(q["recent"].as_array().unwrap().iter().any(|t| t["id"] == task), "{q}");
    let (code, out, _) = mall_with(&store, &["jobs"], &env);
    assert_eq!(code, 0);
    assert!(out.contains("social_calendar") && out.contains("not yet available"), "{out}");
    let (code, _, err) =
        mall_with(&store, &["tasks"], &[("MALL_SERVER", s.base.as_str()), ("MALL_ADMIN_TOKEN", "wrong")]);
    assert_ne!(code, 0);
    assert!(err.starts_with("mall: "), "{err}");
}

support::on_both_stores!(the_core_is_controlled_over_http);

/// A job's cadence is configurable and a job can be switched off; a bad setting is refused.
#[tokio::test]
async fn jobs_are_configured_by_flag() {
    let (store, _dir) = Store::embedded();
    let c = client();
    let s = Server::start(&store, &[("MALL_JOBS", "user_profiles=60,merchandising=0")]);
    let body = status(&c, &s).await;
    let job = |n: &str| body["jobs"].as_array().unwrap().iter().find(|j| j["name"] == n).unwrap().clone();
    assert_eq!(job("user_profiles")["every_seconds"], 60);
    assert_eq!(job("merchandising")["enabled"], false);
    // The product intelligence job never ran: it runs at start, and its run is recorded.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let body = status(&c, &s).await;
        let pi = body["jobs"].as_array().unwrap().iter().find(|j| j["name"] == "product_intelligence").unwrap().clone();
        if pi["last_run"]["outcome"] == "ok" {
            assert_eq!(pi["last_run"]["tasks"].as_array().unwrap().len(), 1, "{pi}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (code, _, err) = mall_with(&store, &["serve", "--job", "nope=5"], &[]);
    assert_ne!(code, 0);
    assert!(err.contains("no job \"nope\""), "{err}");
}

/// A model stand-in that writes a good SEO answer (and embeddings), or holds every chat request
/// without answering while `stalled` is set.
async fn seo_writer(stalled: std::sync::Arc<std::sync::atomic::AtomicBool>) -> model::ModelServer {
    use model::{Api, Reply, Request};
    model::start(
        Api::ChatCompletions,
        std::sync::Arc::new(move |r: &Request| {
            if r.is_embedding() {
                Reply::Embedding(vec![0.5, 0.1, 0.2, 0.3])
            } else if stalled.load(std::sync::atomic::Ordering::SeqCst) {
                Reply::Stall
            } else {
                Reply::Text(
                    "Title: Wooden train - Toy Town\nMeta: Meet the Wooden train, made for everyday use and easy to \
                     enjoy at home or on the go."
                        .into(),
                )
            }
        }),
    )
    .await
}

/// The environment of a server whose model is `stand_in`.
/// kill -9 while a generation task is running (the model has the request and has not answered):
/// after the restart the task runs again, and its effect — the SEO the product decided on — is
/// applied once, by events that carry the task's id as their cause.
async fn a_task_killed_mid_run_runs_again_and_applies_once(store: Store) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let stalled = Arc::new(AtomicBool::new(true));
    let stand_in = seo_writer(stalled.clone()).await;
    let env = stand_in.env();
    let c = client();
    let mut s = Server::start(&store, &env);
    post(&c, s.url("/api/districts"), ADMIN, &district("toys", "warm")).await;
    let mut p = product("p1", "toys", "Wooden train", "A wooden train with four carriages, sanded smooth and oiled.");
    p["tags"] = json!(["wood", "train"]);
    let (code, body) = post(&c, s.url("/api/products"), ADMIN, &p).await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    // The SEO generation is running: the model has its request.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let task = loop {
        let body = status(&c, &s).await;
        let running = body["queue"]["running_tasks"].as_array().unwrap();
        let asked = stand_in.requests().iter().any(|r| !r.is_embedding());
        if let Some(t) = running.iter().find(|t| t["action"] == "generate")
            && asked
        {
            break t.clone();
        }
        assert!(std::time::Instant::now() < deadline, "no generation ran: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    s.kill9();
    stalled.store(false, Ordering::SeqCst);
    let s = Server::start(&store, &env);
    let t = finished(&c, &s, &task["id"]).await;
    assert_eq!(t["status"], "succeeded", "{t}");
    assert!(t["attempt"].as_u64().unwrap() >= 2, "it ran again: {t}");
    let (_, p1) = get(&c, s.url("/api/products/p1")).await;
    assert!(p1["seo"]["title"].as_str().unwrap_or("").contains("Wooden train"), "{p1}");
    // Once: one SEO applied, caused by the task.
    let (code, out, err) = mall(&store, &["events", "tail", "--from", "1", "--json"]);
    assert_eq!(code, 0, "{err}");
    let events: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let seo: Vec<&Value> =
        events.iter().filter(|e| e["event_type"] == "copy_applied" && e["data"]["content"]["kind"] == "seo").collect();
    assert_eq!(seo.len(), 1, "{seo:?}");
    assert_eq!(seo[0]["causation_id"], task["id"], "{}", seo[0]);
    let generated = events.iter().filter(|e| e["event_type"] == "copy_generated").count();
    let decided = events.iter().filter(|e| e["event_type"] == "optimization_decided").count();
    assert!(generated <= decided, "no decision generated twice: {generated} > {decided}");
}

support::on_both_stores!(a_task_killed_mid_run_runs_again_and_applies_once);

/// A generation waiting in the queue spends nothing: with product intelligence stopped, new
/// listings decide and queue their generations but the model is not asked and the hourly budget
/// stays whole; started, the tasks run and pay for their calls as they do.
async fn a_queued_generation_spends_no_budget_until_it_runs(store: Store) {
    let stand_in = seo_writer(Default::default()).await;
    let mut env = stand_in.env();
    env.push(("MALL_GENERATIONS_PER_HOUR", "500"));
    let c = client();
    let s = Server::start(&store, &env);
    let stop = json!({"action": "stop", "system": "product_intelligence"});
    assert_eq!(post(&c, s.url("/api/autonomous"), ADMIN, &stop).await.0, StatusCode::OK);
    post(&c, s.url("/api/districts"), ADMIN, &district("toys", "warm")).await;
    for id in ["p1", "p2", "p3"] {
        let mut p = product(id, "toys", "Wooden train", "A wooden train with four carriages, sanded and oiled.");
        p["tags"] = json!(["wood", "train"]);
        assert_eq!(post(&c, s.url("/api/products"), ADMIN, &p).await.0, StatusCode::CREATED);
    }
    for id in ["p1", "p2", "p3"] {
        queued_generation_of(&c, &s, &format!("product:{id}")).await;
    }
    let body = status(&c, &s).await;
    assert_eq!(body["generation_budget"]["left"], 500, "nothing spent while queued: {body}");
    // Generations of these products (the server's model check at start asks something else).
    let chats =
        || stand_in.requests().iter().filter(|r| !r.is_embedding() && r.prompt().contains("Wooden train")).count();
    assert_eq!(chats(), 0, "the model was not asked");
    let start = json!({"action": "start", "system": "product_intelligence"});
    assert_eq!(post(&c, s.url("/api/autonomous"), ADMIN, &start).await.0, StatusCode::OK);
    for id in ["p1", "p2", "p3"] {
        assert_eq!(generation_of(&c, &s, &format!("product:{id}")).await["status"], "succeeded");
    }
    let left = status(&c, &s).await["generation_budget"]["left"].as_u64().unwrap();
    assert!(left <= 497 && chats() >= 3, "each run paid for its call: {left} left, {} asked", chats());
}

support::on_both_stores!(a_queued_generation_spends_no_budget_until_it_runs);
