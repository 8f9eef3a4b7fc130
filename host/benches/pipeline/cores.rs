//! Section 10: `strata run` on one core and on two. The text corpus as
//! files, `text-extract` → `lang-detect`, wall time including start-up,
//! reading the files and writing the documents, with the process pinned
//! (`taskset`) to one core and to two; on two cores also with one thread
//! per tier, as the executor ran before tiers ran chunks side by side.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;

/// One `strata run` of `pipeline` over `input` on `cpus`, timed.
fn run(
    cpus: &str,
    threads: Option<usize>,
    pipeline: &Path,
    input: &Path,
    output: &Path,
    root: &Path,
    cache: &Path,
) -> anyhow::Result<Duration> {
    let mut command = Command::new("taskset");
    command
        .args(["-c", cpus])
        .arg(env!("CARGO_BIN_EXE_strata"))
        .arg("run")
        .arg("--pipeline")
        .arg(pipeline)
        .arg("--input")
        .arg(input)
        .arg("--output")
        .arg(output)
        .arg("--plugins")
        .arg(root.join("plugins/dist"))
        .arg("--cache-dir")
        .arg(cache)
        .arg("--no-progress")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(threads) = threads {
        command.args(["--threads-per-tier", &threads.to_string()]);
    }
    let started = Instant::now();
    let status = command
        .status()
        .context("running strata run under taskset")?;
    anyhow::ensure!(
        status.success(),
        "strata run on cpus {cpus} exited with {status}"
    );
    Ok(started.elapsed())
}

/// Section 10.
pub fn bench(corpus: &[String], root: &Path, cache: &Path) -> anyhow::Result<()> {
    println!("\n## 10. `strata run` on one core and on two\n");
    let dir = tempfile::tempdir()?;
    let input = dir.path().join("docs");
    std::fs::create_dir(&input)?;
    for (i, text) in corpus.iter().enumerate() {
        std::fs::write(input.join(format!("doc-{i:06}.txt")), text)?;
    }
    let pipeline = dir.path().join("pipeline.toml");
    std::fs::write(
        &pipeline,
        "chunk_objects = 256\n\n[[extractors]]\nname = \"text-extract\"\n\n[[extractors]]\nname = \"lang-detect\"\n",
    )?;
    let output = dir.path().join("out.jsonl");
    let runs: [(&str, &str, Option<usize>); 3] = [
        ("one core", "0", None),
        ("two cores", "0,1", None),
        ("two cores, one thread per tier", "0,1", Some(1)),
    ];
    // Warm the compile cache, then alternate the settings five times.
    run("0,1", None, &pipeline, &input, &output, root, cache)?;
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); runs.len()];
    for _ in 0..5 {
        for (i, (_, cpus, threads)) in runs.iter().enumerate() {
            times[i].push(run(
                cpus, *threads, &pipeline, &input, &output, root, cache,
            )?);
        }
    }
    let median = |t: &mut Vec<Duration>| {
        t.sort();
        t[t.len() / 2]
    };
    let medians: Vec<Duration> = times.iter_mut().map(median).collect();
    println!(
        "{} text objects of 1–4 KB as files, `text-extract` → `lang-detect`, JSON lines out; `strata run` (release build) pinned with `taskset`; median of 5 runs each, alternated.\n",
        corpus.len()
    );
    println!("| | wall time | documents/s |");
    println!("|---|---|---|");
    for ((name, _, _), time) in runs.iter().zip(&medians) {
        println!(
            "| {name} | {:.2} s | {:.0} |",
            time.as_secs_f64(),
            corpus.len() as f64 / time.as_secs_f64()
        );
    }
    println!(
        "\n**Two cores / one core: {:.2}×** (target ≥ 1.8); with one thread per tier: {:.2}×.",
        medians[0].as_secs_f64() / medians[1].as_secs_f64(),
        medians[0].as_secs_f64() / medians[2].as_secs_f64()
    );
    match std::env::var_os("STRATA_BENCH_RAY_PYTHON") {
        Some(python) => {
            let ray = ray_data(Path::new(&python), &input, dir.path())?;
            println!(
                "\nRay Data on the same files and cores (`ray_data.py`: `read_binary_files` → `map_batches` of whatlang (0.16, the version `pywhatlang` binds) through `pywhatlang`, batches of 256 → JSON lines; the process timed from outside, Ray's start-up and shut-down included), median of 3: {:.2} s, {:.0} documents/s. **Strata / Ray Data on two cores: {:.2}×** (target ≥ 3).",
                ray.as_secs_f64(),
                corpus.len() as f64 / ray.as_secs_f64(),
                ray.as_secs_f64() / medians[1].as_secs_f64()
            );
        }
        None => println!(
            "\nRay Data is measured only where STRATA_BENCH_RAY_PYTHON names a Python with `ray[data]` and `pywhatlang` (see `ray_data.py`)."
        ),
    }
    Ok(())
}

/// The median wall time of three runs of `ray_data.py` over `input` on
/// cores 0 and 1, start-up included.
fn ray_data(python: &Path, input: &Path, scratch: &Path) -> anyhow::Result<Duration> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/pipeline/ray_data.py");
    let mut times = Vec::new();
    for i in 0..3 {
        let output = scratch.join(format!("ray-{i}"));
        let started = Instant::now();
        let status = Command::new("taskset")
            .args(["-c", "0,1"])
            .arg(python)
            .arg(&script)
            .arg(input)
            .arg(&output)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .context("running ray_data.py")?;
        anyhow::ensure!(status.success(), "ray_data.py exited with {status}");
        times.push(started.elapsed());
    }
    times.sort();
    Ok(times[1])
}
