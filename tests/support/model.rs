//! A stand-in model server for tests: a real HTTP server on loopback that speaks the exact
//! endpoints and shapes of the APIs mall's `llm` backends call — OpenAI's Responses API,
//! chat completions (what llama.cpp's server, vLLM and LM Studio speak) and Ollama's — and
//! answers each request as a script says (good copy, the worst a model could say, errors,
//! stalls). A path of another API answers 404, as a real server of that kind would.
//!
//! Shared by the actors' `llm` tests and the end-to-end tests (included by path).
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The API a stand-in speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// `POST /v1/responses`, `POST /v1/embeddings`.
    Responses,
    /// `POST /v1/chat/completions`, `POST /v1/embeddings`.
    ChatCompletions,
    /// `POST /api/chat`, `POST /api/embed`.
    Ollama,
}

impl Api {
    fn chat_path(self) -> &'static str {
        match self {
            Api::Responses => "/v1/responses",
            Api::ChatCompletions => "/v1/chat/completions",
            Api::Ollama => "/api/chat",
        }
    }

    fn embed_path(self) -> &'static str {
        match self {
            Api::Responses | Api::ChatCompletions => "/v1/embeddings",
            Api::Ollama => "/api/embed",
        }
    }
}

/// One request the stand-in received.
#[derive(Debug, Clone)]
pub struct Request {
    pub path: String,
    pub body: Value,
}

impl Request {
    /// Whether it asks for an embedding.
    pub fn is_embedding(&self) -> bool {
        self.path.ends_with("/embeddings") || self.path.ends_with("/embed")
    }

    /// Every text the request carries (messages, input), joined: the prompt as the model saw it.
    pub fn prompt(&self) -> String {
        fn texts(v: &Value, out: &mut Vec<String>) {
            match v {
                Value::String(s) => out.push(s.clone()),
                Value::Array(a) => a.iter().for_each(|x| texts(x, out)),
                Value::Object(o) => {
                    for (k, x) in o {
                        if k != "model" && k != "role" && k != "type" {
                            texts(x, out);
                        }
                    }
                }
                _ => {}
            }
        }
        let mut out = Vec::new();
        texts(&self.body, &mut out);
        out.join("\n")
    }
}

/// How the stand-in answers a request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A chat answer with this text, in the API's shape.
    Text(String),
    /// An embedding, in the API's shape.
    Embedding(Vec<f32>),
    /// An HTTP error status with a JSON error body.
    Status(u16, String),
    /// A 200 with this body as it is.
    Body(String),
    /// A 200 with these bytes as they are (not UTF-8, say).
    Bytes(Vec<u8>),
    /// Accepts the request and never answers.
    Stall,
    /// Answers after a delay.
    Slow(Duration, Box<Reply>),
}

/// The script: what to answer to each request.
pub type Script = Arc<dyn Fn(&Request) -> Reply + Send + Sync>;

/// A running stand-in.
pub struct ModelServer {
    /// The base URL a client of the API is configured with.
    pub base: String,
    /// `host:port`.
    pub addr: String,
    seen: Arc<Mutex<Vec<Request>>>,
}

impl ModelServer {
    /// The environment that points `mall serve` at this server as an OpenAI-compatible model
    /// (chat model `m`, embedding model `e`), with no retries; add a test's own settings.
    pub fn env(&self) -> Vec<(&'static str, &str)> {
        vec![
            ("MALL_LLM", "openai-compatible"),
            ("MALL_LLM_URL", self.base.as_str()),
            ("MALL_LLM_MODEL", "m"),
            ("MALL_LLM_EMBEDDING_MODEL", "e"),
            ("MALL_LLM_RETRIES", "0"),
        ]
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Request> {
        self.seen.lock().unwrap().clone()
    }
}

fn chat_reply(api: Api, text: &str) -> String {
    match api {
        Api::Responses => json!({
            "id": "resp_1", "object": "response", "status": "completed",
            "output": [{"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
                        "content": [{"type": "output_text", "text": text, "annotations": []}]}],
            "usage": {"input_tokens": 10, "output_tokens": 10, "total_tokens": 20}
        }),
        Api::ChatCompletions => json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20}
        }),
        Api::Ollama => json!({"model": "m", "message": {"role": "assistant", "content": text}, "done": true}),
    }
    .to_string()
}

fn embed_reply(api: Api, v: &[f32]) -> String {
    match api {
        Api::Responses | Api::ChatCompletions => {
            json!({"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": v}], "model": "m"})
        }
        Api::Ollama => json!({"model": "m", "embeddings": [v]}),
    }
    .to_string()
}

/// Reads one HTTP/1.1 request (head and a content-length body): its path and body.
async fn read_request(sock: &mut tokio::net::TcpStream) -> Option<(String, Vec<u8>)> {
    read_request_with_head(sock).await.map(|(_, path, body)| (path, body))
}

/// Reads one HTTP/1.1 request: its head, path and body.
pub async fn read_request_with_head(sock: &mut tokio::net::TcpStream) -> Option<(String, String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let (head_end, length) = loop {
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..i]).to_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:").and_then(|v| v.trim().parse::<usize>().ok()))
                .unwrap_or(0);
            break (i + 4, len);
        }
    };
    while buf.len() < head_end + length {
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
    Some((head, path, buf[head_end..head_end + length].to_vec()))
}

/// Starts a stand-in for `api` on loopback that answers as `script` says.
pub async fn start(api: Api, script: Script) -> ModelServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Arc<Mutex<Vec<Request>>> = Arc::default();
    let record = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else { return };
            let (record, script) = (record.clone(), script.clone());
            tokio::spawn(async move {
                let Some((path, body)) = read_request(&mut sock).await else { return };
                let request =
                    Request { path: path.clone(), body: serde_json::from_slice(&body).unwrap_or(Value::Null) };
                record.lock().unwrap().push(request.clone());
                let known = path == api.chat_path() || path == api.embed_path();
                let mut reply =
                    if known { script(&request) } else { Reply::Status(404, format!("no route for {path}")) };
                loop {
                    match reply {
                        Reply::Slow(d, r) => {
                            tokio::time::sleep(d).await;
                            reply = *r;
                        }
                        Reply::Stall => {
                            // Hold the connection open and say nothing.
                            tokio::time::sleep(Duration::from_secs(3_600)).await;
                            return;
                        }
                        _ => break,
                    }
                }
                let (status, bytes): (u16, Vec<u8>) = match reply {
                    Reply::Text(t) => (200, chat_reply(api, &t).into_bytes()),
                    Reply::Embedding(v) => (200, embed_reply(api, &v).into_bytes()),
                    Reply::Status(s, m) => (s, json!({"error": {"message": m}}).to_string().into_bytes()),
                    Reply::Body(b) => (200, b.into_bytes()),
                    Reply::Bytes(b) => (200, b),
                    Reply::Stall | Reply::Slow(..) => unreachable!(),
                };
                let head = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    bytes.len()
                );
                let _ = sock.write_all(head.as_bytes()).await;
                let _ = sock.write_all(&bytes).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    let base = match api {
        Api::Responses | Api::ChatCompletions => format!("http://{addr}/v1/"),
        Api::Ollama => format!("http://{addr}"),
    };
    ModelServer { base, addr: addr.to_string(), seen }
}

/// A stand-in that always gives the same reply.
pub async fn always(api: Api, reply: Reply) -> ModelServer {
    start(api, Arc::new(move |_| reply.clone())).await
}
