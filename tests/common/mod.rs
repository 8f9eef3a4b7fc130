//! Helpers shared by the integration tests.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use strata_host::engine::executor::{Document, ExecOptions, ObjectInput, Stats, execute};
use strata_host::{Engine, EngineConfig, Extractor, Plan};

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A component built by `make plugins`: a real extractor or a fixture.
pub fn component(name: &str) -> PathBuf {
    let plugin = root().join("plugins/dist").join(format!("{name}.wasm"));
    let fixture = root()
        .join("tests/fixtures/dist")
        .join(format!("{name}.wasm"));
    let path = if plugin.is_file() { plugin } else { fixture };
    assert!(
        path.is_file(),
        "{} is missing: build the components first with `make plugins` (make test does)",
        path.display()
    );
    path
}

/// The compile cache the tests share, so each component compiles once.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("STRATA_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("strata-cache"))
}

/// An engine with the shared cache and the given call deadline.
pub fn engine(call_timeout: Duration) -> Engine {
    Engine::new(EngineConfig {
        cache_dir: Some(cache_dir()),
        call_timeout,
        max_instances: 16,
        ..EngineConfig::default()
    })
    .expect("engine starts")
}

/// Loads a component by name.
pub fn load(engine: &Engine, name: &str) -> Extractor {
    engine
        .load(&component(name))
        .unwrap_or_else(|e| panic!("loading {name}: {e}"))
}

/// Text objects, keyed `0.txt`, `1.txt`, …
pub fn text_objects(texts: &[&str]) -> Vec<ObjectInput> {
    texts
        .iter()
        .enumerate()
        .map(|(i, t)| ObjectInput {
            object_id: format!("obj_{i}"),
            key: format!("{i}.txt"),
            mime_type: "text/plain".into(),
            metadata: None,
            content: Ok(t.as_bytes().to_vec()),
        })
        .collect()
}

/// Runs a plan over objects and returns every document, in order.
pub fn run(
    plan: &Plan,
    options: &ExecOptions,
    objects: Vec<ObjectInput>,
) -> (Vec<Document>, Stats) {
    let mut documents = Vec::new();
    let stats = execute(plan, options, objects, |finished| {
        documents.extend(finished.documents());
        Ok::<(), std::convert::Infallible>(())
    })
    .unwrap_or_else(|never| match never {});
    (documents, stats)
}

/// The error messages of `extractor` in a document.
pub fn errors_of<'d>(doc: &'d Document, extractor: &str) -> Vec<&'d str> {
    doc.errors
        .iter()
        .filter(|e| e.extractor == extractor)
        .map(|e| e.message.as_str())
        .collect()
}
