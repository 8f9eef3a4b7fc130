//! `strata run`: a pipeline over every file of a directory, without a
//! server. The object key is the path relative to the directory.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use parquet::arrow::ArrowWriter;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use arrow_schema::SchemaRef;

use crate::engine::executor::{ExecOptions, Finished, ObjectInput, Stats, execute, flat_schema};
use crate::engine::planner::{Plan, PlanError};
use crate::engine::{Engine, Extractor, LoadError};

/// Why a run could not start or finish.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The pipeline file is unreadable or wrong.
    #[error("{path}: {message}")]
    Pipeline {
        /// The pipeline file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A component could not be loaded.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The pipeline cannot be planned.
    #[error("{path}: {field}: {source}")]
    Plan {
        /// The pipeline file.
        path: String,
        /// Where in the file: `extractors[i]`, `extractors[i].params.p`.
        field: String,
        /// What is wrong.
        #[source]
        source: Box<PlanError>,
    },
    /// The input directory cannot be listed.
    #[error("{path}: {message}")]
    Input {
        /// The directory.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The output cannot be written.
    #[error("{path}: {message}")]
    Output {
        /// The output file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// A pipeline file: extractors with their parameters.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineFile {
    /// Objects per chunk, the record batch each extractor call takes
    /// (`batch_size`, its former name, is accepted).
    #[serde(alias = "batch_size")]
    pub chunk_objects: Option<usize>,
    /// The extractors, in any order.
    pub extractors: Vec<PipelineEntry>,
}

/// One extractor of a pipeline file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineEntry {
    /// Extractor name, looked up in the plugins directory.
    pub name: Option<String>,
    /// Path of the component, relative to the pipeline file.
    pub component: Option<PathBuf>,
    /// Parameters.
    #[serde(default)]
    pub params: toml::Table,
}

/// Settings of a run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The pipeline file.
    pub pipeline: PathBuf,
    /// The directory of input files.
    pub input: PathBuf,
    /// Output file: `.jsonl`, `.parquet`, or `-` for JSON lines on stdout.
    pub output: PathBuf,
    /// Where extractors named without a component path are found.
    pub plugins: PathBuf,
    /// Execution settings; `exec.chunk_objects` applies when neither
    /// `chunk_objects` here nor the pipeline file sets one.
    pub exec: ExecOptions,
    /// Objects per chunk, overriding the pipeline file.
    pub chunk_objects: Option<usize>,
    /// Files larger than this fail as objects instead of being read.
    pub max_object_bytes: u64,
    /// Show a progress bar on stderr.
    pub progress: bool,
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// Counts.
    pub stats: Stats,
    /// Wall time.
    pub elapsed: Duration,
}

/// Loads the extractors of a pipeline file and plans them; returns the
/// plan and the file's `chunk_objects`, if any.
pub fn load_pipeline(
    engine: &Engine,
    path: &Path,
    plugins: &Path,
) -> Result<(Plan, Option<usize>), RunError> {
    let pipeline_error = |message: String| RunError::Pipeline {
        path: path.display().to_string(),
        message,
    };
    let text =
        std::fs::read_to_string(path).map_err(|e| pipeline_error(format!("cannot read: {e}")))?;
    let file: PipelineFile = toml::from_str(&text).map_err(|e| pipeline_error(e.to_string()))?;
    if file.chunk_objects == Some(0) {
        return Err(pipeline_error("chunk_objects: must be at least 1".into()));
    }
    if file.extractors.is_empty() {
        return Err(pipeline_error(
            "extractors: the pipeline has no extractor".into(),
        ));
    }
    let base = path.parent().unwrap_or(Path::new("."));
    let mut selected: Vec<(Extractor, String)> = Vec::new();
    for (i, entry) in file.extractors.iter().enumerate() {
        let component = match (&entry.component, &entry.name) {
            (Some(component), _) => base.join(component),
            (None, Some(name)) => find_component(plugins, name).ok_or_else(|| {
                pipeline_error(format!(
                    "extractors[{i}]: no component for `{name}` in {} (looked for {name}.wasm and {}.wasm)",
                    plugins.display(),
                    name.replace('-', "_")
                ))
            })?,
            (None, None) => {
                return Err(pipeline_error(format!("extractors[{i}]: give `name` or `component`")));
            }
        };
        let extractor = engine.load(&component)?;
        if let Some(name) = entry
            .name
            .as_ref()
            .filter(|n| **n != extractor.manifest().name)
        {
            return Err(pipeline_error(format!(
                "extractors[{i}]: {} is extractor `{}`, not `{name}`",
                component.display(),
                extractor.manifest().name
            )));
        }
        let params =
            serde_json::to_string(&entry.params).map_err(|e| pipeline_error(e.to_string()))?;
        selected.push((extractor, params));
    }
    let names: Vec<String> = selected
        .iter()
        .map(|(e, _)| e.manifest().name.clone())
        .collect();
    let plan = Plan::new(selected).map_err(|source| RunError::Plan {
        path: path.display().to_string(),
        field: source.field(&names),
        source: Box::new(source),
    })?;
    Ok((plan, file.chunk_objects))
}

/// `DIR/NAME.wasm` or `DIR/NAME_WITH_UNDERSCORES.wasm`.
pub fn find_component(dir: &Path, name: &str) -> Option<PathBuf> {
    [
        format!("{name}.wasm"),
        format!("{}.wasm", name.replace('-', "_")),
    ]
    .into_iter()
    .map(|f| dir.join(f))
    .find(|p| p.is_file())
}

/// Runs a pipeline over a directory and writes one document per file.
pub fn run(engine: &Engine, mut options: RunOptions) -> Result<RunSummary, RunError> {
    let started = Instant::now();
    let (plan, file_chunk) = load_pipeline(engine, &options.pipeline, &options.plugins)?;
    if let Some(rows) = options.chunk_objects.or(file_chunk) {
        options.exec.chunk_objects = rows;
    }
    let root = options.input.canonicalize().map_err(|e| RunError::Input {
        path: options.input.display().to_string(),
        message: format!("cannot open: {e}"),
    })?;
    // The output may sit inside the input directory, even from an earlier
    // run: it is never read as an object.
    let files = list_files(
        &root,
        &options.input,
        output_path(&options.output).as_deref(),
    )?;
    let progress = if options.progress {
        let bar =
            ProgressBar::with_draw_target(Some(files.len() as u64), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} objects · {per_sec} · ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let mut writer = OutputWriter::create(&options.output, flat_schema(&plan))?;
    let max_bytes = options.max_object_bytes;
    let objects = files
        .into_iter()
        .map(move |path| read_object(&root, &path, max_bytes));
    let stats = execute(&plan, &options.exec, objects, |finished| {
        writer.write(&finished)?;
        progress.inc(finished.len() as u64);
        Ok::<(), RunError>(())
    })?;
    writer.finish()?;
    progress.finish_and_clear();
    Ok(RunSummary {
        stats,
        elapsed: started.elapsed(),
    })
}

/// Where the output file will be, with its directory resolved (`None` for
/// standard output or a directory that does not exist).
fn output_path(output: &Path) -> Option<PathBuf> {
    if output == Path::new("-") {
        return None;
    }
    let parent = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    Some(parent.canonicalize().ok()?.join(output.file_name()?))
}

/// Every file under `dir` (a resolved path; errors name it as `given`) but
/// `skip`, in name order.
fn list_files(dir: &Path, given: &Path, skip: Option<&Path>) -> Result<Vec<PathBuf>, RunError> {
    let input_error = |message: String| RunError::Input {
        path: given.display().to_string(),
        message,
    };
    if !dir.is_dir() {
        return Err(input_error("not a directory".into()));
    }
    let mut files = Vec::new();
    for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let entry = entry.map_err(|e| input_error(format!("cannot list: {e}")))?;
        if entry.file_type().is_file() && Some(entry.path()) != skip {
            files.push(entry.into_path());
        }
    }
    Ok(files)
}

/// Reads one file as an object; a file that cannot be read becomes an
/// object with an error, not a failed run.
fn read_object(root: &Path, path: &Path, max_bytes: u64) -> ObjectInput {
    let key = path
        .strip_prefix(root)
        .unwrap_or(path)
        .components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/");
    let content = match std::fs::metadata(path) {
        Ok(m) if m.len() > max_bytes => Err(format!(
            "file of {} bytes exceeds the {max_bytes}-byte limit",
            m.len()
        )),
        Ok(_) => std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display())),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    };
    let mime_type = match &content {
        Ok(bytes) => sniff_mime(path, bytes),
        Err(_) => "application/octet-stream".to_owned(),
    };
    ObjectInput {
        object_id: object_id(&key),
        key,
        mime_type,
        metadata: None,
        content,
    }
}

/// A stable object id for a key.
pub fn object_id(key: &str) -> String {
    let digest = hex::encode(Sha256::digest(key.as_bytes()));
    format!("obj_{}", &digest[..20])
}

/// The MIME type of a file: from its extension, else from its first bytes,
/// else `text/plain` for UTF-8 and `application/octet-stream` for the rest.
/// `bytes` may be only the first bytes of the content.
pub fn sniff_mime(path: &Path, bytes: &[u8]) -> String {
    if let Some(mime) = mime_guess::from_path(path).first() {
        return mime.essence_str().to_owned();
    }
    if let Some(kind) = infer::get(bytes) {
        return kind.mime_type().to_owned();
    }
    // `bytes` may be the head of a longer content, cut inside a character.
    let utf8 = match std::str::from_utf8(bytes) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none(),
    };
    if utf8 {
        "text/plain".to_owned()
    } else {
        "application/octet-stream".to_owned()
    }
}

/// Any error of the output's writers, before it becomes a [`RunError`].
type BoxError = Box<dyn std::error::Error + Send + Sync>;

enum OutputWriter {
    JsonLines(Box<dyn Write>, String),
    Parquet(Box<ArrowWriter<File>>, String),
}

impl OutputWriter {
    /// Opens the output; a Parquet file gets `schema` even if no object
    /// comes.
    fn create(path: &Path, schema: SchemaRef) -> Result<Self, RunError> {
        let name = path.display().to_string();
        let output_error = |message: String| RunError::Output {
            path: name.clone(),
            message,
        };
        if path == Path::new("-") {
            return Ok(OutputWriter::JsonLines(
                Box::new(BufWriter::new(std::io::stdout())),
                name,
            ));
        }
        let extension = path.extension().and_then(|e| e.to_str());
        if !matches!(extension, Some("jsonl" | "ndjson" | "parquet")) {
            return Err(output_error(
                "unknown output format: use .jsonl, .parquet or -".into(),
            ));
        }
        let file = File::create(path).map_err(|e| output_error(format!("cannot create: {e}")))?;
        if extension == Some("parquet") {
            let writer = ArrowWriter::try_new(file, schema, None)
                .map_err(|e| output_error(e.to_string()))?;
            Ok(OutputWriter::Parquet(Box::new(writer), name))
        } else {
            Ok(OutputWriter::JsonLines(
                Box::new(BufWriter::new(file)),
                name,
            ))
        }
    }

    fn path(&self) -> &str {
        match self {
            OutputWriter::JsonLines(_, path) | OutputWriter::Parquet(_, path) => path,
        }
    }

    fn write(&mut self, finished: &Finished<'_>) -> Result<(), RunError> {
        let result = match self {
            OutputWriter::JsonLines(out, _) => finished.documents().iter().try_for_each(|doc| {
                serde_json::to_writer(&mut *out, doc)?;
                out.write_all(b"\n")?;
                Ok::<(), BoxError>(())
            }),
            OutputWriter::Parquet(writer, _) => finished
                .record_batch()
                .map_err(BoxError::from)
                .and_then(|batch| Ok(writer.write(&batch)?)),
        };
        result.map_err(|e| RunError::Output {
            path: self.path().to_owned(),
            message: e.to_string(),
        })
    }

    fn finish(self) -> Result<(), RunError> {
        let path = self.path().to_owned();
        let result = match self {
            OutputWriter::JsonLines(mut out, _) => out.flush().map_err(BoxError::from),
            OutputWriter::Parquet(writer, _) => writer.close().map(|_| ()).map_err(BoxError::from),
        };
        result.map_err(|e| RunError::Output {
            path,
            message: e.to_string(),
        })
    }
}
