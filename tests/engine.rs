//! The engine with the real extractors: loading, the compile cache,
//! planning into tiers and executing with MIME filters, dependencies and
//! processing history.

mod support;

use std::time::Duration;

use strata_host::engine::executor::{ExecOptions, ObjectInput};
use strata_host::{Engine, EngineConfig, Plan};
use support::engine::{engine, errors_of, load, run, text_objects};

const TIMEOUT: Duration = Duration::from_secs(30);

fn text_plan(engine: &Engine) -> Plan {
    Plan::new(vec![
        (load(engine, "keywords"), r#"{"k": 3}"#.into()),
        (load(engine, "hash-embed"), r#"{"dim": 32}"#.into()),
        (load(engine, "text-extract"), "{}".into()),
        (load(engine, "lang-detect"), "{}".into()),
        (load(engine, "image-meta"), "{}".into()),
    ])
    .expect("plan")
}

#[test]
fn plans_the_text_pipeline_into_tiers_with_concrete_columns() {
    let engine = engine(TIMEOUT);
    let summary = text_plan(&engine).summary();
    assert_eq!(
        summary.tiers,
        [
            vec!["text-extract@1.0.0", "image-meta@1.0.0"],
            vec!["keywords@1.0.0", "hash-embed@1.0.0", "lang-detect@1.0.0"],
        ]
    );
    assert_eq!(
        summary.output_schema["hash-embed.embedding"],
        "FixedSizeList(32 x Float32)"
    );
    assert_eq!(summary.output_schema["lang-detect.language"], "Utf8");
}

#[test]
fn each_extractor_sees_only_its_rows_and_records_history() {
    let engine = engine(TIMEOUT);
    let plan = text_plan(&engine);
    let mut objects = text_objects(&["Le chat dort sur le canapé du salon depuis ce matin."]);
    objects.push(ObjectInput {
        object_id: "obj_img".into(),
        key: "broken.png".into(),
        mime_type: "image/png".into(),
        metadata: Some(serde_json::json!({"source": "camera"})),
        content: Ok(b"not a png".to_vec()),
    });
    objects.push(ObjectInput {
        object_id: "obj_gone".into(),
        key: "gone.txt".into(),
        mime_type: "text/plain".into(),
        metadata: None,
        content: Err("cannot read gone.txt: No such file".into()),
    });
    let options = ExecOptions {
        include_processing_history: true,
        ..ExecOptions::default()
    };
    let (docs, stats) = run(&plan, &options, objects);
    assert_eq!((stats.objects, stats.failed_objects), (3, 2));
    assert_eq!(stats.errors_by_extractor.get("image-meta"), Some(&1));
    assert_eq!(stats.errors_by_extractor.get("object"), Some(&1));

    let text = &docs[0];
    assert!(text.errors.is_empty(), "{:?}", text.errors);
    assert_eq!(text.features["lang-detect"]["language"], "fr");
    assert_eq!(
        text.features["hash-embed"]["embedding"]
            .as_array()
            .map(Vec::len),
        Some(32)
    );
    assert!(
        !text.features.contains_key("image-meta"),
        "image-meta applies to images only"
    );
    let history = text.processing_history.as_ref().expect("history");
    let outcome = |name: &str| {
        history
            .iter()
            .find(|h| h.extractor == name)
            .map(|h| (h.tier, h.outcome))
    };
    assert_eq!(outcome("text-extract"), Some((0, "completed")));
    assert_eq!(outcome("keywords"), Some((1, "completed")));
    assert_eq!(outcome("image-meta"), Some((0, "not_applicable")));
    assert!(
        history
            .iter()
            .filter(|h| h.outcome == "completed")
            .all(|h| h.started_at.is_some() && h.duration_ms.is_some())
    );

    let image = &docs[1];
    assert_eq!(
        image.metadata,
        Some(serde_json::json!({"source": "camera"}))
    );
    let errors = errors_of(image, "image-meta");
    assert_eq!(errors.len(), 1);
    assert_eq!(errors, ["not an image in a known format"]);
    assert!(
        !image.features.contains_key("text-extract"),
        "text-extract does not apply to images"
    );

    let gone = &docs[2];
    assert_eq!(
        errors_of(gone, "object"),
        ["cannot read gone.txt: No such file"]
    );
    assert!(gone.features.is_empty());
}

#[test]
fn dependents_skip_rows_whose_dependency_failed() {
    let engine = engine(TIMEOUT);
    let plan = Plan::new(vec![
        (load(&engine, "dependent"), "{}".into()),
        (load(&engine, "hostile"), r#"{"mode": "row-error"}"#.into()),
    ])
    .expect("plan");
    let options = ExecOptions {
        include_processing_history: true,
        ..ExecOptions::default()
    };
    let (docs, stats) = run(&plan, &options, text_objects(&["abc", "TRIGGER", "hello"]));
    assert_eq!(stats.failed_objects, 1);
    assert_eq!(docs[0].features["dependent"]["double"], 6);
    assert_eq!(docs[2].features["dependent"]["double"], 10);
    assert_eq!(errors_of(&docs[1], "hostile"), ["row rejected"]);
    assert!(
        errors_of(&docs[1], "dependent").is_empty(),
        "the cause is reported once"
    );
    assert!(!docs[1].features.contains_key("dependent"));
    let history = docs[1].processing_history.as_ref().expect("history");
    let outcomes: Vec<(&str, &str)> = history
        .iter()
        .map(|h| (h.extractor.as_str(), h.outcome))
        .collect();
    assert_eq!(outcomes, [("hostile", "failed"), ("dependent", "skipped")]);
}

#[test]
fn empty_content_is_valid_text() {
    let engine = engine(TIMEOUT);
    let plan = Plan::new(vec![
        (load(&engine, "text-extract"), "{}".into()),
        (load(&engine, "keywords"), "{}".into()),
    ])
    .expect("plan");
    let (docs, _) = run(
        &plan,
        &ExecOptions::default(),
        text_objects(&["", "Rust compiles to components."]),
    );
    assert_eq!(docs[0].features["text-extract"]["char_count"], 0);
    assert_eq!(
        docs[0].features["keywords"]["keywords"],
        serde_json::json!([])
    );
    assert!(docs[1].features.contains_key("keywords"));
}

#[test]
fn a_restart_reuses_the_compile_cache() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = || EngineConfig {
        cache_dir: Some(dir.path().to_owned()),
        max_instances: 4,
        ..EngineConfig::default()
    };
    let first = Engine::new(config()).expect("engine");
    let cold = first
        .load(&support::engine::component("content-hash"))
        .expect("load");
    assert!(!cold.from_cache());
    drop(first);
    let second = Engine::new(config()).expect("engine");
    let warm = second
        .load(&support::engine::component("content-hash"))
        .expect("load");
    assert!(
        warm.from_cache(),
        "the second engine reads the compiled component from disk"
    );
    assert_eq!(warm.content_hash(), cold.content_hash());
    let entries = std::fs::read_dir(dir.path()).expect("cache dir").count();
    assert_eq!(entries, 1, "one file per component and engine fingerprint");
}

#[test]
fn streams_many_batches_in_order() {
    let engine = engine(TIMEOUT);
    let plan = Plan::new(vec![(load(&engine, "content-hash"), "{}".into())]).expect("plan");
    let texts: Vec<String> = (0..1000).map(|i| format!("object number {i}")).collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let options = ExecOptions {
        chunk_objects: 64,
        ..ExecOptions::default()
    };
    let (docs, stats) = run(&plan, &options, text_objects(&refs));
    assert_eq!(stats.objects, 1000);
    for (i, doc) in docs.iter().enumerate() {
        assert_eq!(doc.object_id, format!("obj_{i}"));
        assert_eq!(doc.features["content-hash"]["size_bytes"], texts[i].len());
    }
}

#[test]
fn a_tier_runs_chunks_side_by_side_and_keeps_input_order() {
    let engine = engine(TIMEOUT);
    let plan = Plan::new(vec![
        (load(&engine, "hostile"), r#"{"mode": "slow"}"#.into()),
        (load(&engine, "text-extract"), "{}".into()),
    ])
    .expect("plan");
    // Every fourth object is slow, so the chunks after it finish first
    // on the other threads and must wait for it.
    let texts: Vec<String> = (0..48)
        .map(|i| match i % 4 {
            0 => format!("TRIGGER {i}"),
            _ => format!("object {i}"),
        })
        .collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    for threads in [1, 4] {
        let options = ExecOptions {
            chunk_objects: 1,
            threads_per_tier: threads,
            ..ExecOptions::default()
        };
        let (docs, stats) = run(&plan, &options, text_objects(&refs));
        assert_eq!(stats.objects, 48);
        assert_eq!(stats.failed_objects, 0, "{threads} threads");
        for (i, doc) in docs.iter().enumerate() {
            assert_eq!(doc.object_id, format!("obj_{i}"), "{threads} threads");
            assert_eq!(doc.features["hostile"]["length"], texts[i].len());
            assert_eq!(doc.features["text-extract"]["text"], texts[i]);
        }
    }
}
