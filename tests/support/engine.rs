//! The engine in-process: an engine on the shared compile cache, the
//! components `make plugins` builds, and a run over text objects.

use std::path::PathBuf;
use std::time::Duration;

use strata_host::engine::executor::{Document, ExecOptions, ObjectInput, Stats, execute};
use strata_host::{Engine, EngineConfig, Extractor, Plan};

/// A component built by `make plugins`: a real extractor or a fixture.
pub fn component(name: &str) -> PathBuf {
    let plugin = super::repo()
        .join("plugins/dist")
        .join(format!("{name}.wasm"));
    let fixture = super::repo()
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

/// An engine with the shared cache and the given call deadline.
pub fn engine(call_timeout: Duration) -> Engine {
    Engine::new(EngineConfig {
        cache_dir: Some(super::compile_cache()),
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

/// Runs the hostile fixture `extractor` in `mode` beside `content-hash`
/// over three objects, the middle one carrying the trigger; checks that
/// every object has a document and that `content-hash` finished on each.
pub fn hostile_run(engine: &Engine, extractor: &str, mode: &str) -> Vec<Document> {
    let plan = Plan::new(vec![
        (load(engine, extractor), format!(r#"{{"mode": "{mode}"}}"#)),
        (load(engine, "content-hash"), "{}".into()),
    ])
    .expect("plan");
    let (docs, stats) = run(
        &plan,
        &ExecOptions::default(),
        text_objects(&["first row", "TRIGGER the second row", "third row"]),
    );
    assert_eq!(stats.objects, 3);
    assert_eq!(docs.len(), 3, "every object has a document");
    for doc in &docs {
        assert!(
            doc.features.contains_key("content-hash"),
            "{mode}: the other extractor finished on {}: {doc:?}",
            doc.key
        );
    }
    docs
}

/// Runs `fixture` in mode `escape` (every row tries files, environment and
/// network, and reports each try) and checks that every try was denied
/// and that `marker`, the file it tries to write, does not exist.
pub fn check_escape_denied(engine: &Engine, fixture: &str, marker: &str) {
    let marker = std::path::Path::new(marker);
    let _ = std::fs::remove_file(marker);
    let docs = hostile_run(engine, fixture, "escape");
    for doc in &docs {
        assert!(doc.errors.is_empty(), "{:?}", doc.errors);
        assert_eq!(
            doc.features[fixture]["report"],
            "read=denied list=denied write=denied env=denied args=denied connect=denied \
             bind=denied udp=denied resolve=denied"
        );
    }
    assert!(!marker.exists(), "the plugin wrote a file");
}
