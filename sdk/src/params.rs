use serde_json::{Map, Value};

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

/// The parameters of a session: a JSON object with typed, checked getters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Params {
    values: Map<String, Value>,
}

impl Params {
    /// Parses a JSON object; empty text means no parameters.
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

    /// Fails on any parameter not in `known`.
    pub fn allow_only(&self, known: &[&str]) -> Result<(), OpenError> {
        match self.values.keys().find(|k| !known.contains(&k.as_str())) {
            Some(unknown) => Err(OpenError::invalid(
                unknown,
                format!("unknown parameter (known: {})", known.join(", ")),
            )),
            None => Ok(()),
        }
    }

    /// An unsigned integer in `min..=max`, or `default` when absent.
    pub fn u32_in(&self, name: &str, default: u32, min: u32, max: u32) -> Result<u32, OpenError> {
        let Some(value) = self.values.get(name) else {
            return Ok(default);
        };
        let n = value.as_u64().ok_or_else(|| {
            OpenError::invalid(name, format!("expected an integer, got {}", kind(value)))
        })?;
        if n < u64::from(min) || n > u64::from(max) {
            return Err(OpenError::invalid(
                name,
                format!("must be between {min} and {max}, got {n}"),
            ));
        }
        Ok(n as u32)
    }

    /// A number in `min..=max`, or `default` when absent.
    pub fn f64_in(&self, name: &str, default: f64, min: f64, max: f64) -> Result<f64, OpenError> {
        let Some(value) = self.values.get(name) else {
            return Ok(default);
        };
        let n = value.as_f64().ok_or_else(|| {
            OpenError::invalid(name, format!("expected a number, got {}", kind(value)))
        })?;
        if !(min..=max).contains(&n) {
            return Err(OpenError::invalid(
                name,
                format!("must be between {min} and {max}, got {n}"),
            ));
        }
        Ok(n)
    }

    /// A boolean, or `default` when absent.
    pub fn bool_or(&self, name: &str, default: bool) -> Result<bool, OpenError> {
        match self.values.get(name) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => Err(OpenError::invalid(
                name,
                format!("expected a boolean, got {}", kind(other)),
            )),
        }
    }

    /// A string, or `None` when absent.
    pub fn str(&self, name: &str) -> Result<Option<&str>, OpenError> {
        match self.values.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(OpenError::invalid(
                name,
                format!("expected a string, got {}", kind(other)),
            )),
        }
    }

    /// The raw JSON value of a parameter.
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

    #[test]
    fn getters_name_the_bad_parameter() {
        let p = Params::parse(r#"{"k": 0, "dim": "x", "flag": 1}"#).expect("object");
        assert_eq!(
            p.u32_in("k", 10, 1, 100).expect_err("range").to_string(),
            "parameter `k`: must be between 1 and 100, got 0"
        );
        assert_eq!(
            p.u32_in("dim", 8, 1, 9).expect_err("type").to_string(),
            "parameter `dim`: expected an integer, got a string"
        );
        assert!(p.bool_or("flag", false).is_err());
        assert_eq!(p.u32_in("absent", 7, 1, 9), Ok(7));
        assert_eq!(
            p.allow_only(&["k", "dim"])
                .expect_err("unknown")
                .to_string(),
            "parameter `flag`: unknown parameter (known: k, dim)"
        );
    }

    #[test]
    fn only_objects_are_parameters() {
        assert!(Params::parse("").is_ok());
        assert!(Params::parse("null").is_ok());
        assert!(Params::parse("[1]").is_err());
        assert!(Params::parse("{").is_err());
    }
}
