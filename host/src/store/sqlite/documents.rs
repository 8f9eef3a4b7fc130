//! Documents on SQLite.

use super::*;
use crate::store::{CollectionId, DocumentId, NamespaceId};

#[async_trait]
impl DocumentSink for SqliteStore {
    async fn upsert_documents(
        &self,
        namespace_id: &NamespaceId,
        collection_id: &CollectionId,
        documents: &[DocumentRecord],
        lease: Option<&Lease>,
    ) -> Result<u64> {
        of_one_collection(collection_id, documents)?;
        let (namespace, collection) = (namespace_id.to_owned(), collection_id.to_owned());
        let lease = lease.cloned();
        // What the statements take: ids and the body as text (never the
        // documents themselves, whose features may be large).
        let rows = documents
            .iter()
            .map(|d| {
                let ids = (
                    d.document_id.clone(),
                    d.object_id.clone(),
                    d.batch_id.clone(),
                );
                Ok((ids, body_text(d)?))
            })
            .collect::<Result<Vec<_>>>()?;
        let event = Event::documents_written(namespace_id, collection_id, documents);
        self.call(move |c| {
            let tx = immediate(c)?;
            if let Some(lease) = &lease {
                fence(&tx, lease)?;
            }
            let mut new_documents = 0u64;
            {
                let mut exists = tx
                    .prepare_cached("SELECT EXISTS (SELECT 1 FROM documents WHERE document_id = ?1)")
                    .map_err(backend)?;
                let mut upsert = tx
                    .prepare_cached(
                        "INSERT INTO documents (document_id, collection_id, namespace_id, object_id, batch_id, body)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                         ON CONFLICT (document_id) DO UPDATE SET batch_id = excluded.batch_id,
                         body = json_set(excluded.body, '$.created_at', json_extract(documents.body, '$.created_at'))",
                    )
                    .map_err(backend)?;
                for ((document_id, object_id, batch_id), body) in &rows {
                    let existed: bool = exists
                        .query_row([document_id], |r| r.get(0))
                        .map_err(backend)?;
                    new_documents += u64::from(!existed);
                    upsert
                        .execute(params![
                            document_id,
                            collection,
                            namespace,
                            object_id,
                            batch_id,
                            body
                        ])
                        .map_err(backend)?;
                }
            }
            // The count moves with the documents, in the same transaction.
            let counted = tx
                .execute(
                    "UPDATE collections SET body = json_set(body, '$.document_count',
                     json_extract(body, '$.document_count') + ?2) WHERE collection_id = ?1",
                    params![collection, new_documents],
                )
                .map_err(backend)?;
            if counted == 0 {
                return Err(StoreError::not_found("collection", collection));
            }
            webhooks::emit(&tx, event)?;
            tx.commit().map_err(backend)?;
            Ok(new_documents)
        })
        .await
    }

    async fn list_documents(
        &self,
        collection_id: &CollectionId,
        filter: &DocumentFilter,
        page: &PageRequest,
    ) -> Result<Page<DocumentRecord>> {
        let (id, filter, page) = (collection_id.to_owned(), filter.clone(), page.clone());
        self.call(move |c| {
            select_page(
                c,
                "SELECT body FROM documents WHERE collection_id = ?1
                 AND (?2 IS NULL OR batch_id = ?2) AND (?3 IS NULL OR object_id = ?3)
                 AND (?4 IS NULL OR document_id > ?4) ORDER BY document_id LIMIT ?5",
                &[&id, &filter.batch_id, &filter.object_id],
                &page,
                document_row,
                |d| d.document_id.to_string(),
            )
        })
        .await
    }

    async fn document(
        &self,
        collection_id: &CollectionId,
        document_id: &DocumentId,
    ) -> Result<Option<DocumentRecord>> {
        self.optional(
            "SELECT body FROM documents WHERE collection_id = ?1 AND document_id = ?2".to_owned(),
            vec![collection_id.to_string(), document_id.to_string()],
            document_row,
        )
        .await
    }

    async fn delete_documents(&self, collection_id: &CollectionId) -> Result<()> {
        let id = collection_id.to_owned();
        self.call(move |c| {
            c.execute("DELETE FROM documents WHERE collection_id = ?1", [id])
                .map_err(backend)?;
            Ok(())
        })
        .await
    }
}
