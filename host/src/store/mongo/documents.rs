//! Documents on MongoDB.

use super::*;
use crate::store::{CollectionId, DocumentId, NamespaceId};

#[async_trait]
impl DocumentSink for MongoStore {
    async fn upsert_documents(
        &self,
        namespace_id: &NamespaceId,
        collection_id: &CollectionId,
        documents: &[DocumentRecord],
        lease: Option<&Lease>,
    ) -> Result<u64> {
        of_one_collection(collection_id, documents)?;
        let mut updates = Vec::with_capacity(documents.len());
        for d in documents {
            let mut set = record(&d.document_id, d)?;
            set.remove("_id");
            let created_at = set.remove("created_at").unwrap_or(Bson::Null);
            set.insert("namespace_id", namespace_id);
            updates.push(doc! {
                "q": { "_id": &d.document_id },
                "u": { "$set": set, "$setOnInsert": { "created_at": created_at } },
                "upsert": true,
            });
        }
        let event =
            crate::store::events::Event::documents_written(namespace_id, collection_id, documents);
        transaction!(self, s => {
            if let Some(lease) = lease {
                self.fence(s, lease).await?;
            }
            // One bulk upsert for the chunk.
            let answer = self.bulk_update(s, "documents", updates.clone()).await?;
            let new = answer.get_array("upserted").map_or(0, |u| u.len()) as i64;
            let counted = self
                .coll("collections")
                .update_one(doc! { "_id": collection_id }, doc! { "$inc": { "document_count": new } })
                .session(&mut *s)
                .await
                .map_err(backend)?;
            if counted.matched_count == 0 {
                return Err(StoreError::not_found("collection", collection_id));
            }
            self.emit(s, event.clone()).await?;
            Ok(new as u64)
        })
    }

    async fn list_documents(
        &self,
        collection_id: &CollectionId,
        filter: &DocumentFilter,
        page: &PageRequest,
    ) -> Result<Page<DocumentRecord>> {
        let mut query = doc! { "collection_id": collection_id };
        if let Some(batch) = &filter.batch_id {
            query.insert("batch_id", batch);
        }
        if let Some(object) = &filter.object_id {
            query.insert("object_id", object);
        }
        let key = |d: &DocumentRecord| d.document_id.to_string();
        self.page("documents", query, ("document_id", key), page)
            .await
    }

    async fn document(
        &self,
        collection_id: &CollectionId,
        document_id: &DocumentId,
    ) -> Result<Option<DocumentRecord>> {
        self.one(
            "documents",
            doc! { "_id": document_id, "collection_id": collection_id },
        )
        .await
    }

    async fn delete_documents(&self, collection_id: &CollectionId) -> Result<()> {
        self.coll("documents")
            .delete_many(doc! { "collection_id": collection_id })
            .await
            .map_err(backend)?;
        Ok(())
    }
}
