//! Namespaces and API keys on MongoDB.

use super::*;
use crate::store::KeyId;

#[async_trait]
impl NamespaceStore for MongoStore {
    async fn create_namespace(&self, ns: &Namespace) -> Result<()> {
        self.coll("namespaces")
            .insert_one(record(&ns.namespace_id, ns)?)
            .await
            .map_err(|e| write_error(e, "namespace", &ns.name))?;
        Ok(())
    }

    async fn namespace(&self, id_or_name: &str) -> Result<Option<Namespace>> {
        match self.one("namespaces", doc! { "_id": id_or_name }).await? {
            Some(ns) => Ok(Some(ns)),
            None => self.one("namespaces", doc! { "name": id_or_name }).await,
        }
    }

    async fn list_namespaces(&self, page: &PageRequest) -> Result<Page<Namespace>> {
        let key = |n: &Namespace| n.namespace_id.to_string();
        self.page("namespaces", doc! {}, ("_id", key), page).await
    }

    async fn create_key(&self, key: &ApiKey, secret_hash: &str) -> Result<()> {
        let mut doc = record(&key.key_id, key)?;
        doc.insert("secret_hash", secret_hash);
        self.coll("api_keys")
            .insert_one(doc)
            .await
            .map_err(|e| write_error(e, "key", "this key"))?;
        Ok(())
    }

    async fn key_by_hash(&self, secret_hash: &str) -> Result<Option<ApiKey>> {
        self.one("api_keys", doc! { "secret_hash": secret_hash })
            .await
    }

    async fn has_admin_key(&self) -> Result<bool> {
        Ok(self.count("api_keys", doc! { "admin": true }).await? > 0)
    }

    async fn list_keys(&self, page: &PageRequest) -> Result<Page<ApiKey>> {
        let key: fn(&ApiKey) -> String = |k| k.key_id.to_string();
        self.page("api_keys", doc! {}, ("_id", key), page).await
    }

    async fn delete_key(&self, key_id: &KeyId) -> Result<()> {
        transaction!(self, s => {
            let key = self
                .one_in::<ApiKey>(s, "api_keys", doc! { "_id": key_id })
                .await?
                .ok_or_else(|| StoreError::not_found("API key", key_id))?;
            let admins = self
                .find_in(s, "api_keys", doc! { "admin": true })
                .await?
                .len() as u64;
            check_revoke(&key, admins)?;
            self.coll("api_keys")
                .delete_one(doc! { "_id": key_id })
                .session(&mut *s)
                .await
                .map_err(backend)?;
            Ok(())
        })
    }

    async fn touch_key(&self, key_id: &KeyId, at: &Timestamp) -> Result<()> {
        self.coll("api_keys")
            .update_one(
                doc! { "_id": key_id },
                doc! { "$set": { "last_used_at": at } },
            )
            .await
            .map_err(backend)?;
        Ok(())
    }
}
