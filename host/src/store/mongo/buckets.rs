//! Buckets and object records on MongoDB.

use super::*;
use crate::store::{BucketId, NamespaceId, ObjectId};

#[async_trait]
impl BucketStore for MongoStore {
    async fn create_bucket(&self, bucket: &Bucket) -> Result<()> {
        self.coll("buckets")
            .insert_one(record(&bucket.bucket_id, bucket)?)
            .await
            .map_err(|e| write_error(e, "bucket", &bucket.bucket_name))?;
        Ok(())
    }

    async fn bucket(&self, namespace_id: &NamespaceId, id_or_name: &str) -> Result<Option<Bucket>> {
        match self
            .one(
                "buckets",
                doc! { "_id": id_or_name, "namespace_id": namespace_id },
            )
            .await?
        {
            Some(b) => Ok(Some(b)),
            None => {
                self.one(
                    "buckets",
                    doc! { "bucket_name": id_or_name, "namespace_id": namespace_id },
                )
                .await
            }
        }
    }

    async fn list_buckets(
        &self,
        namespace_id: &NamespaceId,
        page: &PageRequest,
    ) -> Result<Page<Bucket>> {
        let key = |b: &Bucket| b.bucket_id.to_string();
        let filter = doc! { "namespace_id": namespace_id };
        self.page("buckets", filter, ("bucket_id", key), page).await
    }

    async fn delete_bucket(
        &self,
        namespace_id: &NamespaceId,
        bucket_id: &BucketId,
        active: &[BatchStatus],
    ) -> Result<Removal<Vec<String>>> {
        transaction!(self, s => {
            let exists = self
                .coll("buckets")
                .find_one(doc! { "_id": bucket_id, "namespace_id": namespace_id })
                .session(&mut *s)
                .await
                .map_err(backend)?;
            if exists.is_none() {
                return Err(StoreError::not_found("bucket", bucket_id));
            }
            let batches = self.batches_in(s, bucket_id, active).await?;
            let collections: Vec<Document> = self.find_in(s, "collections", doc! { "source.bucket_id": bucket_id }).await?;
            let mut collections: Vec<String> = collections
                .iter()
                .filter_map(|d| d.get_str("collection_name").ok().map(str::to_owned))
                .collect();
            collections.sort_unstable();
            if !(batches.is_empty() && collections.is_empty()) {
                return Ok(Removal::Busy { batches, collections });
            }
            let objects: Vec<Document> = self.find_in(s, "objects", doc! { "bucket_id": bucket_id }).await?;
            let mut keys: Vec<String> = objects
                .iter()
                .filter_map(|d| d.get_str("blob_key").ok().map(str::to_owned))
                .collect();
            let batches: Vec<Document> = self.find_in(s, "batches", doc! { "bucket_id": bucket_id }).await?;
            let mut batch_ids = Vec::new();
            for doc in batches {
                let batch: BatchRecord = from_doc(doc)?;
                keys.extend(batch.collections.into_iter().flat_map(|c| c.manifests.into_values()));
                batch_ids.push(batch.batch_id);
            }
            for (coll, filter) in [
                ("batch_objects", doc! { "batch_id": { "$in": &batch_ids } }),
                ("shards", doc! { "batch_id": { "$in": &batch_ids } }),
                ("batches", doc! { "bucket_id": bucket_id }),
                ("objects", doc! { "bucket_id": bucket_id }),
                ("buckets", doc! { "_id": bucket_id }),
            ] {
                self.coll(coll)
                    .delete_many(filter)
                    .session(&mut *s)
                    .await
                    .map_err(backend)?;
            }
            Ok(Removal::Removed(keys))
        })
    }

    async fn create_object(&self, object: &ObjectRecord) -> Result<()> {
        let doc = record(
            &format!("{}/{}", object.bucket_id, object.object_id),
            object,
        )?;
        self.coll("objects")
            .insert_one(doc)
            .await
            .map_err(|e| write_error(e, "object", &object.object_id))?;
        Ok(())
    }

    async fn object(
        &self,
        bucket_id: &BucketId,
        object_id: &ObjectId,
    ) -> Result<Option<ObjectRecord>> {
        self.one(
            "objects",
            doc! { "_id": format!("{bucket_id}/{object_id}") },
        )
        .await
    }

    async fn list_objects(
        &self,
        bucket_id: &BucketId,
        page: &PageRequest,
    ) -> Result<Page<ObjectRecord>> {
        let key = |o: &ObjectRecord| o.object_id.to_string();
        let filter = doc! { "bucket_id": bucket_id };
        self.page("objects", filter, ("object_id", key), page).await
    }

    async fn delete_object(&self, bucket_id: &BucketId, object_id: &ObjectId) -> Result<String> {
        let deleted = self
            .coll("objects")
            .find_one_and_delete(doc! { "_id": format!("{bucket_id}/{object_id}") })
            .await
            .map_err(backend)?
            .ok_or_else(|| StoreError::not_found("object", object_id))?;
        deleted
            .get_str("blob_key")
            .map(str::to_owned)
            .map_err(backend)
    }

    async fn missing_objects(
        &self,
        bucket_id: &BucketId,
        object_ids: &[ObjectId],
    ) -> Result<Vec<ObjectId>> {
        let keys: Vec<String> = object_ids
            .iter()
            .map(|id| format!("{bucket_id}/{id}"))
            .collect();
        let mut found = std::collections::HashSet::new();
        for part in keys.chunks(10_000) {
            let ids: Vec<ObjectId> = self
                .ids("objects", doc! { "_id": { "$in": part } }, "object_id")
                .await?;
            found.extend(ids);
        }
        let mut missing = Vec::new();
        for id in object_ids {
            if !found.contains(id) && !missing.contains(id) {
                missing.push(id.clone());
            }
        }
        Ok(missing)
    }
}
