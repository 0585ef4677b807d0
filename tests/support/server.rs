//! A real `mall serve` process for HTTP tests: started on a free port, killed on drop.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

pub const ADMIN: &str = "test-admin-token";
pub const INGEST: &str = "test-ingest-token";

/// Where the server keeps its log.
#[derive(Clone)]
pub enum Store {
    Embedded(PathBuf),
    Postgres { url: String, snapshots: PathBuf },
}

impl Store {
    /// The embedded store in a fresh directory (removed when the guard drops).
    pub fn embedded() -> (Store, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        (Store::Embedded(dir.path().join("data")), dir)
    }

    /// A fresh PostgreSQL database, with snapshots in a fresh directory.
    pub async fn postgres() -> (Store, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let pg = super::pg::Postgres::new().await;
        (Store::Postgres { url: pg.url, snapshots: dir.path().join("snap") }, dir)
    }

    /// The store flags for any `mall` command.
    pub fn args(&self) -> Vec<String> {
        match self {
            Store::Embedded(dir) => vec!["--data-dir".into(), dir.display().to_string()],
            Store::Postgres { url, snapshots } => vec![
                "--store".into(),
                "postgres".into(),
                "--database-url".into(),
                url.clone(),
                "--data-dir".into(),
                snapshots.display().to_string(),
            ],
        }
    }
}

pub struct Server {
    pub child: Child,
    pub base: String,
    pub store: Store,
}

impl Server {
    /// Starts `mall serve` and waits until it listens.
    pub fn start(store: &Store, extra_env: &[(&str, &str)]) -> Server {
        Self::spawn(store, extra_env, None)
    }

    /// [`start`](Self::start), its stderr lines sent to the receiver as they come.
    pub fn start_capturing(store: &Store, extra_env: &[(&str, &str)]) -> (Server, std::sync::mpsc::Receiver<String>) {
        let (tx, rx) = std::sync::mpsc::channel();
        (Self::spawn(store, extra_env, Some(tx)), rx)
    }

    fn spawn(store: &Store, extra_env: &[(&str, &str)], stderr: Option<std::sync::mpsc::Sender<String>>) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mall"));
        cmd.args(store.args())
            .args(["serve", "--bind", "127.0.0.1:0", "--workers", "2"])
            .env("MALL_ADMIN_TOKEN", ADMIN)
            .env("MALL_INGEST_TOKEN", INGEST)
            .env_remove("MALL_STORE")
            .env_remove("DATABASE_URL")
            .stdout(Stdio::piped())
            .stderr(if stderr.is_some() { Stdio::piped() } else { Stdio::inherit() });
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("mall starts");
        if let (Some(tx), Some(err)) = (stderr, child.stderr.take()) {
            std::thread::spawn(move || {
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("mall: serving on ") {
                    let _ = tx.send(addr.to_string());
                }
            }
        });
        let base = rx.recv_timeout(Duration::from_secs(60)).expect("the server printed its address");
        Server { child, base, store: store.clone() }
    }

    /// Kills the process with SIGKILL.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops the process with SIGTERM and waits for it.
    pub fn stop(&mut self) {
        unsafe_kill(self.child.id(), "TERM");
        let _ = self.child.wait();
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

fn unsafe_kill(pid: u32, signal: &str) {
    let _ = Command::new("kill").args([&format!("-{signal}"), &pid.to_string()]).status();
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Runs `mall ARGS` against the store; returns (exit code, stdout, stderr).
pub fn mall(store: &Store, args: &[&str]) -> (i32, String, String) {
    mall_with(store, args, &[])
}

/// [`mall`] with environment variables.
pub fn mall_with(store: &Store, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mall"))
        .args(store.args())
        .args(args)
        .env_remove("MALL_STORE")
        .env_remove("DATABASE_URL")
        .envs(env.iter().copied())
        .output()
        .expect("mall runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

pub fn temp_dir_path(dir: &Path) -> PathBuf {
    dir.join("data")
}

/// A district record.
pub fn district(slug: &str, tone: &str) -> Value {
    json!({"slug": slug, "name": format!("The {slug} district"), "personality": {"tone": tone, "style": "short, concrete sentences", "audience": "families"}})
}

/// A product record.
pub fn product(id: &str, district: &str, title: &str, description: &str) -> Value {
    json!({
        "product_id": id, "district": district, "title": title, "description": description,
        "price": "24.50", "currency": "EUR", "tags": ["wood", "toy"],
        "attributes": {"material": "beech", "age": "3+"}, "stock": 12
    })
}

/// A signal record with a fresh id.
pub fn signal(kind: &str, product: &str, shopper: &str) -> Value {
    let mut v = json!({
        "type": kind, "id": uuid::Uuid::now_v7(), "shopper_id": shopper, "session_id": format!("sess-{shopper}"),
        "at": chrono::Utc::now().to_rfc3339(), "product_id": product,
    });
    let m = v.as_object_mut().unwrap();
    match kind {
        "product_viewed" => {
            m.insert("dwell_ms".into(), json!(4000));
        }
        "added_to_cart" | "removed_from_cart" => {
            m.insert("quantity".into(), json!(1));
        }
        _ => {}
    }
    v
}
