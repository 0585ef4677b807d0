//! What an operator relies on, over HTTP: rate limits (per token on ingest, per client address on
//! public reads) answer 429 with `Retry-After` and a JSON message and let the request through once
//! it has waited; every answer carries its request's correlation id, which the structured (JSON)
//! logs carry too; a bad log format stops `mall` with the setting's name.

mod support;

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::http::*;
use support::server::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_its_limit_a_client_waits_as_told() {
    let (store, _dir) = Store::embedded();
    let env =
        [("MALL_READ_RATE", "2"), ("MALL_READ_BURST", "5"), ("MALL_INGEST_RATE", "1"), ("MALL_INGEST_BURST", "2")];
    let s = Server::start(&store, &env);
    let c = client();

    // Public reads from one address: the burst, then 429 with Retry-After and a message.
    let mut codes = Vec::new();
    let mut refused = None;
    let started = Instant::now();
    for _ in 0..12 {
        let r = c.get(s.url("/api/districts")).send().await.unwrap();
        codes.push(r.status());
        if r.status() == StatusCode::TOO_MANY_REQUESTS && refused.is_none() {
            let after: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
            let body: Value = r.json().await.unwrap();
            refused = Some((after, body));
        }
    }
    // The burst of 5 passed, and one more for each second the loop took.
    let ok = codes.iter().filter(|c| **c == StatusCode::OK).count();
    let refilled = started.elapsed().as_secs() as usize + 1;
    assert!(ok >= 5 && ok <= 5 + refilled, "{ok} passed in {:?}: {codes:?}", started.elapsed());
    let (after, body) = refused.expect("a 429");
    assert_eq!(after, 1, "one request a second: wait a second");
    assert!(body["message"].as_str().unwrap().contains("try again in"), "{body}");
    // The admin is not a public reader.
    assert_eq!(get_as(&c, s.url("/api/districts"), ADMIN).await.0, StatusCode::OK);
    // Having waited as told, the reader is let through.
    tokio::time::sleep(Duration::from_secs(after)).await;
    assert_eq!(get(&c, s.url("/api/districts")).await.0, StatusCode::OK);

    // Signal posts per token: the ingest token's burst, then 429; the admin token has its own.
    let batch = json!({"signals": []});
    let mut codes = Vec::new();
    let started = Instant::now();
    for _ in 0..6 {
        codes.push(post(&c, s.url("/api/signals"), INGEST, &batch).await.0);
    }
    // (An empty batch is refused 400 once it gets past the limit: a post that was let through.)
    let refused = codes.iter().filter(|c| **c == StatusCode::TOO_MANY_REQUESTS).count();
    let passed = codes.iter().filter(|c| **c == StatusCode::BAD_REQUEST).count();
    assert_eq!(passed + refused, 6, "{codes:?}");
    assert!(passed >= 2 && passed <= 2 + started.elapsed().as_secs() as usize + 1, "{codes:?}");
    assert_ne!(post(&c, s.url("/api/signals"), ADMIN, &batch).await.0, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_carries_its_correlation_id_and_so_do_the_json_logs() {
    let (store, _dir) = Store::embedded();
    let (s, logs) = Server::start_capturing(&store, &[("MALL_LOG_FORMAT", "json"), ("MALL_LOG", "mall=info")]);
    let c = client();
    let mine = uuid::Uuid::now_v7().to_string();
    let r = c.get(s.url("/healthz")).header("X-Correlation-Id", &mine).send().await.unwrap();
    assert_eq!(r.headers()["x-correlation-id"].to_str().unwrap(), mine, "the client's id is kept");
    let r = c.get(s.url("/api/districts")).header("X-Correlation-Id", "not a uuid").send().await.unwrap();
    let fresh = r.headers()["x-correlation-id"].to_str().unwrap().to_string();
    assert!(uuid::Uuid::parse_str(&fresh).is_ok() && fresh != mine, "a new one otherwise: {fresh}");

    // The log line of the request is one JSON object with the request's span and its id.
    let deadline = Instant::now() + Duration::from_secs(10);
    let line = loop {
        let line = logs.recv_timeout(Duration::from_secs(10)).expect("log lines");
        if line.contains(&mine) && line.contains("answered") {
            break line;
        }
        assert!(Instant::now() < deadline, "no log line of the request");
    };
    let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(v["span"]["correlation_id"], mine.as_str(), "{v:#}");
    assert_eq!(v["span"]["name"], "request");
    assert_eq!(v["fields"]["route"], "/healthz");
    assert_eq!(v["fields"]["status"], 200);

    // A bad format stops mall with the setting's name.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mall"))
        .args(["--data-dir", "/nonexistent/mall", "events", "tail"])
        .env("MALL_LOG_FORMAT", "xml")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("MALL_LOG_FORMAT") && err.lines().count() == 1, "{err}");
}

fn mall_config(env: &[(&str, &str)], args: &[&str]) -> (Option<i32>, String, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_mall"));
    cmd.args(args);
    for k in
        ["MALL_WORKERS", "MALL_READ_RATE", "MALL_ADMIN_TOKEN", "MALL_LLM", "MALL_CONFIG", "MALL_STORE", "DATABASE_URL"]
    {
        cmd.env_remove(k);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configuration_file_sets_what_the_environment_and_flags_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mall.toml");
    let path = file.to_str().unwrap();
    std::fs::write(&file, "workers = 3\n[tokens]\nadmin = \"s3cret-admin\"\n[limits]\nread_rate = 1\nread_burst = 1\n")
        .unwrap();
    let (code, out, err) = mall_config(&[("MALL_WORKERS", "5")], &["--config", path, "config", "check"]);
    assert_eq!(code, Some(0), "{err}");
    let line =
        |key: &str| out.lines().find(|l| l.starts_with(&format!("{key} = "))).unwrap_or_else(|| panic!("{key}: {out}"));
    assert_eq!(line("workers"), "workers = 5  # MALL_WORKERS", "the environment over the file");
    assert_eq!(line("limits.read_rate"), "limits.read_rate = 1  # the file");
    assert_eq!(line("tokens.admin"), "tokens.admin = (hidden)  # the file");
    assert_eq!(line("bind"), "bind = 127.0.0.1:8080  # default");
    assert_eq!(line("pg_writers"), "pg_writers = 2  # default");
    assert!(!out.contains("s3cret"), "secrets are never printed: {out}");

    // A key that is no setting, a value of the wrong kind, a value the flag refuses: named.
    for (text, said) in [
        ("[limits]\nread_rate = \"fast\"\n", "limits.read_rate"),
        ("[limits]\nread_speed = 3\n", "limits.read_speed: not a setting"),
        ("[llm]\nbackend = \"gpt\"\n", "--llm"),
        ("pg_writers = 0\n", "--pg-writers"),
    ] {
        std::fs::write(&file, text).unwrap();
        let (code, _, err) = mall_config(&[], &["--config", path, "config", "check"]);
        assert_eq!(code, Some(2), "{text}: {err}");
        assert!(err.contains(said) && err.lines().count() == 1, "{text}: {err}");
    }

    // The server takes the file (MALL_CONFIG): one public read a second, then 429.
    std::fs::write(&file, "[limits]\nread_rate = 1\nread_burst = 1\n").unwrap();
    let (store, _data) = Store::embedded();
    let s = Server::start(&store, &[("MALL_CONFIG", path)]);
    let c = client();
    let codes = [get(&c, s.url("/api/districts")).await.0, get(&c, s.url("/api/districts")).await.0];
    assert_eq!(codes, [StatusCode::OK, StatusCode::TOO_MANY_REQUESTS]);
}

/// `--pg-writers` (`MALL_PG_WRITERS`) is how many writer connections a node opens to PostgreSQL,
/// each with its share of the streams (the count that keeps a machine's disk and cores busiest
/// differs from one machine to the next).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_opens_as_many_log_writers_as_configured() {
    let (store, _dir) = Store::postgres().await;
    let Store::Postgres { url, .. } = &store else { unreachable!() };
    let s = Server::start(&store, &[("MALL_PG_WRITERS", "3")]);
    let c = client();
    let (status, body) = post(&c, s.url("/api/districts"), ADMIN, &district("toys", "playful")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // Forty product streams: each writer is handed some (a writer connects at its first append).
    for i in 0..40 {
        let listing = product(&format!("p{i}"), "toys", "Wooden train", "A beech train with four cars.");
        let (status, body) = post(&c, s.url("/api/products"), ADMIN, &listing).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (db, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let writers: i64 = db
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = $1",
            &[&"mall-log-writer"],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(writers, 3, "the node's writer connections");
}
