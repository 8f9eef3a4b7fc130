//! The `strata` binary end to end: `run` over the example data, the exit
//! codes, `extractor inspect` and `extractor validate`, and an extractor
//! built outside the workspace from the template.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::engine::component;
use support::{compile_cache as cache_dir, repo as root};

/// `strata` with `args`, the shared compile cache and the built plugins.
fn command<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_strata"));
    command
        .args(args)
        .env("STRATA_CACHE_DIR", cache_dir())
        .env("STRATA_PLUGINS", root().join("plugins/dist"));
    command
}

fn strata(args: &[&str]) -> Output {
    command(args).output().expect("strata runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The arguments of `strata run` over `input`, without a progress bar.
fn run_args(pipeline: &Path, input: &Path, output: &Path) -> Vec<String> {
    vec![
        "run".into(),
        "--pipeline".into(),
        pipeline.display().to_string(),
        "--input".into(),
        input.display().to_string(),
        "--output".into(),
        output.display().to_string(),
        "--no-progress".into(),
    ]
}

fn run_pipeline(pipeline: &Path, input: &Path, output: &Path) -> Output {
    command(&run_args(pipeline, input, output))
        .output()
        .expect("strata runs")
}

fn documents(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .expect("output written")
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON document per line"))
        .collect()
}

fn by_key<'a>(docs: &'a [Value], key: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["key"] == key)
        .unwrap_or_else(|| panic!("no document for {key}"))
}

#[test]
fn text_pipeline_over_the_example_data() {
    let out_dir = tempfile::tempdir().expect("tempdir");
    let output = out_dir.path().join("text.jsonl");
    let run = run_pipeline(
        &root().join("examples/pipelines/text.toml"),
        &root().join("examples/data/docs"),
        &output,
    );
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(
        stderr(&run).contains("5 objects"),
        "summary: {}",
        stderr(&run)
    );
    let docs = documents(&output);
    assert_eq!(docs.len(), 5);
    for doc in &docs {
        assert_eq!(doc["errors"], serde_json::json!([]), "{doc}");
        let embedding = doc["features"]["hash-embed"]["embedding"]
            .as_array()
            .expect("embedding");
        assert_eq!(embedding.len(), 64);
        let norm: f64 = embedding
            .iter()
            .map(|v| v.as_f64().unwrap_or(0.0).powi(2))
            .sum();
        assert!((norm - 1.0).abs() < 1e-4, "unit length, got {norm}");
        let keywords = doc["features"]["keywords"]["keywords"]
            .as_array()
            .expect("keywords");
        assert!(!keywords.is_empty() && keywords.len() <= 5);
    }
    let lang = |key: &str| by_key(&docs, key)["features"]["lang-detect"]["language"].clone();
    assert_eq!(lang("french.txt"), "fr");
    assert_eq!(lang("page.html"), "de");
    assert_eq!(lang("release-notes.md"), "en");
    assert_eq!(lang("russian-utf16.txt"), "ru");
    let russian = by_key(&docs, "russian-utf16.txt");
    assert_eq!(russian["features"]["text-extract"]["encoding"], "UTF-16LE");
    let page = by_key(&docs, "page.html");
    assert_eq!(page["features"]["text-extract"]["format"], "html");
    let page_text = page["features"]["text-extract"]["text"]
        .as_str()
        .expect("text");
    assert!(page_text.contains("Willkommen bei unserer Bäckerei"));
    assert!(!page_text.contains("console.log"));
    let french = by_key(&docs, "french.txt");
    let entities = &french["features"]["entities"]["entities"];
    assert_eq!(entities[0]["kind"], "email");
    assert_eq!(entities[0]["value"], "accueil@bibliotheque-exemple.fr");
    assert_eq!(entities[1]["kind"], "phone");
    assert_eq!(entities[1]["value"], "+33 1 42 68 53 00");
    assert_eq!(
        french["features"]["content-hash"]["size_bytes"],
        std::fs::metadata(root().join("examples/data/docs/french.txt"))
            .expect("file")
            .len()
    );
    let catalog = by_key(&docs, "catalog.json");
    assert_eq!(catalog["features"]["text-extract"]["format"], "json");
    assert_eq!(catalog["mime_type"], "application/json");
}

#[test]
fn image_pipeline_writes_parquet() {
    let out_dir = tempfile::tempdir().expect("tempdir");
    let output = out_dir.path().join("images.parquet");
    let run = run_pipeline(
        &root().join("examples/pipelines/image.toml"),
        &root().join("examples/data/images"),
        &output,
    );
    assert!(run.status.success(), "{}", stderr(&run));
    let file = std::fs::File::open(&output).expect("parquet written");
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .expect("parquet")
        .build()
        .expect("reader");
    let batches: Vec<_> = reader.collect::<Result<_, _>>().expect("batches");
    let batch =
        arrow_select::concat::concat_batches(&batches[0].schema(), &batches).expect("concat");
    assert_eq!(batch.num_rows(), 3);
    let column = |name: &str| {
        let array = batch
            .column_by_name(name)
            .unwrap_or_else(|| panic!("column {name}"));
        (0..batch.num_rows())
            .map(|i| arrow_cast::display::array_value_to_string(array, i).expect("value"))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        column("key"),
        ["gradient.jpg", "gray-alpha.png", "stripes.png"]
    );
    assert_eq!(column("image-meta.format"), ["jpeg", "png", "png"]);
    assert_eq!(column("image-meta.width"), ["640", "64", "320"]);
    assert_eq!(column("image-meta.height"), ["480", "64", "200"]);
    assert_eq!(column("image-meta.color_type"), ["rgb8", "la8", "rgb8"]);
    assert_eq!(column("image-meta.dhash")[0].len(), 16);
}

#[test]
fn failed_objects_give_exit_code_3_and_every_document() {
    let input = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        input.path().join("fine.png"),
        std::fs::read(root().join("examples/data/images/stripes.png")).expect("png"),
    )
    .expect("write");
    std::fs::write(
        input.path().join("broken.png"),
        b"\x89PNG\r\n\x1a\n but then nothing",
    )
    .expect("write");
    std::fs::create_dir(input.path().join("sub")).expect("mkdir");
    std::fs::write(input.path().join("sub/notes.txt"), b"plain words").expect("write");
    let out_dir = tempfile::tempdir().expect("tempdir");
    let output = out_dir.path().join("out.jsonl");
    let run = run_pipeline(
        &root().join("examples/pipelines/image.toml"),
        input.path(),
        &output,
    );
    assert_eq!(run.status.code(), Some(3), "{}", stderr(&run));
    assert!(
        stderr(&run).contains("errors in image-meta: 1"),
        "{}",
        stderr(&run)
    );
    let docs = documents(&output);
    assert_eq!(docs.len(), 3);
    let broken = by_key(&docs, "broken.png");
    assert_eq!(broken["errors"][0]["extractor"], "image-meta");
    assert!(
        broken["features"]["content-hash"]["sha256"].is_string(),
        "other extractors still ran"
    );
    assert_eq!(by_key(&docs, "sub/notes.txt")["mime_type"], "text/plain");
    assert!(by_key(&docs, "fine.png")["features"]["image-meta"]["width"] == 320);
}

#[test]
fn an_output_inside_the_input_directory_is_not_read() {
    let input = tempfile::tempdir().expect("tempdir");
    std::fs::write(input.path().join("a.txt"), b"Le chat dort au soleil.").expect("write");
    std::fs::create_dir(input.path().join("sub")).expect("mkdir");
    std::fs::write(input.path().join("sub/b.txt"), "Der Hund schläft.").expect("write");
    let output = input.path().join("sub/../out.jsonl");
    let pipeline = root().join("examples/pipelines/text.toml");
    for _ in 0..2 {
        let run = run_pipeline(&pipeline, input.path(), &output);
        assert!(run.status.success(), "{}", stderr(&run));
        let docs = documents(&output);
        let keys: Vec<&str> = docs.iter().filter_map(|d| d["key"].as_str()).collect();
        assert_eq!(keys, ["a.txt", "sub/b.txt"]);
    }
}

#[test]
fn pipeline_errors_name_the_file_and_the_extractors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let check = |toml: &str, expected: &str| {
        let pipeline = dir.path().join("p.toml");
        std::fs::write(&pipeline, toml).expect("write");
        let run = run_pipeline(
            &pipeline,
            &root().join("examples/data/docs"),
            &dir.path().join("o.jsonl"),
        );
        assert_eq!(run.status.code(), Some(1), "{toml}");
        let err = stderr(&run);
        assert!(
            err.contains(&pipeline.display().to_string()),
            "names the file: {err}"
        );
        assert!(
            err.contains(expected),
            "`{err}` should contain `{expected}`"
        );
    };
    check(
        "[[extractors]]\nname = \"keywords\"\n",
        "extractor `keywords` depends on `text-extract`, which is not in the pipeline",
    );
    check(
        "[[extractors]]\nname = \"text-extract\"\n[[extractors]]\nname = \"keywords\"\nparams = { k = 0 }\n",
        "extractor `keywords`: parameter `k`: must be between 1 and 100, got 0",
    );
    check(
        "[[extractors]]\nname = \"no-such\"\n",
        "no component for `no-such`",
    );
    check("[[extractors]]\nnme = \"typo\"\n", "unknown field `nme`");
}

#[test]
fn inspect_prints_the_manifest() {
    let path = component("hash-embed").display().to_string();
    let out = strata(&["extractor", "inspect", &path]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("hash-embed 1.0.0\n"), "{text}");
    assert!(text.contains("depends on:   text-extract"), "{text}");
    assert!(text.contains("FixedSizeList(256 x Float32)"), "{text}");
    let out = strata(&["extractor", "inspect", "--json", &path]);
    let json: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(json["manifest"]["name"], "hash-embed");
    assert_eq!(
        json["manifest"]["outputs"][0]["data_type"],
        "FixedSizeList(256 x Float32)"
    );
    assert_eq!(json["content_hash"].as_str().map(str::len), Some(64));
}

#[test]
fn validate_rejects_what_is_not_an_extractor_naming_file_and_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text_file = dir.path().join("notes.wasm");
    std::fs::write(&text_file, "just text").expect("write");
    let core_module = dir.path().join("core.wasm");
    std::fs::write(&core_module, b"\0asm\x01\0\0\0").expect("write");
    let cases: [(PathBuf, &str); 5] = [
        (text_file, "not a WebAssembly file"),
        (core_module, "a core WebAssembly module, not a component"),
        (
            component("not-extractor"),
            "does not export strata:extractor/extractor or strata:extractor/columnar (it exports: wasi:cli/run@",
        ),
        (
            component("future-major"),
            "built for strata:extractor@1.0.0, incompatible with this host's strata:extractor@0.1.1",
        ),
        (
            component("bad-manifest"),
            "invalid manifest: inputs: `text-extract.text` reads extractor `text-extract`, which is not in depends_on",
        ),
    ];
    for (file, reason) in cases {
        let path = file.display().to_string();
        let out = strata(&["extractor", "validate", &path]);
        assert_eq!(out.status.code(), Some(1), "{path}");
        let err = stderr(&out);
        assert!(err.contains(&path), "names the file: {err}");
        assert!(err.contains(reason), "`{err}` should contain `{reason}`");
    }
    let ok = strata(&[
        "extractor",
        "validate",
        &component("text-extract").display().to_string(),
    ]);
    assert!(ok.status.success());
    assert!(String::from_utf8_lossy(&ok.stdout).contains("valid extractor text-extract@1.0.0"));
}

/// Runs `strata` with `args`; fails the test if it is still running after
/// `limit` (a plugin that sleeps for an hour must not hold the command).
fn strata_within<S: AsRef<std::ffi::OsStr>>(limit: Duration, args: &[S]) -> Output {
    let mut child = command(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("strata runs");
    let started = Instant::now();
    while child.try_wait().expect("waiting").is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("strata still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

/// Far past a 1 s deadline, far short of the fixture's hour of sleep.
const LIVENESS: Duration = Duration::from_secs(60);

#[test]
fn a_plugin_sleeping_in_wasi_ends_by_its_deadline() {
    let sleeper = component("sleeper").display().to_string();
    let out = strata_within(
        LIVENESS,
        &["extractor", "validate", &sleeper, "--call-timeout", "1"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("describe failed: timed out after 1s"),
        "{}",
        stderr(&out)
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("input");
    std::fs::create_dir(&input).expect("mkdir");
    std::fs::write(input.join("calm.txt"), "calm").expect("write");
    std::fs::write(input.join("trigger.txt"), "TRIGGER").expect("write");
    let hostile = component("hostile").display().to_string();
    for (mode, exit, reason) in [
        ("sleep-open", 1, "cannot be opened: timed out after 1s"),
        ("sleep-columns", 1, "cannot be opened: timed out after 1s"),
        ("sleep", 3, ""),
    ] {
        let pipeline = dir.path().join(format!("{mode}.toml"));
        std::fs::write(
            &pipeline,
            format!("[[extractors]]\ncomponent = {hostile:?}\nparams = {{ mode = {mode:?} }}\n"),
        )
        .expect("write");
        let output = dir.path().join(format!("{mode}.jsonl"));
        let mut args = run_args(&pipeline, &input, &output);
        args.extend(["--call-timeout".into(), "1".into()]);
        let out = strata_within(LIVENESS, &args);
        assert_eq!(out.status.code(), Some(exit), "{mode}: {}", stderr(&out));
        assert!(stderr(&out).contains(reason), "{mode}: {}", stderr(&out));
        if mode == "sleep" {
            let docs = documents(&output);
            assert_eq!(by_key(&docs, "calm.txt")["errors"], serde_json::json!([]));
            assert_eq!(
                by_key(&docs, "trigger.txt")["errors"],
                serde_json::json!([{"extractor": "hostile", "message": "timed out after 1s"}])
            );
        }
    }
}

#[test]
fn manifests_that_could_flood_the_host_are_refused_naming_the_field() {
    let cases = [
        (
            "amplifier",
            "invalid manifest: outputs.amplified: type `FixedSizeList(50000 x Dictionary(Int32, Utf8))`: \
             Dictionary(Int32, Utf8) is not an output type",
        ),
        (
            "wide",
            "invalid manifest: outputs: 200002 columns, more than the 256 allowed",
        ),
    ];
    for (fixture, reason) in cases {
        let path = component(fixture).display().to_string();
        let out = strata_within(LIVENESS, &["extractor", "validate", &path]);
        assert_eq!(out.status.code(), Some(1), "{fixture}");
        assert!(stderr(&out).contains(reason), "{fixture}: {}", stderr(&out));
    }
}

/// Builds `examples/extractor-template` as a project of its own, the way a
/// third-party author would, and runs it beside the built-in extractors.
#[test]
fn an_extractor_built_outside_the_workspace_loads_and_runs() {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("..")
        .join("template");
    let build = Command::new(env!("CARGO"))
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--manifest-path",
        ])
        .arg(root().join("examples/extractor-template/Cargo.toml"))
        .arg("--target-dir")
        .arg(&target)
        .status()
        .expect("cargo runs");
    assert!(build.success(), "the template builds");
    let wasm = target.join("wasm32-wasip2/release/extractor_template.wasm");
    let dir = tempfile::tempdir().expect("tempdir");
    let pipeline = dir.path().join("p.toml");
    std::fs::write(
        &pipeline,
        format!(
            "[[extractors]]\nname = \"text-extract\"\n[[extractors]]\ncomponent = \"{}\"\nparams = {{ min_word_chars = 2 }}\n",
            wasm.display()
        ),
    )
    .expect("write");
    let input = dir.path().join("in");
    std::fs::create_dir(&input).expect("mkdir");
    std::fs::write(input.join("a.txt"), "Hello there, friend. How are you?").expect("write");
    let output = dir.path().join("out.jsonl");
    let run = run_pipeline(&pipeline, &input, &output);
    assert!(run.status.success(), "{}", stderr(&run));
    let docs = documents(&output);
    let stats = &docs[0]["features"]["word-stats"];
    assert_eq!(stats["words"], 6);
    assert_eq!(stats["sentences"], 2);
}

#[test]
fn serve_help_names_an_environment_variable_for_every_option() {
    let out = strata(&["serve", "--help"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let help = String::from_utf8_lossy(&out.stdout);
    let mut blocks: Vec<(String, String)> = Vec::new();
    for line in help.lines() {
        let trimmed = line.trim_start();
        let option = trimmed.strip_prefix("-h, ").unwrap_or(trimmed);
        if option.starts_with("--") {
            let name = option.split_whitespace().next().unwrap_or_default();
            blocks.push((name.to_owned(), String::new()));
        } else if let Some((_, text)) = blocks.last_mut() {
            text.push_str(line);
            text.push('\n');
        }
    }
    let options: Vec<&str> = blocks.iter().map(|(n, _)| n.as_str()).collect();
    for wanted in [
        "--data-dir",
        "--listen",
        "--plugins",
        "--poll-interval",
        "--max-shards",
        "--lease-seconds",
        "--error-budget",
        "--call-timeout",
    ] {
        assert!(options.contains(&wanted), "{wanted} missing from:\n{help}");
    }
    for (name, text) in &blocks {
        if name == "--help" {
            continue;
        }
        assert!(
            text.contains("[env: STRATA_"),
            "{name} names no STRATA_* variable:\n{text}"
        );
    }
}
