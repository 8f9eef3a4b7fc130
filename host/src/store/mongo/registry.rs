//! The extractor registry on MongoDB.

use async_trait::async_trait;
use mongodb::ClientSession;
use mongodb::bson::{Bson, doc};
use mongodb::options::ReturnDocument;

use super::{MongoStore, backend, from_doc, record};
use crate::store::registry::{
    ExtractorNameRecord, ExtractorVersionRecord, Published, Publisher, Registry, check_existing,
    claim, in_use, live, may_use, pinned_by,
};
use crate::store::{BatchRecord, CollectionRecord, Result, StoreError, now};

fn version_id(name: &str, version: &str) -> String {
    format!("{name}@{version}")
}

impl MongoStore {
    /// The next registry sequence number, in the transaction of `s`.
    async fn next_seq(&self, s: &mut ClientSession) -> Result<u64> {
        let counter = self
            .coll("counters")
            .find_one_and_update(
                doc! { "_id": "registry" },
                doc! { "$inc": { "seq": 1_i64 } },
            )
            .upsert(true)
            .return_document(ReturnDocument::After)
            .session(&mut *s)
            .await
            .map_err(backend)?
            .ok_or_else(|| StoreError::backend(std::io::Error::other("no registry counter")))?;
        // Servers keep a counter `$inc`ed from nothing as a 32- or 64-bit
        // integer (or a double, for some stand-ins).
        match counter.get("seq") {
            Some(Bson::Int64(n)) => Ok(*n as u64),
            Some(Bson::Int32(n)) => Ok(*n as u64),
            Some(Bson::Double(n)) if n.fract() == 0.0 && *n >= 0.0 => Ok(*n as u64),
            other => Err(StoreError::backend(std::io::Error::other(format!(
                "the registry counter holds {other:?}"
            )))),
        }
    }
}

impl MongoStore {
    /// Stores a changed `version` under the next sequence number, so hosts
    /// that follow the registry see the change.
    async fn rewrite(
        &self,
        s: &mut ClientSession,
        version: &mut ExtractorVersionRecord,
    ) -> Result<()> {
        version.seq = self.next_seq(s).await?;
        let id = version_id(&version.name, &version.version);
        self.coll("extractor_versions")
            .replace_one(doc! { "_id": &id }, record(&id, &*version)?)
            .session(&mut *s)
            .await
            .map_err(backend)?;
        Ok(())
    }
}

#[async_trait]
impl Registry for MongoStore {
    async fn publish(
        &self,
        version: &ExtractorVersionRecord,
        publisher: &Publisher,
    ) -> Result<Published> {
        transaction!(self, s => {
            let name = self
                .one_in::<ExtractorNameRecord>(s, "extractor_names", doc! { "_id": &version.name })
                .await?;
            let legacy = name.is_none()
                && !self
                    .find_in(s, "extractor_versions", doc! { "name": &version.name })
                    .await?
                    .is_empty();
            let claimed = claim(&version.name, name.as_ref(), legacy, publisher)?;
            if let Some(existing) = self.one_in::<ExtractorVersionRecord>(s, "extractor_versions", doc! { "_id": version_id(&version.name, &version.version) }).await? {
                return check_existing(existing, version);
            }
            if let Some(claimed) = &claimed {
                self.coll("extractor_names")
                    .insert_one(record(&claimed.name, claimed)?)
                    .session(&mut *s)
                    .await
                    .map_err(backend)?;
            }
            let name = claimed.or(name);
            let mut published = version.clone();
            published.seq = self.next_seq(s).await?;
            let id = version_id(&published.name, &published.version);
            self.coll("extractor_versions")
                .insert_one(record(&id, &published)?)
                .session(&mut *s)
                .await
                .map_err(backend)?;
            self.emit_published(s, &published, |ns| may_use(name.as_ref(), ns)).await?;
            Ok(Published::New(published))
        })
    }

    async fn extractor_version(
        &self,
        name: &str,
        version: &str,
    ) -> Result<Option<ExtractorVersionRecord>> {
        self.one(
            "extractor_versions",
            doc! { "_id": version_id(name, version) },
        )
        .await
    }

    async fn extractor_name(&self, name: &str) -> Result<Option<ExtractorNameRecord>> {
        self.one("extractor_names", doc! { "_id": name }).await
    }

    async fn extractor_names(&self) -> Result<Vec<ExtractorNameRecord>> {
        self.sorted("extractor_names", doc! {}, doc! { "_id": 1 })
            .await
    }

    async fn reserve_name(&self, name: &ExtractorNameRecord) -> Result<ExtractorNameRecord> {
        transaction!(self, s => {
            if let Some(existing) = self
                .one_in::<ExtractorNameRecord>(s, "extractor_names", doc! { "_id": &name.name })
                .await?
            {
                return Ok(existing);
            }
            self.coll("extractor_names")
                .insert_one(record(&name.name, name)?)
                .session(&mut *s)
                .await
                .map_err(backend)?;
            Ok(name.clone())
        })
    }

    async fn set_extractor_name(&self, name: &ExtractorNameRecord) -> Result<()> {
        self.coll("extractor_names")
            .replace_one(doc! { "_id": &name.name }, record(&name.name, name)?)
            .upsert(true)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn extractor_versions(&self, name: &str) -> Result<Vec<ExtractorVersionRecord>> {
        let mut versions: Vec<ExtractorVersionRecord> = self
            .sorted(
                "extractor_versions",
                doc! { "name": name },
                doc! { "seq": 1 },
            )
            .await?;
        versions.retain(|v| v.deleted_at.is_none());
        Ok(versions)
    }

    async fn changes(&self, seq: u64) -> Result<Vec<ExtractorVersionRecord>> {
        let filter = doc! { "seq": { "$gt": seq as i64 } };
        self.sorted("extractor_versions", filter, doc! { "seq": 1 })
            .await
    }

    async fn deprecate(&self, name: &str, version: &str) -> Result<ExtractorVersionRecord> {
        transaction!(self, s => {
            let found = self
                .one_in::<ExtractorVersionRecord>(s, "extractor_versions", doc! { "_id": version_id(name, version) })
                .await?;
            let mut found = live(found, name, version)?;
            if found.deprecated_at.is_some() {
                return Ok(found);
            }
            found.deprecated_at = Some(now());
            self.rewrite(s, &mut found).await?;
            Ok(found)
        })
    }

    async fn delete_version(&self, name: &str, version: &str) -> Result<ExtractorVersionRecord> {
        transaction!(self, s => {
            let found = self
                .one_in::<ExtractorVersionRecord>(s, "extractor_versions", doc! { "_id": version_id(name, version) })
                .await?;
            let mut found = live(found, name, version)?;
            let collections = self
                .find_in(s, "collections", doc! {})
                .await?
                .into_iter()
                .map(from_doc)
                .collect::<Result<Vec<CollectionRecord>>>()?;
            let batches = self
                .find_in(s, "batches", doc! { "status": { "$in": ["QUEUED", "PROCESSING"] } })
                .await?
                .into_iter()
                .map(from_doc)
                .collect::<Result<Vec<BatchRecord>>>()?;
            let pins = pinned_by(name, version, &collections, &batches);
            if !pins.is_empty() {
                return Err(in_use(name, version, &pins));
            }
            found.deleted_at = Some(now());
            self.rewrite(s, &mut found).await?;
            Ok(found)
        })
    }
}
