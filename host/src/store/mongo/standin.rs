//! What the store does differently on a server that says it is neither a
//! replica set nor a sharded cluster yet takes transactions: the loopback
//! MongoDB-protocol server the tests run (see `tests/support/servers.rs`).
//! A real MongoDB deployment never pays for any of this.
//!
//! That server keeps one SQLite connection per database, so transactions
//! nest and break each other; transactions run one at a time, then: in
//! this process (a mutex), and across the processes of this machine that
//! use the same server (an exclusive `flock` on a file named after it), as
//! an API process and `strata worker` processes do. It keeps a boolean
//! given to `$set` as 0 or 1, so the one such write, a batch's
//! `include_processing_history` at submit, replaces the document instead.

use std::path::PathBuf;
use std::sync::Arc;

use super::*;

/// Runs this machine's transactions on one stand-in server one at a time.
#[derive(Debug)]
pub struct OneAtATime {
    local: Arc<tokio::sync::Mutex<()>>,
    file: PathBuf,
}

/// Held for the length of one transaction.
pub struct Turn {
    _local: tokio::sync::OwnedMutexGuard<()>,
    _file: std::fs::File,
}

impl OneAtATime {
    /// Turns on the server at `hosts` (e.g. `127.0.0.1:27017`).
    pub fn new(hosts: &str) -> OneAtATime {
        static LOCAL: std::sync::OnceLock<Arc<tokio::sync::Mutex<()>>> = std::sync::OnceLock::new();
        let name: String = hosts
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        OneAtATime {
            local: LOCAL.get_or_init(Default::default).clone(),
            file: std::env::temp_dir().join(format!("strata-mongodb-{name}.lock")),
        }
    }

    /// Waits for this process's turn, then for this machine's.
    pub async fn turn(&self) -> Result<Turn> {
        let local = self.local.clone().lock_owned().await;
        let path = self.file.clone();
        let file = tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)?;
            use std::os::fd::AsRawFd as _;
            // SAFETY: `flock` on a descriptor this function owns; the lock
            // goes with the descriptor when the file is dropped.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(file)
        })
        .await
        .map_err(StoreError::backend)?
        .map_err(StoreError::backend)?;
        Ok(Turn {
            _local: local,
            _file: file,
        })
    }
}

impl OneAtATime {
    /// Sets the top-level boolean `field` of the batch `filter` matches, in
    /// the transaction of `s`, by replacing the document: the stand-in
    /// keeps a boolean given to `$set` as the integer 0 or 1 (and one
    /// inside a document or list as a boolean), so a `$set` would read
    /// back as a number. MongoDB takes the plain `$set`.
    pub(super) async fn set_boolean(
        &self,
        store: &MongoStore,
        s: &mut ClientSession,
        filter: Document,
        field: &str,
        value: bool,
    ) -> Result<()> {
        let batches = store.coll("batches");
        let found = batches
            .find_one(filter.clone())
            .session(&mut *s)
            .await
            .map_err(backend)?;
        if let Some(mut batch) = found {
            batch.insert(field, value);
            batches
                .replace_one(filter, batch)
                .session(&mut *s)
                .await
                .map_err(backend)?;
        }
        Ok(())
    }
}

impl MongoStore {
    /// Turns the `include_processing_history` that earlier versions wrote
    /// with `$set` on the stand-in, kept there as 0 or 1, back into the
    /// boolean it was. Only on the stand-in; each batch by a replace that
    /// matches the integer it read, so a concurrent write wins. Once done
    /// the pass is recorded in `migrations` (no write makes such values
    /// any more) and never runs again.
    pub(super) async fn flags_as_booleans(&self) -> Result<()> {
        const FIELD: &str = "include_processing_history";
        const DONE: &str = "flags-are-booleans";
        if self.migrated(DONE).await? {
            return Ok(());
        }
        let batches: Vec<Document> = self
            .coll("batches")
            .find(doc! {})
            .await
            .map_err(backend)?
            .try_collect()
            .await
            .map_err(backend)?;
        for mut batch in batches {
            let flag = match batch.get(FIELD) {
                Some(Bson::Int32(n)) => *n != 0,
                Some(Bson::Int64(n)) => *n != 0,
                _ => continue,
            };
            let Some(id) = batch.get("_id").cloned() else {
                continue;
            };
            let read = batch.get(FIELD).cloned().unwrap_or(Bson::Null);
            batch.insert(FIELD, flag);
            self.coll("batches")
                .replace_one(doc! { "_id": id, FIELD: read }, batch)
                .await
                .map_err(backend)?;
        }
        self.mark_migrated(DONE).await?;
        Ok(())
    }

    /// Recounts a retaken shard's counters, and the document counts of its
    /// batch's collections, from the records they count: only on a server
    /// that keeps the writes of a transaction whose client died (the
    /// loopback stand-in; see `tests/support/servers.rs`), where they would
    /// otherwise be off by one chunk. MongoDB aborts such a transaction.
    /// The new lease holder is the shard's only writer; a collection's
    /// count is set only if no other shard moved it meanwhile.
    pub(super) async fn recount(&self, shard: &mut ShardRecord) -> Result<()> {
        let range = doc! { "$gte": &shard.first_object_id, "$lte": &shard.last_object_id };
        let id = &shard.batch_id;
        let processed = self
            .count(
                "batch_objects",
                doc! { "batch_id": id, "status": { "$ne": "pending" }, "object_id": range.clone() },
            )
            .await?;
        let failed = self
            .count(
                "batch_objects",
                doc! { "batch_id": id, "status": "failed", "object_id": range },
            )
            .await?;
        self.coll("shards")
            .update_one(
                doc! { "_id": shard_key(id, shard.shard_index) },
                doc! { "$set": { "processed": processed as i64, "failed": failed as i64 } },
            )
            .await
            .map_err(backend)?;
        shard.processed = processed;
        shard.failed = failed;
        let Some(batch) = self
            .one::<BatchRecord>("batches", doc! { "_id": id })
            .await?
        else {
            return Ok(());
        };
        for pinned in &batch.collections {
            let collection = doc! { "_id": &pinned.collection_id };
            for _ in 0..10 {
                let Some(current) = self
                    .coll("collections")
                    .find_one(collection.clone())
                    .await
                    .map_err(backend)?
                else {
                    break;
                };
                let before = current.get("document_count").cloned().unwrap_or(Bson::Null);
                let documents = self
                    .count("documents", doc! { "collection_id": &pinned.collection_id })
                    .await?;
                let mut unchanged = collection.clone();
                unchanged.insert("document_count", before);
                let set = doc! { "$set": { "document_count": documents as i64 } };
                let result = self
                    .coll("collections")
                    .update_one(unchanged, set)
                    .await
                    .map_err(backend)?;
                if result.matched_count == 1 {
                    break;
                }
            }
        }
        Ok(())
    }
}
