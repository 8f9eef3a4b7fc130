//! Protocol servers the backend suites run against, started on loopback
//! from the environment `make test-servers` builds (`STRATA_TEST_SERVERS`),
//! or real ones named by `STRATA_TEST_S3_ENDPOINT` and
//! `STRATA_TEST_MONGODB_URI`.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Access key the tests use with the S3-protocol server.
pub const S3_ACCESS_KEY: &str = "strata-test";
/// Secret key the tests use with the S3-protocol server.
pub const S3_SECRET_KEY: &str = "strata-test-secret";

/// The Python environment holding the servers.
fn servers_env() -> PathBuf {
    let dir = std::env::var_os("STRATA_TEST_SERVERS")
        .map(PathBuf::from)
        .unwrap_or_else(|| super::repo().join("target/test-servers"));
    assert!(
        dir.join("installed").exists(),
        "no test servers in {} (run `make test-servers`)",
        dir.display()
    );
    dir
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn wait_for_port(port: u16, child: &mut Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited with {status} before listening");
        }
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An S3-protocol endpoint: a real one, or a loopback server of ours.
pub struct S3Server {
    child: Option<Child>,
    /// `http://127.0.0.1:<port>`
    pub endpoint: String,
}

impl S3Server {
    /// `STRATA_TEST_S3_ENDPOINT` when set, else a fresh loopback server.
    pub fn start() -> S3Server {
        if let Ok(endpoint) = std::env::var("STRATA_TEST_S3_ENDPOINT") {
            return S3Server {
                child: None,
                endpoint,
            };
        }
        let port = free_port();
        let mut child = Command::new(servers_env().join("bin/moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting moto_server");
        wait_for_port(port, &mut child, "moto_server");
        S3Server {
            child: Some(child),
            endpoint: format!("http://127.0.0.1:{port}"),
        }
    }

    /// Environment variables that give a `strata` process access.
    pub fn credentials_env() -> [(&'static str, String); 3] {
        let var =
            |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
        [
            (
                "AWS_ACCESS_KEY_ID",
                var("STRATA_TEST_S3_ACCESS_KEY", S3_ACCESS_KEY),
            ),
            (
                "AWS_SECRET_ACCESS_KEY",
                var("STRATA_TEST_S3_SECRET_KEY", S3_SECRET_KEY),
            ),
            ("AWS_REGION", "us-east-1".to_owned()),
        ]
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A MongoDB-protocol endpoint: a real one, or a loopback server of ours.
///
/// The loopback server (`nx-27017`: MongoDB's wire protocol over SQLite)
/// says it is neither a replica set nor a sharded cluster, yet takes
/// transactions. It differs from MongoDB in ways the store allows for only
/// when a server says that of itself (`store/mongo/standin.rs`), so a real
/// deployment pays for none of them, and never by weakening a test:
/// - transactions cannot run side by side (one SQLite connection per
///   database), so the store runs them one at a time across this machine's
///   processes;
/// - a transaction whose client died is neither isolated nor aborted, so a
///   shard taken over recounts its counters from the records they count;
/// - a boolean given to `$set` reads back as 0 or 1, so the one such write
///   (a batch's `include_processing_history` at submit) replaces the
///   document, and values earlier versions left as 0 or 1 are turned back
///   into booleans at connect;
/// - it cannot insert into a collection with a compound index naming
///   `_id`, so indexes name the id fields instead (on every server).
///
/// `STRATA_TEST_MONGODB_URI` runs the same suites against a real MongoDB.
pub struct MongoServer {
    child: Option<Child>,
    _dir: Option<tempfile::TempDir>,
    base: String,
}

impl MongoServer {
    /// `STRATA_TEST_MONGODB_URI` when set (a server or replica set; each
    /// test uses a database of its own), else a fresh loopback server.
    pub fn start() -> MongoServer {
        if let Ok(uri) = std::env::var("STRATA_TEST_MONGODB_URI") {
            return MongoServer {
                child: None,
                _dir: None,
                base: uri,
            };
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let path = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
        let mut child = Command::new(servers_env().join("bin/nx-27017"))
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--data-dir", &path("data")])
            .args(["--pid-file", &path("nx.pid")])
            .args(["--log-file", &path("nx.log")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting nx-27017");
        wait_for_port(port, &mut child, "nx-27017");
        MongoServer {
            child: Some(child),
            _dir: Some(dir),
            base: format!("mongodb://127.0.0.1:{port}/?directConnection=true"),
        }
    }

    /// A URI naming a fresh database on the server.
    pub fn database_uri(&self) -> String {
        let suffix = ulid::Ulid::new().to_string().to_lowercase();
        let database = format!("strata_test_{suffix}");
        let (head, query) = match self.base.split_once('?') {
            Some((head, query)) => (head, format!("?{query}")),
            None => (self.base.as_str(), String::new()),
        };
        // Drop any database already in the path: `scheme://hosts/db`.
        let scheme_end = head.find("://").map_or(0, |i| i + 3);
        let hosts_end = head[scheme_end..]
            .find('/')
            .map_or(head.len(), |i| scheme_end + i);
        format!("{}/{database}{query}", &head[..hosts_end])
    }
}

impl Drop for MongoServer {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The production backends, MongoDB and S3, each on its server.
pub struct Production {
    pub s3: S3Server,
    pub mongo: MongoServer,
    /// The S3 bucket the blobs go to.
    pub bucket: String,
    /// `--store`: a fresh database.
    pub store: String,
}

impl Production {
    pub async fn start() -> Production {
        let s3 = S3Server::start();
        let bucket = s3_bucket(&s3_client(&s3.endpoint)).await;
        let mongo = MongoServer::start();
        let store = mongo.database_uri();
        Production {
            s3,
            mongo,
            bucket,
            store,
        }
    }

    /// `strata serve` options storing metadata in MongoDB and blobs in S3.
    pub fn options(&self) -> super::Options {
        let mut options = self.s3.options(&self.bucket);
        options
            .args
            .extend(["--store".to_owned(), self.store.clone()]);
        options
    }
}

impl S3Server {
    /// `strata serve` options storing blobs under `s3://<bucket>/strata`.
    pub fn options(&self, bucket: &str) -> super::Options {
        super::Options {
            args: vec![
                "--blobs".into(),
                format!("s3://{bucket}/strata"),
                "--s3-endpoint".into(),
                self.endpoint.clone(),
                "--s3-path-style".into(),
            ],
            env: S3Server::credentials_env()
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
            ..super::Options::default()
        }
    }
}

/// A client of the S3-protocol server `endpoint`, with the tests' keys.
pub fn s3_client(endpoint: &str) -> aws_sdk_s3::Client {
    let credentials = aws_sdk_s3::config::Credentials::new(
        std::env::var("STRATA_TEST_S3_ACCESS_KEY").unwrap_or_else(|_| S3_ACCESS_KEY.into()),
        std::env::var("STRATA_TEST_S3_SECRET_KEY").unwrap_or_else(|_| S3_SECRET_KEY.into()),
        None,
        None,
        "strata-tests",
    );
    let config = aws_sdk_s3::config::Builder::new()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .credentials_provider(credentials)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// A fresh bucket on the server.
pub async fn s3_bucket(client: &aws_sdk_s3::Client) -> String {
    let suffix = ulid::Ulid::new().to_string().to_lowercase();
    let bucket = format!("strata-test-{suffix}");
    client
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("creating a bucket");
    bucket
}
