//! The image fetcher of the health check, safe against server-side request forgery: a vendor's
//! image URL is data that names a place on the network, and mall must never be made to knock on
//! its own doors (the loopback, the private network, the cloud's metadata service).
//!
//! - http and https only, no credentials in the URL;
//! - the host is resolved **once**, and refused when **any** of its addresses is loopback,
//!   private, shared (CGNAT), link-local (the metadata services among them), multicast,
//!   broadcast, unspecified, reserved or documentation-only — in IPv4, IPv6 and the IPv6 forms
//!   that carry an IPv4 address (mapped, compatible, NAT64, 6to4); the connection then goes to
//!   exactly the addresses checked (no second lookup an attacker's DNS could answer differently);
//! - redirects are followed by hand, at most [`MAX_REDIRECTS`], each target checked the same way;
//! - connect and total timeouts; the body capped at [`MAX_BODY`]; the answer must be a 2xx with
//!   an `image/*` content type.
//!
//! IPv4 spellings (decimal `2130706433`, octal `0177.0.0.1`, hex `0x7f.1`, short `127.1`) are
//! normalized by the URL parser (WHATWG rules) before any check, so each is judged as the
//! address it means.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use reqwest::Url;

/// Redirects followed at most.
pub const MAX_REDIRECTS: usize = 3;
/// The largest image read.
pub const MAX_BODY: usize = 5 << 20;

/// Why a URL was not fetched, or what it answered was not an image.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// Refused before any connection: the URL itself, or where it leads.
    #[error("refused: {0}")]
    Refused(String),
    /// Fetched, and not a usable image (status, type, size, time).
    #[error("broken: {0}")]
    Broken(String),
}

/// What a working image URL answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// The URL the image was found at (after redirects).
    pub url: String,
    pub content_type: String,
    pub bytes: usize,
}

/// Resolves a host name to its addresses (the system's resolver; tests give their own).
#[async_trait]
pub trait Resolve: Send + Sync {
    async fn resolve(&self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>>;
}

/// The system's resolver.
pub struct SystemResolver;

#[async_trait]
impl Resolve for SystemResolver {
    async fn resolve(&self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
        Ok(tokio::net::lookup_host((host, port)).await?.collect())
    }
}

/// Why an address may not be fetched from, if it may not.
pub fn forbidden(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        (0, _, _) => "unspecified (this network)",
        (127, _, _) => "loopback",
        (10, _, _) | (172, 16..=31, _) | (192, 168, _) => "private",
        (100, 64..=127, _) => "shared address space (carrier-grade NAT)",
        (169, 254, _) => "link-local (cloud metadata services live here)",
        (192, 0, 0) => "IETF protocol assignments",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "documentation",
        (198, 18..=19, _) => "benchmarking",
        (224..=239, _, _) => "multicast",
        (240..=255, _, _) => "reserved or broadcast",
        (168, 63, 129) if ip.octets()[3] == 16 => "cloud metadata (Azure's wire server)",
        _ => return None,
    })
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if let Some(v4) = embedded_v4(ip) {
        return forbidden_v4(v4).map(|_| "an IPv4 address it carries is forbidden");
    }
    let s = ip.segments();
    Some(match s[0] {
        _ if ip.is_unspecified() => "unspecified",
        _ if ip.is_loopback() => "loopback",
        0xfe80..=0xfebf => "link-local",
        0xfec0..=0xfeff => "site-local",
        0xfc00..=0xfdff => "unique local (private)",
        0xff00..=0xffff => "multicast",
        0x2001 if s[1] == 0x0db8 => "documentation",
        0x0100 if s[1..4] == [0, 0, 0] => "discard-only",
        0 => "reserved",
        _ => return None,
    })
}

/// The IPv4 address an IPv6 address carries: mapped (`::ffff:a.b.c.d`), compatible
/// (`::a.b.c.d`), NAT64 (`64:ff9b::/96`) or 6to4 (`2002:AABB:CCDD::/48`).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let tail = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        [0, 0, 0, 0, 0, 0xffff, ..] => Some(tail),
        [0, 0, 0, 0, 0, 0, ..] if !ip.is_loopback() && !ip.is_unspecified() => Some(tail),
        [0x64, 0xff9b, 0, 0, 0, 0, ..] => Some(tail),
        [0x2002, hi, lo, ..] => Some(Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8)),
        _ => None,
    }
}

/// The fetcher.
pub struct Fetcher {
    resolver: Box<dyn Resolve>,
    pub connect_timeout: Duration,
    pub total_timeout: Duration,
    /// Socket addresses let through although forbidden (named by the operator).
    allow: Vec<SocketAddr>,
}

impl Default for Fetcher {
    fn default() -> Self {
        Fetcher {
            resolver: Box::new(SystemResolver),
            connect_timeout: Duration::from_secs(3),
            total_timeout: Duration::from_secs(10),
            allow: Vec::new(),
        }
    }
}

impl Fetcher {
    /// A fetcher resolving names with `resolver`.
    pub fn with_resolver(resolver: Box<dyn Resolve>) -> Self {
        Fetcher { resolver, ..Fetcher::default() }
    }

    /// Lets `addr` (an address and port) through although it is forbidden: an intranet image
    /// host an operator names (`mall serve --fetch-allow`), or a test's server on loopback.
    pub fn allowing(mut self, addr: SocketAddr) -> Self {
        self.allow.push(addr);
        self
    }

    /// Where `url` may be fetched from: the URL checked, the host resolved once, every address
    /// checked. Connects nowhere.
    pub async fn target(&self, url: &str) -> Result<(Url, Vec<SocketAddr>), FetchError> {
        let refused = |why: String| FetchError::Refused(why);
        let url = Url::parse(url.trim()).map_err(|e| refused(format!("not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(refused(format!("the scheme {} is not http or https", url.scheme())));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(refused("credentials in the URL".into()));
        }
        let port = url.port_or_known_default().ok_or_else(|| refused("no port".into()))?;
        let addrs: Vec<SocketAddr> = match url.host() {
            None => return Err(refused("no host".into())),
            Some(url::Host::Ipv4(ip)) => vec![SocketAddr::new(IpAddr::V4(ip), port)],
            Some(url::Host::Ipv6(ip)) => vec![SocketAddr::new(IpAddr::V6(ip), port)],
            Some(url::Host::Domain(name)) => {
                let name = name.trim_end_matches('.');
                if name.eq_ignore_ascii_case("localhost") || name.to_ascii_lowercase().ends_with(".localhost") {
                    return Err(refused(format!("{name} is this machine")));
                }
                let addrs = tokio::time::timeout(self.connect_timeout, self.resolver.resolve(name, port))
                    .await
                    .map_err(|_| FetchError::Broken(format!("{name} did not resolve in time")))?
                    .map_err(|e| FetchError::Broken(format!("{name} does not resolve: {e}")))?;
                if addrs.is_empty() {
                    return Err(FetchError::Broken(format!("{name} has no address")));
                }
                addrs
            }
        };
        for a in &addrs {
            if let Some(why) = forbidden(a.ip()).filter(|_| !self.allow.contains(a)) {
                return Err(refused(format!("{} is {why}", a.ip())));
            }
        }
        Ok((url, addrs))
    }

    /// Fetches `url` as an image: each hop checked, redirects followed by hand, within the
    /// timeouts and the size cap.
    pub async fn image(&self, url: &str) -> Result<Image, FetchError> {
        tokio::time::timeout(self.total_timeout, self.image_within(url))
            .await
            .unwrap_or_else(|_| Err(FetchError::Broken(format!("no image within {} s", self.total_timeout.as_secs()))))
    }

    async fn image_within(&self, url: &str) -> Result<Image, FetchError> {
        let mut next = url.to_string();
        for _hop in 0..=MAX_REDIRECTS {
            let (url, addrs) = self.target(&next).await?;
            let mut client = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(self.connect_timeout)
                .no_proxy();
            if let Some(host) = url.host_str().filter(|_| matches!(url.host(), Some(url::Host::Domain(_)))) {
                // Connect to exactly the addresses checked.
                client = client.resolve_to_addrs(host, &addrs);
            }
            let client = client.build().map_err(|e| FetchError::Broken(e.to_string()))?;
            let r = client
                .get(url.clone())
                .header(reqwest::header::ACCEPT, "image/*")
                .send()
                .await
                .map_err(|e| FetchError::Broken(format!("cannot fetch: {e}")))?;
            if r.status().is_redirection() {
                let location = r
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|l| l.to_str().ok())
                    .ok_or_else(|| FetchError::Broken(format!("a {} without a location", r.status())))?;
                next = url.join(location).map_err(|e| FetchError::Broken(format!("a bad redirect: {e}")))?.to_string();
                continue;
            }
            if !r.status().is_success() {
                return Err(FetchError::Broken(format!("answered {}", r.status())));
            }
            let content_type = r
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|t| t.to_str().ok())
                .unwrap_or("")
                .to_ascii_lowercase();
            if !content_type.starts_with("image/") {
                return Err(FetchError::Broken(format!("not an image: {content_type:?}")));
            }
            if r.content_length().is_some_and(|n| n > MAX_BODY as u64) {
                return Err(FetchError::Broken(format!("over {MAX_BODY} bytes")));
            }
            let mut bytes = 0;
            let mut body = r.bytes_stream();
            while let Some(chunk) = body.next().await {
                bytes += chunk.map_err(|e| FetchError::Broken(format!("the body broke off: {e}")))?.len();
                if bytes > MAX_BODY {
                    return Err(FetchError::Broken(format!("over {MAX_BODY} bytes")));
                }
            }
            if bytes == 0 {
                return Err(FetchError::Broken("an empty body".into()));
            }
            return Ok(Image { url: url.to_string(), content_type, bytes });
        }
        Err(FetchError::Broken(format!("more than {MAX_REDIRECTS} redirects")))
    }
}

#[cfg(test)]
mod tests;
