//! What one namespace may take of a shared host, so that a burst from one
//! (submits, uploads, plans, publications) never slows or fails another's
//! work. Over a limit is a 429 problem with `Retry-After`, or a 422 naming
//! the field when trying again cannot help.
//!
//! Counts of work in flight on this process (uploads, plans) are kept here;
//! batches in flight are counted in the store, so the limit holds across
//! every host of a deployment.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{ApiError, ApiResult};
use crate::store::{KeyId, NamespaceId};

/// Per-namespace limits (`strata serve` flags).
#[derive(Debug, Clone, PartialEq)]
pub struct TenantLimits {
    /// Batches a namespace may have queued or processing at once.
    pub batches_in_flight: u64,
    /// Objects one batch may hold.
    pub objects_per_batch: u64,
    /// Bytes of uploads a namespace may have in flight on one host.
    pub upload_bytes_in_flight: u64,
    /// Plans (a collection created or changed, a batch submitted) a
    /// namespace may run at once on one host: each runs plugin code.
    pub plans_in_flight: u64,
    /// Publications one key may make per minute.
    pub publishes_per_minute: u32,
    /// Event streams a namespace may hold open at once on one host.
    pub event_streams: u64,
}

impl Default for TenantLimits {
    fn default() -> Self {
        TenantLimits {
            batches_in_flight: 20,
            objects_per_batch: 100_000,
            upload_bytes_in_flight: 2 << 30,
            plans_in_flight: 2,
            publishes_per_minute: 10,
            event_streams: 32,
        }
    }
}

/// What the namespaces of this process have in flight.
#[derive(Debug, Default)]
pub struct Tenancy {
    /// The limits.
    pub limits: TenantLimits,
    /// Upload bytes and plans in flight, by namespace.
    held: Mutex<HashMap<(Held, NamespaceId), u64>>,
    /// Each key's publications of the last minute.
    publications: Mutex<HashMap<KeyId, VecDeque<Instant>>>,
}

/// What a [`Hold`] holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Held {
    UploadBytes,
    Plans,
    EventStreams,
}

/// Work in flight for a namespace; given back when dropped.
#[derive(Debug)]
pub struct Hold {
    tenancy: Arc<Tenancy>,
    what: (Held, NamespaceId),
    amount: u64,
}

impl Drop for Hold {
    fn drop(&mut self) {
        let mut held = lock(&self.tenancy.held);
        if let Some(n) = held.get_mut(&self.what) {
            *n = n.saturating_sub(self.amount);
            if *n == 0 {
                held.remove(&self.what);
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Tenancy {
    /// Limits as given.
    pub fn new(limits: TenantLimits) -> Self {
        Tenancy {
            limits,
            ..Tenancy::default()
        }
    }

    fn hold(
        self: &Arc<Self>,
        what: Held,
        namespace_id: &NamespaceId,
        amount: u64,
        limit: u64,
        refusal: impl FnOnce(u64) -> ApiError,
    ) -> ApiResult<Hold> {
        let key = (what, namespace_id.to_owned());
        let mut held = lock(&self.held);
        let now = held.get(&key).copied().unwrap_or(0);
        // One unit of work is always let through, however large, so a
        // namespace alone on the host is never refused.
        if now > 0 && now.saturating_add(amount) > limit {
            return Err(refusal(now));
        }
        *held.entry(key.clone()).or_default() += amount;
        Ok(Hold {
            tenancy: self.clone(),
            what: key,
            amount,
        })
    }

    /// Holds `bytes` of upload for `namespace_id`, or 429 when its uploads
    /// in flight would pass the limit.
    pub fn upload(self: &Arc<Self>, namespace_id: &NamespaceId, bytes: u64) -> ApiResult<Hold> {
        let limit = self.limits.upload_bytes_in_flight;
        self.hold(Held::UploadBytes, namespace_id, bytes, limit, |now| {
            ApiError::too_many(
                format!(
                    "this namespace has {now} bytes of uploads in flight; at most {limit} may be (--max-upload-mb-in-flight)"
                ),
                1,
            )
        })
    }

    /// Holds a plan for `namespace_id`, or 429 when it runs as many as it
    /// may.
    pub fn plan(self: &Arc<Self>, namespace_id: &NamespaceId) -> ApiResult<Hold> {
        let limit = self.limits.plans_in_flight;
        self.hold(Held::Plans, namespace_id, 1, limit, |now| {
            ApiError::too_many(
                format!(
                    "this namespace is planning {now} pipelines already; at most {limit} at once (--max-plans-per-namespace)"
                ),
                1,
            )
        })
    }

    /// Holds an event stream for `namespace_id`, or 429 when it holds as
    /// many as it may.
    pub fn event_stream(self: &Arc<Self>, namespace_id: &NamespaceId) -> ApiResult<Hold> {
        let limit = self.limits.event_streams;
        self.hold(Held::EventStreams, namespace_id, 1, limit, |now| {
            ApiError::too_many(
                format!(
                    "this namespace has {now} event streams open; at most {limit} at once (--max-event-streams-per-namespace)"
                ),
                5,
            )
        })
    }

    /// Counts a publication by `key_id`, or 429 when the key made as many
    /// as it may in the last minute.
    pub fn publish(&self, key_id: &KeyId) -> ApiResult<()> {
        let limit = self.limits.publishes_per_minute as usize;
        let minute = Duration::from_secs(60);
        let now = Instant::now();
        let mut publications = lock(&self.publications);
        let recent = publications.entry(key_id.to_owned()).or_default();
        while recent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= minute)
        {
            recent.pop_front();
        }
        if recent.len() >= limit {
            let wait = recent
                .front()
                .map_or(minute, |t| minute.saturating_sub(now.duration_since(*t)));
            return Err(ApiError::too_many(
                format!(
                    "this key published {limit} times in the last minute, as many as it may (--publishes-per-minute)"
                ),
                wait.as_secs().max(1),
            ));
        }
        recent.push_back(now);
        Ok(())
    }

    /// 429 when `namespace_id`, with `in_flight` batches queued or
    /// processing, may not queue another.
    pub fn check_batches(&self, in_flight: u64) -> ApiResult<()> {
        let limit = self.limits.batches_in_flight;
        if in_flight >= limit {
            return Err(ApiError::too_many(
                format!(
                    "this namespace has {in_flight} batches queued or processing; at most {limit} may be (--max-batches-in-flight)"
                ),
                5,
            ));
        }
        Ok(())
    }

    /// 422 naming `object_ids` when a batch of `objects` would hold more
    /// than one may.
    pub fn check_objects(&self, objects: u64) -> ApiResult<()> {
        let limit = self.limits.objects_per_batch;
        if objects > limit {
            return Err(ApiError::invalid(
                "object_ids",
                format!(
                    "a batch may hold at most {limit} objects (--max-objects-per-batch); this one would hold {objects}"
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenancy() -> Arc<Tenancy> {
        Arc::new(Tenancy::new(TenantLimits {
            upload_bytes_in_flight: 100,
            plans_in_flight: 2,
            publishes_per_minute: 2,
            ..TenantLimits::default()
        }))
    }

    #[test]
    fn holds_count_per_namespace_and_are_given_back() {
        let t = tenancy();
        let first = t.upload(&NamespaceId::from("a"), 80).expect("first");
        let err = t
            .upload(&NamespaceId::from("a"), 30)
            .expect_err("over the limit");
        assert_eq!(err.status, axum::http::StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(err.retry_after, Some(1));
        let _other = t
            .upload(&NamespaceId::from("b"), 80)
            .expect("another namespace is apart");
        drop(first);
        let _again = t.upload(&NamespaceId::from("a"), 30).expect("given back");
        let _huge = t
            .upload(&NamespaceId::from("c"), 1000)
            .expect("alone, one upload always passes");
    }

    #[test]
    fn plans_and_publications_are_limited() {
        let t = tenancy();
        let held = (
            t.plan(&NamespaceId::from("a")).expect("1"),
            t.plan(&NamespaceId::from("a")).expect("2"),
        );
        assert!(t.plan(&NamespaceId::from("a")).is_err());
        drop(held);
        assert!(t.plan(&NamespaceId::from("a")).is_ok());
        t.publish(&KeyId::from("key_1")).expect("1");
        t.publish(&KeyId::from("key_1")).expect("2");
        let err = t.publish(&KeyId::from("key_1")).expect_err("3");
        assert!(err.retry_after.is_some_and(|s| (1..=60).contains(&s)));
        t.publish(&KeyId::from("key_2")).expect("another key");
    }

    #[test]
    fn batch_limits_name_what_to_change() {
        let t = tenancy();
        assert!(t.check_batches(19).is_ok());
        assert_eq!(
            t.check_batches(20).expect_err("full").status,
            axum::http::StatusCode::TOO_MANY_REQUESTS
        );
        let err = t.check_objects(100_001).expect_err("too many");
        assert_eq!(err.invalid_params[0].name, "object_ids");
    }
}
