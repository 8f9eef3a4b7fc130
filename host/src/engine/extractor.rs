//! A loaded extractor and its units of work, whichever interface its
//! component exports: `extractor` (Arrow IPC) or `columnar` (WIT values).

use std::sync::Arc;

use arrow_array::RecordBatch;
use tokio_util::sync::CancellationToken;
use wasmtime::Store;
use wasmtime::component::{ComponentExportIndex, InstancePre, ResourceAny, TypedFunc};

use super::bindings::exports::strata::extractor::extractor as arrow_exports;
use super::bindings::strata::extractor::types::{Column, OpenError};
use super::columnar_bindings::exports::strata::extractor::columnar as columnar_exports;
use super::sandbox::{self, StoreState};
use super::transfer::IpcPieces;
use super::{Budget, CallError, ColumnSpec, Engine, Manifest, executor, guest_call, limits};

/// `session.process` of `extractor`, with the input lowered from IPC pieces.
pub(super) type ProcessFunc = TypedFunc<(ResourceAny, IpcPieces), (Result<Vec<u8>, String>,)>;

/// The interface a component exports, and what a unit of work needs to
/// call it.
#[derive(Clone)]
pub(super) enum Exports {
    /// `extractor`: record batches as Arrow IPC streams.
    Arrow {
        guest: arrow_exports::GuestIndices,
        process: ComponentExportIndex,
    },
    /// `columnar`: columns as WIT values.
    Columnar {
        guest: columnar_exports::GuestIndices,
        process: ComponentExportIndex,
    },
}

/// The interface of `strata:extractor` a component exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interface {
    /// `extractor`: record batches as Arrow IPC streams (Rust, with the SDK).
    Extractor,
    /// `columnar`: columns as WIT values (Python, JavaScript).
    Columnar,
}

impl Interface {
    /// The interface's name in the WIT package.
    pub fn name(self) -> &'static str {
        match self {
            Interface::Extractor => "extractor",
            Interface::Columnar => "columnar",
        }
    }

    /// The export's name without the version, as `strata:extractor/columnar`.
    pub fn export(self) -> &'static str {
        match self {
            Interface::Extractor => "strata:extractor/extractor",
            Interface::Columnar => "strata:extractor/columnar",
        }
    }

    /// What crosses the interface, in a few words.
    pub fn carries(self) -> &'static str {
        match self {
            Interface::Extractor => "Arrow IPC record batches",
            Interface::Columnar => "columns as WIT values",
        }
    }
}

impl std::fmt::Display for Interface {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Exports {
    /// The interface these exports belong to.
    pub(super) fn interface(&self) -> Interface {
        match self {
            Exports::Arrow { .. } => Interface::Extractor,
            Exports::Columnar { .. } => Interface::Columnar,
        }
    }
}

/// The loaded exports of one instance.
enum Guest {
    Arrow {
        guest: arrow_exports::Guest,
        process: ProcessFunc,
    },
    Columnar {
        guest: columnar_exports::Guest,
        process: super::columnar::ProcessFunc,
    },
}

/// Whether two types are equal but for the size of fixed-size lists (which
/// a parameter may set, e.g. an embedding's dimension).
fn same_up_to_size(a: &arrow_schema::DataType, b: &arrow_schema::DataType) -> bool {
    use arrow_schema::DataType::FixedSizeList;
    match (a, b) {
        (FixedSizeList(x, _), FixedSizeList(y, _)) => same_up_to_size(x.data_type(), y.data_type()),
        _ => a.equals_datatype(b),
    }
}

/// A loaded extractor version: its manifest and a pre-linked instance
/// template. Cheap to clone.
#[derive(Clone)]
pub struct Extractor {
    pub(super) manifest: Arc<Manifest>,
    pub(super) pre: InstancePre<StoreState>,
    pub(super) exports: Exports,
    pub(super) engine: Engine,
    pub(super) content_hash: String,
    pub(super) size_bytes: u64,
    pub(super) from_cache: bool,
}

impl std::fmt::Debug for Extractor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Extractor")
            .field("id", &self.manifest.id())
            .finish()
    }
}

impl Extractor {
    /// The manifest the component describes.
    pub fn manifest(&self) -> &Arc<Manifest> {
        &self.manifest
    }

    /// The interface the component exports: `extractor` (Arrow IPC) or
    /// `columnar` (columns as WIT values).
    pub fn interface(&self) -> Interface {
        self.exports.interface()
    }

    /// SHA-256 of the component file, hex.
    pub fn content_hash(&self) -> &str {
        &self.content_hash
    }

    /// Size of the component file.
    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    /// Whether the compiled code came from the cache.
    pub fn from_cache(&self) -> bool {
        self.from_cache
    }

    /// The budget of one unit of work: the manifest's memory (capped by the
    /// host), the engine's deadline and log volume.
    pub fn budget(&self) -> Budget {
        self.engine.budget(self.manifest.memory_limit_mb)
    }

    /// Starts a unit of work: a fresh store and instance, and a session
    /// opened with `params`.
    pub fn open(&self, params: &str) -> Result<Instance, CallError> {
        self.open_until(params, &CancellationToken::new())
    }

    /// [`Extractor::open`] for a run that `interrupt` may stop: every call
    /// of this unit of work ends when it fires.
    pub fn open_until(
        &self,
        params: &str,
        interrupt: &CancellationToken,
    ) -> Result<Instance, CallError> {
        let budget = self.budget();
        let slot = self.engine.slot(&budget, interrupt)?;
        let name: Arc<str> = Arc::from(self.manifest.name.as_str());
        let mut store = sandbox::new_store(
            &self.engine.inner.wasmtime,
            &name,
            &budget,
            interrupt.clone(),
        );
        let instance = guest_call(&mut store, &budget, async |s| {
            self.pre.instantiate_async(s).await
        })?;
        let fault =
            |store: &Store<StoreState>, e: wasmtime::Error| sandbox::fault(store, &e, &budget);
        let guest = match &self.exports {
            Exports::Arrow { guest, process } => Guest::Arrow {
                guest: guest
                    .load(&mut store, &instance)
                    .map_err(|e| fault(&store, e))?,
                process: instance
                    .get_typed_func(&mut store, *process)
                    .map_err(|e| fault(&store, e))?,
            },
            Exports::Columnar { guest, process } => Guest::Columnar {
                guest: guest
                    .load(&mut store, &instance)
                    .map_err(|e| fault(&store, e))?,
                process: instance
                    .get_typed_func(&mut store, *process)
                    .map_err(|e| fault(&store, e))?,
            },
        };
        let opened = guest_call(&mut store, &budget, async |s| match &guest {
            Guest::Arrow { guest, .. } => guest.call_open(s, params).await,
            Guest::Columnar { guest, .. } => guest.call_open(s, params).await,
        })?;
        let session = match opened {
            Ok(session) => session,
            Err(OpenError::InvalidParam(p)) => {
                return Err(CallError::InvalidParam {
                    param: limits::cut(p.param),
                    message: limits::cut(p.message),
                });
            }
            Err(OpenError::Other(m)) => return Err(CallError::Plugin(limits::cut(m))),
        };
        Ok(Instance {
            store,
            guest,
            session,
            budget,
            _slot: slot,
        })
    }

    /// The concrete output columns for `params`: a session's columns,
    /// checked against the manifest (same names and types, a fixed-size
    /// list's size aside).
    pub fn columns(&self, params: &str) -> Result<Vec<ColumnSpec>, CallError> {
        let mut instance = self.open(params)?;
        let Instance {
            store,
            guest,
            session,
            budget,
            ..
        } = &mut instance;
        let session = *session;
        let columns = guest_call(store, budget, async |s| match guest {
            Guest::Arrow { guest, .. } => guest.session().call_columns(s, session).await,
            Guest::Columnar { guest, .. } => guest.session().call_columns(s, session).await,
        })?;
        self.check_columns(columns)
    }

    fn check_columns(&self, columns: Vec<Column>) -> Result<Vec<ColumnSpec>, CallError> {
        let declared = &self.manifest.outputs;
        if columns.len() != declared.len() {
            return Err(CallError::Contract(format!(
                "session has {} columns, the manifest declares {}",
                columns.len(),
                declared.len()
            )));
        }
        let columns = columns
            .into_iter()
            .map(|c| super::manifest::column("columns", c))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| CallError::Contract(e.to_string()))?;
        let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
        let expected: Vec<&str> = declared.iter().map(|c| c.name.as_str()).collect();
        if names != expected {
            return Err(CallError::Contract(limits::cut(format!(
                "session columns [{}] differ from the manifest's [{}]",
                names.join(", "),
                expected.join(", ")
            ))));
        }
        for (column, declared) in columns.iter().zip(declared) {
            if !same_up_to_size(&column.data_type, &declared.data_type) {
                return Err(CallError::Contract(format!(
                    "session column `{}` is {}, the manifest declares {}",
                    column.name, column.data_type, declared.data_type
                )));
            }
        }
        Ok(columns)
    }
}

/// One unit of work: a fresh store and instance with an open session. Its
/// calls share the instance's memory; dropping it frees the slot.
pub struct Instance {
    store: Store<StoreState>,
    guest: Guest,
    session: ResourceAny,
    budget: Budget,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

impl Instance {
    /// Processes one batch; the result has exactly `columns` (the session's
    /// columns, from [`Extractor::columns`]) in order and, if any row
    /// failed, `_error`.
    pub fn process(
        &mut self,
        batch: &RecordBatch,
        columns: &[ColumnSpec],
    ) -> Result<RecordBatch, CallError> {
        let output = match &self.guest {
            Guest::Arrow { process, .. } => self.process_arrow(*process, batch)?,
            Guest::Columnar { process, .. } => self.process_columnar(*process, batch, columns)?,
        };
        // Conforming checks the types first: only then are the values
        // counted by what they will expand to.
        let output =
            executor::conform(output, batch.num_rows(), columns).map_err(CallError::Contract)?;
        let values: usize = output
            .columns()
            .iter()
            .map(|c| limits::leaf_values(c.as_ref()))
            .sum();
        if values > limits::MAX_CALL_VALUES {
            return Err(CallError::Contract(format!(
                "returned {values} values, over the limit of {} per call",
                limits::MAX_CALL_VALUES
            )));
        }
        Ok(output)
    }

    fn process_arrow(
        &mut self,
        func: ProcessFunc,
        batch: &RecordBatch,
    ) -> Result<RecordBatch, CallError> {
        let pieces = strata_sdk::encode_batch_parts(batch)
            .map_err(|e| CallError::Contract(e.to_string()))?;
        let session = self.session;
        // A fault is classified before the captured output is flushed: a
        // panic message on stderr becomes part of the reason.
        let (result,) = guest_call(&mut self.store, &self.budget, async |s| {
            func.call_async(s, (session, IpcPieces(pieces))).await
        })?;
        let output = result.map_err(|m| CallError::Plugin(limits::cut(m)))?;
        self.store.data_mut().flush_output();
        check_call_bytes(output.len())?;
        strata_sdk::decode_batch(output)
            .map_err(|e| CallError::Contract(format!("output is not an Arrow IPC stream: {e}")))
    }

    fn process_columnar(
        &mut self,
        func: super::columnar::ProcessFunc,
        batch: &RecordBatch,
        columns: &[ColumnSpec],
    ) -> Result<RecordBatch, CallError> {
        let schema = batch.schema();
        // Rows holding a value the interface cannot carry fail before the
        // call; the guest sees null there, and its answer is not read.
        let mut messages: Vec<Option<String>> = vec![None; batch.num_rows()];
        let mut inputs = Vec::with_capacity(batch.num_columns());
        for (field, column) in schema.fields().iter().zip(batch.columns()) {
            let (values, unfit) = super::columnar::to_values(column.as_ref())
                .map_err(|e| CallError::Contract(format!("input `{}`: {e}", field.name())))?;
            for row in unfit {
                let message = format!(
                    "input `{}` holds an integer beyond the columnar interface's 64-bit signed range",
                    field.name()
                );
                messages[row] = Some(match messages[row].take() {
                    Some(first) => format!("{first}; {message}"),
                    None => message,
                });
            }
            inputs.push(columnar_exports::NamedValues {
                name: field.name().clone(),
                values,
            });
        }
        let rows = u32::try_from(batch.num_rows())
            .map_err(|_| CallError::Contract("more than 2^32 rows in one call".into()))?;
        let session = self.session;
        // The output is lifted within the call's byte limit (see `columnar`).
        super::columnar::start_lifting();
        let (result,) = guest_call(&mut self.store, &self.budget, async |s| {
            func.call_async(s, (session, rows, inputs)).await
        })?;
        self.store.data_mut().flush_output();
        let output =
            result.map_err(|message| CallError::Plugin(limits::cut(message.into_string())))?;
        super::columnar::to_batch(output, columns, messages).map_err(CallError::Contract)
    }
}

/// One call's output may take at most [`limits::MAX_CALL_BYTES`].
fn check_call_bytes(bytes: usize) -> Result<(), CallError> {
    if bytes > limits::MAX_CALL_BYTES {
        return Err(CallError::Contract(format!(
            "returned {bytes} bytes, over the limit of {} MiB per call",
            limits::MAX_CALL_BYTES >> 20
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_columns_may_differ_only_in_list_size() {
        let t = |s: &str| s.parse::<arrow_schema::DataType>().expect("type");
        assert!(same_up_to_size(
            &t("FixedSizeList(32 x Float32)"),
            &t("FixedSizeList(256 x Float32)")
        ));
        assert!(same_up_to_size(&t("Utf8"), &t("Utf8")));
        assert!(!same_up_to_size(
            &t("FixedSizeList(32 x Float64)"),
            &t("FixedSizeList(32 x Float32)")
        ));
        assert!(!same_up_to_size(&t("Utf8"), &t("LargeUtf8")));
    }
}
