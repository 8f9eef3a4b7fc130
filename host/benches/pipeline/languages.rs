//! Section 11: the same extractor (`word-stats`) written in Rust, Python
//! and JavaScript, inside Strata: rows/s, compile time (cold, cached) and
//! instantiation per unit of work.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use strata_host::{Engine, EngineConfig, Extractor};

/// The three components, as `make templates` builds them.
fn components(root: &Path) -> Vec<(&'static str, PathBuf)> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    vec![
        (
            "Rust (`extractor`, Arrow IPC)",
            target.join("template/wasm32-wasip2/release/extractor_template.wasm"),
        ),
        (
            "Python (`columnar`, componentize-py)",
            root.join("examples/extractor-template-python/word_stats.wasm"),
        ),
        (
            "JavaScript (`columnar`, jco)",
            root.join("examples/extractor-template-js/word_stats.wasm"),
        ),
    ]
}

fn load(engine: &Engine, path: &Path) -> anyhow::Result<(Extractor, Duration)> {
    let started = Instant::now();
    let extractor = engine
        .load(path)
        .map_err(|e| anyhow::anyhow!("{e} (run `make templates`)"))?;
    Ok((extractor, started.elapsed()))
}

/// `texts` are record batches of one `text-extract.text` column.
pub(super) fn bench(root: &Path, texts: &[RecordBatch]) -> anyhow::Result<()> {
    let rows: usize = texts.iter().map(RecordBatch::num_rows).sum();
    println!("\n## 11. One extractor in Rust, Python and JavaScript\n");
    println!(
        "`word-stats` (the three templates: words, sentences, average word length of `text-extract.text`), {rows} texts in calls of {} rows, a fresh instance per call, one thread. Compile: Cranelift from the component file with an empty cache, then a load from the filled cache. Instantiation: fresh store + instance + open session, mean of 200.\n",
        texts.first().map_or(0, RecordBatch::num_rows)
    );
    println!(
        "| language | component | compile, cold | load, cached | instantiation | rows/s | / Rust |\n|---|---|---|---|---|---|---|"
    );
    let mut rust_rate = None;
    for (language, path) in components(root) {
        let size = std::fs::metadata(&path)
            .map_err(|e| anyhow::anyhow!("{}: {e} (run `make templates`)", path.display()))?
            .len();
        let cache = tempfile::tempdir()?;
        let config = EngineConfig {
            cache_dir: Some(cache.path().to_path_buf()),
            ..EngineConfig::default()
        };
        let (_, cold) = load(&Engine::new(config.clone())?, &path)?;
        let engine = Engine::new(config)?;
        let (extractor, cached) = load(&engine, &path)?;
        let columns = extractor
            .columns("{}")
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let opens = 200;
        let started = Instant::now();
        for _ in 0..opens {
            drop(extractor.open("{}").map_err(|e| anyhow::anyhow!("{e}"))?);
        }
        let instantiation = started.elapsed() / opens;
        let started = Instant::now();
        for batch in texts {
            let mut instance = extractor.open("{}").map_err(|e| anyhow::anyhow!("{e}"))?;
            let output = instance
                .process(batch, &columns)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            anyhow::ensure!(
                output.column_by_name("_error").is_none(),
                "{language}: rows failed"
            );
        }
        let rate = rows as f64 / started.elapsed().as_secs_f64();
        let rust = *rust_rate.get_or_insert(rate);
        println!(
            "| {language} | {:.1} MB | {:.2} s | {:.0} ms | {:.2} ms | {rate:.0} | {:.2} |",
            size as f64 / 1e6,
            cold.as_secs_f64(),
            cached.as_secs_f64() * 1e3,
            instantiation.as_secs_f64() * 1e3,
            rate / rust
        );
    }
    println!(
        "\nEach call runs in a fresh instance for every language: the Python and JavaScript components start from their pre-initialised memory image (the interpreter and the extractor already loaded), so their instantiation is a copy-on-write mapping plus the pages a call touches."
    );
    Ok(())
}
