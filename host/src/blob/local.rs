//! Blobs as files under one directory.
//!
//! A write goes to a temporary file in the same directory tree, reaches
//! the disk (fsync) and is renamed into place, so a reader never sees half
//! a blob, nor a crash an empty one; a failed write leaves no temporary
//! file behind.

use std::future::Future;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;

use super::{BlobEntry, BlobError, BlobReader, BlobStore, Result, check_key};

/// Blobs under a root directory.
#[derive(Debug, Clone)]
pub struct LocalBlobs {
    root: PathBuf,
}

impl LocalBlobs {
    /// Uses (creating when missing) `root`.
    pub fn open(root: &Path) -> Result<Self> {
        std::fs::create_dir_all(root.join(".tmp"))
            .map_err(|e| BlobError::backend(&root.display().to_string(), e))?;
        Ok(LocalBlobs {
            root: root.to_owned(),
        })
    }

    fn path(&self, key: &str) -> Result<PathBuf> {
        check_key(key)?;
        Ok(self.root.join(key))
    }

    /// A fresh temporary path beside the blobs (same file system).
    fn temp_path(&self) -> PathBuf {
        self.root
            .join(".tmp")
            .join(ulid::Ulid::new().to_string().to_lowercase())
    }

    /// Writes `temp` with `write`, flushes it to disk and renames it to the
    /// blob's path; removes `temp` when any step fails.
    async fn install(
        &self,
        key: &str,
        temp: &Path,
        write: impl Future<Output = std::io::Result<()>>,
    ) -> Result<()> {
        let installed = async {
            write.await.map_err(|e| BlobError::backend(key, e))?;
            self.rename_into_place(key, temp).await
        }
        .await;
        if installed.is_err() {
            let _ = tokio::fs::remove_file(temp).await;
        }
        installed
    }

    async fn rename_into_place(&self, key: &str, temp: &Path) -> Result<()> {
        let file = tokio::fs::File::open(temp)
            .await
            .map_err(|e| BlobError::backend(key, e))?;
        file.sync_all()
            .await
            .map_err(|e| BlobError::backend(key, e))?;
        let path = self.path(key)?;
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| BlobError::backend(key, e))?;
        }
        tokio::fs::rename(temp, &path)
            .await
            .map_err(|e| BlobError::backend(key, e))
    }
}

fn read_error(key: &str, e: std::io::Error) -> BlobError {
    if e.kind() == ErrorKind::NotFound {
        BlobError::NotFound(key.to_owned())
    } else {
        BlobError::backend(key, e)
    }
}

#[async_trait]
impl BlobStore for LocalBlobs {
    fn describe(&self) -> String {
        format!("file://{}", self.root.display())
    }

    async fn ping(&self) -> Result<()> {
        let probe = self.temp_path();
        tokio::fs::write(&probe, b"")
            .await
            .map_err(|e| BlobError::backend(".tmp", e))?;
        tokio::fs::remove_file(&probe)
            .await
            .map_err(|e| BlobError::backend(".tmp", e))
    }

    async fn put_file(&self, key: &str, path: &Path) -> Result<()> {
        check_key(key)?;
        let temp = self.temp_path();
        // Same file system: a rename; otherwise a copy first.
        let write = async {
            if tokio::fs::rename(path, &temp).await.is_err() {
                tokio::fs::copy(path, &temp).await?;
            }
            Ok(())
        };
        self.install(key, &temp, write).await
    }

    async fn put_bytes(&self, key: &str, bytes: Bytes) -> Result<()> {
        check_key(key)?;
        let temp = self.temp_path();
        self.install(key, &temp, tokio::fs::write(&temp, &bytes))
            .await
    }

    async fn open(&self, key: &str) -> Result<BlobReader> {
        let file = tokio::fs::File::open(self.path(key)?)
            .await
            .map_err(|e| read_error(key, e))?;
        Ok(Box::pin(file))
    }

    async fn read(&self, key: &str) -> Result<Vec<u8>> {
        tokio::fs::read(self.path(key)?)
            .await
            .map_err(|e| read_error(key, e))
    }

    fn read_blocking(&self, _: &tokio::runtime::Handle, key: &str) -> Result<Vec<u8>> {
        std::fs::read(self.path(key)?).map_err(|e| read_error(key, e))
    }

    async fn size(&self, key: &str) -> Result<u64> {
        tokio::fs::metadata(self.path(key)?)
            .await
            .map(|m| m.len())
            .map_err(|e| read_error(key, e))
    }

    async fn read_range(&self, key: &str, start: u64, len: u64) -> Result<Bytes> {
        use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};
        let mut file = tokio::fs::File::open(self.path(key)?)
            .await
            .map_err(|e| read_error(key, e))?;
        file.seek(std::io::SeekFrom::Start(start))
            .await
            .map_err(|e| BlobError::backend(key, e))?;
        let mut buffer = Vec::with_capacity(len.min(64 << 20) as usize);
        file.take(len)
            .read_to_end(&mut buffer)
            .await
            .map_err(|e| BlobError::backend(key, e))?;
        Ok(Bytes::from(buffer))
    }

    async fn delete(&self, key: &str) -> Result<()> {
        match tokio::fs::remove_file(self.path(key)?).await {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(BlobError::backend(key, e)),
            _ => Ok(()),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<BlobEntry>> {
        let dir = self.path(prefix)?;
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || {
            let mut entries = Vec::new();
            for entry in walkdir::WalkDir::new(&dir) {
                let entry = match entry {
                    Ok(e) => e,
                    Err(e)
                        if e.io_error()
                            .is_some_and(|io| io.kind() == ErrorKind::NotFound) =>
                    {
                        continue;
                    }
                    Err(e) => return Err(BlobError::backend(&dir.display().to_string(), e)),
                };
                if !entry.file_type().is_file() {
                    continue;
                }
                let modified = entry
                    .metadata()
                    .ok()
                    .and_then(|m| m.modified().ok())
                    .unwrap_or(std::time::SystemTime::now());
                if let Some(key) = entry
                    .path()
                    .strip_prefix(&root)
                    .ok()
                    .and_then(|p| p.to_str())
                {
                    entries.push(BlobEntry {
                        key: key.to_owned(),
                        modified,
                    });
                }
            }
            Ok(entries)
        })
        .await
        .map_err(|e| BlobError::backend(prefix, e))?
    }

    async fn sweep_scratch(&self, age: std::time::Duration) -> Result<u64> {
        let tmp = self.root.join(".tmp");
        let mut removed = 0;
        let mut dir = tokio::fs::read_dir(&tmp)
            .await
            .map_err(|e| BlobError::backend(".tmp", e))?;
        while let Some(entry) = dir
            .next_entry()
            .await
            .map_err(|e| BlobError::backend(".tmp", e))?
        {
            let old = entry
                .metadata()
                .await
                .ok()
                .and_then(|m| m.modified().ok())
                .and_then(|m| m.elapsed().ok())
                .is_some_and(|elapsed| elapsed >= age);
            if old && tokio::fs::remove_file(entry.path()).await.is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }
}
