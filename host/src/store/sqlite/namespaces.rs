//! Namespaces and API keys on SQLite.

use super::*;
use crate::store::KeyId;

#[async_trait]
impl NamespaceStore for SqliteStore {
    async fn create_namespace(&self, ns: &Namespace) -> Result<()> {
        let ns = ns.clone();
        self.call(move |c| {
            c.execute(
                "INSERT INTO namespaces (namespace_id, name, created_at) VALUES (?1, ?2, ?3)",
                params![ns.namespace_id, ns.name, ns.created_at],
            )
            .map_err(|e| write_error(e, "namespace", &ns.name))?;
            Ok(())
        })
        .await
    }

    async fn namespace(&self, id_or_name: &str) -> Result<Option<Namespace>> {
        let id = id_or_name.to_owned();
        self.call(move |c| {
            c.query_row(
                "SELECT namespace_id, name, created_at FROM namespaces
                 WHERE namespace_id = ?1 OR name = ?1 ORDER BY namespace_id = ?1 DESC LIMIT 1",
                [id],
                namespace_row,
            )
            .optional()
            .map_err(backend)
        })
        .await
    }

    async fn list_namespaces(&self, page: &PageRequest) -> Result<Page<Namespace>> {
        let page = page.clone();
        self.call(move |c| {
            select_page(
                c,
                "SELECT namespace_id, name, created_at FROM namespaces
                 WHERE ?1 IS NULL OR namespace_id > ?1 ORDER BY namespace_id LIMIT ?2",
                &[],
                &page,
                namespace_row,
                |n| n.namespace_id.to_string(),
            )
        })
        .await
    }

    async fn create_key(&self, key: &ApiKey, secret_hash: &str) -> Result<()> {
        let (key, hash) = (key.clone(), secret_hash.to_owned());
        self.call(move |c| {
            c.execute(
                "INSERT INTO api_keys (key_id, secret_hash, name, admin, namespace_id, created_at, publish, from_env)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    key.key_id,
                    hash,
                    key.name,
                    key.admin,
                    key.namespace_id,
                    key.created_at,
                    key.publish,
                    key.from_env
                ],
            )
            .map_err(|e| write_error(e, "key", "this key"))?;
            Ok(())
        })
        .await
    }

    async fn key_by_hash(&self, secret_hash: &str) -> Result<Option<ApiKey>> {
        let hash = secret_hash.to_owned();
        self.call(move |c| {
            c.query_row(
                &format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE secret_hash = ?1"),
                [hash],
                key_row,
            )
            .optional()
            .map_err(backend)
        })
        .await
    }

    async fn has_admin_key(&self) -> Result<bool> {
        self.call(|c| {
            c.query_row(
                "SELECT EXISTS (SELECT 1 FROM api_keys WHERE admin)",
                [],
                |r| r.get(0),
            )
            .map_err(backend)
        })
        .await
    }

    async fn list_keys(&self, page: &PageRequest) -> Result<Page<ApiKey>> {
        let (limit, after) = (page.limit, page.after.clone().unwrap_or_default());
        let keys = self
            .call(move |c| {
                c.prepare_cached(&format!(
                    "SELECT {KEY_COLUMNS} FROM api_keys WHERE key_id > ?1 ORDER BY key_id LIMIT ?2"
                ))
                .and_then(|mut s| {
                    s.query_map(params![after, limit as i64 + 1], key_row)?
                        .collect()
                })
                .map_err(backend)
            })
            .await?;
        Ok(Page::from_overfetch(keys, limit, |k| k.key_id.to_string()))
    }

    async fn delete_key(&self, key_id: &KeyId) -> Result<()> {
        let key_id = key_id.to_owned();
        self.call(move |c| {
            let tx = immediate(c)?;
            let key = tx
                .query_row(
                    &format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE key_id = ?1"),
                    [&key_id],
                    key_row,
                )
                .optional()
                .map_err(backend)?
                .ok_or_else(|| StoreError::not_found("API key", &key_id))?;
            let admins: u64 = tx
                .query_row("SELECT count(*) FROM api_keys WHERE admin", [], |r| {
                    r.get(0)
                })
                .map_err(backend)?;
            check_revoke(&key, admins)?;
            tx.execute("DELETE FROM api_keys WHERE key_id = ?1", [&key_id])
                .map_err(backend)?;
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn touch_key(&self, key_id: &KeyId, at: &Timestamp) -> Result<()> {
        let (key_id, at) = (key_id.to_owned(), *at);
        self.call(move |c| {
            c.execute(
                "UPDATE api_keys SET last_used_at = ?2 WHERE key_id = ?1",
                params![key_id, at],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }
}
