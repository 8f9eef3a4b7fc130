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
use crate::store::now;

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
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || a >= 240
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                // NAT64 of a private IPv4 address.
                || (v6.segments()[..6] == [0x64, 0xff9b, 0, 0, 0, 0]
                    && is_private(IpAddr::V4(std::net::Ipv4Addr::from(
                        (u32::from(v6.segments()[6]) << 16) | u32::from(v6.segments()[7]),
                    ))))
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
        }
    }
}

/// 0, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
pub fn default_schedule() -> Vec<Duration> {
    [0, 5, 300, 1800, 7200, 18000, 36000, 36000]
        .map(Duration::from_secs)
        .into()
}

/// Parses `0,5s,5m,30m,2h` (humantime durations; a bare `0` is zero).
pub fn parse_schedule(text: &str) -> Result<Vec<Duration>, String> {
    let schedule = text
        .split(',')
        .map(str::trim)
        .map(|d| match d {
            "0" => Ok(Duration::ZERO),
            d => humantime::parse_duration(d).map_err(|e| format!("`{d}`: {e}")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    if schedule.is_empty() {
        return Err("the schedule needs at least one attempt".into());
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
        let in_flight: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let done = Arc::new(Notify::new());
        let lease_ms = (self.config.timeout + Duration::from_secs(45)).as_millis() as i64;
        info!("webhook sender started");
        loop {
            // Claim while there is room.
            loop {
                let (total, full): (usize, Vec<String>) = {
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
                let webhook_id = lease.delivery.webhook_id.clone();
                *in_flight
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(webhook_id.clone())
                    .or_default() += 1;
                let (sender, in_flight, done) = (self.clone(), in_flight.clone(), done.clone());
                tokio::spawn(async move {
                    sender.attempt(&lease).await;
                    let mut map = in_flight.lock().unwrap_or_else(|p| p.into_inner());
                    if let Some(n) = map.get_mut(&webhook_id) {
                        *n -= 1;
                        if *n == 0 {
                            map.remove(&webhook_id);
                        }
                    }
                    drop(map);
                    done.notify_one();
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
                () = done.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
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
            .header("webhook-id", &delivery.event_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(delivery.payload.clone())
            .send()
            .await;
        let response = match response {
            Ok(r) => r,
            Err(e) => {
                let error = chain(&e);
                if error.contains("refused: ") {
                    return failed(None, error);
                }
                return retry(None, error, None);
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
