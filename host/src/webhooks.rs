//! Webhook delivery: signing (Standard Webhooks), the address guard, the
//! retry schedule and the sender that drains the outbox.
//!
//! The sender claims due deliveries one at a time under a lease, sends each
//! on its own task (at most `per_webhook` at once to one webhook, so a slow
//! or dead endpoint only holds its own slots) and records the outcome under
//! the lease. Outcomes: 2xx delivered; 410 fails the delivery and turns the
//! webhook off; 408, 429, 5xx and network errors retry on the schedule
//! (honouring `Retry-After`); anything else, a redirect included, fails.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use rand::Rng as _;
use sha2::Sha256;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::store::events::{AttemptOutcome, DeliveryLease, WebhookRecord, Webhooks};
use crate::store::{WebhookId, now};

/// The prefix of signing secrets.
pub const SECRET_PREFIX: &str = "whsec_";

/// A new signing secret: `whsec_` + base64 of 32 random bytes.
pub fn new_secret() -> String {
    let key: [u8; 32] = rand::rng().random();
    format!("{SECRET_PREFIX}{}", BASE64.encode(key))
}

/// Why a signature cannot be made.
#[derive(Debug, thiserror::Error)]
#[error("signing secret is not `whsec_` + base64")]
pub struct BadSecret;

/// `v1,<base64 HMAC-SHA256 of "id.timestamp.body">` under `secret`.
pub fn signature(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Result<String, BadSecret> {
    let key = secret
        .strip_prefix(SECRET_PREFIX)
        .and_then(|k| BASE64.decode(k).ok())
        .ok_or(BadSecret)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|_| BadSecret)?;
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Ok(format!("v1,{}", BASE64.encode(mac.finalize().into_bytes())))
}

/// The `webhook-signature` header: one signature per secret, space-separated.
pub fn signature_header(
    secrets: &[&str],
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<String, BadSecret> {
    let signatures = secrets
        .iter()
        .map(|s| signature(s, id, timestamp, body))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(signatures.join(" "))
}

/// Whether `ip` is an address webhooks may not reach without
/// `--allow-private-webhooks`: loopback, private, link-local (the cloud
/// metadata address among them), shared (CGNAT), unique-local, unspecified,
/// multicast and reserved ranges.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && c == 0)
                || (a == 198 && (b == 18 || b == 19))
                || a >= 240
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let embedded = |high: u16, low: u16| {
                is_private(IpAddr::V4(std::net::Ipv4Addr::from(
                    (u32::from(high) << 16) | u32::from(low),
                )))
            };
            // IPv4-mapped and IPv4-compatible (`::a.b.c.d`, `::1` too).
            if let Some(v4) = v6.to_ipv4() {
                return is_private(IpAddr::V4(v4));
            }
            v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] & 0xffc0) == 0xfec0
                // NAT64 (well-known and local-use prefixes) and 6to4 of a
                // private IPv4 address.
                || (s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] && embedded(s[6], s[7]))
                || (s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1)
                || (s[0] == 0x2002 && embedded(s[1], s[2]))
        }
    }
}

/// A refused destination.
#[derive(Debug, thiserror::Error)]
#[error(
    "refused: {host} resolves to {address}, a private or reserved address (see --allow-private-webhooks)"
)]
pub struct Refused {
    host: String,
    address: IpAddr,
}

/// Resolves host names and drops the addresses webhooks may not reach, so
/// that the address checked is the address connected to.
#[derive(Debug)]
struct GuardedResolver;

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addresses: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = addresses
                .iter()
                .copied()
                .filter(|a| !is_private(a.ip()))
                .collect();
            match (allowed.is_empty(), addresses.first()) {
                (true, Some(first)) => Err(Box::new(Refused {
                    host,
                    address: first.ip(),
                })
                    as Box<dyn std::error::Error + Send + Sync>),
                _ => Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs),
            }
        })
    }
}

/// How the sender behaves.
#[derive(Debug, Clone)]
pub struct SenderConfig {
    /// Delay before each attempt: the first is usually 0; the delivery
    /// fails after the last.
    pub schedule: Vec<Duration>,
    /// Per request.
    pub timeout: Duration,
    /// Deliveries in flight to one webhook.
    pub per_webhook: usize,
    /// Deliveries in flight in all.
    pub max_in_flight: usize,
    /// Let webhooks reach private and loopback addresses.
    pub allow_private: bool,
    /// Look for due deliveries at least this often.
    pub poll_interval: Duration,
    /// Delivered and failed deliveries are deleted this long after their
    /// last attempt.
    pub retention: Duration,
}

impl Default for SenderConfig {
    fn default() -> Self {
        SenderConfig {
            schedule: default_schedule(),
            timeout: Duration::from_secs(15),
            per_webhook: 4,
            max_in_flight: 64,
            allow_private: false,
            poll_interval: Duration::from_secs(1),
            retention: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

/// 0, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
pub fn default_schedule() -> Vec<Duration> {
    [0, 5, 300, 1800, 7200, 18000, 36000, 36000]
        .map(Duration::from_secs)
        .into()
}

/// Parses `0,5s,5m,30m,2h` (humantime durations; a bare `0` is zero). The
/// first attempt is made as soon as the event is written, so the schedule
/// starts with 0.
pub fn parse_schedule(text: &str) -> Result<Vec<Duration>, String> {
    let schedule = text
        .split(',')
        .map(str::trim)
        .map(|d| match d {
            "0" => Ok(Duration::ZERO),
            d => humantime::parse_duration(d).map_err(|e| format!("`{d}`: {e}")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    if schedule.first() != Some(&Duration::ZERO) {
        return Err(format!(
            "`{text}`: the first attempt is made at once, so the schedule starts with 0"
        ));
    }
    Ok(schedule)
}

/// What `Retry-After` asks for: seconds, or an HTTP date.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    if let Ok(seconds) = value.trim().parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value.trim()).ok()?;
    (at.with_timezone(&chrono::Utc) - chrono::Utc::now())
        .to_std()
        .ok()
}

/// The error and its causes, on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// A delivery in flight to a webhook, counted until dropped (also when
/// its task panics).
struct Slot {
    in_flight: Arc<Mutex<HashMap<WebhookId, usize>>>,
    webhook_id: WebhookId,
}

impl Slot {
    fn take(in_flight: &Arc<Mutex<HashMap<WebhookId, usize>>>, webhook_id: &WebhookId) -> Slot {
        *in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(webhook_id.to_owned())
            .or_default() += 1;
        Slot {
            in_flight: in_flight.clone(),
            webhook_id: webhook_id.to_owned(),
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut map = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.webhook_id) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.webhook_id);
            }
        }
    }
}

/// How often finished deliveries past their retention are deleted.
const PURGE_INTERVAL: Duration = Duration::from_secs(3600);

/// The longest a `Retry-After` may push an attempt back.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// Sends deliveries; cheap to clone.
#[derive(Clone)]
pub struct Sender {
    store: Arc<dyn Webhooks>,
    client: reqwest::Client,
    config: Arc<SenderConfig>,
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("config", &self.config)
            .finish()
    }
}

impl Sender {
    /// A sender over `store`.
    pub fn new(store: Arc<dyn Webhooks>, config: SenderConfig) -> reqwest::Result<Self> {
        let mut client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.timeout)
            .no_proxy()
            .user_agent(concat!("Strata-Webhooks/", env!("CARGO_PKG_VERSION")));
        if !config.allow_private {
            client = client.dns_resolver(Arc::new(GuardedResolver));
        }
        Ok(Sender {
            store,
            client: client.build()?,
            config: Arc::new(config),
        })
    }

    /// Claims and sends due deliveries until `shutdown`; `wake` makes it
    /// look at once (a new event).
    pub async fn run(self, wake: Arc<Notify>, shutdown: CancellationToken) {
        let in_flight: Arc<Mutex<HashMap<WebhookId, usize>>> = Arc::default();
        let mut sends = tokio::task::JoinSet::new();
        let lease_ms = (self.config.timeout + Duration::from_secs(45)).as_millis() as i64;
        info!("webhook sender started");
        let mut purged_at: Option<std::time::Instant> = None;
        loop {
            if purged_at.is_none_or(|at| at.elapsed() > PURGE_INTERVAL) {
                purged_at = Some(std::time::Instant::now());
                let before = chrono::Utc::now().timestamp_millis()
                    - self.config.retention.as_millis() as i64;
                match self.store.purge_deliveries(before).await {
                    Ok(0) => {}
                    Ok(n) => info!(deliveries = n, "finished webhook deliveries purged"),
                    Err(e) => warn!(error = %e, "purging webhook deliveries failed"),
                }
            }
            // Claim while there is room.
            loop {
                let (total, full): (usize, Vec<WebhookId>) = {
                    let map = in_flight.lock().unwrap_or_else(|p| p.into_inner());
                    (
                        map.values().sum(),
                        map.iter()
                            .filter(|(_, n)| **n >= self.config.per_webhook)
                            .map(|(id, _)| id.clone())
                            .collect(),
                    )
                };
                if total >= self.config.max_in_flight || shutdown.is_cancelled() {
                    break;
                }
                let lease = match self.store.claim_delivery(&full, lease_ms).await {
                    Ok(Some(lease)) => lease,
                    Ok(None) => break,
                    Err(e) => {
                        warn!(error = %e, "claiming a webhook delivery failed");
                        break;
                    }
                };
                let slot = Slot::take(&in_flight, &lease.delivery.webhook_id);
                let sender = self.clone();
                sends.spawn(async move {
                    let _slot = slot;
                    sender.attempt(&lease).await;
                });
            }
            // Nothing more to claim now: sleep until the next delivery is
            // due (one due already waits for a slot of its webhook, and a
            // finished send wakes us), a new event, or the poll interval.
            let wait = match self.store.next_due().await {
                Ok(Some(due)) => {
                    let ms = due - chrono::Utc::now().timestamp_millis();
                    if ms > 0 {
                        Duration::from_millis(ms as u64).min(self.config.poll_interval)
                    } else {
                        self.config.poll_interval
                    }
                }
                _ => self.config.poll_interval,
            };
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = wake.notified() => {}
                Some(_) = sends.join_next(), if !sends.is_empty() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
        // Sends under way finish (each within the request timeout) and are
        // recorded, rather than being sent again after their lease expires.
        let grace = self.config.timeout + Duration::from_secs(1);
        let drained =
            tokio::time::timeout(grace, async { while sends.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            warn!(
                left = sends.len(),
                "webhook sends still running at shutdown"
            );
        }
        info!("webhook sender stopped");
    }

    /// One attempt of a leased delivery, recorded.
    async fn attempt(&self, lease: &DeliveryLease) {
        let delivery = &lease.delivery;
        let outcome = match self
            .store
            .webhook(&delivery.namespace_id, &delivery.webhook_id)
            .await
        {
            Ok(Some(webhook)) if webhook.active => self.send(&webhook, lease).await,
            Ok(Some(webhook)) => AttemptOutcome::Failed {
                status: None,
                error: format!(
                    "webhook is disabled{}",
                    webhook
                        .disabled_reason
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default()
                ),
                disable: None,
            },
            Ok(None) => return,
            Err(e) => {
                warn!(error = %e, "reading a webhook failed");
                return;
            }
        };
        let label = match &outcome {
            AttemptOutcome::Delivered { .. } => "delivered",
            AttemptOutcome::Retry { .. } => "retry",
            AttemptOutcome::Failed { .. } => "failed",
        };
        metrics::counter!("strata_webhook_attempts_total", "outcome" => label).increment(1);
        debug!(delivery_id = %delivery.delivery_id, ?outcome, "webhook attempt");
        match self.store.record_attempt(lease, &outcome).await {
            Ok(true) => {}
            Ok(false) => debug!(delivery_id = %delivery.delivery_id, "delivery changed meanwhile"),
            Err(e) => {
                warn!(delivery_id = %delivery.delivery_id, error = %e, "recording a webhook attempt failed")
            }
        }
    }

    /// Sends the delivery to `webhook` and says how it went.
    async fn send(&self, webhook: &WebhookRecord, lease: &DeliveryLease) -> AttemptOutcome {
        let delivery = &lease.delivery;
        let attempt = delivery.attempts + 1;
        let failed = |status: Option<u16>, error: String| AttemptOutcome::Failed {
            status,
            error,
            disable: None,
        };
        let retry = |status: Option<u16>, error: String, asked: Option<Duration>| match self
            .config
            .schedule
            .get(attempt as usize)
        {
            Some(delay) => {
                let jitter = rand::rng().random_range(0.9..1.1);
                let delay = delay
                    .mul_f64(jitter)
                    .max(asked.unwrap_or_default().min(MAX_RETRY_AFTER));
                AttemptOutcome::Retry {
                    status,
                    error,
                    next_attempt_ms: chrono::Utc::now().timestamp_millis()
                        + delay.as_millis() as i64,
                }
            }
            None => failed(status, format!("{error} (after {attempt} attempts)")),
        };
        let url = match reqwest::Url::parse(&webhook.url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => url,
            _ => return failed(None, format!("invalid URL `{}`", webhook.url)),
        };
        // reqwest connects to an address literal without resolving it.
        if !self.config.allow_private {
            let literal = match url.host() {
                Some(url::Host::Ipv4(v4)) => Some(IpAddr::V4(v4)),
                Some(url::Host::Ipv6(v6)) => Some(IpAddr::V6(v6)),
                _ => None,
            };
            if let Some(address) = literal.filter(|a| is_private(*a)) {
                let refused = Refused {
                    host: url.host_str().unwrap_or_default().to_owned(),
                    address,
                };
                return failed(None, refused.to_string());
            }
        }
        let timestamp = chrono::Utc::now().timestamp();
        let body = delivery.payload.as_bytes();
        let signature = match signature_header(
            &webhook.signing_secrets(&now()),
            &delivery.event_id,
            timestamp,
            body,
        ) {
            Ok(s) => s,
            Err(e) => return failed(None, e.to_string()),
        };
        let response = self
            .client
            .post(url)
            .header("webhook-id", delivery.event_id.as_str())
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(delivery.payload.clone())
            .send()
            .await;
        let response = match response {
            Ok(r) => r,
            Err(e) => {
                let refused =
                    std::iter::successors(Some(&e as &(dyn std::error::Error + 'static)), |e| {
                        e.source()
                    })
                    .find_map(|e| e.downcast_ref::<Refused>());
                return match refused {
                    Some(refused) => failed(None, refused.to_string()),
                    None => retry(None, chain(&e), None),
                };
            }
        };
        let status = response.status();
        let code = Some(status.as_u16());
        let asked = retry_after(response.headers());
        if status.is_success() {
            AttemptOutcome::Delivered {
                status: status.as_u16(),
            }
        } else if status == reqwest::StatusCode::GONE {
            AttemptOutcome::Failed {
                status: code,
                error: "the endpoint answered 410 Gone".into(),
                disable: Some(format!("the endpoint answered 410 Gone at {}", now())),
            }
        } else if status.is_server_error()
            || status == reqwest::StatusCode::TOO_MANY_REQUESTS
            || status == reqwest::StatusCode::REQUEST_TIMEOUT
        {
            retry(code, format!("the endpoint answered {status}"), asked)
        } else if status.is_redirection() {
            failed(
                code,
                format!("the endpoint answered {status}; redirects are not followed"),
            )
        } else {
            failed(code, format!("the endpoint answered {status}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_the_standard_webhooks_example() {
        let signature = signature(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        )
        .expect("a valid secret");
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert!(super::signature("whsec_%%%", "id", 1, b"").is_err());
        assert!(super::signature("no-prefix", "id", 1, b"").is_err());
    }

    #[test]
    fn internal_addresses_are_private() {
        for private in [
            "127.0.0.1",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "192.0.0.8",
            "198.18.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "::ffff:127.0.0.1",
            "::127.0.0.1",
            "fd00::1",
            "fe80::1",
            "fec0::1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::1",
            "2002:c0a8:0101::1",
            "ff02::1",
        ] {
            let ip: IpAddr = private.parse().expect("an address");
            assert!(is_private(ip), "{private} should be refused");
        }
        for public in [
            "93.184.216.34",
            "1.1.1.1",
            "2606:4700::1111",
            "2002:5db8:d822::1",
        ] {
            let ip: IpAddr = public.parse().expect("an address");
            assert!(!is_private(ip), "{public} should be allowed");
        }
    }

    #[test]
    fn schedules_start_at_once() {
        assert_eq!(
            parse_schedule("0, 5s, 5m, 2h").expect("valid"),
            [0, 5, 300, 7200].map(Duration::from_secs)
        );
        assert_eq!(default_schedule().len(), 8);
        assert!(parse_schedule("5s,5m").is_err());
        assert!(
            parse_schedule("0,soon")
                .expect_err("invalid")
                .contains("`soon`")
        );
    }
}
