//! The API as seen from the command line: where the server is and who
//! calls it, requests whose errors read as the problem documents say, and
//! output for people or for scripts (`--json`).

use std::fmt::Write as _;

use anyhow::Context as _;
use clap::Args;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::Value;

/// The server and the caller: `--url`, `--key`, `--namespace`, or
/// `STRATA_URL`, `STRATA_KEY`, `STRATA_NAMESPACE`.
#[derive(Debug, Clone, Args)]
pub(super) struct ClientArgs {
    /// The server.
    #[arg(
        long,
        env = "STRATA_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub url: String,
    /// An API key (`Authorization: Bearer`).
    #[arg(long, env = "STRATA_KEY", hide_env_values = true, global = true)]
    pub key: Option<String>,
    /// The namespace to act in (`X-Namespace`; default: the key's own).
    #[arg(long, env = "STRATA_NAMESPACE", global = true)]
    pub namespace: Option<String>,
    /// Print JSON for scripts instead of text for people.
    #[arg(long, global = true)]
    pub json: bool,
}

/// A client of one server, as one caller.
#[derive(Debug, Clone)]
pub(super) struct Client {
    http: reqwest::Client,
    url: String,
    key: String,
    namespace: Option<String>,
    /// Whether to print JSON.
    pub json: bool,
}

/// A path segment, escaped for a URL.
pub(super) fn segment(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

impl Client {
    /// A client for `args`; a key is required.
    pub fn new(args: &ClientArgs) -> anyhow::Result<Client> {
        let key = args
            .key
            .clone()
            .filter(|k| !k.is_empty())
            .context("no API key: pass --key or set STRATA_KEY")?;
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .build()
            .context("starting the HTTP client")?;
        Ok(Client {
            http,
            url: args.url.trim_end_matches('/').to_owned(),
            key,
            namespace: args.namespace.clone(),
            json: args.json,
        })
    }

    /// A request to `path` (which starts with `/`), with the key and
    /// namespace.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let request = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.key);
        match &self.namespace {
            Some(namespace) => request.header("X-Namespace", namespace),
            None => request,
        }
    }

    /// Sends `request`; the JSON answer, or the server's problem as the
    /// error.
    pub async fn send(&self, request: RequestBuilder) -> anyhow::Result<Value> {
        let response = request
            .send()
            .await
            .with_context(|| format!("reaching {}", self.url))?;
        answer(response).await
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.send(self.request(Method::GET, path)).await
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.send(self.request(Method::POST, path).json(body)).await
    }

    /// Every item of the list at `path` (`?` already in it or not),
    /// following its pages.
    pub async fn all(&self, path: &str) -> anyhow::Result<Vec<Value>> {
        let mut items = Vec::new();
        let mut token: Option<String> = None;
        let separator = if path.contains('?') { '&' } else { '?' };
        loop {
            let page_path = match &token {
                Some(t) => format!("{path}{separator}limit=1000&page_token={}", segment(t)),
                None => format!("{path}{separator}limit=1000"),
            };
            let mut page = self.get(&page_path).await?;
            if let Some(results) = page["results"].as_array_mut() {
                items.append(results);
            }
            match page["next_page_token"].as_str() {
                Some(next) => token = Some(next.to_owned()),
                None => return Ok(items),
            }
        }
    }
}

/// A response's JSON, or its problem document as an error that says the
/// status, the problem and each field at fault.
pub(super) async fn answer(response: reqwest::Response) -> anyhow::Result<Value> {
    let status = response.status();
    let body = response.bytes().await.context("reading the answer")?;
    let value: Value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).unwrap_or_else(|_| {
            Value::String(String::from_utf8_lossy(&body).chars().take(500).collect())
        })
    };
    if status.is_success() {
        return Ok(value);
    }
    anyhow::bail!("{}", problem(status, &value))
}

/// A problem document in one line: `404 not-found: bucket `x` not found`.
fn problem(status: StatusCode, value: &Value) -> String {
    let kind = value["type"]
        .as_str()
        .and_then(|t| t.rsplit(':').next())
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error"));
    let detail = value["detail"]
        .as_str()
        .map_or_else(|| value.to_string(), str::to_owned);
    let mut line = format!("{} {kind}: {detail}", status.as_u16());
    // Fields the detail does not already name, each with its reason.
    for param in value["invalid_params"].as_array().into_iter().flatten() {
        let reason = param["reason"].as_str().unwrap_or("?");
        if !detail.contains(reason) {
            let _ = write!(
                line,
                "; {}: {reason}",
                param["name"].as_str().unwrap_or("?")
            );
        }
    }
    line
}

/// Prints `value` as pretty JSON.
pub(super) fn print_json(value: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Prints rows under a header, each column as wide as its widest cell.
fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                let _ = write!(out, "{cell:<width$}  ", width = widths[i]);
            }
        }
        println!("{}", out.trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// Prints one answer: its JSON, or a line about it.
pub(super) fn one(
    client: &Client,
    value: &Value,
    line: impl Fn(&Value) -> String,
) -> anyhow::Result<std::process::ExitCode> {
    if client.json {
        print_json(value)?;
    } else {
        println!("{}", line(value));
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// Prints a list: a JSON array, or a table.
pub(super) fn list(
    client: &Client,
    items: &[Value],
    header: &[&str],
    row: impl Fn(&Value) -> Vec<String>,
) -> anyhow::Result<std::process::ExitCode> {
    if client.json {
        print_json(&Value::Array(items.to_vec()))?;
    } else {
        let rows: Vec<Vec<String>> = items.iter().map(row).collect();
        print_table(header, &rows);
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// A JSON value as a table cell: text as it is, null as `-`.
pub(super) fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_problem_reads_as_one_line_naming_each_field() {
        let value = serde_json::json!({
            "type": "urn:strata:problem:invalid-request",
            "title": "Unprocessable Entity",
            "status": 422,
            "detail": "the request is invalid",
            "invalid_params": [{"name": "bucket_name", "reason": "must be 1–64 letters"}],
        });
        assert_eq!(
            problem(StatusCode::UNPROCESSABLE_ENTITY, &value),
            "422 invalid-request: the request is invalid; bucket_name: must be 1–64 letters"
        );
        let named = serde_json::json!({
            "type": "urn:strata:problem:invalid-request",
            "detail": "`bucket_name`: must be short",
            "invalid_params": [{"name": "bucket_name", "reason": "must be short"}],
        });
        assert_eq!(
            problem(StatusCode::UNPROCESSABLE_ENTITY, &named),
            "422 invalid-request: `bucket_name`: must be short"
        );
        assert_eq!(
            problem(StatusCode::BAD_GATEWAY, &Value::String("upstream".into())),
            "502 Bad Gateway: \"upstream\""
        );
    }

    #[test]
    fn path_segments_are_escaped() {
        assert_eq!(segment("a b/c"), "a%20b%2Fc");
        assert_eq!(segment("plain-name_1.x"), "plain-name_1.x");
    }
}
