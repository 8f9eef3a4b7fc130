//! A collection's pipeline: the extractors a client chose, resolved against
//! the catalog and planned into tiers.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use std::sync::Arc;

use crate::catalog::{Catalog, CatalogError};
use crate::engine::planner::{Plan, PlanError};
use crate::store::NamespaceId;
use crate::store::registry::{Registry, may_use};

/// One extractor of a pipeline, as a client chose it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtractorRef {
    /// Extractor name; `name@version` pins a version too.
    pub name: String,
    /// Version; when absent, the newest that is not deprecated (a release
    /// before a pre-release).
    #[serde(default)]
    pub version: Option<String>,
    /// Parameters (a JSON object); defaults when absent.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub params: Option<Value>,
}

/// Why a pipeline cannot run, naming the request field at fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct PipelineError {
    /// Path of the field, e.g. `extractors[1].params.k`.
    pub field: String,
    /// What is wrong.
    pub message: String,
    /// Nothing is wrong with the request: an extractor could not be
    /// loaded just now (e.g. the blob store failed), so trying again
    /// later may succeed.
    pub unavailable: bool,
}

fn error(field: impl Into<String>, message: impl Into<String>) -> PipelineError {
    PipelineError {
        field: field.into(),
        message: message.into(),
        unavailable: false,
    }
}

/// `refs` with `name@version` names split into name and version, as a
/// client may write a pinned extractor either way.
pub fn normalized(refs: &[ExtractorRef]) -> Result<Vec<ExtractorRef>, PipelineError> {
    refs.iter()
        .enumerate()
        .map(|(i, r)| match r.name.split_once('@') {
            None => Ok(r.clone()),
            Some(_) if r.version.is_some() => Err(error(
                format!("extractors[{i}].name"),
                "name the version once: `name@version` or `version`, not both",
            )),
            Some((name, version)) if !name.is_empty() && !version.is_empty() => Ok(ExtractorRef {
                name: name.to_owned(),
                version: Some(version.to_owned()),
                params: r.params.clone(),
            }),
            Some(_) => Err(error(
                format!("extractors[{i}].name"),
                "write a pinned extractor as `name@version`",
            )),
        })
        .collect()
}

/// Plans `refs` for namespace `namespace_id`: an extractor it may not use
/// (another namespace's private name, see [`crate::store::registry::may_use`])
/// does not exist for it, and is refused as an unknown one is; the rest is
/// [`plan`], on the blocking pool.
pub async fn plan_in(
    catalog: &Arc<Catalog>,
    registry: &dyn Registry,
    namespace_id: &NamespaceId,
    refs: &[ExtractorRef],
) -> Result<Plan, PipelineError> {
    for (i, r) in refs.iter().enumerate() {
        let record = registry
            .extractor_name(&r.name)
            .await
            .map_err(|e| PipelineError {
                unavailable: true,
                ..error(format!("extractors[{i}]"), e.to_string())
            })?;
        if !may_use(record.as_ref(), namespace_id) {
            return Err(error(
                format!("extractors[{i}].name"),
                CatalogError::UnknownName(r.name.clone()).to_string(),
            ));
        }
    }
    let (catalog, refs) = (catalog.clone(), refs.to_vec());
    tokio::task::spawn_blocking(move || plan(&catalog, &refs))
        .await
        .map_err(|e| PipelineError {
            unavailable: true,
            ..error("extractors", format!("planning was interrupted: {e}"))
        })?
}

/// Resolves `refs` against `catalog` and plans them. Opens each extractor
/// once to check its parameters, so call it off the async runtime.
pub fn plan(catalog: &Catalog, refs: &[ExtractorRef]) -> Result<Plan, PipelineError> {
    if refs.is_empty() {
        return Err(error("extractors", "name at least one extractor"));
    }
    let mut selected = Vec::with_capacity(refs.len());
    for (i, r) in refs.iter().enumerate() {
        let extractor = catalog
            .get(&r.name, r.version.as_deref())
            .map_err(|e| match e {
                CatalogError::UnknownVersion { .. } | CatalogError::AllDeprecated { .. } => {
                    error(format!("extractors[{i}].version"), e.to_string())
                }
                CatalogError::Unavailable { .. } => PipelineError {
                    unavailable: true,
                    ..error(format!("extractors[{i}]"), e.to_string())
                },
                e => error(format!("extractors[{i}].name"), e.to_string()),
            })?;
        let params = match &r.params {
            None | Some(Value::Null) => "{}".to_owned(),
            Some(p @ Value::Object(_)) => p.to_string(),
            Some(_) => {
                return Err(error(
                    format!("extractors[{i}].params"),
                    "must be a JSON object",
                ));
            }
        };
        selected.push((extractor, params));
    }
    let names: Vec<&str> = refs.iter().map(|r| r.name.as_str()).collect();
    Plan::new(selected).map_err(|e| {
        let field = e.field(&names);
        match &e {
            PlanError::InvalidParam { message, .. } => error(field, message.clone()),
            PlanError::Busy { .. } => PipelineError {
                unavailable: true,
                ..error(field, e.to_string())
            },
            _ => error(field, e.to_string()),
        }
    })
}

/// A hash of what a plan produces: each step's extractor version, component
/// hash and parameters, and the output schema. Documents written under the
/// same signature are comparable.
pub fn index_signature(plan: &Plan) -> String {
    let steps: Vec<Value> = plan
        .steps()
        .map(|s| {
            let params: Value = serde_json::from_str(&s.params).unwrap_or(Value::Null);
            serde_json::json!([
                s.extractor.manifest().id(),
                s.extractor.content_hash(),
                canonical(&params)
            ])
        })
        .collect();
    let schema = serde_json::to_value(plan.summary().output_schema).unwrap_or(Value::Null);
    let text = serde_json::json!([steps, schema]).to_string();
    format!(
        "sig_{}",
        &hex::encode(Sha256::digest(text.as_bytes()))[..32]
    )
}

/// `value` with object keys sorted, at every depth.
fn canonical(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k.clone(), canonical(v)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
        v => v.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_ignores_key_order() {
        let a: Value =
            serde_json::from_str(r#"{"b": 1, "a": {"d": [1, {"f": 2, "e": 3}], "c": 0}}"#)
                .expect("json");
        let b: Value =
            serde_json::from_str(r#"{"a": {"c": 0, "d": [1, {"e": 3, "f": 2}]}, "b": 1}"#)
                .expect("json");
        assert_eq!(canonical(&a).to_string(), canonical(&b).to_string());
        assert_ne!(a.to_string(), b.to_string());
    }

    #[test]
    fn a_name_may_carry_its_version() {
        let r = |name: &str, version: Option<&str>| ExtractorRef {
            name: name.into(),
            version: version.map(Into::into),
            params: None,
        };
        let refs = normalized(&[r("keywords@1.2.0", None), r("entities", None)]).expect("ok");
        assert_eq!(refs, [r("keywords", Some("1.2.0")), r("entities", None)]);
        for bad in [
            r("keywords@1.2.0", Some("1.2.0")),
            r("keywords@", None),
            r("@1.0.0", None),
        ] {
            let e = normalized(&[r("entities", None), bad]).expect_err("refused");
            assert_eq!(e.field, "extractors[1].name");
        }
    }

    #[test]
    fn an_empty_pipeline_names_the_field() {
        let e = plan(&Catalog::default(), &[]).expect_err("empty");
        assert_eq!(e.field, "extractors");
        let r = ExtractorRef {
            name: "nope".into(),
            version: None,
            params: None,
        };
        let e = plan(&Catalog::default(), &[r]).expect_err("unknown");
        assert_eq!(e.field, "extractors[0].name");
    }
}
