//! Streams objects through a plan: record batches of objects flow through
//! the tiers over bounded channels, so memory stays bounded whatever the
//! number of objects, and consecutive batches overlap across tiers. Each
//! tier runs several batches at once on threads of its own (the extractors
//! of a tier side by side within a batch), so one heavy extractor uses
//! every core; batches reach the sink in input order, and a window of
//! tickets bounds how many exist at once, however they overtake.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use arrow_array::builder::{BinaryBuilder, StringBuilder};
use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, RecordBatch, RecordBatchOptions, UInt32Array, new_null_array};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use arrow_select::concat::concat;
use arrow_select::take::{take, take_record_batch};
use serde::Serialize;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::manifest::ColumnSpec;
use super::planner::{Plan, Step};
use super::{CallError, Fault};

pub use super::documents::{Document, Finished, HistoryEntry, RowError, flat_schema};

/// Name of the row-error column extractors may return.
pub const ERROR_COLUMN: &str = "_error";

/// One object to process.
#[derive(Debug, Clone)]
pub struct ObjectInput {
    /// Object id.
    pub object_id: String,
    /// Key (e.g. a path) of the object.
    pub key: String,
    /// MIME type.
    pub mime_type: String,
    /// User metadata.
    pub metadata: Option<Value>,
    /// The bytes, or why they could not be read.
    pub content: Result<Vec<u8>, String>,
}

/// Execution settings.
#[derive(Debug, Clone)]
pub struct ExecOptions {
    /// Objects per record batch.
    pub chunk_objects: usize,
    /// Bytes of content per record batch: a batch ends at `chunk_objects`
    /// objects or once it holds this much (always one object at least),
    /// so large objects never make a chunk hold more.
    pub chunk_bytes: usize,
    /// Batches waiting between two tiers.
    pub queue_depth: usize,
    /// Batches each tier runs at once (at least 1; by default the cores
    /// this process may use).
    pub threads_per_tier: usize,
    /// Record a processing history in each document.
    pub include_processing_history: bool,
    /// After this many timeouts an extractor is disabled for the rest of
    /// the run: each timeout costs a whole deadline. Calls already running
    /// then (at most one per thread of its tier) still end by theirs.
    pub max_timeouts: u32,
    /// Counts the objects each tier has finished, for progress reports.
    pub tier_progress: Option<Arc<TierProgress>>,
    /// Stops the run: calls in progress end at once (their rows fail as
    /// `interrupted`) and no new call starts. The caller that fires it
    /// discards what the run still produces.
    pub interrupt: CancellationToken,
}

/// Objects finished per tier of a running plan.
#[derive(Debug, Default)]
pub struct TierProgress {
    rows: Vec<AtomicU64>,
}

impl TierProgress {
    /// Counters for a plan of `tiers` tiers.
    pub fn new(tiers: usize) -> Self {
        TierProgress {
            rows: (0..tiers).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Objects tier `tier` has finished.
    pub fn rows(&self, tier: usize) -> u64 {
        self.rows.get(tier).map_or(0, |r| r.load(Ordering::Relaxed))
    }

    fn add(&self, tier: usize, rows: usize) {
        if let Some(r) = self.rows.get(tier) {
            r.fetch_add(rows as u64, Ordering::Relaxed);
        }
    }
}

impl Default for ExecOptions {
    fn default() -> Self {
        ExecOptions {
            chunk_objects: 256,
            chunk_bytes: 64 << 20,
            queue_depth: 2,
            threads_per_tier: available_cores(),
            include_processing_history: false,
            max_timeouts: 3,
            tier_progress: None,
            interrupt: CancellationToken::new(),
        }
    }
}

/// The cores this process may run on (its CPU affinity), at least 1.
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// What a run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    /// Objects processed.
    pub objects: u64,
    /// Objects with at least one error.
    pub failed_objects: u64,
    /// Row errors by extractor (`object` for unreadable objects).
    pub errors_by_extractor: BTreeMap<String, u64>,
    /// Traps, timeouts and out-of-memory faults.
    pub incidents: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum RowStatus {
    NotApplicable,
    Skipped,
    Completed,
    Failed(String),
}

pub(super) struct StepResult {
    pub(super) outputs: Vec<ArrayRef>,
    pub(super) status: Vec<RowStatus>,
    pub(super) timing: Vec<Option<(SystemTime, Duration)>>,
}

pub(super) struct Chunk {
    /// Position in the input: batches reach the sink in this order.
    pub(super) seq: u64,
    pub(super) base: RecordBatch,
    pub(super) object_errors: Vec<Option<String>>,
    pub(super) results: Vec<Option<StepResult>>,
}

/// Streams `objects` through `plan`, handing each finished batch to `sink`
/// in input order. Stops at the first sink error and returns it.
pub fn execute<I, E>(
    plan: &Plan,
    options: &ExecOptions,
    objects: I,
    mut sink: impl FnMut(Finished<'_>) -> Result<(), E>,
) -> Result<Stats, E>
where
    I: IntoIterator<Item = ObjectInput>,
    I::IntoIter: Send,
{
    let steps: Vec<&Step> = plan.steps().collect();
    let index: HashMap<&str, usize> = steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.extractor.manifest().name.as_str(), i))
        .collect();
    let timeouts: Vec<AtomicU32> = steps.iter().map(|_| AtomicU32::new(0)).collect();
    let incidents = AtomicU32::new(0);
    // Fired by the caller, or here when the sink fails: nothing left is
    // worth finishing then.
    let interrupt = options.interrupt.child_token();
    let ctx = Context {
        options,
        steps: &steps,
        index: &index,
        timeouts: &timeouts,
        incidents: &incidents,
        interrupt: &interrupt,
    };
    let mut stats = Stats::default();
    let chunk_objects = options.chunk_objects.max(1);
    let objects = objects.into_iter();
    let threads = options.threads_per_tier.max(1);
    // As many batches as the channels and one thread per tier held before
    // tiers ran batches side by side: more threads, the same memory.
    let window = options.queue_depth.max(1) * (plan.tiers.len() + 1) + plan.tiers.len() + 2;
    let result = std::thread::scope(|scope| {
        let (tickets, ticket) = crossbeam_channel::bounded::<()>(window);
        for _ in 0..window {
            let _ = tickets.send(());
        }
        let (tx, mut rx) = crossbeam_channel::bounded::<Chunk>(options.queue_depth);
        let step_count = steps.len();
        let interrupt = &interrupt;
        scope.spawn(move || {
            let mut objects = objects.peekable();
            let mut seq = 0;
            while !interrupt.is_cancelled() && objects.peek().is_some() {
                // Wait until the sink has taken a batch, or has gone, or
                // the run was stopped.
                loop {
                    match ticket.recv_timeout(Duration::from_millis(100)) {
                        Ok(()) => break,
                        Err(crossbeam_channel::RecvTimeoutError::Timeout)
                            if !interrupt.is_cancelled() => {}
                        Err(_) => return,
                    }
                }
                let mut taken = Vec::new();
                let mut bytes = 0usize;
                while taken.len() < chunk_objects {
                    let size = match objects.peek() {
                        Some(next) => next.content.as_ref().map_or(0, Vec::len),
                        None => break,
                    };
                    if !taken.is_empty() && bytes.saturating_add(size) > options.chunk_bytes {
                        break;
                    }
                    bytes = bytes.saturating_add(size);
                    taken.extend(objects.next());
                }
                let chunk = base_chunk(seq, taken.into_iter(), step_count);
                seq += 1;
                if tx.send(chunk).is_err() {
                    return;
                }
            }
        });
        let mut offset = 0;
        for (t, tier) in plan.tiers.iter().enumerate() {
            let (tx, next) = crossbeam_channel::bounded::<Chunk>(options.queue_depth);
            let ctx = &ctx;
            let first = offset;
            offset += tier.len();
            for _ in 0..threads {
                let (rx, tx) = (rx.clone(), tx.clone());
                scope.spawn(move || {
                    // Should this thread die anyway, the run stops (and the
                    // scope then re-raises its panic) rather than waiting
                    // for its chunk forever.
                    let _stop = StopOnPanic(ctx.interrupt);
                    for mut chunk in rx {
                        // A host bug in one chunk fails that chunk's rows
                        // for this tier; the chunk still flows on, so the
                        // ones behind it in input order are not held.
                        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            run_tier(tier, first, &mut chunk, ctx)
                        }));
                        if ran.is_err() {
                            let rows = chunk.base.num_rows();
                            for (i, step) in tier.iter().enumerate() {
                                chunk.results[first + i] =
                                    Some(failed_step(step, rows, "host error"));
                            }
                        }
                        if let Some(progress) = &ctx.options.tier_progress {
                            progress.add(t, chunk.base.num_rows());
                        }
                        if tx.send(chunk).is_err() {
                            return;
                        }
                    }
                });
            }
            rx = next;
        }
        // Batches that overtook the next one in input order wait here; the
        // window bounds them.
        let mut waiting: BTreeMap<u64, Chunk> = BTreeMap::new();
        let mut next = 0;
        for chunk in rx {
            waiting.insert(chunk.seq, chunk);
            while let Some(chunk) = waiting.remove(&next) {
                next += 1;
                let finished = Finished {
                    plan,
                    steps: &steps,
                    chunk,
                    history: options.include_processing_history,
                };
                finished.count(&mut stats);
                if let Err(e) = sink(finished) {
                    interrupt.cancel();
                    return Err(e);
                }
                let _ = tickets.send(());
            }
        }
        Ok(())
    });
    stats.incidents = u64::from(incidents.load(Ordering::Relaxed));
    result.map(|()| stats)
}

/// Fires the interrupt when dropped by a panicking thread.
struct StopOnPanic<'a>(&'a CancellationToken);

impl Drop for StopOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.cancel();
        }
    }
}

struct Context<'a> {
    options: &'a ExecOptions,
    interrupt: &'a CancellationToken,
    steps: &'a [&'a Step],
    index: &'a HashMap<&'a str, usize>,
    timeouts: &'a [AtomicU32],
    incidents: &'a AtomicU32,
}

/// The object columns, as extractors see them.
pub fn object_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("object_id", DataType::Utf8, false),
        Field::new("key", DataType::Utf8, false),
        Field::new("content", DataType::Binary, true),
        Field::new("mime_type", DataType::Utf8, false),
        Field::new("metadata", DataType::Utf8, true),
    ]))
}

fn base_chunk(seq: u64, objects: impl Iterator<Item = ObjectInput>, steps: usize) -> Chunk {
    let mut ids = StringBuilder::new();
    let mut keys = StringBuilder::new();
    let mut content = BinaryBuilder::new();
    let mut mimes = StringBuilder::new();
    let mut metadata = StringBuilder::new();
    let mut object_errors = Vec::new();
    for o in objects {
        ids.append_value(&o.object_id);
        keys.append_value(&o.key);
        mimes.append_value(&o.mime_type);
        metadata.append_option(o.metadata.as_ref().map(Value::to_string));
        match o.content {
            Ok(bytes) => {
                content.append_value(bytes);
                object_errors.push(None);
            }
            Err(reason) => {
                content.append_null();
                object_errors.push(Some(reason));
            }
        }
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(ids.finish()),
        Arc::new(keys.finish()),
        Arc::new(content.finish()),
        Arc::new(mimes.finish()),
        Arc::new(metadata.finish()),
    ];
    let base = RecordBatch::try_new(object_schema(), columns)
        .unwrap_or_else(|e| unreachable!("object columns match their schema: {e}"));
    Chunk {
        seq,
        base,
        object_errors,
        results: (0..steps).map(|_| None).collect(),
    }
}

fn run_tier(tier: &[Step], first: usize, chunk: &mut Chunk, ctx: &Context<'_>) {
    let results: Vec<StepResult> = if tier.len() == 1 {
        vec![run_step(&tier[0], first, chunk, ctx)]
    } else {
        let chunk: &Chunk = chunk;
        std::thread::scope(|scope| {
            let handles: Vec<_> = tier
                .iter()
                .enumerate()
                .map(|(i, step)| scope.spawn(move || run_step(step, first + i, chunk, ctx)))
                .collect();
            handles
                .into_iter()
                .zip(tier)
                .map(|(h, step)| {
                    h.join()
                        .unwrap_or_else(|_| failed_step(step, chunk.base.num_rows(), "host error"))
                })
                .collect()
        })
    };
    for (i, result) in results.into_iter().enumerate() {
        chunk.results[first + i] = Some(result);
    }
}

/// A step's result with null outputs and the given row statuses.
fn without_outputs(step: &Step, status: Vec<RowStatus>) -> StepResult {
    let rows = status.len();
    StepResult {
        outputs: nulls(step, rows),
        status,
        timing: vec![None; rows],
    }
}

fn failed_step(step: &Step, rows: usize, reason: &str) -> StepResult {
    without_outputs(step, vec![RowStatus::Failed(reason.to_owned()); rows])
}

fn run_step(step: &Step, position: usize, chunk: &Chunk, ctx: &Context<'_>) -> StepResult {
    let manifest = step.extractor.manifest();
    let rows = chunk.base.num_rows();
    let mimes = chunk.base.column(3).as_string::<i32>();
    let deps: Vec<&StepResult> = manifest
        .depends_on
        .iter()
        .filter_map(|d| ctx.index.get(d.as_str()))
        .filter_map(|&i| chunk.results[i].as_ref())
        .collect();
    let mut status = vec![RowStatus::NotApplicable; rows];
    let mut selected: Vec<u32> = Vec::new();
    for (row, state) in status.iter_mut().enumerate() {
        if chunk.object_errors[row].is_some() || !manifest.applies_to(mimes.value(row)) {
            continue;
        }
        if deps.iter().any(|d| d.status[row] != RowStatus::Completed) {
            *state = RowStatus::Skipped;
            continue;
        }
        selected.push(row as u32);
    }
    if selected.is_empty() {
        return without_outputs(step, status);
    }
    let mut timing = vec![None; rows];
    let input = match input_batch(step, chunk, ctx) {
        Ok(batch) => batch,
        Err(reason) => return failed_step(step, rows, &reason),
    };
    // Most often every row is selected: no copy then.
    let every_row = selected.len() == rows;
    let input = if every_row {
        input
    } else {
        match take_record_batch(&input, &UInt32Array::from(selected.clone())) {
            Ok(batch) => batch,
            Err(e) => return failed_step(step, rows, &format!("host error: {e}")),
        }
    };
    let size = manifest.batch_size as usize;
    let mut parts: Vec<Vec<ArrayRef>> = Vec::new();
    let mut errors: Vec<Option<String>> = Vec::with_capacity(selected.len());
    let mut offset = 0;
    while offset < input.num_rows() {
        let len = size.min(input.num_rows() - offset);
        let started = SystemTime::now();
        let clock = Instant::now();
        let (columns, row_errors) = call_with_retry(step, position, &input.slice(offset, len), ctx);
        let elapsed = clock.elapsed();
        for &row in &selected[offset..offset + len] {
            timing[row as usize] = Some((started, elapsed));
        }
        parts.push(columns);
        errors.extend(row_errors);
        offset += len;
    }
    let mut slot: Vec<Option<u32>> = vec![None; rows];
    for (k, &row) in selected.iter().enumerate() {
        slot[row as usize] = Some(k as u32);
        status[row as usize] = match errors[k].take() {
            Some(reason) => RowStatus::Failed(reason),
            None => RowStatus::Completed,
        };
    }
    let stacked = stack(&step.columns, &parts, selected.len());
    let outputs = if every_row {
        stacked
    } else {
        let scatter = UInt32Array::from(slot);
        stacked
            .into_iter()
            .zip(&step.columns)
            .map(|(all, spec)| {
                take(&all, &scatter, None).unwrap_or_else(|_| new_null_array(&spec.data_type, rows))
            })
            .collect()
    };
    StepResult {
        outputs,
        status,
        timing,
    }
}

/// The columns `step` reads, named as it declares them.
fn input_batch(step: &Step, chunk: &Chunk, ctx: &Context<'_>) -> Result<RecordBatch, String> {
    let mut fields = Vec::new();
    let mut arrays = Vec::new();
    for input in &step.extractor.manifest().inputs {
        let array = match input.split_once('.') {
            None => chunk.base.column_by_name(input).cloned(),
            Some((dep, column)) => ctx.index.get(dep).and_then(|&i| {
                let position = ctx.steps[i].columns.iter().position(|c| c.name == column)?;
                chunk.results[i].as_ref()?.outputs.get(position).cloned()
            }),
        };
        let array = array.ok_or_else(|| format!("host error: input `{input}` is not available"))?;
        fields.push(Field::new(input, array.data_type().clone(), true));
        arrays.push(array);
    }
    let options = RecordBatchOptions::new().with_row_count(Some(chunk.base.num_rows()));
    RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), arrays, &options)
        .map_err(|e| format!("host error: {e}"))
}

/// Runs one sub-batch in a fresh instance; if the call fails, runs each row
/// alone so that only the guilty rows fail. Returns the declared columns
/// (nulls where rows failed) and the row errors.
fn call_with_retry(
    step: &Step,
    position: usize,
    batch: &RecordBatch,
    ctx: &Context<'_>,
) -> (Vec<ArrayRef>, Vec<Option<String>>) {
    match unit(step, position, batch, ctx) {
        Ok(output) => split(step, output),
        Err(e) if batch.num_rows() > 1 && !ctx.interrupt.is_cancelled() => {
            warn!(extractor = %step.extractor.manifest().id(), rows = batch.num_rows(),
                "batch failed ({e}); retrying row by row");
            let mut pieces: Vec<Vec<ArrayRef>> = Vec::with_capacity(batch.num_rows());
            let mut errors = Vec::with_capacity(batch.num_rows());
            for row in 0..batch.num_rows() {
                let (columns, mut row_errors) =
                    match unit(step, position, &batch.slice(row, 1), ctx) {
                        Ok(output) => split(step, output),
                        Err(e) => (nulls(step, 1), vec![Some(e.to_string())]),
                    };
                pieces.push(columns);
                errors.push(row_errors.pop().flatten());
            }
            let columns = stack(&step.columns, &pieces, batch.num_rows());
            (columns, errors)
        }
        Err(e) => (
            nulls(step, batch.num_rows()),
            vec![Some(e); batch.num_rows()],
        ),
    }
}

/// Stacks row-wise pieces (each a full set of `columns`) into one array per
/// column of `rows` rows; a column that cannot be stacked is all null.
fn stack(columns: &[ColumnSpec], pieces: &[Vec<ArrayRef>], rows: usize) -> Vec<ArrayRef> {
    columns
        .iter()
        .enumerate()
        .map(|(c, spec)| {
            let parts: Vec<&dyn Array> = pieces.iter().map(|p| p[c].as_ref()).collect();
            concat(&parts).unwrap_or_else(|_| new_null_array(&spec.data_type, rows))
        })
        .collect()
}

fn nulls(step: &Step, rows: usize) -> Vec<ArrayRef> {
    step.columns
        .iter()
        .map(|c| new_null_array(&c.data_type, rows))
        .collect()
}

fn split(step: &Step, output: RecordBatch) -> (Vec<ArrayRef>, Vec<Option<String>>) {
    let rows = output.num_rows();
    let errors = match output.column_by_name(ERROR_COLUMN) {
        Some(e) => e
            .as_string::<i32>()
            .iter()
            .map(|v| v.map(|m| super::limits::cut(m.to_owned())))
            .collect(),
        None => vec![None; rows],
    };
    let columns = output.columns()[..step.columns.len()].to_vec();
    (columns, errors)
}

fn unit(
    step: &Step,
    position: usize,
    batch: &RecordBatch,
    ctx: &Context<'_>,
) -> Result<RecordBatch, String> {
    let manifest = step.extractor.manifest();
    let timeouts = &ctx.timeouts[position];
    let max = ctx.options.max_timeouts;
    if max > 0 && timeouts.load(Ordering::Relaxed) >= max {
        return Err(format!(
            "extractor disabled for this run after {max} timeouts"
        ));
    }
    let interrupt = ctx.interrupt;
    if interrupt.is_cancelled() {
        return Err(Fault::Interrupted.to_string());
    }
    // A host at capacity is not the rows' fault: wait for an instance.
    let result = loop {
        match step.extractor.open_until(&step.params, interrupt) {
            Err(CallError::Fault(Fault::Busy(reason))) if !interrupt.is_cancelled() => {
                warn!(extractor = %manifest.id(), %reason, "waiting for an instance");
            }
            opened => break opened.and_then(|mut instance| instance.process(batch, &step.columns)),
        }
    };
    result.map_err(|e| {
        match &e {
            CallError::Fault(Fault::Interrupted | Fault::Busy(_)) => {}
            CallError::Fault(fault) => {
                ctx.incidents.fetch_add(1, Ordering::Relaxed);
                warn!(extractor = %manifest.id(), rows = batch.num_rows(), "incident: {e}");
                if matches!(fault, Fault::Timeout(_)) {
                    timeouts.fetch_add(1, Ordering::Relaxed);
                }
            }
            _ => {}
        }
        e.to_string()
    })
}

/// Checks an extractor's output against its declared columns: the same
/// row count, every declared column with its type, nothing undeclared but
/// a `Utf8` `_error`. Returns the declared columns in order, then `_error`.
pub fn conform(
    output: RecordBatch,
    rows: usize,
    columns: &[ColumnSpec],
) -> Result<RecordBatch, String> {
    if output.num_rows() != rows {
        return Err(format!("returned {} rows for {rows}", output.num_rows()));
    }
    let schema = output.schema();
    for field in schema.fields() {
        let declared = columns.iter().any(|c| c.name == *field.name());
        if !declared && field.name() != ERROR_COLUMN {
            return Err(format!("returned undeclared column `{}`", field.name()));
        }
    }
    let mut fields = Vec::with_capacity(columns.len() + 1);
    let mut arrays = Vec::with_capacity(columns.len() + 1);
    for column in columns {
        let array = output
            .column_by_name(&column.name)
            .ok_or_else(|| format!("did not return declared column `{}`", column.name))?;
        if !array.data_type().equals_datatype(&column.data_type) {
            return Err(format!(
                "returned column `{}` as {}, declared {}",
                column.name,
                array.data_type(),
                column.data_type
            ));
        }
        fields.push(Field::new(&column.name, column.data_type.clone(), true));
        arrays.push(array.clone());
    }
    if let Some(errors) = output.column_by_name(ERROR_COLUMN) {
        if errors.data_type() != &DataType::Utf8 {
            return Err(format!(
                "returned `{ERROR_COLUMN}` as {}, expected Utf8",
                errors.data_type()
            ));
        }
        fields.push(Field::new(ERROR_COLUMN, DataType::Utf8, true));
        arrays.push(errors.clone());
    }
    let options = RecordBatchOptions::new().with_row_count(Some(rows));
    RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), arrays, &options)
        .map_err(|e| e.to_string())
}
