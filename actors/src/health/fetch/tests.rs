//! The fetcher against forgery vectors and a stand-in image host, on loopback only.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

/// Names to addresses, and nothing else (no real DNS in tests).
struct Names(HashMap<&'static str, Vec<IpAddr>>);

#[async_trait]
impl Resolve for Names {
    async fn resolve(&self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
        match self.0.get(host) {
            Some(ips) => Ok(ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect()),
            None => Err(std::io::Error::new(std::io::ErrorKind::NotFound, "no such name")),
        }
    }
}

/// A loopback listener that only counts the connections it gets.
async fn counting_listener() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((_sock, _)) = listener.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
        }
    });
    (port, count)
}

/// A stand-in image host on loopback: `/ok.png`, `/page`, `/big`, `/missing`, `/slow`, `/empty`,
/// `/loop`, `/r1` (to `/ok.png`) and `/to?URL` (a redirect to URL).
async fn image_host() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n = sock.read(&mut buf).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]).to_string();
                let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                let (status, headers, body): (&str, String, Vec<u8>) = match path.as_str() {
                    "/ok.png" => ("200 OK", "content-type: image/png\r\n".into(), vec![0x89; 100]),
                    "/page" => ("200 OK", "content-type: text/html\r\n".into(), b"<html></html>".to_vec()),
                    "/big" => ("200 OK", "content-type: image/png\r\n".into(), vec![0; MAX_BODY + 10]),
                    "/empty" => ("200 OK", "content-type: image/png\r\n".into(), Vec::new()),
                    "/loop" => ("302 Found", "location: /loop\r\n".into(), Vec::new()),
                    "/r1" => ("301 Moved Permanently", "location: /ok.png\r\n".into(), Vec::new()),
                    "/slow" => {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        return;
                    }
                    p if p.starts_with("/to?") => ("302 Found", format!("location: {}\r\n", &p[4..]), Vec::new()),
                    _ => ("404 Not Found", String::new(), Vec::new()),
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\n{headers}content-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = sock.write_all(head.as_bytes()).await;
                let _ = sock.write_all(&body).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    addr
}

#[test]
fn addresses_are_judged_in_every_form() {
    let no = |s: &str| forbidden(s.parse().unwrap());
    for ip in [
        "127.0.0.1",
        "127.255.255.254",
        "10.1.2.3",
        "172.16.0.1",
        "172.31.255.255",
        "192.168.0.1",
        "169.254.169.254",
        "100.64.0.1",
        "100.100.100.200",
        "168.63.129.16",
        "0.0.0.0",
        "224.0.0.1",
        "255.255.255.255",
        "198.18.0.1",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "fd00:ec2::254",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "::127.0.0.1",
        "64:ff9b::a9fe:a9fe",
        "2002:c0a8:101::1",
        "2001:db8::1",
    ] {
        assert!(no(ip).is_some(), "{ip} must be refused");
    }
    for ip in ["93.184.216.34", "8.8.8.8", "172.32.0.1", "2606:4700::1111", "::ffff:93.184.216.34", "2002:5db8:d822::1"]
    {
        assert_eq!(no(ip), None, "{ip} is public");
    }
}

/// At least 40 ways to point the fetcher at this machine or its network: each is refused, and
/// a listener on loopback that counts connections sees none — directly or through a redirect.
#[tokio::test]
async fn forgery_vectors_are_refused_without_a_connection() {
    let (port, connections) = counting_listener().await;
    let host = image_host().await;
    let names = Names(HashMap::from([
        ("evil.example", vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]),
        ("mixed.example", vec!["93.184.216.34".parse().unwrap(), "10.0.0.1".parse().unwrap()]),
        ("metadata.example", vec!["169.254.169.254".parse().unwrap()]),
        ("v6.example", vec!["::1".parse().unwrap()]),
        ("mapped.example", vec!["::ffff:127.0.0.1".parse().unwrap()]),
    ]));
    let fetcher = Fetcher::with_resolver(Box::new(names)).allowing(host);
    let p = port;
    let mut vectors: Vec<String> = [
        "http://127.0.0.1:{p}/a.png",
        "http://127.1:{p}/",
        "http://127.0.1:{p}/",
        "http://2130706433:{p}/",
        "http://0x7f000001:{p}/",
        "http://0x7f.0x0.0x0.0x1:{p}/",
        "http://0177.0.0.1:{p}/",
        "http://017700000001:{p}/",
        "http://0177.1:{p}/",
        "http://127.000.000.001:{p}/",
        "http://[::1]:{p}/",
        "http://[0:0:0:0:0:0:0:1]:{p}/",
        "http://[::ffff:127.0.0.1]:{p}/",
        "http://[::ffff:7f00:1]:{p}/",
        "http://[::127.0.0.1]:{p}/",
        "http://[64:ff9b::7f00:1]:{p}/",
        "http://[2002:7f00:1::]:{p}/",
        "http://localhost:{p}/",
        "http://LOCALHOST:{p}/",
        "http://localhost.:{p}/",
        "http://images.localhost:{p}/",
        "http://0.0.0.0:{p}/",
        "http://0:{p}/",
        "http://[::]:{p}/",
        "http://evil.example:{p}/",
        "http://mixed.example:{p}/",
        "http://v6.example:{p}/",
        "http://mapped.example:{p}/",
        "http://metadata.example/latest/meta-data/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://100.100.100.200/latest/meta-data/",
        "http://168.63.129.16/machine",
        "http://10.0.0.1/a.png",
        "http://172.16.0.1/a.png",
        "http://192.168.1.1/a.png",
        "http://100.64.0.1/a.png",
        "http://[fe80::1]/a.png",
        "http://[fc00::1]/a.png",
        "http://224.0.0.1/a.png",
        "http://255.255.255.255/a.png",
        "https://127.0.0.1:{p}/a.png",
        "http://user:pass@evil.example:{p}/",
        "file:///etc/passwd",
        "ftp://127.0.0.1:{p}/a.png",
        "gopher://127.0.0.1:{p}/_GET",
        "dict://127.0.0.1:{p}/info",
        "data:image/png;base64,iVBORw0KGgo=",
        "javascript:alert(1)",
        "//127.0.0.1:{p}/",
    ]
    .iter()
    .map(|v| v.replace("{p}", &p.to_string()))
    .collect();
    // Redirects from an allowed host to forbidden places.
    for target in [
        format!("http://127.0.0.1:{p}/"),
        format!("http://evil.example:{p}/"),
        format!("http://[::1]:{p}/"),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        "file:///etc/passwd".to_string(),
    ] {
        vectors.push(format!("http://{host}/to?{target}"));
    }
    assert!(vectors.len() >= 40, "{} vectors", vectors.len());
    for v in &vectors {
        match fetcher.image(v).await {
            Err(FetchError::Refused(_)) => {}
            other => panic!("{v}: {other:?}"),
        }
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(connections.load(Ordering::SeqCst), 0, "the loopback listener was reached");
}

/// Against a host it may reach, the fetcher tells an image from everything that is not one.
#[tokio::test]
async fn an_image_is_told_from_what_is_not_one() {
    let host = image_host().await;
    let mut fetcher = Fetcher::default().allowing(host);
    fetcher.total_timeout = Duration::from_millis(500);
    let url = |p: &str| format!("http://{host}{p}");
    let ok = fetcher.image(&url("/ok.png")).await.unwrap();
    assert_eq!((ok.content_type.as_str(), ok.bytes), ("image/png", 100));
    let moved = fetcher.image(&url("/r1")).await.unwrap();
    assert!(moved.url.ends_with("/ok.png"), "{moved:?}");
    for (path, why) in [
        ("/page", "not an image"),
        ("/big", "bytes"),
        ("/empty", "empty"),
        ("/missing", "404"),
        ("/loop", "redirects"),
        ("/slow", "within"),
    ] {
        match fetcher.image(&url(path)).await {
            Err(FetchError::Broken(e)) => assert!(e.contains(why), "{path}: {e}"),
            other => panic!("{path}: {other:?}"),
        }
    }
}
