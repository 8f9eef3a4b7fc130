//! Compiling untrusted components in a child process: a component made to
//! take forever or all memory to compile costs a bounded time and memory,
//! and never the host. The child is this same program (`strata
//! compile-component`), so it builds an engine of the same configuration
//! and its code is what the host itself would have compiled.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::EngineConfig;

/// Where and how components compile outside the host's process.
#[derive(Debug, Clone, PartialEq)]
pub struct CompileLimits {
    /// The program to run: this one, which answers `compile-component`.
    pub program: PathBuf,
    /// Longest a compilation may take.
    pub timeout: Duration,
    /// Most memory (heap) a compilation may use, in MiB.
    pub memory_mb: u64,
}

/// The child's command line: the settings its engine must share with the
/// host's, and its limit.
pub fn child_args(config: &EngineConfig, memory_mb: u64, output: &Path) -> Vec<String> {
    vec![
        "compile-component".into(),
        "--max-memory-mb".into(),
        config.max_memory_mb.to_string(),
        "--max-instances".into(),
        config.max_instances.to_string(),
        format!("--interruptible={}", config.interruptible),
        "--memory-limit-mb".into(),
        memory_mb.to_string(),
        "--output".into(),
        output.display().to_string(),
    ]
}

/// Compiles `bytes` for an engine of `config` into `output` (serialized),
/// in a child process bounded by `limits`; the reason when it fails.
pub fn compile_in_child(
    limits: &CompileLimits,
    config: &EngineConfig,
    bytes: &[u8],
    output: &Path,
) -> Result<(), String> {
    let mut child = Command::new(&limits.program)
        .args(child_args(config, limits.memory_mb, output))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            format!(
                "cannot start the compiler {}: {e}",
                limits.program.display()
            )
        })?;
    // The child reads everything before it compiles, so this never blocks
    // on a child that waits for us; a child that died early is reported
    // below by its status.
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(bytes);
    }
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() > limits.timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "compiling took longer than {:?}, the limit (--compile-timeout)",
                    limits.timeout
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(format!("waiting for the compiler: {e}")),
        }
    };
    if status.success() {
        return Ok(());
    }
    let mut stderr = String::new();
    if let Some(pipe) = child.stderr.take() {
        let _ = pipe.take(64 << 10).read_to_string(&mut stderr);
    }
    let said = stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .to_owned();
    if said.contains("memory allocation")
        || said.contains("out of memory")
        || status.code().is_none()
    {
        return Err(format!(
            "compiling needed more than {} MiB, the limit (--compile-memory-mb){}",
            limits.memory_mb,
            if said.is_empty() {
                String::new()
            } else {
                format!(": {said}")
            }
        ));
    }
    Err(if said.is_empty() {
        format!("the compiler failed ({status})")
    } else {
        said
    })
}

/// The child's side: caps its own heap at `memory_mb`, reads a component
/// from standard input, compiles it for an engine of `config` and writes
/// the serialized code to `output` (a temporary file renamed into place).
pub fn compile_child(config: &EngineConfig, memory_mb: u64, output: &Path) -> Result<(), String> {
    limit_heap(memory_mb)?;
    let mut bytes = Vec::new();
    std::io::stdin()
        .read_to_end(&mut bytes)
        .map_err(|e| format!("reading the component: {e}"))?;
    super::check_header(&bytes).map_err(str::to_owned)?;
    // The same settings as the host's engine, with one instance: the pool's
    // size is not part of what compiled code depends on.
    let engine = wasmtime::Engine::new(&super::wasmtime_config(&EngineConfig {
        max_instances: 1,
        ..config.clone()
    }))
    .map_err(|e| format!("starting the engine: {e:#}"))?;
    let compiled = engine
        .precompile_component(&bytes)
        .map_err(|e| format!("not a valid component: {e:#}"))?;
    let dir = output.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| e.to_string())?;
    tmp.write_all(&compiled).map_err(|e| e.to_string())?;
    tmp.persist(output).map_err(|e| e.to_string())?;
    Ok(())
}

/// Caps this process's heap (`RLIMIT_DATA`: every private writable
/// mapping, so not the address space an engine reserves without using).
#[cfg(unix)]
fn limit_heap(memory_mb: u64) -> Result<(), String> {
    let bytes = memory_mb.saturating_mul(1 << 20);
    let limit = libc::rlimit {
        rlim_cur: bytes as libc::rlim_t,
        rlim_max: bytes as libc::rlim_t,
    };
    // SAFETY: `setrlimit` reads the struct we pass and changes only this
    // process's limit.
    let failed = unsafe { libc::setrlimit(libc::RLIMIT_DATA, &limit) } != 0;
    if failed {
        return Err(format!(
            "cannot limit the compiler's memory: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

#[cfg(not(unix))]
fn limit_heap(_memory_mb: u64) -> Result<(), String> {
    Ok(())
}
