//! Collections on MongoDB.

use super::*;
use crate::store::{BucketId, CollectionId, NamespaceId};

#[async_trait]
impl CollectionStore for MongoStore {
    async fn create_collection(&self, collection: &CollectionRecord) -> Result<()> {
        self.coll("collections")
            .insert_one(record(&collection.collection_id, collection)?)
            .await
            .map_err(|e| write_error(e, "collection", &collection.collection_name))?;
        Ok(())
    }

    async fn collection(
        &self,
        namespace_id: &NamespaceId,
        id_or_name: &str,
    ) -> Result<Option<CollectionRecord>> {
        match self
            .one(
                "collections",
                doc! { "_id": id_or_name, "namespace_id": namespace_id },
            )
            .await?
        {
            Some(c) => Ok(Some(c)),
            None => {
                self.one(
                    "collections",
                    doc! { "collection_name": id_or_name, "namespace_id": namespace_id },
                )
                .await
            }
        }
    }

    async fn list_collections(
        &self,
        namespace_id: &NamespaceId,
        page: &PageRequest,
    ) -> Result<Page<CollectionRecord>> {
        let key = |c: &CollectionRecord| c.collection_id.to_string();
        let filter = doc! { "namespace_id": namespace_id };
        self.page("collections", filter, ("collection_id", key), page)
            .await
    }

    async fn update_collection(&self, collection: &CollectionRecord) -> Result<()> {
        let updated = self
            .coll("collections")
            .update_one(
                doc! { "_id": &collection.collection_id, "namespace_id": &collection.namespace_id },
                doc! { "$set": {
                    "description": &collection.description,
                    "extractors": bson::to_bson(&collection.extractors).map_err(backend)?,
                    "tiers": bson::to_bson(&collection.tiers).map_err(backend)?,
                    "output_schema": to_doc(&collection.output_schema)?,
                    "index_signature": &collection.index_signature,
                    "updated_at": &collection.updated_at,
                } },
            )
            .await
            .map_err(backend)?;
        if updated.matched_count == 0 {
            return Err(StoreError::not_found(
                "collection",
                collection.collection_id.as_str(),
            ));
        }
        Ok(())
    }

    async fn collections_of_bucket(&self, bucket_id: &BucketId) -> Result<Vec<CollectionRecord>> {
        self.sorted(
            "collections",
            doc! { "source.bucket_id": bucket_id },
            doc! { "_id": 1 },
        )
        .await
    }

    async fn delete_collection(
        &self,
        namespace_id: &NamespaceId,
        collection_id: &CollectionId,
        active: &[BatchStatus],
    ) -> Result<Removal<()>> {
        transaction!(self, s => {
            let found = self
                .coll("collections")
                .find_one(doc! { "_id": collection_id, "namespace_id": namespace_id })
                .session(&mut *s)
                .await
                .map_err(backend)?
                .ok_or_else(|| StoreError::not_found("collection", collection_id))?;
            let collection: CollectionRecord = from_doc(found)?;
            let batches = self.batches_in(s, &collection.source.bucket_id, active).await?;
            if !batches.is_empty() {
                return Ok(Removal::Busy { batches, collections: Vec::new() });
            }
            self.coll("collections")
                .delete_one(doc! { "_id": collection_id })
                .session(&mut *s)
                .await
                .map_err(backend)?;
            Ok(Removal::Removed(()))
        })
    }
}
