//! `strata object upload`: files and directories into a bucket, several at
//! a time, with a progress bar. Resumable: a file whose object is already
//! in the bucket with the same SHA-256 is skipped, so running the command
//! again after an interruption sends only what is missing. An object of
//! the same id with other content is never overwritten: it is reported.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use futures::StreamExt as _;
use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::client::{Client, segment};

/// Uploads at once.
const PARALLEL: usize = 4;

/// One file to upload: where it is, and the object it becomes.
#[derive(Debug, Clone)]
pub(super) struct LocalFile {
    /// The file.
    pub path: PathBuf,
    /// The object id: the path under its root, with every character an id
    /// may not hold made `-`.
    pub object_id: String,
    /// The object's key: the path under its root, with `/`.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
}

/// What became of one file.
#[derive(Debug, Clone, serde::Serialize)]
pub(super) struct Outcome {
    /// The object id.
    pub object_id: String,
    /// The file.
    pub path: String,
    /// `uploaded`, `skipped` (already there, same content) or `failed`.
    pub status: &'static str,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The files of `paths`: each file as itself (keyed by its name), each
/// directory's files recursively (keyed by their path under it), in path
/// order. Two files that would become the same object id are an error.
pub(super) fn files(paths: &[PathBuf]) -> anyhow::Result<Vec<LocalFile>> {
    let mut found = Vec::new();
    for path in paths {
        let meta =
            std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
        if meta.is_dir() {
            walk(path, path, &mut found)?;
        } else {
            let name = path
                .file_name()
                .with_context(|| format!("{} has no file name", path.display()))?;
            found.push(local_file(path, Path::new(name), meta.len())?);
        }
    }
    found.sort_by(|a, b| a.key.cmp(&b.key));
    let mut ids: Vec<(&str, &Path)> = found
        .iter()
        .map(|f| (f.object_id.as_str(), f.path.as_path()))
        .collect();
    ids.sort();
    if let Some(pair) = ids.windows(2).find(|w| w[0].0 == w[1].0) {
        anyhow::bail!(
            "{} and {} would both be object `{}`; upload them separately",
            pair[0].1.display(),
            pair[1].1.display(),
            pair[0].0
        );
    }
    Ok(found)
}

fn walk(root: &Path, dir: &Path, found: &mut Vec<LocalFile>) -> anyhow::Result<()> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        let path = entry.path();
        let kind = entry
            .file_type()
            .with_context(|| format!("reading {}", path.display()))?;
        if kind.is_dir() {
            walk(root, &path, found)?;
        } else if kind.is_file() {
            let size = entry
                .metadata()
                .with_context(|| format!("reading {}", path.display()))?
                .len();
            let relative = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
            found.push(local_file(&path, &relative, size)?);
        }
    }
    Ok(())
}

fn local_file(path: &Path, relative: &Path, size: u64) -> anyhow::Result<LocalFile> {
    let key = relative
        .to_str()
        .with_context(|| format!("{} is not UTF-8", path.display()))?
        .replace('\\', "/");
    Ok(LocalFile {
        path: path.to_owned(),
        object_id: object_id(&key),
        key,
        size,
    })
}

/// An object id for `key`: 1–128 letters, digits, `-`, `_` or `.`; longer
/// keys keep their start and a hash of the whole.
pub(super) fn object_id(key: &str) -> String {
    let mut id: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    if id.chars().all(|c| c == '.') {
        id = format!("file{id}");
    }
    if id.len() > 128 {
        let hash = hex::encode(&Sha256::digest(key.as_bytes())[..8]);
        id.truncate(111);
        id = format!("{id}-{hash}");
    }
    id
}

/// Hex SHA-256 of a file, read in pieces.
async fn sha256(path: &Path) -> anyhow::Result<String> {
    use tokio::io::AsyncReadExt as _;
    let mut file = tokio::fs::File::open(path)
        .await
        .with_context(|| format!("reading {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let n = file
            .read(&mut buffer)
            .await
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            return Ok(hex::encode(hasher.finalize()));
        }
        hasher.update(&buffer[..n]);
    }
}

/// Uploads `files` into `bucket`, skipping those already there with the
/// same content; one outcome per file, in order.
pub(super) async fn upload(
    client: &Client,
    bucket: &str,
    files: Vec<LocalFile>,
) -> anyhow::Result<Vec<Outcome>> {
    let objects_path = format!("/v1/buckets/{}/objects", segment(bucket));
    let present: std::collections::HashMap<String, String> = client
        .all(&objects_path)
        .await?
        .into_iter()
        .filter_map(|o| {
            Some((
                o["object_id"].as_str()?.to_owned(),
                o["sha256"].as_str()?.to_owned(),
            ))
        })
        .collect();
    let total: u64 = files.iter().map(|f| f.size).sum();
    let bar = if client.json {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(total).with_style(indicatif::ProgressStyle::with_template(
            "{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )?)
    };
    bar.set_message(format!("uploading {} files", files.len()));
    let present = &present;
    let objects_path = &objects_path;
    let bar_ref = &bar;
    let outcomes: Vec<Outcome> = futures::stream::iter(files)
        .map(|file| async move {
            let result = upload_one(client, objects_path, present, &file, bar_ref).await;
            let (status, error) = match result {
                Ok(status) => (status, None),
                Err(e) => ("failed", Some(format!("{e:#}"))),
            };
            Outcome {
                object_id: file.object_id,
                path: file.path.display().to_string(),
                status,
                error,
            }
        })
        .buffered(PARALLEL)
        .collect()
        .await;
    bar.finish_and_clear();
    Ok(outcomes)
}

async fn upload_one(
    client: &Client,
    objects_path: &str,
    present: &std::collections::HashMap<String, String>,
    file: &LocalFile,
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<&'static str> {
    if let Some(existing) = present.get(&file.object_id) {
        let sha = sha256(&file.path).await?;
        bar.inc(file.size);
        if *existing == sha {
            return Ok("skipped");
        }
        anyhow::bail!(
            "object `{}` is already in the bucket with other content; delete it first to replace it",
            file.object_id
        );
    }
    let opened = tokio::fs::File::open(&file.path)
        .await
        .with_context(|| format!("reading {}", file.path.display()))?;
    let progress = bar.clone();
    let stream = tokio_util::io::ReaderStream::new(opened).inspect(move |chunk| {
        if let Ok(chunk) = chunk {
            progress.inc(chunk.len() as u64);
        }
    });
    let part =
        reqwest::multipart::Part::stream_with_length(reqwest::Body::wrap_stream(stream), file.size)
            .file_name(file.key.clone());
    let mime = mime_guess::from_path(&file.path).first_or_octet_stream();
    let part = part
        .mime_str(mime.as_ref())
        .context("a MIME type for the file")?;
    let form = reqwest::multipart::Form::new()
        .text("object_id", file.object_id.clone())
        .text("key", file.key.clone())
        .part("file", part);
    client
        .send(client.request(Method::POST, objects_path).multipart(form))
        .await?;
    Ok("uploaded")
}

/// Prints what became of each file (a line of counts, and each failure),
/// or the outcomes as JSON; fails when any file failed.
pub(super) fn report(client: &Client, outcomes: &[Outcome]) -> anyhow::Result<()> {
    let count = |status: &str| outcomes.iter().filter(|o| o.status == status).count();
    let failed = count("failed");
    if client.json {
        super::client::print_json(&json!(outcomes))?;
    } else {
        eprintln!(
            "{} uploaded, {} already there, {failed} failed",
            count("uploaded"),
            count("skipped")
        );
        for o in outcomes.iter().filter(|o| o.status == "failed") {
            eprintln!("  {}: {}", o.path, o.error.as_deref().unwrap_or("failed"));
        }
    }
    if failed > 0 {
        anyhow::bail!("{failed} of {} files failed to upload", outcomes.len());
    }
    Ok(())
}

/// The ids of outcomes that are in the bucket now.
pub(super) fn present_ids(outcomes: &[Outcome]) -> Vec<Value> {
    outcomes
        .iter()
        .filter(|o| o.status != "failed")
        .map(|o| Value::String(o.object_id.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_ids_come_from_paths() {
        assert_eq!(object_id("docs/a b.txt"), "docs-a-b.txt");
        assert_eq!(object_id("ü.md"), "-.md");
        assert_eq!(object_id(".."), "file..");
        let long = "x/".repeat(100);
        let id = object_id(&long);
        assert_eq!(id.len(), 128);
        assert_ne!(id, object_id(&"y/".repeat(100)));
    }

    #[test]
    fn files_of_directories_are_keyed_by_their_path_and_collisions_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
        std::fs::write(dir.path().join("a.txt"), "a").expect("write");
        std::fs::write(dir.path().join("sub/b.txt"), "bb").expect("write");
        let found = files(&[dir.path().to_owned()]).expect("files");
        let keys: Vec<(&str, &str, u64)> = found
            .iter()
            .map(|f| (f.key.as_str(), f.object_id.as_str(), f.size))
            .collect();
        assert_eq!(keys, [("a.txt", "a.txt", 1), ("sub/b.txt", "sub-b.txt", 2)]);

        std::fs::write(dir.path().join("sub-b.txt"), "c").expect("write");
        let err = files(&[dir.path().to_owned()]).expect_err("a collision");
        assert!(
            err.to_string().contains("would both be object `sub-b.txt`"),
            "{err}"
        );
    }
}
