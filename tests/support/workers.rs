//! Real `strata worker` processes beside a test server: they share its
//! store and blob store (its data directory, or the backends its options
//! name) and run shards only.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{ADMIN_KEY, Options, compile_cache, repo};

/// A running worker; killed when dropped.
pub struct Worker {
    child: Child,
    /// Its name in shard leases (`GET …/shards`, `/v1/workers`).
    pub id: String,
    /// `http://127.0.0.1:<port>`: its `/healthz`, `/readyz` and `/metrics`.
    pub url: String,
    /// Where its log (stderr) goes.
    pub log: PathBuf,
}

impl Worker {
    /// Starts a worker on `data_dir` with the backend arguments of
    /// `backends` (a server's options: `--store`, `--blobs`, S3 settings
    /// and their environment) and `args`; its log goes to `log`.
    pub fn start(data_dir: &Path, backends: &Options, args: &[&str], log: &Path) -> Worker {
        let mut command = Command::new(env!("CARGO_BIN_EXE_strata"));
        command
            .arg("worker")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen", "127.0.0.1:0"])
            .arg("--cache-dir")
            .arg(compile_cache())
            .args(backend_args(&backends.args))
            .args(args)
            .env_remove("STRATA_ADMIN_KEY")
            .env("STRATA_ADMIN_KEY", ADMIN_KEY)
            .envs(backends.env.iter().map(|(k, v)| (k, v)))
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(std::fs::File::create(log).expect("log file")));
        if !args.contains(&"--plugins") && !backends.args.iter().any(|a| a == "--plugins") {
            command.arg("--plugins").arg(repo().join("plugins/dist"));
        }
        let mut child = command.spawn().expect("starting strata worker");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let (id, url) = loop {
            let Some(Ok(line)) = lines.next() else {
                panic!(
                    "strata worker exited before running; its log:\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            };
            if let Some(rest) = line.strip_prefix("strata worker ")
                && let Some((id, url)) = rest.split_once(" running; health and metrics on ")
            {
                break (id.to_owned(), url.trim().to_owned());
            }
        };
        std::thread::spawn(move || for _ in lines {});
        Worker {
            child,
            id,
            url,
            log: log.to_owned(),
        }
    }

    /// Stops the worker (SIGSTOP) at a moment it holds no write lock on
    /// the SQLite database at `db`: a process stopped inside a write
    /// transaction holds the file's lock, and every other process waits
    /// for it, which is SQLite's nature and not what a lease test asks.
    pub fn pause_outside_writes(&self, db: &Path) {
        let probe = rusqlite::Connection::open(db).expect("opening the database");
        probe.busy_timeout(Duration::ZERO).expect("busy timeout");
        for _ in 0..200 {
            self.signal("STOP");
            self.wait_until_stopped();
            match probe.execute_batch("BEGIN IMMEDIATE; ROLLBACK;") {
                Ok(()) => return,
                Err(_) => {
                    self.signal("CONT");
                    std::thread::sleep(Duration::from_millis(7));
                }
            }
        }
        panic!("the worker held the database's write lock at every try");
    }

    /// Waits (a second at most) until every thread of the worker shows as
    /// stopped: SIGSTOP takes effect asynchronously.
    fn wait_until_stopped(&self) {
        let tasks = format!("/proc/{}/task", self.child.id());
        let stopped = || {
            std::fs::read_dir(&tasks).is_ok_and(|entries| {
                entries.flatten().all(|task| {
                    std::fs::read_to_string(task.path().join("stat")).is_ok_and(|stat| {
                        // The state follows the command name's closing parenthesis.
                        stat.rsplit_once(')').is_some_and(|(_, rest)| {
                            matches!(rest.trim_start().chars().next(), Some('T' | 't'))
                        })
                    })
                })
            })
        };
        for _ in 0..100 {
            if stopped() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends `signal` (`STOP`, `CONT`, `TERM`, `KILL`).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Kills it with SIGKILL and waits for it to exit.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM; fails the test if it still runs after `limit`.
    pub fn terminate_within(&mut self, limit: Duration) -> std::process::ExitStatus {
        super::terminate_within(&mut self.child, limit, "strata worker")
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The backend arguments among a server's: `--store`, `--blobs` and the
/// S3 settings, which a worker needs to reach the same data.
fn backend_args(args: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--store" | "--blobs" | "--s3-endpoint" | "--s3-region" | "--plugins" => {
                out.push(arg.clone());
                if let Some(value) = it.next() {
                    out.push(value.clone());
                }
            }
            "--s3-path-style" => out.push(arg.clone()),
            _ => {}
        }
    }
    out
}
