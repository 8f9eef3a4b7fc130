//! Webhooks and the outbox on MongoDB.

use async_trait::async_trait;
use mongodb::ClientSession;
use mongodb::bson::{Bson, Document, doc};
use mongodb::options::ReturnDocument;

use super::{MongoStore, backend, from_doc, now_ms, record};
use crate::store::events::{
    AttemptOutcome, DeliveryLease, DeliveryRecord, DeliveryState, Event, WebhookRecord, Webhooks,
};
use crate::store::{DeliveryId, NamespaceId, Page, PageRequest, Result, StoreError, WebhookId};

/// A delivery's document: its record, plus its lease.
fn delivery_doc(d: &DeliveryRecord) -> Result<Document> {
    let mut doc = record(&d.delivery_id, d)?;
    doc.insert("lease_token", Bson::Null);
    doc.insert("lease_expires_ms", 0_i64);
    Ok(doc)
}

impl MongoStore {
    /// Writes `event` to the outbox in the transaction of `s`: one delivery
    /// per webhook of its namespace that wants it.
    pub(super) async fn emit(&self, s: &mut ClientSession, event: Option<Event>) -> Result<()> {
        let Some(event) = event else {
            return Ok(());
        };
        let webhooks = self
            .find_in(s, "webhooks", doc! { "namespace_id": &event.namespace_id })
            .await?
            .into_iter()
            .map(from_doc)
            .collect::<Result<Vec<WebhookRecord>>>()?;
        let deliveries = DeliveryRecord::fan_out(&event, &webhooks)?;
        self.insert_deliveries(s, &deliveries).await
    }

    /// Inserts `deliveries` in the transaction of `s`.
    async fn insert_deliveries(
        &self,
        s: &mut ClientSession,
        deliveries: &[DeliveryRecord],
    ) -> Result<()> {
        let docs = deliveries
            .iter()
            .map(delivery_doc)
            .collect::<Result<Vec<_>>>()?;
        if !docs.is_empty() {
            self.coll("deliveries")
                .insert_many(docs)
                .session(&mut *s)
                .await
                .map_err(backend)?;
        }
        Ok(())
    }

    /// Writes `extractor.published` for `version` to the outbox in the
    /// transaction of `s`, for every namespace that `hears` it and has a
    /// webhook that wants it.
    pub(super) async fn emit_published(
        &self,
        s: &mut ClientSession,
        version: &crate::store::registry::ExtractorVersionRecord,
        hears: impl Fn(&NamespaceId) -> bool,
    ) -> Result<()> {
        let webhooks = self
            .find_in(s, "webhooks", doc! {})
            .await?
            .into_iter()
            .map(from_doc)
            .collect::<Result<Vec<WebhookRecord>>>()?;
        let deliveries = DeliveryRecord::fan_out_everywhere(
            crate::store::events::EventType::ExtractorPublished,
            |ns| Event::extractor_published(ns, version),
            &webhooks,
            hears,
        )?;
        self.insert_deliveries(s, &deliveries).await
    }

    async fn replace_delivery(&self, s: &mut ClientSession, d: &DeliveryRecord) -> Result<()> {
        self.coll("deliveries")
            .replace_one(doc! { "_id": &d.delivery_id }, delivery_doc(d)?)
            .session(&mut *s)
            .await
            .map_err(backend)?;
        Ok(())
    }
}

#[async_trait]
impl Webhooks for MongoStore {
    async fn create_webhook(&self, webhook: &WebhookRecord) -> Result<()> {
        self.coll("webhooks")
            .insert_one(record(&webhook.webhook_id, webhook)?)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn webhook(
        &self,
        namespace_id: &NamespaceId,
        webhook_id: &WebhookId,
    ) -> Result<Option<WebhookRecord>> {
        self.one(
            "webhooks",
            doc! { "_id": webhook_id, "namespace_id": namespace_id },
        )
        .await
    }

    async fn list_webhooks(
        &self,
        namespace_id: &NamespaceId,
        page: &PageRequest,
    ) -> Result<Page<WebhookRecord>> {
        let key = |w: &WebhookRecord| w.webhook_id.to_string();
        let filter = doc! { "namespace_id": namespace_id };
        self.page("webhooks", filter, ("webhook_id", key), page)
            .await
    }

    async fn update_webhook(&self, webhook: &WebhookRecord) -> Result<()> {
        // A whole-record replace: some wire-compatible servers keep a
        // `$set` boolean as 0/1.
        let filter = doc! { "_id": &webhook.webhook_id, "namespace_id": &webhook.namespace_id };
        let mut unchanged = filter.clone();
        unchanged.insert("revision", webhook.revision.saturating_sub(1) as i64);
        let result = self
            .coll("webhooks")
            .replace_one(unchanged, record(&webhook.webhook_id, webhook)?)
            .await
            .map_err(backend)?;
        if result.matched_count == 1 {
            return Ok(());
        }
        match self
            .coll("webhooks")
            .find_one(filter)
            .await
            .map_err(backend)?
        {
            Some(_) => Err(StoreError::Conflict(format!(
                "webhook `{}` changed meanwhile; read it again",
                webhook.webhook_id
            ))),
            None => Err(StoreError::not_found("webhook", &webhook.webhook_id)),
        }
    }

    async fn delete_webhook(
        &self,
        namespace_id: &NamespaceId,
        webhook_id: &WebhookId,
    ) -> Result<()> {
        transaction!(self, s => {
            let deleted = self
                .coll("webhooks")
                .delete_one(doc! { "_id": webhook_id, "namespace_id": namespace_id })
                .session(&mut *s)
                .await
                .map_err(backend)?;
            if deleted.deleted_count == 0 {
                return Err(StoreError::not_found("webhook", webhook_id));
            }
            self.coll("deliveries")
                .delete_many(doc! { "webhook_id": webhook_id })
                .session(&mut *s)
                .await
                .map_err(backend)?;
            Ok(())
        })
    }

    async fn enqueue(&self, webhook: &WebhookRecord, event: &Event) -> Result<DeliveryRecord> {
        let delivery = DeliveryRecord::new(event, webhook)?;
        self.coll("deliveries")
            .insert_one(delivery_doc(&delivery)?)
            .await
            .map_err(backend)?;
        Ok(delivery)
    }

    async fn list_deliveries(
        &self,
        webhook_id: &WebhookId,
        page: &PageRequest,
    ) -> Result<Page<DeliveryRecord>> {
        let key = |d: &DeliveryRecord| d.delivery_id.to_string();
        let filter = doc! { "webhook_id": webhook_id };
        self.page("deliveries", filter, ("delivery_id", key), page)
            .await
    }

    async fn delivery(
        &self,
        webhook_id: &WebhookId,
        delivery_id: &DeliveryId,
    ) -> Result<Option<DeliveryRecord>> {
        self.one(
            "deliveries",
            doc! { "_id": delivery_id, "webhook_id": webhook_id },
        )
        .await
    }

    async fn redeliver(
        &self,
        webhook_id: &WebhookId,
        delivery_id: &DeliveryId,
    ) -> Result<DeliveryRecord> {
        transaction!(self, s => {
            let mut delivery = self
                .one_in::<DeliveryRecord>(s, "deliveries", doc! { "_id": delivery_id, "webhook_id": webhook_id })
                .await?
                .ok_or_else(|| StoreError::not_found("delivery", delivery_id))?;
            if delivery.state == DeliveryState::Pending {
                return Err(StoreError::Conflict(format!(
                    "delivery `{delivery_id}` is still pending; it will be attempted again"
                )));
            }
            delivery.redeliver();
            self.replace_delivery(s, &delivery).await?;
            Ok(delivery)
        })
    }

    async fn claim_delivery(
        &self,
        skip: &[WebhookId],
        lease_ms: i64,
    ) -> Result<Option<DeliveryLease>> {
        let now = now_ms();
        let token = crate::keys::random_token();
        let claimed = self
            .coll("deliveries")
            .find_one_and_update(
                doc! {
                    "state": "pending",
                    "next_attempt_ms": { "$lte": now },
                    "lease_expires_ms": { "$lt": now },
                    "webhook_id": { "$nin": skip },
                },
                doc! { "$set": { "lease_token": &token, "lease_expires_ms": now + lease_ms } },
            )
            .sort(doc! { "next_attempt_ms": 1, "_id": 1 })
            .return_document(ReturnDocument::After)
            .await
            .map_err(backend)?;
        claimed
            .map(|doc| {
                Ok(DeliveryLease {
                    delivery: from_doc(doc)?,
                    token,
                })
            })
            .transpose()
    }

    async fn record_attempt(
        &self,
        lease: &DeliveryLease,
        outcome: &AttemptOutcome,
    ) -> Result<bool> {
        transaction!(self, s => {
            let filter = doc! { "_id": &lease.delivery.delivery_id, "lease_token": &lease.token };
            let Some(mut delivery) = self.one_in::<DeliveryRecord>(s, "deliveries", filter).await? else {
                return Ok(false);
            };
            let disable = delivery.apply(outcome);
            self.replace_delivery(s, &delivery).await?;
            if let Some(reason) = disable {
                let webhook = self
                    .coll("webhooks")
                    .find_one(doc! { "_id": &delivery.webhook_id })
                    .session(&mut *s)
                    .await
                    .map_err(backend)?;
                if let Some(webhook) = webhook {
                    let mut webhook: WebhookRecord = from_doc(webhook)?;
                    webhook.disable(reason.clone());
                    self.coll("webhooks")
                        .replace_one(doc! { "_id": &webhook.webhook_id }, record(&webhook.webhook_id, &webhook)?)
                        .session(&mut *s)
                        .await
                        .map_err(backend)?;
                }
            }
            Ok(true)
        })
    }

    async fn purge_deliveries(&self, before_ms: i64) -> Result<u64> {
        self.coll("deliveries")
            .delete_many(doc! {
                "state": { "$in": ["delivered", "failed"] },
                "next_attempt_ms": { "$lt": before_ms },
            })
            .await
            .map(|r| r.deleted_count)
            .map_err(backend)
    }

    async fn next_due(&self) -> Result<Option<i64>> {
        let next = self
            .coll("deliveries")
            .find_one(doc! { "state": "pending", "lease_expires_ms": { "$lt": now_ms() } })
            .sort(doc! { "next_attempt_ms": 1 })
            .projection(doc! { "next_attempt_ms": 1 })
            .await
            .map_err(backend)?;
        Ok(next.and_then(|d| d.get_i64("next_attempt_ms").ok()))
    }
}
