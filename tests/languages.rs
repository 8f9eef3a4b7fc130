//! Extractors written in Python and JavaScript (the `columnar` interface)
//! beside Rust ones: the templates' components, built by `make test` as
//! their READMEs build them, run in one pipeline (`strata run`) and in one
//! collection of a batch on a real server (published with `strata
//! extractor push`), and each document's features equal the same
//! extractor's native run (CPython, Node.js) value by value.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{Value, json};
use support::flow::{all, create_bucket, create_collection, poll_until, submit, terminal, upload};
use support::{ADMIN_KEY, Server, compile_cache, repo};

const PYTHON_TEMPLATE: &str = "examples/extractor-template-python";
const JS_TEMPLATE: &str = "examples/extractor-template-js";

/// A component a template's `make` built; the test fails, saying how to
/// build it, when it is missing.
fn built(template: &str) -> PathBuf {
    let wasm = repo().join(template).join("word_stats.wasm");
    assert!(
        wasm.exists(),
        "{} is missing: run `make templates` (or `make -C {template}`)",
        wasm.display()
    );
    wasm
}

/// The Rust template's component, as `make template` builds it.
fn rust_template() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target"));
    let wasm = target.join("template/wasm32-wasip2/release/extractor_template.wasm");
    assert!(
        wasm.exists(),
        "{} is missing: run `make template`",
        wasm.display()
    );
    wasm
}

/// `strata` with the shared compile cache and the built plugins.
fn strata() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_strata"));
    command
        .env("STRATA_CACHE_DIR", compile_cache())
        .env("STRATA_PLUGINS", repo().join("plugins/dist"));
    command
}

/// `strata run` of `pipeline` over `input` into `output`.
fn strata_run(pipeline: &Path, input: &Path, output: &Path) -> std::process::Output {
    strata()
        .arg("run")
        .arg("--pipeline")
        .arg(pipeline)
        .arg("--input")
        .arg(input)
        .arg("--output")
        .arg(output)
        .output()
        .expect("strata runs")
}

/// Texts of every kind the extractors meet: words, punctuation, other
/// scripts, digits, nothing.
const TEXTS: [(&str, &str); 6] = [
    ("plain.txt", "One two three. Four five! Six?"),
    (
        "french.txt",
        "Où est la bibliothèque ? Elle est là-bas, près de l'école.",
    ),
    ("russian.txt", "Привет, мир. Как дела?"),
    ("digits.txt", "In 2024 we shipped 3 releases and 12 fixes."),
    ("empty.txt", ""),
    ("cjk.txt", "日本語の文章です。韓国語: 안녕하세요."),
];

/// Runs `strata run` with text-extract and `extractors` (component path,
/// params) over [`TEXTS`]; returns the documents by key.
fn run(extractors: &[(PathBuf, Value)]) -> Vec<Value> {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in");
    std::fs::create_dir(&input).expect("mkdir");
    for (name, text) in TEXTS {
        std::fs::write(input.join(name), text).expect("write");
    }
    let mut pipeline = String::from("[[extractors]]\nname = \"text-extract\"\n");
    for (component, params) in extractors {
        pipeline.push_str(&format!(
            "[[extractors]]\ncomponent = \"{}\"\nparams = {}\n",
            component.display(),
            toml_inline(params)
        ));
    }
    let pipeline_path = dir.path().join("p.toml");
    std::fs::write(&pipeline_path, pipeline).expect("write");
    let output = dir.path().join("out.jsonl");
    let out = strata_run(&pipeline_path, &input, &output);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut docs: Vec<Value> = std::fs::read_to_string(&output)
        .expect("output")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON document per line"))
        .collect();
    docs.sort_by(|a, b| a["key"].as_str().cmp(&b["key"].as_str()));
    docs
}

/// A JSON object as a TOML inline table (flat: numbers, strings, booleans).
fn toml_inline(params: &Value) -> String {
    let fields: Vec<String> = params
        .as_object()
        .map(|o| o.iter().map(|(k, v)| format!("{k} = {v}")).collect())
        .unwrap_or_default();
    format!("{{ {} }}", fields.join(", "))
}

/// The extractor's native run over `texts` (`text-extract.text` per row):
/// `program` reads `{"params": …, "texts": […]}` on stdin and prints one
/// JSON object per row.
fn native(program: &mut Command, params: &Value, texts: &[Value]) -> Vec<Value> {
    let mut child = program
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the native runtime starts");
    let request = json!({"params": params, "texts": texts}).to_string();
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(request.as_bytes()).expect("write");
    }
    let out = child.wait_with_output().expect("native run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("a JSON array")
}

/// `module.class`'s native CPython run, from the Python project in `dir`.
fn python_native_of(
    dir: &str,
    module: &str,
    class: &str,
    params: &Value,
    texts: &[Value],
) -> Vec<Value> {
    let mut command = Command::new(repo().join(PYTHON_TEMPLATE).join(".venv/bin/python"));
    command
        .current_dir(repo().join(dir))
        .env("PYTHONPATH", repo().join("sdk/python"))
        .args([
            "-c",
            &format!(
                "import json, sys\nfrom strata_sdk.testing import run\nfrom {module} import {class}\nr = json.load(sys.stdin)\nprint(json.dumps(run({class}, r['params'], {{'text-extract.text': r['texts']}})))"
            ),
        ]);
    native(&mut command, params, texts)
}

fn python_native(params: &Value, texts: &[Value]) -> Vec<Value> {
    python_native_of(PYTHON_TEMPLATE, "word_stats", "WordStats", params, texts)
}

fn readability_native(params: &Value, texts: &[Value]) -> Vec<Value> {
    python_native_of(
        "plugins/readability",
        "readability",
        "Readability",
        params,
        texts,
    )
}

fn javascript_native(params: &Value, texts: &[Value]) -> Vec<Value> {
    let template = repo().join(JS_TEMPLATE);
    let mut command = Command::new("node");
    command.current_dir(&template).args([
        "--input-type=module",
        "-e",
        "import { run } from 'strata-sdk/testing'; import { WordStats } from './word-stats.js';\nlet s = ''; for await (const c of process.stdin) s += c;\nconst r = JSON.parse(s);\nprocess.stdout.write(JSON.stringify(run(WordStats, r.params, { 'text-extract.text': r.texts })));",
    ]);
    native(&mut command, params, texts)
}

/// Whether `a` and `b` are equal, numbers to the precision of a `Float32`
/// (the column's type: the native run keeps a double), an absent key as a
/// null.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (
                x.as_f64().unwrap_or(f64::NAN),
                y.as_f64().unwrap_or(f64::NAN),
            );
            x as f32 == y as f32
        }
        // A document leaves null outputs out; a native run names them.
        (Value::Object(x), Value::Object(y)) => {
            let present = |m: &serde_json::Map<String, Value>| {
                m.iter()
                    .filter(|(_, v)| !v.is_null())
                    .map(|(k, _)| k.clone())
                    .collect::<Vec<_>>()
            };
            present(x) == present(y) && x.iter().all(|(k, v)| v.is_null() || same(v, &y[k]))
        }
        _ => a == b,
    }
}

fn check_against_native(
    docs: &[Value],
    extractor: &str,
    params: &Value,
    native: fn(&Value, &[Value]) -> Vec<Value>,
) {
    let texts: Vec<Value> = docs
        .iter()
        .map(|d| d["features"]["text-extract"]["text"].clone())
        .collect();
    let expected = native(params, &texts);
    assert_eq!(expected.len(), docs.len());
    for (doc, want) in docs.iter().zip(&expected) {
        let key = &doc["key"];
        match want.get("_error") {
            Some(message) => {
                let errors = doc["errors"].as_array().expect("errors");
                assert!(
                    errors
                        .iter()
                        .any(|e| e["extractor"] == extractor && e["message"] == *message),
                    "{key}: {errors:?}, expected {message}"
                );
            }
            None => {
                let got = &doc["features"][extractor];
                assert!(
                    same(got, want),
                    "{key}: {got} from the component, {want} natively"
                );
            }
        }
    }
}

#[test]
fn python_and_javascript_extractors_run_beside_rust_ones_and_match_their_native_runs() {
    let params = json!({"min_word_chars": 2});
    let docs = run(&[
        (rust_template(), params.clone()),
        (built(PYTHON_TEMPLATE), params.clone()),
        (built(JS_TEMPLATE), params.clone()),
    ]);
    assert_eq!(docs.len(), TEXTS.len());
    for doc in &docs {
        for extractor in ["word-stats", "word-stats-py", "word-stats-js"] {
            let features = &doc["features"][extractor];
            assert!(
                features["words"].is_u64(),
                "{}: {extractor} gave {features}",
                doc["key"]
            );
        }
    }
    check_against_native(&docs, "word-stats-py", &params, python_native);
    check_against_native(&docs, "word-stats-js", &params, javascript_native);
    // The three agree where their word rules do (Latin and Cyrillic text).
    let plain = docs
        .iter()
        .find(|d| d["key"] == "plain.txt")
        .expect("plain");
    let words = |e: &str| plain["features"][e]["words"].clone();
    assert_eq!(words("word-stats"), json!(6));
    assert_eq!(words("word-stats-py"), json!(6));
    assert_eq!(words("word-stats-js"), json!(6));
}

#[test]
fn the_python_readability_plugin_runs_by_name_and_matches_its_native_run() {
    let readability = repo().join("plugins/dist/readability.wasm");
    assert!(
        readability.exists(),
        "{} is missing: run `make py-plugins`",
        readability.display()
    );
    let docs = run(&[(readability, json!({}))]);
    check_against_native(&docs, "readability", &json!({}), readability_native);
    let plain = docs
        .iter()
        .find(|d| d["key"] == "plain.txt")
        .expect("plain");
    assert_eq!(plain["features"]["readability"]["sentences"], 3, "{plain}");
    assert_eq!(plain["features"]["readability"]["words"], 6, "{plain}");
}

#[test]
fn a_columnar_extractor_shows_its_interface_and_refuses_bad_params_by_name() {
    let wasm = built(PYTHON_TEMPLATE);
    let out = strata()
        .args(["extractor", "inspect", "--json"])
        .arg(&wasm)
        .output()
        .expect("strata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let inspected: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(inspected["interface"], "columnar");
    assert_eq!(inspected["manifest"]["name"], "word-stats-py");
    let rust = strata()
        .args(["extractor", "inspect", "--json"])
        .arg(repo().join("plugins/dist/keywords.wasm"))
        .output()
        .expect("strata runs");
    let rust: Value = serde_json::from_slice(&rust.stdout).expect("JSON");
    assert_eq!(rust["interface"], "extractor");

    let dir = tempfile::tempdir().expect("tempdir");
    let pipeline = dir.path().join("p.toml");
    std::fs::write(
        &pipeline,
        format!(
            "[[extractors]]\nname = \"text-extract\"\n[[extractors]]\ncomponent = \"{}\"\nparams = {{ min_word_chars = 0 }}\n",
            wasm.display()
        ),
    )
    .expect("write");
    let input = dir.path().join("in");
    std::fs::create_dir(&input).expect("mkdir");
    std::fs::write(input.join("a.txt"), "text").expect("write");
    let out = strata_run(&pipeline, &input, &dir.path().join("out.jsonl"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("min_word_chars") && stderr.contains("must be between 1 and 100, got 0"),
        "{stderr}"
    );
}

/// Publishes `wasm` to `server` with `strata extractor push`.
fn push(server: &Server, wasm: &Path) {
    let out = strata()
        .args(["extractor", "push"])
        .arg(wasm)
        .args(["--url", &server.url, "--key", ADMIN_KEY])
        .output()
        .expect("strata extractor push");
    assert!(
        out.status.success(),
        "{}: {}",
        wasm.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn a_batch_runs_rust_python_and_javascript_extractors_of_one_collection() {
    let server = Server::start();
    for wasm in [rust_template(), built(PYTHON_TEMPLATE), built(JS_TEMPLATE)] {
        push(&server, &wasm);
    }
    let bucket = create_bucket(&server, "texts").await;
    let mut ids = Vec::new();
    for (i, (_, text)) in TEXTS.iter().enumerate() {
        let id = format!("obj_{i}");
        upload(&server, &bucket, &id, text).await;
        ids.push(id);
    }
    let params = json!({"min_word_chars": 2});
    let collection = create_collection(
        &server,
        "words",
        &bucket,
        json!([
            {"name": "text-extract"},
            {"name": "word-stats", "params": params},
            {"name": "word-stats-py", "params": params},
            {"name": "word-stats-js", "params": params},
        ]),
    )
    .await;
    let (path, _) = submit(&server, &bucket, &ids).await;
    let seen = poll_until(&server, &path, terminal).await;
    let done = seen.last().expect("a status");
    assert_eq!(done["status"], "COMPLETED", "{done}");
    let collection_id = collection["collection_id"].as_str().expect("id");
    let mut docs = all(
        &server,
        &format!("/v1/collections/{collection_id}/documents"),
    )
    .await;
    docs.sort_by(|a, b| a["object_id"].as_str().cmp(&b["object_id"].as_str()));
    assert_eq!(docs.len(), TEXTS.len());
    check_against_native(&docs, "word-stats-py", &params, python_native);
    check_against_native(&docs, "word-stats-js", &params, javascript_native);
    for doc in &docs {
        assert!(doc["features"]["word-stats"]["words"].is_u64(), "{doc}");
    }
}

#[test]
fn a_component_built_against_wit_0_1_0_still_runs() {
    use strata_host::Plan;
    use strata_host::engine::executor::ExecOptions;
    use support::engine::{component, engine, load, run, text_objects};

    let bytes = std::fs::read(component("legacy")).expect("the legacy fixture");
    let exports_old = bytes
        .windows(b"strata:extractor/extractor@0.1.0".len())
        .any(|w| w == b"strata:extractor/extractor@0.1.0");
    assert!(exports_old, "the fixture is built against WIT 0.1.0");
    let engine = engine(std::time::Duration::from_secs(30));
    let legacy = load(&engine, "legacy");
    assert_eq!(
        legacy.interface(),
        strata_host::engine::Interface::Extractor
    );
    let plan = Plan::new(vec![(legacy, "{}".into())]).expect("plan");
    let (docs, _) = run(
        &plan,
        &ExecOptions::default(),
        text_objects(&["four", "", "twelve bytes"]),
    );
    let lengths: Vec<&Value> = docs
        .iter()
        .map(|d| &d.features["legacy"]["length"])
        .collect();
    assert_eq!(lengths, [&json!(4), &json!(0), &json!(12)]);
}

#[test]
fn types_the_columnar_interface_cannot_carry_are_refused_at_load_and_at_planning() {
    use support::engine::{component, engine};

    let engine = engine(std::time::Duration::from_secs(30));
    let refused = engine
        .load(&component("columnar-uncarried"))
        .expect_err("a List(Boolean) output is refused")
        .to_string();
    assert!(
        refused.contains("output `flags`: List(Boolean) cannot cross the columnar interface"),
        "{refused}"
    );

    // A built-in's list of structs, read by a columnar extractor: the
    // pipeline is refused before any object is read, naming the extractor's
    // place in it.
    let dir = tempfile::tempdir().expect("tempdir");
    let pipeline = dir.path().join("p.toml");
    std::fs::write(
        &pipeline,
        format!(
            "[[extractors]]\nname = \"text-extract\"\n[[extractors]]\nname = \"entities\"\n\
             [[extractors]]\ncomponent = \"{}\"\n",
            component("columnar-struct-input").display()
        ),
    )
    .expect("write");
    let input = dir.path().join("in");
    std::fs::create_dir(&input).expect("mkdir");
    std::fs::write(input.join("a.txt"), "text").expect("write");
    let output = dir.path().join("out.jsonl");
    let out = strata_run(&pipeline, &input, &output);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("extractors[2]")
            && stderr.contains("extractor `columnar-struct-input` cannot read `entities.entities`")
            && stderr.contains("cannot cross the columnar interface"),
        "{stderr}"
    );
    assert!(!output.exists(), "nothing was written");
}

/// What `kinds-py` and `kinds-js` answer for a document, computed here
/// from its other features: every kind of value, in and out.
fn kinds_expected(doc: &Value) -> Value {
    let key = doc["key"].as_str().expect("key");
    let content = TEXTS
        .iter()
        .find(|(name, _)| *name == key)
        .map(|(_, text)| text.as_bytes())
        .expect("a text of TEXTS");
    let text = doc["features"]["text-extract"]["text"]
        .as_str()
        .expect("text");
    let chars = doc["features"]["text-extract"]["char_count"]
        .as_i64()
        .expect("char_count");
    let keywords: Vec<Value> = doc["features"]["keywords"]["keywords"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    // Scores are Float32 on both sides of the guest: read them as such.
    let scores: Vec<f32> = doc["features"]["keywords"]["scores"]
        .as_array()
        .map(|s| {
            s.iter()
                .map(|v| v.as_f64().expect("a score") as f32)
                .collect()
        })
        .unwrap_or_default();
    let head: String = content.iter().take(4).map(|b| format!("{b:02x}")).collect();
    json!({
        "head": head,
        "chars": chars,
        "big": chars << 50,
        "long": chars > 20,
        "reliable": doc["features"]["lang-detect"]["reliable"],
        "top": keywords.first(),
        "top_words": keywords.iter().take(3).collect::<Vec<_>>(),
        "score_sum": scores.iter().fold(0.0, |sum, &s| sum + f64::from(s)),
        "scores_x2": scores.iter().take(3).map(|s| s * 2.0).collect::<Vec<_>>(),
        "codes": text.chars().take(3).map(u32::from).collect::<Vec<_>>(),
        "pair": [chars, keywords.len()],
    })
}

#[test]
fn every_kind_of_value_crosses_the_python_and_javascript_sdks_both_ways() {
    let plugin = |name: &str| repo().join("plugins/dist").join(format!("{name}.wasm"));
    let docs = run(&[
        (plugin("lang-detect"), json!({})),
        (plugin("keywords"), json!({})),
        (support::engine::component("kinds-py"), json!({})),
        (support::engine::component("kinds-js"), json!({})),
    ]);
    assert_eq!(docs.len(), TEXTS.len());
    let mut with_keywords = 0;
    for doc in &docs {
        let key = &doc["key"];
        let want = kinds_expected(doc);
        for extractor in ["kinds-py", "kinds-js"] {
            let got = &doc["features"][extractor];
            assert!(
                doc["errors"].as_array().is_none_or(Vec::is_empty),
                "{key}: {}",
                doc["errors"]
            );
            // Exact: Float32 values are compared as the Float32 they are.
            for (name, want) in want.as_object().expect("an object") {
                let got = &got[name];
                let equal = match name.as_str() {
                    "scores_x2" => {
                        let f32s = |v: &Value| -> Vec<f32> {
                            v.as_array()
                                .map(|a| {
                                    a.iter()
                                        .filter_map(Value::as_f64)
                                        .map(|x| x as f32)
                                        .collect()
                                })
                                .unwrap_or_default()
                        };
                        f32s(got) == f32s(want)
                            && got.as_array().map(Vec::len) == want.as_array().map(Vec::len)
                    }
                    // A null output is left out of the document.
                    _ if want.is_null() => got.is_null(),
                    _ => got == want,
                };
                assert!(equal, "{key}: {extractor}.{name} is {got}, expected {want}");
            }
        }
        with_keywords += usize::from(
            doc["features"]["keywords"]["keywords"]
                .as_array()
                .is_some_and(|k| !k.is_empty()),
        );
    }
    assert!(
        with_keywords >= 4,
        "the texts give keywords and scores to check"
    );
}
