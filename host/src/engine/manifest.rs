//! The host's view of an extractor manifest, checked for consistency.

use std::str::FromStr;

use arrow_schema::DataType;
use serde::Serialize;

use super::bindings::strata::extractor::types as wit;
use super::limits::{
    self, MAX_DESCRIPTION_BYTES, MAX_LIST_ENTRIES, MAX_NAME_BYTES, MAX_OUTPUT_COLUMNS,
    MAX_PARAMS_SCHEMA_BYTES, MAX_TYPE_BYTES,
};

/// Columns every object has; extractors may read them by these names.
pub const OBJECT_COLUMNS: [&str; 5] = ["object_id", "key", "content", "mime_type", "metadata"];

/// One output column, with its parsed Arrow type.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ColumnSpec {
    /// Name without the extractor prefix.
    pub name: String,
    /// Arrow type.
    #[serde(serialize_with = "display")]
    pub data_type: DataType,
    /// Whether nulls may appear.
    pub nullable: bool,
    /// For people.
    pub description: String,
}

fn display<S: serde::Serializer>(t: &DataType, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(t)
}

/// A checked manifest.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Manifest {
    /// Extractor name.
    pub name: String,
    /// Semantic version.
    pub version: semver::Version,
    /// One line for people.
    pub description: String,
    /// Extractors whose outputs this one reads.
    pub depends_on: Vec<String>,
    /// Input columns.
    pub inputs: Vec<String>,
    /// Output columns with default parameters.
    pub outputs: Vec<ColumnSpec>,
    /// JSON Schema of the parameters.
    pub params_schema: serde_json::Value,
    /// MIME patterns; empty for all.
    pub mime_types: Vec<String>,
    /// Preferred rows per call.
    pub batch_size: u32,
    /// Memory wanted, in MiB.
    pub memory_limit_mb: u32,
}

/// What is wrong with a manifest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ManifestError {
    /// The manifest field at fault.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

fn bad(field: impl Into<String>, message: impl Into<String>) -> ManifestError {
    ManifestError {
        field: field.into(),
        message: message.into(),
    }
}

/// Whether `name` is a valid extractor name: lower-case letters, digits and
/// single `-` inside, 1 to 64 characters.
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && name.as_bytes()[0].is_ascii_lowercase()
        && !name.ends_with('-')
        && !name.contains("--")
}

/// A plugin's text shown in an error: at most 64 bytes of it.
fn shown(text: &str) -> String {
    let mut end = text.len().min(MAX_NAME_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    match end < text.len() {
        true => format!("{}…", &text[..end]),
        false => text.to_owned(),
    }
}

/// Refuses a text over `max` bytes.
fn at_most(field: &str, text: &str, max: usize) -> Result<(), ManifestError> {
    if text.len() > max {
        return Err(bad(
            field,
            format!("{} bytes, more than the {max} allowed", text.len()),
        ));
    }
    Ok(())
}

/// Refuses a list of more than [`MAX_LIST_ENTRIES`] entries.
fn few<T>(field: &str, list: &[T]) -> Result<(), ManifestError> {
    if list.len() > MAX_LIST_ENTRIES {
        return Err(bad(
            field,
            format!(
                "{} entries, more than the {MAX_LIST_ENTRIES} allowed",
                list.len()
            ),
        ));
    }
    Ok(())
}

/// A MIME type without its parameters (`text/html; charset=utf-8` →
/// `text/html`).
pub fn mime_essence(mime: &str) -> &str {
    mime.split(';').next().unwrap_or("").trim()
}

/// Parses an output column from its WIT form; its type must be one
/// documents can carry.
pub fn column(field: &str, c: wit::Column) -> Result<ColumnSpec, ManifestError> {
    if c.name.is_empty()
        || c.name.len() > MAX_NAME_BYTES
        || c.name.starts_with('_')
        || c.name.contains('.')
    {
        return Err(bad(
            field,
            format!(
                "column name `{}` must be 1 to {MAX_NAME_BYTES} bytes, without `.` and not start with `_`",
                shown(&c.name)
            ),
        ));
    }
    let at = format!("{field}.{}", c.name);
    at_most(
        &format!("{at}.description"),
        &c.description,
        MAX_DESCRIPTION_BYTES,
    )?;
    at_most(&format!("{at}.data_type"), &c.data_type, MAX_TYPE_BYTES)?;
    let data_type = DataType::from_str(&c.data_type)
        .map_err(|e| bad(&at, format!("unknown Arrow type `{}`: {e}", c.data_type)))?;
    limits::check_output_type(&data_type)
        .map_err(|reason| bad(&at, format!("type `{data_type}`: {reason}")))?;
    Ok(ColumnSpec {
        name: c.name,
        data_type,
        nullable: c.nullable,
        description: c.description,
    })
}

impl TryFrom<wit::Manifest> for Manifest {
    type Error = ManifestError;

    fn try_from(m: wit::Manifest) -> Result<Self, ManifestError> {
        // Sizes first: nothing large is looked at before it is known to be
        // small enough.
        if m.outputs.len() > MAX_OUTPUT_COLUMNS {
            return Err(bad(
                "outputs",
                format!(
                    "{} columns, more than the {MAX_OUTPUT_COLUMNS} allowed",
                    m.outputs.len()
                ),
            ));
        }
        few("depends_on", &m.depends_on)?;
        few("inputs", &m.inputs)?;
        few("mime_types", &m.mime_types)?;
        at_most("version", &m.version, MAX_NAME_BYTES)?;
        at_most("description", &m.description, MAX_DESCRIPTION_BYTES)?;
        at_most("params_schema", &m.params_schema, MAX_PARAMS_SCHEMA_BYTES)?;
        for (field, list) in [("inputs", &m.inputs), ("mime_types", &m.mime_types)] {
            if let Some(long) = list.iter().find(|s| s.len() > 2 * MAX_NAME_BYTES + 1) {
                return Err(bad(field, format!("`{}` is too long", shown(long))));
            }
        }
        if !valid_name(&m.name) {
            return Err(bad(
                "name",
                format!(
                    "`{}` is not a valid name (lower-case letters, digits and `-`)",
                    shown(&m.name)
                ),
            ));
        }
        let version = semver::Version::parse(&m.version).map_err(|e| {
            bad(
                "version",
                format!("`{}` is not a semantic version: {e}", m.version),
            )
        })?;
        for dep in &m.depends_on {
            if !valid_name(dep) {
                return Err(bad(
                    "depends_on",
                    format!("`{}` is not a valid extractor name", shown(dep)),
                ));
            }
            if *dep == m.name {
                return Err(bad("depends_on", format!("`{}` depends on itself", m.name)));
            }
        }
        for input in &m.inputs {
            match input.split_once('.') {
                Some((dep, column)) => {
                    if !m.depends_on.iter().any(|d| d == dep) {
                        return Err(bad(
                            "inputs",
                            format!(
                                "`{input}` reads extractor `{dep}`, which is not in depends_on"
                            ),
                        ));
                    }
                    if column.is_empty() {
                        return Err(bad("inputs", format!("`{input}` names no column")));
                    }
                }
                None if OBJECT_COLUMNS.contains(&input.as_str()) => {}
                None => {
                    return Err(bad(
                        "inputs",
                        format!(
                            "`{input}` is neither an object column ({}) nor `extractor.column`",
                            OBJECT_COLUMNS.join(", ")
                        ),
                    ));
                }
            }
        }
        let mut outputs: Vec<ColumnSpec> = Vec::with_capacity(m.outputs.len());
        for c in m.outputs {
            let c = column("outputs", c)?;
            if outputs.iter().any(|o| o.name == c.name) {
                return Err(bad(
                    "outputs",
                    format!("column `{}` is declared twice", c.name),
                ));
            }
            outputs.push(c);
        }
        if outputs.is_empty() {
            return Err(bad("outputs", "declares no output column"));
        }
        let params_schema: serde_json::Value = serde_json::from_str(&m.params_schema)
            .map_err(|e| bad("params_schema", format!("not JSON: {e}")))?;
        if !params_schema.is_object() {
            return Err(bad("params_schema", "must be a JSON Schema object"));
        }
        for pattern in &m.mime_types {
            let ok = pattern
                .split_once('/')
                .is_some_and(|(t, s)| !t.is_empty() && !s.is_empty() && t != "*");
            if !ok {
                return Err(bad(
                    "mime_types",
                    format!("`{pattern}` is not `type/subtype` or `type/*`"),
                ));
            }
        }
        if m.batch_size == 0 {
            return Err(bad("batch_size", "must be at least 1"));
        }
        if m.memory_limit_mb == 0 {
            return Err(bad("memory_limit_mb", "must be at least 1"));
        }
        Ok(Manifest {
            name: m.name,
            version,
            description: m.description,
            depends_on: m.depends_on,
            inputs: m.inputs,
            outputs,
            params_schema,
            mime_types: m.mime_types,
            batch_size: m.batch_size,
            memory_limit_mb: m.memory_limit_mb,
        })
    }
}

impl Manifest {
    /// `name@version`.
    pub fn id(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }

    /// Whether the extractor applies to objects of MIME type `mime`
    /// (parameters such as `; charset=` ignored).
    pub fn applies_to(&self, mime: &str) -> bool {
        if self.mime_types.is_empty() {
            return true;
        }
        let essence = mime_essence(mime);
        self.mime_types
            .iter()
            .any(|pattern| match pattern.strip_suffix("/*") {
                Some(top) => essence
                    .split_once('/')
                    .is_some_and(|(t, _)| t.eq_ignore_ascii_case(top)),
                None => essence.eq_ignore_ascii_case(pattern),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> wit::Manifest {
        wit::Manifest {
            name: "words".into(),
            version: "1.2.3".into(),
            description: "d".into(),
            depends_on: vec!["text-extract".into()],
            inputs: vec!["text-extract.text".into(), "mime_type".into()],
            outputs: vec![wit::Column {
                name: "count".into(),
                data_type: "UInt32".into(),
                nullable: true,
                description: String::new(),
            }],
            params_schema: "{}".into(),
            mime_types: vec!["text/*".into()],
            batch_size: 10,
            memory_limit_mb: 10,
        }
    }

    fn check(change: impl FnOnce(&mut wit::Manifest), expected: &str) {
        let mut m = manifest();
        change(&mut m);
        let got = Manifest::try_from(m).expect_err("rejected");
        assert_eq!(got.to_string(), expected);
    }

    #[test]
    fn accepts_a_consistent_manifest() {
        let m = Manifest::try_from(manifest()).expect("valid");
        assert_eq!(m.id(), "words@1.2.3");
        assert!(m.applies_to("text/plain; charset=utf-8"));
        assert!(m.applies_to("TEXT/HTML"));
        assert!(!m.applies_to("image/png"));
    }

    #[test]
    fn rejects_inconsistencies_naming_the_field() {
        check(
            |m| m.name = "Bad Name".into(),
            "name: `Bad Name` is not a valid name (lower-case letters, digits and `-`)",
        );
        check(
            |m| m.version = "1.0".into(),
            "version: `1.0` is not a semantic version: unexpected end of input while parsing minor version number",
        );
        check(
            |m| m.inputs.push("other.text".into()),
            "inputs: `other.text` reads extractor `other`, which is not in depends_on",
        );
        check(
            |m| m.inputs.push("body".into()),
            "inputs: `body` is neither an object column (object_id, key, content, mime_type, metadata) nor `extractor.column`",
        );
        check(
            |m| m.outputs[0].data_type = "Utf9".into(),
            "outputs.count: unknown Arrow type `Utf9`: Parser error: Unsupported type 'Utf9'. Must be a supported arrow type name such as 'Int32' or 'Timestamp(ns)'. Error unknown token: Utf9",
        );
        check(
            |m| m.outputs.push(m.outputs[0].clone()),
            "outputs: column `count` is declared twice",
        );
        check(|m| m.outputs.clear(), "outputs: declares no output column");
        check(
            |m| m.depends_on.push("words".into()),
            "depends_on: `words` depends on itself",
        );
        check(
            |m| m.params_schema = "[".into(),
            "params_schema: not JSON: EOF while parsing a list at line 1 column 1",
        );
        check(
            |m| m.mime_types = vec!["*/*".into()],
            "mime_types: `*/*` is not `type/subtype` or `type/*`",
        );
        check(|m| m.batch_size = 0, "batch_size: must be at least 1");
    }

    #[test]
    fn refuses_what_could_flood_the_host_naming_the_field() {
        check(
            |m| m.outputs[0].data_type = "FixedSizeList(1000 x Dictionary(Int32, Utf8))".into(),
            &format!(
                "outputs.count: type `FixedSizeList(1000 x Dictionary(Int32, Utf8))`: \
                 Dictionary(Int32, Utf8) is not an output type (allowed: {})",
                limits::OUTPUT_TYPES
            ),
        );
        check(
            |m| m.outputs = vec![m.outputs[0].clone(); 257],
            "outputs: 257 columns, more than the 256 allowed",
        );
        check(
            |m| m.params_schema = " ".repeat(70_000),
            "params_schema: 70000 bytes, more than the 65536 allowed",
        );
        check(
            |m| m.outputs[0].description = "d".repeat(2000),
            "outputs.count.description: 2000 bytes, more than the 1024 allowed",
        );
        check(
            |m| m.mime_types = vec!["text/*".into(); 65],
            "mime_types: 65 entries, more than the 64 allowed",
        );
        check(
            |m| m.name = "n".repeat(100),
            &format!(
                "name: `{}…` is not a valid name (lower-case letters, digits and `-`)",
                "n".repeat(64)
            ),
        );
    }
}
