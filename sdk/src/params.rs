use serde_json::{Map, Value, json};

/// Why a session could not be opened.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OpenError {
    /// A parameter is missing, unknown or out of range.
    #[error("parameter `{param}`: {message}")]
    InvalidParam {
        /// The parameter's name.
        param: String,
        /// What is wrong.
        message: String,
    },
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

impl OpenError {
    /// A bad parameter.
    pub fn invalid(param: &str, message: impl Into<String>) -> Self {
        OpenError::InvalidParam {
            param: param.to_owned(),
            message: message.into(),
        }
    }
}

/// A parameter an extractor accepts, declared once: the manifest's JSON
/// Schema and the checks in `open` both come from it.
///
/// ```
/// use strata_sdk::{Param, Params};
///
/// const K: Param = Param::uint("k", 10, 1, 100, "number of key phrases kept");
///
/// let params = Params::parse(r#"{"k": 5}"#).expect("JSON object");
/// params.check(&[K]).expect("only declared parameters");
/// assert_eq!(params.uint(&K), Ok(5));
/// assert_eq!(Params::default().uint(&K), Ok(10));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Param {
    name: &'static str,
    kind: Kind,
    description: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    UInt { default: u32, min: u32, max: u32 },
    Bool { default: bool },
}

impl Param {
    /// An unsigned integer in `min..=max`, `default` when absent.
    pub const fn uint(
        name: &'static str,
        default: u32,
        min: u32,
        max: u32,
        description: &'static str,
    ) -> Self {
        Param {
            name,
            kind: Kind::UInt { default, min, max },
            description,
        }
    }

    /// A boolean, `default` when absent.
    pub const fn boolean(name: &'static str, default: bool, description: &'static str) -> Self {
        Param {
            name,
            kind: Kind::Bool { default },
            description,
        }
    }

    /// The parameter's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    fn schema(&self) -> Value {
        match self.kind {
            Kind::UInt { default, min, max } => json!({
                "type": "integer", "minimum": min, "maximum": max, "default": default,
                "description": self.description,
            }),
            Kind::Bool { default } => json!({
                "type": "boolean", "default": default, "description": self.description,
            }),
        }
    }
}

/// The JSON Schema of a parameters object made of `params` and nothing else.
pub fn params_schema(params: &[Param]) -> Value {
    let properties: Map<String, Value> = params
        .iter()
        .map(|p| (p.name.to_owned(), p.schema()))
        .collect();
    json!({"type": "object", "additionalProperties": false, "properties": properties})
}

/// The parameters of a session: a JSON object read through declared
/// [`Param`]s, with errors that name the parameter.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Params {
    values: Map<String, Value>,
}

impl Params {
    /// Parses a JSON object; empty text or `null` means no parameters.
    pub fn parse(text: &str) -> Result<Self, OpenError> {
        if text.trim().is_empty() {
            return Ok(Params::default());
        }
        match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(values)) => Ok(Params { values }),
            Ok(Value::Null) => Ok(Params::default()),
            Ok(other) => Err(OpenError::Other(format!(
                "parameters must be a JSON object, got {}",
                kind(&other)
            ))),
            Err(e) => Err(OpenError::Other(format!(
                "parameters are not valid JSON: {e}"
            ))),
        }
    }

    /// Fails on any parameter that is not declared in `declared`, naming the
    /// first unknown one in alphabetical order.
    pub fn check(&self, declared: &[Param]) -> Result<(), OpenError> {
        match self
            .values
            .keys()
            .filter(|k| !declared.iter().any(|p| p.name == k.as_str()))
            .min()
        {
            Some(unknown) => {
                let known: Vec<&str> = declared.iter().map(|p| p.name).collect();
                let known = if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                };
                Err(OpenError::invalid(
                    unknown,
                    format!("unknown parameter (known: {known})"),
                ))
            }
            None => Ok(()),
        }
    }

    /// The value of an unsigned integer parameter.
    pub fn uint(&self, param: &Param) -> Result<u32, OpenError> {
        let Kind::UInt { default, min, max } = param.kind else {
            return Err(OpenError::invalid(
                param.name,
                "is not declared as an integer",
            ));
        };
        let Some(value) = self.values.get(param.name) else {
            return Ok(default);
        };
        let n = value.as_u64().ok_or_else(|| {
            OpenError::invalid(
                param.name,
                format!("expected an integer, got {}", kind(value)),
            )
        })?;
        if n < u64::from(min) || n > u64::from(max) {
            return Err(OpenError::invalid(
                param.name,
                format!("must be between {min} and {max}, got {n}"),
            ));
        }
        Ok(n as u32)
    }

    /// The value of a boolean parameter.
    pub fn boolean(&self, param: &Param) -> Result<bool, OpenError> {
        let Kind::Bool { default } = param.kind else {
            return Err(OpenError::invalid(
                param.name,
                "is not declared as a boolean",
            ));
        };
        match self.values.get(param.name) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => Err(OpenError::invalid(
                param.name,
                format!("expected a boolean, got {}", kind(other)),
            )),
        }
    }

    /// The raw JSON value of a parameter, for types the declared kinds do
    /// not cover.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.values.get(name)
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: Param = Param::uint("k", 10, 1, 100, "how many");
    const DIM: Param = Param::uint("dim", 8, 1, 9, "dimensions");
    const FLAG: Param = Param::boolean("flag", false, "a switch");

    #[test]
    fn errors_name_the_bad_parameter() {
        let p = Params::parse(r#"{"k": 0, "dim": "x", "flag": 1, "other": true}"#).expect("object");
        assert_eq!(
            p.uint(&K).expect_err("range").to_string(),
            "parameter `k`: must be between 1 and 100, got 0"
        );
        assert_eq!(
            p.uint(&DIM).expect_err("type").to_string(),
            "parameter `dim`: expected an integer, got a string"
        );
        assert_eq!(
            p.boolean(&FLAG).expect_err("type").to_string(),
            "parameter `flag`: expected a boolean, got a number"
        );
        assert_eq!(
            p.check(&[K, DIM, FLAG]).expect_err("unknown").to_string(),
            "parameter `other`: unknown parameter (known: k, dim, flag)"
        );
        assert_eq!(
            p.check(&[]).expect_err("unknown").to_string(),
            "parameter `dim`: unknown parameter (known: none)"
        );
        assert_eq!(Params::default().uint(&K), Ok(10));
        assert_eq!(Params::default().boolean(&FLAG), Ok(false));
    }

    #[test]
    fn the_schema_matches_the_checks() {
        let schema = params_schema(&[K, FLAG]);
        assert_eq!(schema["additionalProperties"], false);
        assert_eq!(schema["properties"]["k"]["minimum"], 1);
        assert_eq!(schema["properties"]["k"]["maximum"], 100);
        assert_eq!(schema["properties"]["k"]["default"], 10);
        assert_eq!(schema["properties"]["flag"]["type"], "boolean");
    }

    #[test]
    fn only_objects_are_parameters() {
        assert!(Params::parse("").is_ok());
        assert!(Params::parse("null").is_ok());
        assert!(Params::parse("[1]").is_err());
        assert!(Params::parse("{").is_err());
    }
}
