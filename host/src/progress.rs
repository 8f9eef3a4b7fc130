//! What a batch's numbers mean to a person: progress, a one-line status
//! message, an estimate of completion and a health verdict with its checks.
//!
//! Everything here is computed from a [`BatchRecord`] and the time, so the
//! API can answer from any replica without asking the worker.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::store::{BatchRecord, BatchStatus, LeaseHolder, Stage, Timestamp};

/// Live progress of a batch.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Progress {
    /// Objects that finished every tier.
    pub processed: u64,
    /// Objects in the batch.
    pub total: u64,
    /// `processed / total`, in percent with one decimal.
    pub percent: f64,
    /// Objects per second over the recent window (the whole run once
    /// finished).
    pub items_per_second: f64,
    /// Seconds until completion at the current rate.
    pub eta_seconds: Option<u64>,
    /// The earliest tier with unfinished work.
    pub current_stage: Option<StageView>,
    /// Objects that finished with at least one error.
    pub errors: u64,
}

/// Overall health of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Nothing wrong.
    Healthy,
    /// Some objects failed, or progress stalled.
    Degraded,
    /// Errors past the budget, a lost worker, or the batch failed.
    Unhealthy,
}

/// Outcome of one health check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    /// Fine.
    Pass,
    /// Makes the batch degraded.
    Warn,
    /// Makes the batch unhealthy.
    Fail,
}

/// One health check and why it came out as it did.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Check {
    /// `status`, `errors`, `lease` or `progress`.
    pub name: &'static str,
    /// The verdict.
    pub status: CheckStatus,
    /// The reason, for a person.
    pub detail: String,
}

/// When a batch counts as degraded or unhealthy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HealthPolicy {
    /// Share of failed objects past which the batch is unhealthy (and fails).
    pub error_budget: f64,
    /// Time without a finished object after which a running batch is
    /// degraded.
    pub stall_after: Duration,
}

impl Default for HealthPolicy {
    fn default() -> Self {
        HealthPolicy {
            error_budget: 0.5,
            stall_after: Duration::from_secs(300),
        }
    }
}

/// Everything derived from a batch's numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The numbers.
    pub progress: Progress,
    /// One line for dashboards and logs.
    pub status_message: String,
    /// The worst of the checks.
    pub health: Health,
    /// The checks.
    pub checks: Vec<Check>,
    /// When the batch should finish (or finished).
    pub estimated_completion: Option<Timestamp>,
}

/// A batch's current stage as the API shows it: the earliest tier with
/// unfinished work.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[schema(as = Stage)]
pub struct StageView {
    /// The extractors of the tier (with the collection when there are several).
    pub name: String,
    /// From 1.
    pub index: u32,
    /// Tiers over every collection of the batch.
    pub total: u32,
}

impl From<Stage> for StageView {
    fn from(s: Stage) -> Self {
        StageView {
            name: s.name,
            index: s.index,
            total: s.total,
        }
    }
}

/// The report of `batch` at `now`.
pub fn report(batch: &BatchRecord, now: DateTime<Utc>, policy: &HealthPolicy) -> Report {
    let (processed, total) = (batch.processed, batch.total);
    let percent = if total == 0 {
        0.0
    } else {
        (processed as f64 * 1000.0 / total as f64).round() / 10.0
    };
    let elapsed = match (
        batch.started_at.map(Timestamp::datetime),
        batch.finished_at.map(Timestamp::datetime),
    ) {
        (Some(start), Some(end)) => (end - start).to_std().ok(),
        _ => None,
    };
    let items_per_second = match batch.status {
        BatchStatus::Processing => batch.live.as_ref().map_or(0.0, |l| l.items_per_second),
        _ => elapsed
            .filter(|e| !e.is_zero())
            .map_or(0.0, |e| processed as f64 / e.as_secs_f64()),
    };
    let remaining = total.saturating_sub(processed);
    let eta_seconds = (batch.status == BatchStatus::Processing && items_per_second > 0.0)
        .then(|| (remaining as f64 / items_per_second).ceil() as u64);
    let estimated_completion = match batch.status {
        // To the second, as an estimate can only be.
        BatchStatus::Processing => eta_seconds.and_then(|s| {
            Timestamp::from_millis((now.timestamp() + s as i64).saturating_mul(1000))
        }),
        BatchStatus::Completed => batch.finished_at,
        _ => None,
    };
    let current_stage = match batch.status {
        BatchStatus::Processing => batch
            .live
            .as_ref()
            .and_then(|l| l.current_stage.clone())
            .map(StageView::from),
        _ => None,
    };
    let progress = Progress {
        processed,
        total,
        percent,
        items_per_second: (items_per_second * 10.0).round() / 10.0,
        eta_seconds,
        current_stage,
        errors: batch.failed,
    };
    let status_message = status_message(batch, &progress, elapsed);
    let checks = checks(batch, now, policy);
    let health = checks
        .iter()
        .map(|c| match c.status {
            CheckStatus::Pass => Health::Healthy,
            CheckStatus::Warn => Health::Degraded,
            CheckStatus::Fail => Health::Unhealthy,
        })
        .max()
        .unwrap_or(Health::Healthy);
    Report {
        progress,
        status_message,
        health,
        checks,
        estimated_completion,
    }
}

fn status_message(batch: &BatchRecord, p: &Progress, elapsed: Option<Duration>) -> String {
    let counts = format!(
        "{}/{} objects ({:.1}%)",
        thousands(p.processed),
        thousands(p.total),
        p.percent
    );
    let objects = |n: u64| format!("{} object{}", thousands(n), if n == 1 { "" } else { "s" });
    let errors = |n: u64| format!("{} error{}", thousands(n), if n == 1 { "" } else { "s" });
    match batch.status {
        BatchStatus::Draft => format!("Draft · {} · not submitted", objects(p.total)),
        BatchStatus::Queued => format!(
            "Queued · {} to process · waiting for a poller",
            objects(p.total - p.processed.min(p.total))
        ),
        BatchStatus::Processing => {
            let eta = match p.eta_seconds {
                Some(s) => format!("~{} remaining", human_duration(Duration::from_secs(s))),
                None => "estimating time remaining".to_owned(),
            };
            format!(
                "Processing {counts} · {:.1} items/sec · {eta}",
                p.items_per_second
            )
        }
        BatchStatus::Completed => {
            let mut line = format!("Completed {counts} · {}", errors(p.errors));
            if let Some(e) = elapsed {
                line.push_str(&format!(
                    " · {:.1} items/sec · took {}",
                    p.items_per_second,
                    human_duration(e)
                ));
            }
            line
        }
        BatchStatus::Failed => format!(
            "Failed at {counts}: {}",
            batch
                .error_message
                .as_deref()
                .unwrap_or("no reason recorded")
        ),
        BatchStatus::Canceled => format!("Canceled at {counts}"),
    }
}

fn checks(batch: &BatchRecord, now: DateTime<Utc>, policy: &HealthPolicy) -> Vec<Check> {
    let check = |name, status, detail: String| Check {
        name,
        status,
        detail,
    };
    let mut checks = Vec::new();
    checks.push(match batch.status {
        BatchStatus::Failed => check(
            "status",
            CheckStatus::Fail,
            format!(
                "the batch failed: {}",
                batch
                    .error_message
                    .as_deref()
                    .unwrap_or("no reason recorded")
            ),
        ),
        s => check(
            "status",
            CheckStatus::Pass,
            format!("the batch is {}", s.as_str()),
        ),
    });
    let rate = if batch.processed == 0 {
        0.0
    } else {
        batch.failed as f64 / batch.processed as f64
    };
    let budget = format!("{:.0}%", policy.error_budget * 100.0);
    checks.push(if batch.failed == 0 {
        check("errors", CheckStatus::Pass, "no object failed".to_owned())
    } else if rate > policy.error_budget {
        check(
            "errors",
            CheckStatus::Fail,
            format!(
                "{} of {} finished objects failed ({:.1}%), past the error budget of {budget}",
                thousands(batch.failed),
                thousands(batch.processed),
                rate * 100.0
            ),
        )
    } else {
        check(
            "errors",
            CheckStatus::Warn,
            format!(
                "{} of {} finished objects failed ({:.1}%), within the error budget of {budget}",
                thousands(batch.failed),
                thousands(batch.processed),
                rate * 100.0
            ),
        )
    });
    if batch.status == BatchStatus::Processing {
        let now_ms = now.timestamp_millis();
        let queued = batch
            .shards
            .get(&crate::store::ShardStatus::Queued)
            .copied()
            .unwrap_or(0);
        checks.push(match &batch.lease {
            Some(LeaseHolder { owner, expires_ms }) if *expires_ms < now_ms => check(
                "lease",
                CheckStatus::Fail,
                format!(
                    "worker `{owner}` stopped renewing its lease {} ago; another worker will resume its shard",
                    human_duration(Duration::from_millis((now_ms - expires_ms) as u64))
                ),
            ),
            Some(LeaseHolder { owner, .. }) => check(
                "lease",
                CheckStatus::Pass,
                format!("worker `{owner}` holds a lease on it"),
            ),
            None if queued > 0 => check(
                "lease",
                CheckStatus::Pass,
                format!("no shard runs just now; {queued} wait for a free worker"),
            ),
            None => check(
                "lease",
                CheckStatus::Fail,
                "no worker holds a lease on it".to_owned(),
            ),
        });
        let since = batch
            .live
            .as_ref()
            .map(|l| l.last_progress_at.datetime())
            .or_else(|| batch.started_at.map(Timestamp::datetime))
            .and_then(|t| (now - t).to_std().ok())
            .unwrap_or_default();
        checks.push(if since > policy.stall_after {
            check(
                "progress",
                CheckStatus::Warn,
                format!("no object finished in the last {}", human_duration(since)),
            )
        } else {
            check(
                "progress",
                CheckStatus::Pass,
                format!("last object finished {} ago", human_duration(since)),
            )
        });
    }
    checks
}

/// `46160` as `46,160`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A duration as a person reads it: `4h 57m`, `12m 5s`, `42s`, `2d 3h`,
/// `0.4s`.
pub fn human_duration(d: Duration) -> String {
    if d < Duration::from_secs(10) {
        return format!("{:.1}s", d.as_secs_f64());
    }
    let s = d.as_secs();
    let (days, hours, minutes, seconds) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    if days > 0 {
        format!("{days}d {hours}h")
    } else if hours > 0 {
        format!("{hours}h {minutes}m")
    } else if minutes > 0 {
        format!("{minutes}m {seconds}s")
    } else {
        format!("{seconds}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::LiveProgress;

    fn holder(expires_ms: i64) -> LeaseHolder {
        LeaseHolder {
            owner: "w".into(),
            expires_ms,
        }
    }

    fn batch(status: BatchStatus, processed: u64, total: u64) -> BatchRecord {
        BatchRecord {
            batch_id: "btch_1".into(),
            namespace_id: "ns_1".into(),
            bucket_id: "bkt_1".into(),
            batch_name: None,
            task_id: "task_1".into(),
            status,
            total,
            processed,
            failed: 0,
            attempts: 1,
            include_processing_history: false,
            collections: Vec::new(),
            error_summary: Default::default(),
            error_message: None,
            live: None,
            lease: None,
            shards: Default::default(),
            idempotency: None,
            created_at: "2026-01-01T00:00:00.000Z".parse().expect("time"),
            updated_at: "2026-01-01T00:00:00.000Z".parse().expect("time"),
            submitted_at: None,
            started_at: Some("2026-01-01T00:00:00.000Z".parse().expect("time")),
            finished_at: None,
        }
    }

    fn at(t: &str) -> DateTime<Utc> {
        t.parse::<Timestamp>().expect("time").datetime()
    }

    #[test]
    fn the_reference_status_line() {
        let mut b = batch(BatchStatus::Processing, 21_611, 46_160);
        b.lease = Some(holder(i64::MAX));
        b.live = Some(LiveProgress {
            items_per_second: 1.38,
            current_stage: None,
            reported_at: "2026-01-01T01:00:00.000Z".parse().expect("time"),
            last_progress_at: "2026-01-01T01:00:00.000Z".parse().expect("time"),
        });
        let r = report(&b, at("2026-01-01T01:00:01Z"), &HealthPolicy::default());
        // 24,549 left at 1.38/s: 17,790 s.
        assert_eq!(
            r.status_message,
            "Processing 21,611/46,160 objects (46.8%) · 1.4 items/sec · ~4h 56m remaining"
        );
        assert_eq!(r.progress.eta_seconds, Some(17_790));
        assert_eq!(r.progress.percent, 46.8);
        assert_eq!(r.health, Health::Healthy);
        assert_eq!(
            r.estimated_completion.map(|t| t.to_string()).as_deref(),
            Some("2026-01-01T05:56:31.000Z")
        );
    }

    #[test]
    fn health_follows_errors_lease_and_stalls() {
        let policy = HealthPolicy::default();
        let now = at("2026-01-01T01:00:00Z");
        let mut b = batch(BatchStatus::Processing, 10, 100);
        b.lease = Some(holder(now.timestamp_millis() + 10_000));
        b.live = Some(LiveProgress {
            items_per_second: 2.0,
            current_stage: None,
            reported_at: "2026-01-01T00:59:59.000Z".parse().expect("time"),
            last_progress_at: "2026-01-01T00:59:59.000Z".parse().expect("time"),
        });
        assert_eq!(report(&b, now, &policy).health, Health::Healthy);
        b.failed = 2;
        assert_eq!(report(&b, now, &policy).health, Health::Degraded);
        b.failed = 6;
        assert_eq!(report(&b, now, &policy).health, Health::Unhealthy);
        b.failed = 0;
        b.lease = Some(holder(now.timestamp_millis() - 1));
        let r = report(&b, now, &policy);
        assert_eq!(r.health, Health::Unhealthy);
        assert!(
            r.checks
                .iter()
                .any(|c| c.name == "lease" && c.status == CheckStatus::Fail)
        );
        b.lease = Some(holder(now.timestamp_millis() + 10_000));
        b.live.as_mut().expect("live").last_progress_at =
            "2026-01-01T00:50:00.000Z".parse().expect("time");
        let r = report(&b, now, &policy);
        assert_eq!(r.health, Health::Degraded);
        assert!(
            r.checks
                .iter()
                .any(|c| c.name == "progress" && c.detail.contains("10m 0s"))
        );
    }

    #[test]
    fn one_liners_for_every_status() {
        let now = at("2026-01-01T02:00:00Z");
        let policy = HealthPolicy::default();
        let line = |b: &BatchRecord| report(b, now, &policy).status_message;
        assert_eq!(
            line(&batch(BatchStatus::Draft, 0, 1)),
            "Draft · 1 object · not submitted"
        );
        assert_eq!(
            line(&batch(BatchStatus::Queued, 0, 1200)),
            "Queued · 1,200 objects to process · waiting for a poller"
        );
        let mut done = batch(BatchStatus::Completed, 7200, 7200);
        done.failed = 3;
        done.finished_at = Some("2026-01-01T01:00:00.000Z".parse().expect("time"));
        assert_eq!(
            line(&done),
            "Completed 7,200/7,200 objects (100.0%) · 3 errors · 2.0 items/sec · took 1h 0m"
        );
        let r = report(&done, now, &policy);
        assert_eq!(r.health, Health::Degraded);
        assert_eq!(
            r.estimated_completion.map(|t| t.to_string()).as_deref(),
            Some("2026-01-01T01:00:00.000Z")
        );
        let mut failed = batch(BatchStatus::Failed, 5, 10);
        failed.error_message = Some("extractor `x@1.0.0` is not installed".into());
        assert_eq!(
            line(&failed),
            "Failed at 5/10 objects (50.0%): extractor `x@1.0.0` is not installed"
        );
        assert_eq!(report(&failed, now, &policy).health, Health::Unhealthy);
        assert_eq!(
            line(&batch(BatchStatus::Canceled, 0, 0)),
            "Canceled at 0/0 objects (0.0%)"
        );
    }

    #[test]
    fn numbers_and_durations_read_well() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(human_duration(Duration::from_secs(17_820)), "4h 57m");
        assert_eq!(human_duration(Duration::from_secs(725)), "12m 5s");
        assert_eq!(human_duration(Duration::from_secs(42)), "42s");
        assert_eq!(human_duration(Duration::from_millis(420)), "0.4s");
        assert_eq!(
            human_duration(Duration::from_secs(2 * 86_400 + 3 * 3600)),
            "2d 3h"
        );
    }
}
