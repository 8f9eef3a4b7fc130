//! Webhooks and the outbox on SQLite.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::{SqliteStore, backend, body_column, body_text, immediate, now_ms, select_page};
use crate::store::events::{
    AttemptOutcome, DeliveryLease, DeliveryRecord, DeliveryState, Event, WebhookRecord, Webhooks,
};
use crate::store::{DeliveryId, NamespaceId, Page, PageRequest, Result, StoreError, WebhookId};

/// Writes `event` to the outbox in the transaction `c`: one delivery per
/// webhook of its namespace that wants it.
pub(super) fn emit(c: &Connection, event: Option<Event>) -> Result<()> {
    let Some(event) = event else {
        return Ok(());
    };
    let webhooks: Vec<WebhookRecord> = c
        .prepare_cached("SELECT body FROM webhooks WHERE namespace_id = ?1")
        .and_then(|mut s| {
            s.query_map([&event.namespace_id], |r| body_column(r.get(0)?))?
                .collect()
        })
        .map_err(backend)?;
    for delivery in DeliveryRecord::fan_out(&event, &webhooks)? {
        insert_delivery(c, &delivery)?;
    }
    Ok(())
}

/// Writes `extractor.published` for `version` to the outbox in the
/// transaction `c`, for every namespace with a webhook that wants it.
pub(super) fn emit_published(
    c: &Connection,
    version: &crate::store::registry::ExtractorVersionRecord,
    hears: impl Fn(&NamespaceId) -> bool,
) -> Result<()> {
    let webhooks: Vec<WebhookRecord> = c
        .prepare_cached("SELECT body FROM webhooks")
        .and_then(|mut s| s.query_map([], |r| body_column(r.get(0)?))?.collect())
        .map_err(backend)?;
    let deliveries = DeliveryRecord::fan_out_everywhere(
        crate::store::events::EventType::ExtractorPublished,
        |ns| Event::extractor_published(ns, version),
        &webhooks,
        hears,
    )?;
    for delivery in deliveries {
        insert_delivery(c, &delivery)?;
    }
    Ok(())
}

fn insert_delivery(c: &Connection, d: &DeliveryRecord) -> Result<()> {
    c.prepare_cached(
        "INSERT INTO deliveries (delivery_id, webhook_id, state, next_attempt_ms, body)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .and_then(|mut s| {
        s.execute(params![
            d.delivery_id,
            d.webhook_id,
            d.state.as_str(),
            d.next_attempt_ms,
            body_text(d).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?
        ])
    })
    .map_err(backend)?;
    Ok(())
}

/// Rewrites a delivery (and drops its lease).
fn write_delivery(c: &Connection, d: &DeliveryRecord) -> Result<()> {
    c.execute(
        "UPDATE deliveries SET state = ?2, next_attempt_ms = ?3, lease_token = NULL,
         lease_expires_ms = 0, body = ?4 WHERE delivery_id = ?1",
        params![
            d.delivery_id,
            d.state.as_str(),
            d.next_attempt_ms,
            body_text(d)?
        ],
    )
    .map_err(backend)?;
    Ok(())
}

fn read_delivery(
    c: &Connection,
    webhook_id: &WebhookId,
    delivery_id: &DeliveryId,
) -> Result<Option<DeliveryRecord>> {
    c.query_row(
        "SELECT body FROM deliveries WHERE delivery_id = ?1 AND webhook_id = ?2",
        params![delivery_id, webhook_id],
        |r| body_column(r.get(0)?),
    )
    .optional()
    .map_err(backend)
}

/// Writes `webhook` over the revision before its own; how many rows changed.
fn write_webhook(c: &Connection, webhook: &WebhookRecord) -> Result<usize> {
    c.execute(
        "UPDATE webhooks SET body = ?3 WHERE webhook_id = ?1 AND namespace_id = ?2
         AND coalesce(json_extract(body, '$.revision'), 0) = ?4",
        params![
            webhook.webhook_id,
            webhook.namespace_id,
            body_text(webhook)?,
            webhook.revision.saturating_sub(1)
        ],
    )
    .map_err(backend)
}

#[async_trait]
impl Webhooks for SqliteStore {
    async fn create_webhook(&self, webhook: &WebhookRecord) -> Result<()> {
        let body = body_text(webhook)?;
        let (id, ns) = (webhook.webhook_id.clone(), webhook.namespace_id.clone());
        self.call(move |c| {
            c.execute(
                "INSERT INTO webhooks (webhook_id, namespace_id, body) VALUES (?1, ?2, ?3)",
                params![id, ns, body],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn webhook(
        &self,
        namespace_id: &NamespaceId,
        webhook_id: &WebhookId,
    ) -> Result<Option<WebhookRecord>> {
        self.optional(
            "SELECT body FROM webhooks WHERE webhook_id = ?1 AND namespace_id = ?2".into(),
            vec![webhook_id.to_string(), namespace_id.to_string()],
            |r| body_column(r.get(0)?),
        )
        .await
    }

    async fn list_webhooks(
        &self,
        namespace_id: &NamespaceId,
        page: &PageRequest,
    ) -> Result<Page<WebhookRecord>> {
        let (ns, page) = (namespace_id.to_owned(), page.clone());
        self.call(move |c| {
            select_page(
                c,
                "SELECT body FROM webhooks WHERE namespace_id = ?1
                 AND (?2 IS NULL OR webhook_id > ?2) ORDER BY webhook_id LIMIT ?3",
                &[&ns],
                &page,
                |r| body_column(r.get(0)?),
                |w: &WebhookRecord| w.webhook_id.to_string(),
            )
        })
        .await
    }

    async fn update_webhook(&self, webhook: &WebhookRecord) -> Result<()> {
        let webhook = webhook.clone();
        self.call(move |c| {
            if write_webhook(c, &webhook)? == 1 {
                return Ok(());
            }
            let exists: bool = c
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM webhooks WHERE webhook_id = ?1 AND namespace_id = ?2)",
                    params![webhook.webhook_id, webhook.namespace_id],
                    |r| r.get(0),
                )
                .map_err(backend)?;
            Err(match exists {
                true => StoreError::Conflict(format!(
                    "webhook `{}` changed meanwhile; read it again",
                    webhook.webhook_id
                )),
                false => StoreError::not_found("webhook", webhook.webhook_id),
            })
        })
        .await
    }

    async fn delete_webhook(
        &self,
        namespace_id: &NamespaceId,
        webhook_id: &WebhookId,
    ) -> Result<()> {
        let (ns, id) = (namespace_id.to_owned(), webhook_id.to_owned());
        self.call(move |c| {
            let tx = immediate(c)?;
            let deleted = tx
                .execute(
                    "DELETE FROM webhooks WHERE webhook_id = ?1 AND namespace_id = ?2",
                    params![id, ns],
                )
                .map_err(backend)?;
            if deleted == 0 {
                return Err(StoreError::not_found("webhook", id));
            }
            tx.execute("DELETE FROM deliveries WHERE webhook_id = ?1", [&id])
                .map_err(backend)?;
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn enqueue(&self, webhook: &WebhookRecord, event: &Event) -> Result<DeliveryRecord> {
        let delivery = DeliveryRecord::new(event, webhook)?;
        let written = delivery.clone();
        self.call(move |c| insert_delivery(c, &written)).await?;
        Ok(delivery)
    }

    async fn list_deliveries(
        &self,
        webhook_id: &WebhookId,
        page: &PageRequest,
    ) -> Result<Page<DeliveryRecord>> {
        let (id, page) = (webhook_id.to_owned(), page.clone());
        self.call(move |c| {
            select_page(
                c,
                "SELECT body FROM deliveries WHERE webhook_id = ?1
                 AND (?2 IS NULL OR delivery_id > ?2) ORDER BY delivery_id LIMIT ?3",
                &[&id],
                &page,
                |r| body_column(r.get(0)?),
                |d: &DeliveryRecord| d.delivery_id.to_string(),
            )
        })
        .await
    }

    async fn delivery(
        &self,
        webhook_id: &WebhookId,
        delivery_id: &DeliveryId,
    ) -> Result<Option<DeliveryRecord>> {
        let (webhook, id) = (webhook_id.to_owned(), delivery_id.to_owned());
        self.call(move |c| read_delivery(c, &webhook, &id)).await
    }

    async fn redeliver(
        &self,
        webhook_id: &WebhookId,
        delivery_id: &DeliveryId,
    ) -> Result<DeliveryRecord> {
        let (webhook, id) = (webhook_id.to_owned(), delivery_id.to_owned());
        self.call(move |c| {
            let tx = immediate(c)?;
            let mut delivery = read_delivery(&tx, &webhook, &id)?
                .ok_or_else(|| StoreError::not_found("delivery", id.clone()))?;
            if delivery.state == DeliveryState::Pending {
                return Err(StoreError::Conflict(format!(
                    "delivery `{id}` is still pending; it will be attempted again"
                )));
            }
            delivery.redeliver();
            write_delivery(&tx, &delivery)?;
            tx.commit().map_err(backend)?;
            Ok(delivery)
        })
        .await
    }

    async fn claim_delivery(
        &self,
        skip: &[WebhookId],
        lease_ms: i64,
    ) -> Result<Option<DeliveryLease>> {
        let skip = serde_json::to_string(skip).map_err(StoreError::backend)?;
        self.call(move |c| {
            let tx = immediate(c)?;
            let now = now_ms();
            let found: Option<(String, String)> = tx
                .query_row(
                    "SELECT delivery_id, body FROM deliveries
                     WHERE state = 'pending' AND next_attempt_ms <= ?1 AND lease_expires_ms < ?1
                     AND webhook_id NOT IN (SELECT value FROM json_each(?2))
                     ORDER BY next_attempt_ms, delivery_id LIMIT 1",
                    params![now, skip],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(backend)?;
            let Some((id, body)) = found else {
                return Ok(None);
            };
            let token = crate::keys::random_token();
            tx.execute(
                "UPDATE deliveries SET lease_token = ?2, lease_expires_ms = ?3 WHERE delivery_id = ?1",
                params![id, token, now + lease_ms],
            )
            .map_err(backend)?;
            tx.commit().map_err(backend)?;
            Ok(Some(DeliveryLease {
                delivery: body_column(body).map_err(backend)?,
                token,
            }))
        })
        .await
    }

    async fn record_attempt(
        &self,
        lease: &DeliveryLease,
        outcome: &AttemptOutcome,
    ) -> Result<bool> {
        let (lease, outcome) = (lease.clone(), outcome.clone());
        self.call(move |c| {
            let tx = immediate(c)?;
            let body: Option<String> = tx
                .query_row(
                    "SELECT body FROM deliveries WHERE delivery_id = ?1 AND lease_token = ?2",
                    params![lease.delivery.delivery_id, lease.token],
                    |r| r.get(0),
                )
                .optional()
                .map_err(backend)?;
            let Some(body) = body else {
                return Ok(false);
            };
            let mut delivery: DeliveryRecord = body_column(body).map_err(backend)?;
            let disable = delivery.apply(&outcome);
            write_delivery(&tx, &delivery)?;
            if let Some(reason) = disable {
                let webhook: Option<String> = tx
                    .query_row(
                        "SELECT body FROM webhooks WHERE webhook_id = ?1",
                        [&delivery.webhook_id],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(backend)?;
                if let Some(body) = webhook {
                    let mut webhook: WebhookRecord = body_column(body).map_err(backend)?;
                    webhook.disable(reason);
                    write_webhook(&tx, &webhook)?;
                }
            }
            tx.commit().map_err(backend)?;
            Ok(true)
        })
        .await
    }

    async fn purge_deliveries(&self, before_ms: i64) -> Result<u64> {
        self.call(move |c| {
            c.execute(
                "DELETE FROM deliveries WHERE state IN ('delivered', 'failed') AND next_attempt_ms < ?1",
                [before_ms],
            )
            .map(|n| n as u64)
            .map_err(backend)
        })
        .await
    }

    async fn next_due(&self) -> Result<Option<i64>> {
        self.call(|c| {
            c.query_row(
                "SELECT MIN(next_attempt_ms) FROM deliveries WHERE state = 'pending' AND lease_expires_ms < ?1",
                [now_ms()],
                |r| r.get(0),
            )
            .map_err(backend)
        })
        .await
    }
}
