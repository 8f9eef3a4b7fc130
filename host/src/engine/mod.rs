//! The sandboxed engine: loads extractor components, runs units of work in
//! fresh stores, plans pipelines into tiers and streams batches through them.

pub mod cache;
mod columnar;
pub mod compiler;
mod documents;
pub mod executor;
mod extractor;
mod features;
pub mod limits;
pub mod manifest;
pub mod planner;
pub mod sandbox;
mod transfer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use sha2::{Digest, Sha256};
use tracing::{debug, info};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, InstanceAllocationStrategy, PoolingAllocationConfig, Store};

pub use cache::CompileCache;
pub use extractor::{Extractor, Instance, Interface};
pub use manifest::{ColumnSpec, Manifest, ManifestError};
pub use sandbox::{Budget, Cut, Fault};

use extractor::Exports;
use sandbox::StoreState;

/// Bindings generated from `wit/extractor.wit`, world `plugin`: the shared
/// types, the `host` import and the `extractor` export.
pub mod bindings {
    wasmtime::component::bindgen!({
        world: "plugin",
        path: "../wit",
        // Guest calls run on fibers so that a timer can cut one that waits
        // in a host call (see `sandbox::drive`).
        exports: { default: async },
    });
}

/// Bindings of world `columnar-plugin`: the `columnar` export, with the
/// types and `host` of [`bindings`].
pub mod columnar_bindings {
    wasmtime::component::bindgen!({
        world: "columnar-plugin",
        path: "../wit",
        exports: { default: async },
        with: {
            "strata:extractor/types": super::bindings::strata::extractor::types,
            "strata:extractor/host": super::bindings::strata::extractor::host,
        },
    });
}

/// The WIT package version this host implements.
pub const WIT_VERSION: semver::Version = semver::Version::new(0, 1, 1);
/// The interfaces an extractor may export.
const EXPORTS: [Interface; 2] = [Interface::Extractor, Interface::Columnar];
const PROCESS: &str = "[method]session.process";

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Where compiled components are cached; `None` compiles every time.
    pub cache_dir: Option<PathBuf>,
    /// Most memory one instance may have, in MiB; manifests ask for less.
    pub max_memory_mb: u32,
    /// Deadline of one call into a plugin.
    pub call_timeout: Duration,
    /// Bytes of plugin logs and output kept per unit of work.
    pub log_bytes: usize,
    /// Instances that may exist at once (pooling allocator slots).
    pub max_instances: u32,
    /// Whether calls are interruptible: compiled code checks the epoch at
    /// every function entry and loop header, which is what enforces
    /// `call_timeout`. Only benchmarks turn this off, to measure what the
    /// checks cost; without them a plugin that never returns keeps its
    /// thread forever.
    pub interruptible: bool,
    /// Compile in a child process with these limits; `None` compiles in
    /// this process (trusted components only: tests and benchmarks).
    pub compile: Option<compiler::CompileLimits>,
    /// Compilations that may run at once.
    pub max_compiles: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            cache_dir: None,
            max_memory_mb: 1024,
            call_timeout: Duration::from_secs(30),
            log_bytes: 256 * 1024,
            max_instances: 64,
            interruptible: true,
            compile: None,
            max_compiles: 2,
        }
    }
}

/// Why a component could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a component of the extractor world.
    #[error("{path}: {reason}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The manifest is inconsistent.
    #[error("{path}: invalid manifest: {source}")]
    Manifest {
        /// The file.
        path: String,
        /// What is wrong.
        #[source]
        source: ManifestError,
    },
}

/// Why a call into a plugin failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The plugin rejected its parameters.
    #[error("parameter `{param}`: {message}")]
    InvalidParam {
        /// The parameter.
        param: String,
        /// What is wrong.
        message: String,
    },
    /// The plugin returned an error.
    #[error("{0}")]
    Plugin(String),
    /// The plugin returned something that breaks the contract.
    #[error("broke the contract: {0}")]
    Contract(String),
    /// The instance trapped, timed out or ran out of memory; it is gone.
    #[error("{0}")]
    Fault(#[from] Fault),
}

impl CallError {
    /// Whether the instance is unusable after this error because of what
    /// the plugin did.
    pub fn is_incident(&self) -> bool {
        matches!(self, CallError::Fault(f) if !matches!(f, Fault::Interrupted | Fault::Busy(_)))
    }
}

/// The shared engine: one wasmtime engine with the pooling allocator and
/// an epoch ticker, one linker, one compile cache.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    wasmtime: wasmtime::Engine,
    linker: Linker<StoreState>,
    cache: Option<CompileCache>,
    config: EngineConfig,
    stop: Arc<AtomicBool>,
    /// One permit per pooled instance: a unit of work waits for one
    /// rather than failing when every instance is in use.
    slots: Arc<tokio::sync::Semaphore>,
    /// One permit per compilation that may run at once.
    compiles: tokio::sync::Semaphore,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("config", &self.inner.config)
            .finish()
    }
}

/// The wasmtime configuration of an engine with `config`: the host's and
/// its compiler child's (see [`compiler`]) build the same.
fn wasmtime_config(config: &EngineConfig) -> Config {
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(config.max_instances)
        .total_core_instances(config.max_instances * 8)
        .total_memories(config.max_instances * 2)
        .total_tables(config.max_instances * 8)
        .total_stacks(config.max_instances)
        .max_core_instances_per_component(16)
        .max_memories_per_component(2)
        .max_tables_per_component(8)
        .max_component_instance_size(1 << 20)
        .max_core_instance_size(1 << 20)
        .max_memory_size((config.max_memory_mb as usize) << 20)
        .table_elements(100_000)
        // A call's stack is zeroed when it ends (its first 64 KiB in place,
        // the rest given back to the system): nothing of one guest's stack
        // reaches the next, and idle stacks take no memory.
        .async_stack_keep_resident(64 << 10)
        // A table's first 16 KiB is cleared in place rather than given
        // back: fewer system calls and TLB flushes per instance. (Giving
        // back the pages of several ended instances at once saves more,
        // but keeps their memories resident meanwhile, up to a batch per
        // thread: memory stays bounded by what runs instead.)
        .table_keep_resident(16 << 10);
    let mut wasm = Config::new();
    // Every linear memory gets a 4 GiB reservation (a pooling slot)
    // that it never leaves: compiled code needs no bounds checks and
    // may keep the memory's base address in a register across loops.
    wasm.wasm_component_model(true)
        .memory_reservation(1 << 32)
        .memory_may_move(false)
        .epoch_interruption(config.interruptible)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
        .async_stack_zeroing(true)
        .max_wasm_stack(1 << 20);
    wasm
}

impl Engine {
    /// Builds the engine and starts its epoch ticker.
    pub fn new(config: EngineConfig) -> anyhow::Result<Self> {
        let wasm = wasmtime_config(&config);
        let engine = wasmtime::Engine::new(&wasm)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        bindings::Plugin::add_to_linker::<_, HasSelf<StoreState>>(&mut linker, |s| s)?;
        let cache = match &config.cache_dir {
            Some(dir) => Some(CompileCache::new(dir.clone(), &engine)?),
            None => None,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let ticker = (engine.weak(), stop.clone());
        std::thread::Builder::new()
            .name("strata-epoch".into())
            .spawn(move || tick(ticker.0, ticker.1))?;
        Ok(Engine {
            inner: Arc::new(Inner {
                wasmtime: engine,
                linker,
                cache,
                slots: Arc::new(tokio::sync::Semaphore::new(config.max_instances as usize)),
                compiles: tokio::sync::Semaphore::new(config.max_compiles.max(1)),
                config,
                stop,
            }),
        })
    }

    /// The settings.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// Loads and checks the component file at `path`.
    pub fn load(&self, path: &Path) -> Result<Extractor, LoadError> {
        let bytes = std::fs::read(path).map_err(|source| LoadError::Io {
            path: path.display().to_string(),
            source,
        })?;
        self.load_bytes(&bytes, &path.display().to_string())
    }

    /// Loads and checks a component; `origin` names it in errors.
    pub fn load_bytes(&self, bytes: &[u8], origin: &str) -> Result<Extractor, LoadError> {
        let invalid = |reason: String| LoadError::Invalid {
            path: origin.to_owned(),
            reason,
        };
        check_header(bytes).map_err(|r| invalid(r.to_owned()))?;
        let hash = hex::encode(Sha256::digest(bytes));
        let engine = &self.inner.wasmtime;
        let (component, cached) = self.compile(&hash, bytes).map_err(invalid)?;
        debug!(origin, cached, "component compiled");
        let (export, interface) = check_exports(&component, engine).map_err(invalid)?;
        let pre = self
            .inner
            .linker
            .instantiate_pre(&component)
            .map_err(|e| invalid(format!("cannot be linked: {e:#}")))?;
        let not_exported = |e: wasmtime::Error| invalid(format!("does not export {export}: {e:#}"));
        let process = component
            .get_export_index(None, &export)
            .and_then(|interface| component.get_export_index(Some(&interface), PROCESS))
            .ok_or_else(|| invalid(format!("{export} has no `{PROCESS}`")))?;
        let exports = match interface {
            Interface::Extractor => {
                let guest =
                    bindings::exports::strata::extractor::extractor::GuestIndices::new(&pre)
                        .map_err(not_exported)?;
                Exports::Arrow { guest, process }
            }
            Interface::Columnar => {
                let guest =
                    columnar_bindings::exports::strata::extractor::columnar::GuestIndices::new(
                        &pre,
                    )
                    .map_err(not_exported)?;
                Exports::Columnar { guest, process }
            }
        };

        // The manifest is not known yet: loading gets the host maximum.
        let budget = self.budget(self.inner.config.max_memory_mb);
        let never = CancellationToken::new();
        let _slot = self
            .slot(&budget, &never)
            .map_err(|e| invalid(format!("cannot be instantiated: {e}")))?;
        let mut store = sandbox::new_store(engine, &Arc::from("loading"), &budget, never);
        let instance = guest_call(&mut store, &budget, async |s| {
            pre.instantiate_async(s).await
        })
        .map_err(|e| invalid(format!("cannot be instantiated: {e}")))?;
        let raw = match &exports {
            Exports::Arrow { guest, process } => {
                let guest = guest.load(&mut store, &instance).map_err(not_exported)?;
                let _: extractor::ProcessFunc = instance
                    .get_typed_func(&mut store, *process)
                    .map_err(|e| invalid(format!("`{PROCESS}` has the wrong type: {e:#}")))?;
                guest_call(&mut store, &budget, async |s| guest.call_describe(s).await)
            }
            Exports::Columnar { guest, process } => {
                let guest = guest.load(&mut store, &instance).map_err(not_exported)?;
                let _: columnar::ProcessFunc = instance
                    .get_typed_func(&mut store, *process)
                    .map_err(|e| invalid(format!("`{PROCESS}` has the wrong type: {e:#}")))?;
                guest_call(&mut store, &budget, async |s| guest.call_describe(s).await)
            }
        }
        .map_err(|e| invalid(format!("describe failed: {e}")))?;
        let manifest = Manifest::try_from(raw).map_err(|source| LoadError::Manifest {
            path: origin.to_owned(),
            source,
        })?;
        if let Exports::Columnar { .. } = exports {
            for column in &manifest.outputs {
                columnar::check_type(&column.data_type)
                    .map_err(|e| invalid(format!("output `{}`: {e}", column.name)))?;
            }
        }
        info!(extractor = %manifest.id(), origin, cached, interface = %exports.interface(), "extractor loaded");
        Ok(Extractor {
            manifest: Arc::new(manifest),
            pre,
            exports,
            engine: self.clone(),
            content_hash: hash,
            size_bytes: bytes.len() as u64,
            from_cache: cached,
        })
    }

    /// The compiled component of `bytes` (SHA-256 `hash`): from the cache,
    /// or compiled (in a child process when limits are set), at most
    /// `max_compiles` at once. Returns whether it came from the cache.
    fn compile(&self, hash: &str, bytes: &[u8]) -> Result<(Component, bool), String> {
        let (engine, cache) = (&self.inner.wasmtime, self.inner.cache.as_ref());
        if let Some(component) = cache.and_then(|c| c.load(engine, hash)) {
            return Ok((component, true));
        }
        let _compiling = wasmtime_wasi::runtime::in_tokio(self.inner.compiles.acquire())
            .map_err(|e| e.to_string())?;
        // Compiled by another caller while this one waited?
        if let Some(component) = cache.and_then(|c| c.load(engine, hash)) {
            return Ok((component, true));
        }
        let Some(limits) = &self.inner.config.compile else {
            let component = Component::new(engine, bytes)
                .map_err(|e| format!("not a valid component: {e:#}"))?;
            if let Some(cache) = cache {
                cache.store(hash, &component);
            }
            return Ok((component, false));
        };
        let scratch;
        let output = match cache {
            Some(cache) => cache.path(hash),
            None => {
                scratch = tempfile::tempdir().map_err(|e| e.to_string())?;
                scratch.path().join("component.cwasm")
            }
        };
        compiler::compile_in_child(limits, &self.inner.config, bytes, &output)?;
        // SAFETY: the file was just written by this program's compiler
        // child from `Engine::precompile_component` for this engine's
        // configuration; wasmtime re-checks version and configuration.
        let component = unsafe { Component::deserialize_file(engine, &output) }
            .map_err(|e| format!("the compiled code cannot be loaded: {e:#}"))?;
        Ok((component, false))
    }

    /// Takes an instance slot, waiting for one until `budget`'s deadline or
    /// `interrupt`; held by a unit of work until it ends.
    fn slot(
        &self,
        budget: &Budget,
        interrupt: &CancellationToken,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, Fault> {
        let deadline = std::time::Instant::now() + budget.call_timeout;
        let wait = self.inner.slots.clone().acquire_owned();
        match sandbox::drive(deadline, interrupt, wait) {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(closed)) => Err(Fault::Busy(closed.to_string())),
            Err(Cut::Deadline) => Err(Fault::Busy(format!(
                "all {} instances stayed in use for {:?}",
                self.inner.config.max_instances, budget.call_timeout
            ))),
            Err(Cut::Interrupted) => Err(Fault::Interrupted),
        }
    }

    fn budget(&self, memory_mb: u32) -> Budget {
        let config = &self.inner.config;
        Budget {
            memory_bytes: (memory_mb.min(config.max_memory_mb) as usize) << 20,
            call_timeout: config.call_timeout,
            log_bytes: config.log_bytes,
        }
    }
}

/// Makes one call into a guest under its store's budget: it ends by the
/// call's deadline, whether the guest computes or waits in a host call, or
/// when the store's interrupt fires. Every guest call goes through here.
fn guest_call<T>(
    store: &mut Store<StoreState>,
    budget: &Budget,
    call: impl AsyncFnOnce(&mut Store<StoreState>) -> wasmtime::Result<T>,
) -> Result<T, Fault> {
    let (deadline, interrupt) = store.data_mut().begin_call(budget.call_timeout);
    match sandbox::drive(deadline, &interrupt, call(store)) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(sandbox::fault(store, &e, budget)),
        Err(cut) => Err(cut.fault(budget)),
    }
}

fn tick(engine: wasmtime::EngineWeak, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(sandbox::TICK);
        match engine.upgrade() {
            Some(engine) => engine.increment_epoch(),
            None => return,
        }
    }
}

fn check_header(bytes: &[u8]) -> Result<(), &'static str> {
    match bytes.get(..8) {
        Some([0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00]) => Ok(()),
        Some([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]) => Err(
            "a core WebAssembly module, not a component (build the plugin with --target wasm32-wasip2)",
        ),
        _ => Err("not a WebAssembly file"),
    }
}

/// Checks that `component` exports one compatible extractor interface
/// (`extractor` or `columnar`); returns that export's name and interface.
fn check_exports(
    component: &Component,
    engine: &wasmtime::Engine,
) -> Result<(String, Interface), String> {
    let ty = component.component_type();
    let names: Vec<String> = ty
        .exports(engine)
        .map(|(name, _)| name.to_owned())
        .collect();
    let found: Vec<(&String, Interface, &str)> = names
        .iter()
        .filter_map(|n| {
            let (path, version) = n.split_once('@')?;
            let interface = EXPORTS.into_iter().find(|i| path == i.export())?;
            Some((n, interface, version))
        })
        .collect();
    let (export, interface, version) = match found.as_slice() {
        [one] => *one,
        [] => {
            return Err(format!(
                "does not export {} or {} (it exports: {})",
                EXPORTS[0].export(),
                EXPORTS[1].export(),
                if names.is_empty() {
                    "nothing".to_owned()
                } else {
                    names.join(", ")
                }
            ));
        }
        _ => {
            return Err(format!(
                "exports more than one extractor interface ({}); a component exports one",
                found
                    .iter()
                    .map(|(n, ..)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    };
    let version = semver::Version::parse(version)
        .map_err(|e| format!("exports {export} with a bad version `{version}`: {e}"))?;
    if !compatible(&version, &WIT_VERSION) {
        return Err(format!(
            "built for strata:extractor@{version}, incompatible with this host's strata:extractor@{WIT_VERSION}"
        ));
    }
    Ok((export.clone(), interface))
}

/// Whether a component built against WIT package `found` runs on a host
/// implementing `host`: the same major version, and for 0.x the same minor
/// (semver's rule for pre-1.0 versions).
pub fn compatible(found: &semver::Version, host: &semver::Version) -> bool {
    found.major == host.major && (host.major > 0 || found.minor == host.minor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wit_versions_follow_semver_compatibility() {
        let v = |s: &str| semver::Version::parse(s).expect("version");
        let cases = [
            ("0.1.0", "0.1.0", true),
            ("0.1.7", "0.1.0", true),
            ("0.2.0", "0.1.0", false),
            ("1.0.0", "0.1.0", false),
            ("1.4.0", "1.0.0", true),
            ("2.0.0", "1.9.0", false),
        ];
        for (found, host, expected) in cases {
            assert_eq!(
                compatible(&v(found), &v(host)),
                expected,
                "{found} on {host}"
            );
        }
    }

    #[test]
    fn headers_tell_components_from_modules() {
        assert_eq!(check_header(b"\0asm\x0d\0\x01\0rest"), Ok(()));
        assert!(check_header(b"\0asm\x01\0\0\0").is_err());
        assert!(check_header(b"PK\x03\x04").is_err());
        assert!(check_header(b"").is_err());
    }
}
