//! What a run produces: one document per object (features as JSON, row
//! errors, processing history) or one flat record batch per chunk.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use serde::Serialize;
use serde_json::{Map, Value};

use super::executor::{Chunk, RowStatus, Stats, StepResult};
use super::features;
use super::limits;
use super::planner::{Plan, Step};
use crate::time::Timestamp;

/// A row error in a document.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RowError {
    /// Extractor name, or `object` when the object could not be read.
    pub extractor: String,
    /// What went wrong.
    pub message: String,
}

/// One enrichment operation on one object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryEntry {
    /// Extractor name.
    pub extractor: String,
    /// Extractor version.
    pub version: String,
    /// Tier, from 0.
    pub tier: usize,
    /// When the call that processed the object started (RFC 3339).
    pub started_at: Option<Timestamp>,
    /// How long that call took, in milliseconds.
    pub duration_ms: Option<f64>,
    /// `completed`, `failed`, `skipped` (a dependency failed) or
    /// `not_applicable` (MIME type).
    pub outcome: &'static str,
}

/// The result for one object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Document {
    /// Object id.
    pub object_id: String,
    /// Object key.
    pub key: String,
    /// MIME type.
    pub mime_type: String,
    /// User metadata of the object.
    pub metadata: Option<Value>,
    /// Outputs by extractor name, then column name.
    pub features: Map<String, Value>,
    /// Row errors.
    pub errors: Vec<RowError>,
    /// `name@version` of every extractor that produced features.
    pub extractors: Vec<String>,
    /// Processing history, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub processing_history: Option<Vec<HistoryEntry>>,
}

/// A batch of objects that went through every tier.
pub struct Finished<'a> {
    pub(super) plan: &'a Plan,
    pub(super) steps: &'a [&'a Step],
    pub(super) chunk: Chunk,
    pub(super) history: bool,
}

impl Finished<'_> {
    /// Number of objects.
    pub fn len(&self) -> usize {
        self.chunk.base.num_rows()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn results(&self) -> impl Iterator<Item = (&Step, &StepResult)> {
        self.steps
            .iter()
            .zip(&self.chunk.results)
            .filter_map(|(s, r)| r.as_ref().map(|r| (*s, r)))
    }

    pub(super) fn count(&self, stats: &mut Stats) {
        for row in 0..self.len() {
            let errors = self.row_errors(row);
            for error in &errors {
                *stats
                    .errors_by_extractor
                    .entry(error.extractor.clone())
                    .or_default() += 1;
            }
            stats.objects += 1;
            stats.failed_objects += u64::from(!errors.is_empty());
        }
    }

    /// One document per object.
    pub fn documents(&self) -> Vec<Document> {
        let rows = self.len();
        let base = &self.chunk.base;
        let ids = base.column(0).as_string::<i32>();
        let keys = base.column(1).as_string::<i32>();
        let mimes = base.column(3).as_string::<i32>();
        let metadata = base.column(4).as_string::<i32>();
        (0..rows)
            .map(|row| {
                let mut doc = Document {
                    object_id: ids.value(row).to_owned(),
                    key: keys.value(row).to_owned(),
                    mime_type: mimes.value(row).to_owned(),
                    metadata: metadata
                        .is_valid(row)
                        .then(|| serde_json::from_str(metadata.value(row)).ok())
                        .flatten(),
                    features: Map::new(),
                    errors: self.row_errors(row),
                    extractors: Vec::new(),
                    processing_history: self.history.then(Vec::new),
                };
                for (step, result) in self.results() {
                    let manifest = step.extractor.manifest();
                    let outcome = match &result.status[row] {
                        RowStatus::Completed => {
                            let names = step.columns.iter().map(|c| c.name.as_str());
                            let values = features::row_object(names, &result.outputs, row);
                            doc.features
                                .insert(manifest.name.clone(), Value::Object(values));
                            doc.extractors.push(manifest.id());
                            "completed"
                        }
                        RowStatus::Failed(_) => "failed",
                        RowStatus::Skipped => "skipped",
                        RowStatus::NotApplicable => "not_applicable",
                    };
                    if let Some(history) = &mut doc.processing_history {
                        let timing = result.timing[row];
                        history.push(HistoryEntry {
                            extractor: manifest.name.clone(),
                            version: manifest.version.to_string(),
                            tier: step.tier,
                            started_at: timing.map(|(t, _)| {
                                Timestamp::from(chrono::DateTime::<chrono::Utc>::from(t))
                            }),
                            duration_ms: timing.map(|(_, d)| d.as_secs_f64() * 1000.0),
                            outcome,
                        });
                    }
                }
                for (name, message) in limits::bound_features(&mut doc.features) {
                    doc.extractors
                        .retain(|id| id.split_once('@').is_none_or(|(n, _)| n != name));
                    if let Some(history) = &mut doc.processing_history {
                        for entry in history.iter_mut().filter(|e| e.extractor == name) {
                            entry.outcome = "failed";
                        }
                    }
                    doc.errors.push(RowError {
                        extractor: name,
                        message,
                    });
                }
                doc
            })
            .collect()
    }

    /// The batch flattened for columnar output: object columns (without
    /// content), then `extractor.column` for every output, then `errors`
    /// (a JSON array, null when there are none).
    pub fn record_batch(&self) -> Result<RecordBatch, arrow_schema::ArrowError> {
        let base = &self.chunk.base;
        let mut arrays = vec![
            base.column(0).clone(),
            base.column(1).clone(),
            base.column(3).clone(),
        ];
        for (_, result) in self.results() {
            arrays.extend(result.outputs.iter().cloned());
        }
        let errors: StringArray = (0..self.len())
            .map(|row| self.row_errors(row))
            .map(|e| (!e.is_empty()).then(|| serde_json::to_string(&e).unwrap_or_default()))
            .collect();
        arrays.push(Arc::new(errors));
        RecordBatch::try_new(flat_schema(self.plan), arrays)
    }

    /// The errors of one object: unreadable, then each failed extractor.
    fn row_errors(&self, row: usize) -> Vec<RowError> {
        let object = self.chunk.object_errors[row].iter().map(|m| RowError {
            extractor: "object".into(),
            message: m.clone(),
        });
        let extractors = self
            .results()
            .filter_map(|(step, result)| match &result.status[row] {
                RowStatus::Failed(message) => Some(RowError {
                    extractor: step.extractor.manifest().name.clone(),
                    message: message.clone(),
                }),
                _ => None,
            });
        object.chain(extractors).collect()
    }
}

/// The schema of [`Finished::record_batch`] for a plan.
pub fn flat_schema(plan: &Plan) -> SchemaRef {
    let mut fields = vec![
        Field::new("object_id", DataType::Utf8, false),
        Field::new("key", DataType::Utf8, false),
        Field::new("mime_type", DataType::Utf8, false),
    ];
    for step in plan.steps() {
        let name = &step.extractor.manifest().name;
        for spec in &step.columns {
            fields.push(Field::new(
                format!("{name}.{}", spec.name),
                spec.data_type.clone(),
                true,
            ));
        }
    }
    fields.push(Field::new("errors", DataType::Utf8, true));
    Arc::new(Schema::new(fields))
}
