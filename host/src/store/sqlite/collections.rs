//! Collections on SQLite.

use super::*;
use crate::store::{BucketId, CollectionId, NamespaceId};

#[async_trait]
impl CollectionStore for SqliteStore {
    async fn create_collection(&self, collection: &CollectionRecord) -> Result<()> {
        let body = body_text(collection)?;
        let col = collection.clone();
        self.call(move |c| {
            c.execute(
                "INSERT INTO collections (collection_id, namespace_id, collection_name, bucket_id, body, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![col.collection_id, col.namespace_id, col.collection_name, col.source.bucket_id, body, col.created_at],
            )
            .map_err(|e| write_error(e, "collection", &col.collection_name))?;
            Ok(())
        })
        .await
    }

    async fn collection(
        &self,
        namespace_id: &NamespaceId,
        id_or_name: &str,
    ) -> Result<Option<CollectionRecord>> {
        self.optional(
            "SELECT body FROM collections WHERE namespace_id = ?1
                 AND (collection_id = ?2 OR collection_name = ?2)
                 ORDER BY collection_id = ?2 DESC LIMIT 1"
                .to_owned(),
            vec![namespace_id.to_string(), id_or_name.to_owned()],
            collection_row,
        )
        .await
    }

    async fn list_collections(
        &self,
        namespace_id: &NamespaceId,
        page: &PageRequest,
    ) -> Result<Page<CollectionRecord>> {
        let (ns, page) = (namespace_id.to_owned(), page.clone());
        self.call(move |c| {
            select_page(
                c,
                "SELECT body FROM collections WHERE namespace_id = ?1
                 AND (?2 IS NULL OR collection_id > ?2) ORDER BY collection_id LIMIT ?3",
                &[&ns],
                &page,
                collection_row,
                |c| c.collection_id.to_string(),
            )
        })
        .await
    }

    async fn update_collection(&self, collection: &CollectionRecord) -> Result<()> {
        let col = collection.clone();
        let (extractors, tiers, schema) = (
            body_text(&col.extractors)?,
            body_text(&col.tiers)?,
            body_text(&col.output_schema)?,
        );
        self.call(move |c| {
            let changed = c
                .execute(
                    "UPDATE collections SET body = json_set(body, '$.description', ?3,
                       '$.extractors', json(?4), '$.tiers', json(?5), '$.output_schema', json(?6),
                       '$.index_signature', ?7, '$.updated_at', ?8)
                     WHERE collection_id = ?1 AND namespace_id = ?2",
                    params![
                        col.collection_id,
                        col.namespace_id,
                        col.description,
                        extractors,
                        tiers,
                        schema,
                        col.index_signature,
                        col.updated_at
                    ],
                )
                .map_err(backend)?;
            if changed == 0 {
                return Err(StoreError::not_found("collection", col.collection_id));
            }
            Ok(())
        })
        .await
    }

    async fn collections_of_bucket(&self, bucket_id: &BucketId) -> Result<Vec<CollectionRecord>> {
        let bucket = bucket_id.to_owned();
        self.call(move |c| {
            c.prepare_cached(
                "SELECT body FROM collections WHERE bucket_id = ?1 ORDER BY collection_id",
            )
            .and_then(|mut s| s.query_map([bucket], collection_row)?.collect())
            .map_err(backend)
        })
        .await
    }

    async fn delete_collection(
        &self,
        namespace_id: &NamespaceId,
        collection_id: &CollectionId,
        active: &[BatchStatus],
    ) -> Result<Removal<()>> {
        let (ns, id, active) = (
            namespace_id.to_owned(),
            collection_id.to_owned(),
            active.to_vec(),
        );
        self.call(move |c| {
            let tx = c
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(backend)?;
            let bucket: BucketId = tx
                .query_row(
                    "SELECT bucket_id FROM collections WHERE collection_id = ?1 AND namespace_id = ?2",
                    params![id, ns],
                    |r| r.get(0),
                )
                .optional()
                .map_err(backend)?
                .ok_or_else(|| StoreError::not_found("collection", id.clone()))?;
            let batches = batches_in(&tx, &bucket, &active)?;
            if !batches.is_empty() {
                return Ok(Removal::Busy { batches, collections: Vec::new() });
            }
            tx.execute("DELETE FROM collections WHERE collection_id = ?1", [&id])
                .map_err(backend)?;
            tx.commit().map_err(backend)?;
            Ok(Removal::Removed(()))
        })
        .await
    }
}
