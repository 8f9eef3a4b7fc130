//! Compiled components on disk, keyed by content hash and engine
//! fingerprint, so that a restart does not recompile.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use tracing::{debug, warn};
use wasmtime::component::Component;

/// A directory of serialized, compiled components.
#[derive(Debug, Clone)]
pub struct CompileCache {
    dir: PathBuf,
    fingerprint: String,
}

impl CompileCache {
    /// A cache in `dir` for components compiled by `engine`.
    pub fn new(dir: PathBuf, engine: &wasmtime::Engine) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        // Stable for one wasmtime build and configuration: the same binary
        // and settings read back what they wrote; anything else misses.
        let mut hasher = std::hash::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let fingerprint = format!("{:016x}", hasher.finish());
        Ok(CompileCache { dir, fingerprint })
    }

    /// Where the compiled code of `content_hash` is kept.
    pub fn path(&self, content_hash: &str) -> PathBuf {
        self.dir
            .join(format!("{content_hash}-{}.cwasm", self.fingerprint))
    }

    /// The compiled component for `content_hash`, if the cache has it.
    pub fn load(&self, engine: &wasmtime::Engine, content_hash: &str) -> Option<Component> {
        let path = self.path(content_hash);
        if !path.exists() {
            return None;
        }
        // SAFETY: files in the cache directory are written only by `store`
        // below from `Component::serialize`, or by this program's compiler
        // child from `Engine::precompile_component`, for this same engine
        // configuration (the fingerprint is in the file name); wasmtime
        // re-checks version and configuration on load.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(component) => {
                debug!(path = %path.display(), "compiled component from cache");
                Some(component)
            }
            Err(e) => {
                warn!(path = %path.display(), "ignoring unusable cache entry: {e:#}");
                None
            }
        }
    }

    /// Keeps `component`, compiled from `content_hash`.
    pub fn store(&self, content_hash: &str, component: &Component) {
        let path = self.path(content_hash);
        if let Err(e) = store(&path, component) {
            warn!(path = %path.display(), "could not write compile cache: {e:#}");
        }
    }
}

/// Writes atomically: a temporary file renamed into place, so a concurrent
/// reader never sees half a file.
fn store(path: &Path, component: &Component) -> anyhow::Result<()> {
    let bytes = component.serialize()?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut tmp, &bytes)?;
    tmp.persist(path)?;
    Ok(())
}
