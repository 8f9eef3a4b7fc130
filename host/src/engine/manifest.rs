//! The host's view of an extractor manifest, checked for consistency.

use std::str::FromStr;

use arrow_schema::DataType;
use serde::Serialize;

use super::bindings::strata::extractor::types as wit;

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

/// Parses an output column from its WIT form.
pub fn column(field: &str, c: wit::Column) -> Result<ColumnSpec, ManifestError> {
    if c.name.is_empty() || c.name.starts_with('_') || c.name.contains('.') {
        return Err(bad(
            field,
            format!(
                "column name `{}` must be non-empty, without `.` and not start with `_`",
                c.name
            ),
        ));
    }
    let data_type = DataType::from_str(&c.data_type).map_err(|e| {
        bad(
            format!("{field}.{}", c.name),
            format!("unknown Arrow type `{}`: {e}", c.data_type),
        )
    })?;
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
        if !valid_name(&m.name) {
            return Err(bad(
                "name",
                format!(
                    "`{}` is not a valid name (lower-case letters, digits and `-`)",
                    m.name
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
                    format!("`{dep}` is not a valid extractor name"),
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
        let essence = mime.split(';').next().unwrap_or("").trim();
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
}
