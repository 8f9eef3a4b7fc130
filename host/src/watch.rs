//! The development loop: `strata serve --watch-plugins DIR` publishes every
//! component in `DIR` at start and again whenever its file changes.
//!
//! A changed component whose manifest names a new version is published as
//! that version; one whose bytes changed but whose version did not is
//! refused with a log line saying so (versions are immutable). A file
//! caught half-written fails to load and is tried again on its next change.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::Watcher as _;
use tokio_util::sync::CancellationToken;

use crate::catalog::{Follower, PublishError};
use crate::store::registry::Published;
use crate::store::registry::Publisher;

/// How long a directory must be quiet before changed files are read:
/// editors and build tools write a file in several steps.
const SETTLE: Duration = Duration::from_millis(300);

/// Why the directory cannot be watched.
#[derive(Debug, thiserror::Error)]
#[error("cannot watch {path}: {source}")]
pub struct WatchError {
    /// The directory.
    pub path: String,
    /// Why.
    #[source]
    pub source: notify::Error,
}

/// Watches `dir` until `shutdown`, publishing its components through
/// `follower`. The watch is set up before this returns, so no change made
/// after it is missed.
pub fn watch(
    follower: Follower,
    dir: PathBuf,
    shutdown: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, WatchError> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<PathBuf>();
    let mut watcher =
        notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
            Ok(event) if !event.kind.is_access() => {
                for path in event.paths {
                    // Only fails once the loop below has stopped.
                    let _ = tx.send(path);
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "watching plugins failed"),
        })
        .map_err(|source| WatchError {
            path: dir.display().to_string(),
            source,
        })?;
    watcher
        .watch(&dir, notify::RecursiveMode::NonRecursive)
        .map_err(|source| WatchError {
            path: dir.display().to_string(),
            source,
        })?;
    tracing::info!(dir = %dir.display(), "watching plugins");
    Ok(tokio::spawn(async move {
        // Kept alive as long as the loop runs.
        let _watcher = watcher;
        for path in components(&dir) {
            publish_file(&follower, &path).await;
        }
        loop {
            let first = tokio::select! {
                () = shutdown.cancelled() => return,
                path = rx.recv() => match path {
                    Some(path) => path,
                    None => return,
                },
            };
            let mut changed = BTreeSet::from([first]);
            // Until the directory is quiet.
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(SETTLE) => break,
                    path = rx.recv() => match path {
                        Some(path) => { changed.insert(path); }
                        None => return,
                    },
                }
            }
            for path in changed {
                if is_component(&path) && path.is_file() {
                    publish_file(&follower, &path).await;
                }
            }
        }
    }))
}

fn is_component(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "wasm")
}

/// The components of `dir`, sorted.
fn components(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| is_component(p) && p.is_file())
            .collect(),
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "reading the watched plugins directory failed");
            Vec::new()
        }
    };
    files.sort();
    files
}

/// Publishes one file, logging what came of it.
async fn publish_file(follower: &Follower, path: &Path) {
    let file = path.display().to_string();
    let bytes = match tokio::fs::read(path).await {
        Ok(bytes) if bytes.is_empty() => return,
        Ok(bytes) => bytes,
        Err(e) => {
            tracing::warn!(%file, error = %e, "reading a watched component failed");
            return;
        }
    };
    match follower
        .publish(bytes.into(), &file, &Publisher::host())
        .await
    {
        Ok(Published::New(v)) => {
            tracing::info!(%file, extractor = %v.id(), "watched component published");
        }
        Ok(Published::Existing(v)) => {
            tracing::debug!(%file, extractor = %v.id(), "watched component unchanged");
        }
        Err(PublishError::Conflict(detail)) => {
            // E.g. the bytes changed but the manifest version did not.
            tracing::warn!(%file, "watched component not published: {detail}");
        }
        Err(PublishError::Invalid(e)) => {
            tracing::warn!(%file, error = %e, "watched component refused; fix it and save again");
        }
        Err(e) => tracing::warn!(%file, error = %e, "publishing a watched component failed"),
    }
}
