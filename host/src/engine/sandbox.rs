//! What a plugin may touch while it runs: a fresh store per unit of work,
//! capped memory, a deadline per call, captured and capped output, and WASI
//! with no files, no environment and no network.
//!
//! Every call into a guest goes through [`drive`]: the epoch callback cuts
//! WebAssembly code at the call's deadline or when the run is interrupted,
//! and a timer around the call cuts it there too while the guest waits in a
//! host call (a WASI sleep or `poll`), which no epoch check can reach.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio_util::sync::CancellationToken;
use tracing::{Level, event};
use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, Store, Trap, UpdateDeadline};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::bindings::strata::extractor::{host, types};

/// How much memory and time a unit of work gets.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// Linear memory cap in bytes.
    pub memory_bytes: usize,
    /// Deadline of one call.
    pub call_timeout: Duration,
    /// Bytes of logs, stdout and stderr kept per unit of work.
    pub log_bytes: usize,
}

/// Per-store state: WASI context, limits, the running call and log capture.
pub struct StoreState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: Limiter,
    logs: LogSink,
    call: CallState,
}

/// The call in progress: when it must end, what ends it early, and why it
/// was cut if it was.
struct CallState {
    deadline: Instant,
    interrupt: CancellationToken,
    cut: Option<Cut>,
}

/// Why the host cut a call short.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// The call's deadline passed.
    Deadline,
    /// The run was interrupted (its batch canceled, the host shutting down).
    Interrupted,
}

impl Cut {
    /// The fault a cut call reports.
    pub fn fault(self, budget: &Budget) -> Fault {
        match self {
            Cut::Deadline => Fault::Timeout(budget.call_timeout),
            Cut::Interrupted => Fault::Interrupted,
        }
    }
}

impl StoreState {
    /// Whether a memory growth was refused during the current call.
    pub fn out_of_memory(&self) -> bool {
        self.limiter.refused
    }

    /// Starts a call that must end within `timeout`; returns its deadline
    /// and what interrupts it.
    pub fn begin_call(&mut self, timeout: Duration) -> (Instant, CancellationToken) {
        self.call.deadline = Instant::now() + timeout;
        self.call.cut = None;
        self.limiter.refused = false;
        (self.call.deadline, self.call.interrupt.clone())
    }

    /// Whether the current call must stop now, and why; remembered so that
    /// the trap it causes is reported as that reason.
    fn check_call(&mut self) -> Option<Cut> {
        let cut = if self.call.interrupt.is_cancelled() {
            Some(Cut::Interrupted)
        } else if Instant::now() >= self.call.deadline {
            Some(Cut::Deadline)
        } else {
            None
        };
        self.call.cut = self.call.cut.or(cut);
        cut
    }

    /// The last line the guest wrote to stderr, if any (a panic message).
    pub fn last_stderr_line(&self) -> Option<String> {
        self.logs.stderr.last_line()
    }

    /// Sends captured stdout and stderr to `tracing` and empties them.
    pub fn flush_output(&mut self) {
        let plugin = self.logs.plugin.clone();
        for (stream, capture) in [("stdout", &self.logs.stdout), ("stderr", &self.logs.stderr)] {
            let (text, dropped) = capture.take();
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                event!(target: "strata::plugin", Level::INFO, plugin = %plugin, stream, "{line}");
            }
            if dropped > 0 {
                event!(target: "strata::plugin", Level::WARN, plugin = %plugin, stream,
                    "plugin output cut: {dropped} bytes dropped");
            }
        }
    }
}

impl Drop for StoreState {
    fn drop(&mut self) {
        self.flush_output();
    }
}

/// Creates a store for one unit of work of `plugin`, with no access to
/// files, environment, arguments or network; `interrupt` ends its calls
/// early.
pub fn new_store(
    engine: &wasmtime::Engine,
    plugin: &Arc<str>,
    budget: &Budget,
    interrupt: CancellationToken,
) -> Store<StoreState> {
    let stdout = Capture::new(budget.log_bytes / 4);
    let stderr = Capture::new(budget.log_bytes / 4);
    let wasi = WasiCtxBuilder::new()
        .stdout(stdout.clone())
        .stderr(stderr.clone())
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .socket_addr_check(|_, _| Box::pin(async { false }))
        .build();
    let state = StoreState {
        wasi,
        table: ResourceTable::new(),
        limiter: Limiter {
            memory_bytes: budget.memory_bytes,
            used: 0,
            refused: false,
        },
        logs: LogSink {
            plugin: plugin.clone(),
            budget: budget.log_bytes / 2,
            used: 0,
            dropped: 0,
            stdout,
            stderr,
        },
        call: CallState {
            deadline: Instant::now() + budget.call_timeout,
            interrupt,
            cut: None,
        },
    };
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.limiter);
    // Every tick, the running guest code asks whether its call may go on.
    store.epoch_deadline_callback(|mut store| {
        Ok(match store.data_mut().check_call() {
            Some(_) => UpdateDeadline::Interrupt,
            None => UpdateDeadline::Continue(1),
        })
    });
    store.set_epoch_deadline(1);
    store
}

/// The epoch ticker's period.
pub const TICK: Duration = Duration::from_millis(10);

/// Runs one call into a guest (`call`, a future from a `*_async` wasmtime
/// call) to its end, its `deadline`, or `interrupt`, whichever comes first;
/// a cut call's future is dropped, which unwinds the guest. Blocks the
/// calling thread, which must not be one of an async runtime's workers.
pub fn drive<F: Future>(
    deadline: Instant,
    interrupt: &CancellationToken,
    call: F,
) -> Result<F::Output, Cut> {
    wasmtime_wasi::runtime::in_tokio(async {
        tokio::select! {
            biased;
            output = call => Ok(output),
            () = tokio::time::sleep_until(deadline.into()) => Err(Cut::Deadline),
            () = interrupt.cancelled() => Err(Cut::Interrupted),
        }
    })
}

/// Why a call did not return normally.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Fault {
    /// The call ran past its deadline.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The plugin asked for more memory than it may have.
    #[error("out of memory (limit {0} MiB)")]
    OutOfMemory(usize),
    /// The plugin trapped (a panic, an abort, a bad memory access…).
    #[error("trapped: {0}")]
    Trap(String),
    /// The run stopped while the call was running (its batch was canceled
    /// or the host is shutting down); the plugin is not at fault.
    #[error("interrupted: the run was stopped")]
    Interrupted,
    /// No instance could be had within the call's deadline: the host is at
    /// capacity. The plugin is not at fault; the work is tried again.
    #[error("the host is at capacity: {0}")]
    Busy(String),
}

/// Classifies the error of a failed call.
pub fn fault(store: &Store<StoreState>, error: &wasmtime::Error, budget: &Budget) -> Fault {
    // The deadline first: a call that was refused memory, lived with it
    // and then ran out of time timed out.
    if matches!(error.downcast_ref::<Trap>(), Some(Trap::Interrupt)) {
        return store.data().call.cut.unwrap_or(Cut::Deadline).fault(budget);
    }
    if store.data().out_of_memory() {
        return Fault::OutOfMemory(budget.memory_bytes >> 20);
    }
    if let Some(full) = error.downcast_ref::<wasmtime::PoolConcurrencyLimitError>() {
        return Fault::Busy(full.to_string());
    }
    let mut reason = match error.downcast_ref::<Trap>() {
        Some(trap) => trap.to_string(),
        None => format!("{error:#}"),
    };
    if let Some(line) = store.data().last_stderr_line() {
        reason = format!("{reason}; stderr: {line}");
    }
    Fault::Trap(reason)
}

/// Caps the linear memories of one instance together: a component may
/// have several, and the cap is the instance's.
struct Limiter {
    memory_bytes: usize,
    /// Bytes of every memory of the store.
    used: usize,
    /// Whether a growth was refused during the current call.
    refused: bool,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = (self.used - current.min(self.used)).saturating_add(desired);
        let allowed = total <= self.memory_bytes && maximum.is_none_or(|m| desired <= m);
        if allowed {
            self.used = total;
        }
        self.refused |= !allowed;
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

struct LogSink {
    plugin: Arc<str>,
    budget: usize,
    used: usize,
    dropped: u64,
    stdout: Capture,
    stderr: Capture,
}

impl types::Host for StoreState {}

impl host::Host for StoreState {
    fn log(&mut self, level: types::LogLevel, message: String) {
        let message = super::limits::cut(message);
        let sink = &mut self.logs;
        if sink.used + message.len() > sink.budget {
            if sink.dropped == 0 {
                event!(target: "strata::plugin", Level::WARN, plugin = %sink.plugin,
                    "plugin log volume over {} bytes: further lines dropped", sink.budget);
            }
            sink.dropped += 1;
            return;
        }
        sink.used += message.len();
        let plugin = &sink.plugin;
        match level {
            types::LogLevel::Trace => {
                event!(target: "strata::plugin", Level::TRACE, plugin = %plugin, "{message}")
            }
            types::LogLevel::Debug => {
                event!(target: "strata::plugin", Level::DEBUG, plugin = %plugin, "{message}")
            }
            types::LogLevel::Info => {
                event!(target: "strata::plugin", Level::INFO, plugin = %plugin, "{message}")
            }
            types::LogLevel::Warn => {
                event!(target: "strata::plugin", Level::WARN, plugin = %plugin, "{message}")
            }
            types::LogLevel::Error => {
                event!(target: "strata::plugin", Level::ERROR, plugin = %plugin, "{message}")
            }
        }
    }
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// An output stream that keeps its first `cap` bytes and counts the rest.
/// Writing never fails, so printing does not break a plugin; it only costs
/// the plugin its own time.
#[derive(Clone)]
struct Capture {
    inner: Arc<Mutex<Captured>>,
}

#[derive(Default)]
struct Captured {
    bytes: Vec<u8>,
    cap: usize,
    dropped: u64,
}

impl Capture {
    fn new(cap: usize) -> Self {
        Capture {
            inner: Arc::new(Mutex::new(Captured {
                cap,
                ..Captured::default()
            })),
        }
    }

    fn push(&self, bytes: &[u8]) {
        let mut c = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let room = c.cap.saturating_sub(c.bytes.len());
        let kept = room.min(bytes.len());
        c.bytes.extend_from_slice(&bytes[..kept]);
        c.dropped += (bytes.len() - kept) as u64;
    }

    fn take(&self) -> (String, u64) {
        let mut c = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let text = String::from_utf8_lossy(&c.bytes).into_owned();
        c.bytes.clear();
        (text, std::mem::take(&mut c.dropped))
    }

    fn last_line(&self) -> Option<String> {
        let c = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        String::from_utf8_lossy(&c.bytes)
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty() && !l.starts_with("note:"))
            .map(|l| l.chars().take(500).collect())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for Capture {
    async fn ready(&mut self) {}
}

impl OutputStream for Capture {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

impl tokio::io::AsyncWrite for Capture {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.push(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

impl IsTerminal for Capture {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Capture {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instance_s_memories_share_one_cap() {
        let mut limiter = Limiter {
            memory_bytes: 100,
            used: 0,
            refused: false,
        };
        let mut grow = |current, desired| {
            limiter
                .memory_growing(current, desired, None)
                .expect("no error")
        };
        assert!(grow(0, 60), "the first memory");
        assert!(!grow(0, 60), "a second memory may not take the cap again");
        assert!(grow(0, 40), "but the rest of it");
        assert!(!grow(60, 70), "the first may not grow past the shared cap");
        assert!(limiter.refused);
    }
}
