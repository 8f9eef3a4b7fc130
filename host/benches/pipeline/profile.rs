//! A flat CPU profile of one process with Linux `perf`, where it is
//! installed: what section 5 writes next to `BENCHMARKS.md`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// `perf record` attached to a running process.
pub(super) struct Profiler {
    perf: Child,
    data: PathBuf,
}

/// A profile's samples summed by where they ran.
pub(super) struct Profile {
    /// The `perf report` text, symbols from 0.2 % up.
    pub(super) report: String,
    /// (share in %, part), largest first.
    pub(super) parts: Vec<(f64, &'static str)>,
}

impl Drop for Profiler {
    /// A run that failed before [`Profiler::finish`] leaves no `perf`
    /// behind.
    fn drop(&mut self) {
        if let Ok(None) = self.perf.try_wait() {
            let _ = self.perf.kill();
            let _ = self.perf.wait();
        }
    }
}

impl Profiler {
    /// Starts sampling `pid` at 999 Hz into `dir`; `None` when `perf` is
    /// missing or may not attach (e.g. `perf_event_paranoid`).
    pub(super) fn attach(pid: u32, dir: &Path) -> Option<Profiler> {
        let data = dir.join("service.perf.data");
        let perf = Command::new("perf")
            .args(["record", "-F", "999", "-o"])
            .arg(&data)
            .args(["-p", &pid.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        // perf needs a moment to attach; a quick exit means it could not.
        std::thread::sleep(std::time::Duration::from_millis(300));
        let mut profiler = Profiler { perf, data };
        match profiler.perf.try_wait() {
            Ok(None) => Some(profiler),
            _ => None,
        }
    }

    /// Stops sampling and reads the profile.
    pub(super) fn finish(mut self) -> anyhow::Result<Profile> {
        let stopped = Command::new("kill")
            .args(["-INT", &self.perf.id().to_string()])
            .status()?;
        anyhow::ensure!(stopped.success(), "could not stop perf");
        self.perf.wait()?;
        let output = Command::new("perf")
            .arg("report")
            .arg("-i")
            .arg(&self.data)
            .args(["--stdio", "--sort", "dso,symbol"])
            .stderr(Stdio::null())
            .output()?;
        anyhow::ensure!(output.status.success(), "perf report failed");
        let mut report = String::new();
        let mut sums: BTreeMap<&'static str, f64> = BTreeMap::new();
        for line in String::from_utf8_lossy(&output.stdout).lines() {
            match sample_line(line) {
                Some((share, dso, symbol)) => {
                    *sums.entry(part(dso, symbol)).or_default() += share;
                    if share >= 0.2 {
                        report.push_str(line.trim_end());
                        report.push('\n');
                    }
                }
                None if line.starts_with('#') && !line.starts_with("# (Tip") => {
                    report.push_str(line.trim_end());
                    report.push('\n');
                }
                None => {}
            }
        }
        let mut parts: Vec<(f64, &'static str)> = sums.into_iter().map(|(p, s)| (s, p)).collect();
        parts.sort_by(|a, b| b.0.total_cmp(&a.0));
        Ok(Profile { report, parts })
    }
}

/// `report` with each compiled component's file (named by the SHA-256 of
/// the component) named after its component in `plugins`.
pub(super) fn name_components(report: &str, plugins: &Path) -> anyhow::Result<String> {
    use sha2::Digest as _;
    let mut named = report.to_owned();
    for entry in std::fs::read_dir(plugins)? {
        let path = entry?.path();
        let Some(name) = path.file_stem().and_then(|n| n.to_str()) else {
            continue;
        };
        let hash = hex::encode(sha2::Sha256::digest(std::fs::read(&path)?));
        named = named.replace(&hash, name);
    }
    Ok(named)
}

/// `  12.34%  dso  [.] symbol` as (12.34, dso, symbol).
fn sample_line(line: &str) -> Option<(f64, &str, &str)> {
    let line = line.trim_start();
    let (share, rest) = line.split_once('%')?;
    let share: f64 = share.trim().parse().ok()?;
    let rest = rest.trim_start();
    let (dso, symbol) = rest.split_once(" [")?;
    let symbol = symbol.split_once("] ").map_or("", |(_, s)| s.trim());
    Some((share, dso.trim(), symbol))
}

/// The part of the service a sample belongs to, by its library and symbol.
fn part(dso: &str, symbol: &str) -> &'static str {
    let has = |needles: &[&str]| needles.iter().any(|n| symbol.contains(n));
    if dso.contains("kernel") {
        "kernel (system calls, page faults, scheduling)"
    } else if dso.ends_with(".cwasm")
        || dso.starts_with("[JIT]")
        || dso.starts_with("perf-")
        || symbol.starts_with("wasm[")
    {
        "extractors (compiled WebAssembly)"
    } else if has(&["sqlite3", "rusqlite"]) {
        "SQLite"
    } else if has(&["serde_json", "serde::", "zmij", "itoa", "ryu"]) {
        "JSON (documents, progress, API)"
    } else if has(&["arrow", "flatbuffers"]) {
        "Arrow (batches, IPC across the boundary)"
    } else if has(&["wasmtime", "cranelift", "wasi"]) {
        "wasmtime (instances, calls, lifting and lowering)"
    } else if has(&["sha2", "sha256", "xxh", "blake"]) {
        "hashing (object checks)"
    } else if has(&[
        "malloc", "free", "memmove", "memcpy", "memset", "memcmp", "alloc",
    ]) {
        "allocation and copies"
    } else if has(&[
        "tokio",
        "hyper",
        "axum",
        "h2::",
        "mio",
        "tower",
        "crossbeam",
    ]) {
        "async runtime, HTTP, channels"
    } else if has(&["strata"]) {
        "Strata's own code"
    } else {
        "other"
    }
}
