//! A real `strata serve` process on a free loopback port, with a temporary
//! data directory, and an HTTP client for it.

#![allow(dead_code)]

pub mod engine;
pub mod events;
pub mod flow;
pub mod readme_verify;
pub mod receiver;
pub mod servers;
pub mod tenants;
pub mod workers;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::Value;

/// The admin key the test servers accept.
pub const ADMIN_KEY: &str = "sk_test_admin_key_0123456789";

/// The repository's root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The compile cache shared by every test server (`make test` points
/// STRATA_CACHE_DIR into the target directory).
pub fn compile_cache() -> PathBuf {
    std::env::var_os("STRATA_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("strata-test-cache"))
}

/// Sends SIGTERM to `child` (`what`); fails the test if it still runs
/// after `limit`.
pub fn terminate_within(
    child: &mut Child,
    limit: Duration,
    what: &str,
) -> std::process::ExitStatus {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("running kill");
    assert!(status.success(), "kill -TERM failed");
    let started = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("waiting for the process") {
            return status;
        }
        assert!(
            started.elapsed() < limit,
            "{what} still running {limit:?} after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A running server; killed when dropped.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:<port>`
    pub url: String,
    /// The data directory (kept when the server is restarted).
    pub data_dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
    /// Lines the server printed on stdout before it listened.
    pub banner: Vec<String>,
    pub client: reqwest::Client,
}

/// How to start a server.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Extra arguments to `strata serve`.
    pub args: Vec<String>,
    /// Do not set STRATA_ADMIN_KEY (the server generates one).
    pub generated_admin_key: bool,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// Where the server's log (stderr) goes, instead of the test's.
    pub log_file: Option<PathBuf>,
}

impl Server {
    /// Starts a server with a fresh data directory.
    pub fn start() -> Server {
        Self::start_with(Options::default())
    }

    /// Starts a server with a fresh data directory and `options`.
    pub fn start_with(options: Options) -> Server {
        let temp = tempfile::tempdir().expect("temp dir");
        let data_dir = temp.path().join("data");
        let mut server = Self::start_in(&data_dir, &options);
        server._temp = Some(temp);
        server
    }

    /// Starts a server on `data_dir` (which may hold an earlier server's data).
    pub fn start_in(data_dir: &Path, options: &Options) -> Server {
        let mut command = Command::new(env!("CARGO_BIN_EXE_strata"));
        command
            .arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen", "127.0.0.1:0"])
            .arg("--cache-dir")
            .arg(compile_cache())
            .args(&options.args)
            .env_remove("STRATA_ADMIN_KEY")
            .envs(options.env.iter().map(|(k, v)| (k, v)))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(match &options.log_file {
                Some(path) => Stdio::from(std::fs::File::create(path).expect("log file")),
                None => Stdio::inherit(),
            });
        if !options.args.iter().any(|a| a == "--plugins") {
            command.arg("--plugins").arg(repo().join("plugins/dist"));
        }
        if !options.generated_admin_key {
            command.env("STRATA_ADMIN_KEY", ADMIN_KEY);
        }
        let mut child = command.spawn().expect("starting strata serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut banner = Vec::new();
        let url = loop {
            let line = match lines.next() {
                Some(Ok(line)) => line,
                _ => panic!("strata serve exited before listening; printed {banner:?}"),
            };
            if let Some(url) = line.strip_prefix("strata listening on ") {
                break url.trim().to_owned();
            }
            banner.push(line);
        };
        // Keep draining stdout so the server never blocks on it.
        std::thread::spawn(move || for _ in lines {});
        Server {
            child,
            url,
            data_dir: data_dir.to_owned(),
            _temp: None,
            banner,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("client"),
        }
    }

    /// Asks the server to stop (SIGTERM) and waits for it to exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -TERM failed");
        self.child.wait().expect("waiting for the server")
    }

    /// Asks the server to stop (SIGTERM); fails the test if it is still
    /// running after `limit`.
    pub fn terminate_within(&mut self, limit: Duration) -> std::process::ExitStatus {
        terminate_within(&mut self.child, limit, "strata serve")
    }

    /// Kills the server with SIGKILL and waits for it to exit.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A request with the admin key.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(ADMIN_KEY)
    }

    /// A request with `key` in `namespace`.
    pub fn request_as(
        &self,
        key: &str,
        namespace: &str,
        method: Method,
        path: &str,
    ) -> RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(key)
            .header("X-Namespace", namespace)
    }

    /// GET with the admin key; returns status and JSON body.
    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        send(self.request(Method::GET, path)).await
    }

    /// POST JSON with the admin key; returns status and JSON body.
    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        send(self.request(Method::POST, path).json(&body)).await
    }

    /// The `/metrics` page.
    pub async fn metrics(&self) -> String {
        self.client
            .get(format!("{}/metrics", self.url))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    }

    /// DELETE with the admin key; returns the status.
    pub async fn delete(&self, path: &str) -> StatusCode {
        self.request(Method::DELETE, path)
            .send()
            .await
            .expect("request")
            .status()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Sends a request; returns status and JSON body (`Null` when empty).
pub async fn send(request: RequestBuilder) -> (StatusCode, Value) {
    let response = request.send().await.expect("request");
    json(response).await
}

/// Status and JSON body of a response; asserts that errors are problem
/// documents.
pub async fn json(response: Response) -> (StatusCode, Value) {
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let text = response.text().await.expect("body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    };
    if status.is_client_error() || status.is_server_error() {
        assert_eq!(content_type, "application/problem+json", "{status}: {text}");
        assert_eq!(body["status"], status.as_u16(), "{text}");
        assert!(
            body["type"].is_string() && body["title"].is_string() && body["detail"].is_string(),
            "{text}"
        );
    }
    (status, body)
}
