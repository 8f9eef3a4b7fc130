//! The extractor registry on SQLite.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::{
    BATCH_COLUMNS, SqliteStore, backend, batch_row, body_column, body_text, collection_row,
    immediate,
};
use crate::store::registry::{
    ExtractorNameRecord, ExtractorVersionRecord, Published, Publisher, Registry, check_existing,
    claim, in_use, live, may_use, pinned_by,
};
use crate::store::{Result, now};

fn read_version(
    c: &Connection,
    name: &str,
    version: &str,
) -> Result<Option<ExtractorVersionRecord>> {
    c.query_row(
        "SELECT body, seq FROM extractor_versions WHERE name = ?1 AND version = ?2",
        [name, version],
        version_row,
    )
    .optional()
    .map_err(backend)
}

fn read_name(c: &Connection, name: &str) -> Result<Option<ExtractorNameRecord>> {
    c.query_row(
        "SELECT body FROM extractor_names WHERE name = ?1",
        [name],
        |r| body_column(r.get(0)?),
    )
    .optional()
    .map_err(backend)
}

fn write_name(c: &Connection, record: &ExtractorNameRecord) -> Result<()> {
    c.execute(
        "INSERT INTO extractor_names (name, body) VALUES (?1, ?2)
         ON CONFLICT (name) DO UPDATE SET body = excluded.body",
        params![record.name, body_text(record)?],
    )
    .map_err(backend)?;
    Ok(())
}

fn version_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ExtractorVersionRecord> {
    let mut record: ExtractorVersionRecord = body_column(r.get(0)?)?;
    record.seq = r.get(1)?;
    Ok(record)
}

/// The next registry sequence number: never one given before, even when
/// the version that had the highest was deleted.
fn next_seq(c: &Connection) -> Result<u64> {
    c.query_row(
        "INSERT INTO counters (name, value)
         VALUES ('registry', (SELECT coalesce(max(seq), 0) + 1 FROM extractor_versions))
         ON CONFLICT (name) DO UPDATE SET value = max(value + 1, excluded.value)
         RETURNING value",
        [],
        |r| r.get(0),
    )
    .map_err(backend)
}

/// Stores a changed `record` under the next sequence number, so hosts
/// that follow the registry see the change.
fn rewrite(c: &Connection, record: &mut ExtractorVersionRecord) -> Result<()> {
    record.seq = next_seq(c)?;
    c.execute(
        "UPDATE extractor_versions SET seq = ?3, body = ?4 WHERE name = ?1 AND version = ?2",
        params![
            record.name,
            record.version,
            record.seq,
            body_text(&*record)?
        ],
    )
    .map_err(backend)?;
    Ok(())
}

fn versions_where(
    c: &Connection,
    sql: &str,
    param: &dyn rusqlite::ToSql,
) -> Result<Vec<ExtractorVersionRecord>> {
    c.prepare_cached(sql)
        .and_then(|mut s| s.query_map([param], version_row)?.collect())
        .map_err(backend)
}

#[async_trait]
impl Registry for SqliteStore {
    async fn publish(
        &self,
        record: &ExtractorVersionRecord,
        publisher: &Publisher,
    ) -> Result<Published> {
        let (mut record, publisher) = (record.clone(), publisher.clone());
        self.call(move |c| {
            let tx = immediate(c)?;
            let name = read_name(&tx, &record.name)?;
            let legacy = name.is_none()
                && tx
                    .query_row(
                        "SELECT 1 FROM extractor_versions WHERE name = ?1 LIMIT 1",
                        [&record.name],
                        |_| Ok(()),
                    )
                    .optional()
                    .map_err(backend)?
                    .is_some();
            let claimed = claim(&record.name, name.as_ref(), legacy, &publisher)?;
            if let Some(existing) = read_version(&tx, &record.name, &record.version)? {
                return check_existing(existing, &record);
            }
            if let Some(claimed) = &claimed {
                write_name(&tx, claimed)?;
            }
            let name = claimed.or(name);
            record.seq = next_seq(&tx)?;
            tx.execute(
                "INSERT INTO extractor_versions (name, version, content_hash, seq, body)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    record.name,
                    record.version,
                    record.content_hash,
                    record.seq,
                    body_text(&record)?
                ],
            )
            .map_err(backend)?;
            super::webhooks::emit_published(&tx, &record, |ns| may_use(name.as_ref(), ns))?;
            tx.commit().map_err(backend)?;
            Ok(Published::New(record))
        })
        .await
    }

    async fn extractor_version(
        &self,
        name: &str,
        version: &str,
    ) -> Result<Option<ExtractorVersionRecord>> {
        let (name, version) = (name.to_owned(), version.to_owned());
        self.call(move |c| read_version(c, &name, &version)).await
    }

    async fn extractor_name(&self, name: &str) -> Result<Option<ExtractorNameRecord>> {
        let name = name.to_owned();
        self.call(move |c| read_name(c, &name)).await
    }

    async fn extractor_names(&self) -> Result<Vec<ExtractorNameRecord>> {
        self.call(|c| {
            c.prepare_cached("SELECT body FROM extractor_names ORDER BY name")
                .and_then(|mut s| s.query_map([], |r| body_column(r.get(0)?))?.collect())
                .map_err(backend)
        })
        .await
    }

    async fn reserve_name(&self, record: &ExtractorNameRecord) -> Result<ExtractorNameRecord> {
        let record = record.clone();
        self.call(move |c| {
            let tx = immediate(c)?;
            if let Some(existing) = read_name(&tx, &record.name)? {
                return Ok(existing);
            }
            write_name(&tx, &record)?;
            tx.commit().map_err(backend)?;
            Ok(record)
        })
        .await
    }

    async fn set_extractor_name(&self, record: &ExtractorNameRecord) -> Result<()> {
        let record = record.clone();
        self.call(move |c| write_name(c, &record)).await
    }

    async fn extractor_versions(&self, name: &str) -> Result<Vec<ExtractorVersionRecord>> {
        let name = name.to_owned();
        let mut versions = self
            .call(move |c| {
                versions_where(
                    c,
                    "SELECT body, seq FROM extractor_versions WHERE name = ?1 ORDER BY seq",
                    &name,
                )
            })
            .await?;
        versions.retain(|v| v.deleted_at.is_none());
        Ok(versions)
    }

    async fn changes(&self, seq: u64) -> Result<Vec<ExtractorVersionRecord>> {
        self.call(move |c| {
            versions_where(
                c,
                "SELECT body, seq FROM extractor_versions WHERE seq > ?1 ORDER BY seq",
                &seq,
            )
        })
        .await
    }

    async fn deprecate(&self, name: &str, version: &str) -> Result<ExtractorVersionRecord> {
        let (name, version) = (name.to_owned(), version.to_owned());
        self.call(move |c| {
            let tx = immediate(c)?;
            let mut record = live(read_version(&tx, &name, &version)?, &name, &version)?;
            if record.deprecated_at.is_some() {
                return Ok(record);
            }
            record.deprecated_at = Some(now());
            rewrite(&tx, &mut record)?;
            tx.commit().map_err(backend)?;
            Ok(record)
        })
        .await
    }

    async fn delete_version(&self, name: &str, version: &str) -> Result<ExtractorVersionRecord> {
        let (name, version) = (name.to_owned(), version.to_owned());
        self.call(move |c| {
            let tx = immediate(c)?;
            let mut record = live(read_version(&tx, &name, &version)?, &name, &version)?;
            let collections = tx
                .prepare_cached("SELECT body FROM collections")
                .and_then(|mut s| {
                    s.query_map([], collection_row)?
                        .collect::<rusqlite::Result<Vec<_>>>()
                })
                .map_err(backend)?;
            let batches = tx
                .prepare_cached(&format!(
                    "SELECT {BATCH_COLUMNS} FROM batches WHERE status IN ('QUEUED', 'PROCESSING')"
                ))
                .and_then(|mut s| {
                    s.query_map([], batch_row)?
                        .collect::<rusqlite::Result<Vec<_>>>()
                })
                .map_err(backend)?;
            let pins = pinned_by(&name, &version, &collections, &batches);
            if !pins.is_empty() {
                return Err(in_use(&name, &version, &pins));
            }
            record.deleted_at = Some(now());
            rewrite(&tx, &mut record)?;
            tx.commit().map_err(backend)?;
            Ok(record)
        })
        .await
    }
}
