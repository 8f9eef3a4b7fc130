//! The web console in a real browser: headless Chromium (Debian's
//! `chromium`, which `make test` installs when missing) driven over
//! WebDriver (`chromedriver`) with `fantoccini`, against a real server.
//!
//! A person signs in, uploads two files, creates a collection, submits a
//! batch and watches its progress bar reach 100 % from live events, opens
//! a document, cancels a second batch and redelivers a webhook delivery.
//! A script hidden in an object's name, a metadata value and a plugin's
//! error message shows as text and never runs. Screenshots of the main
//! pages are kept in `target/console-screenshots/`.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use support::flow::{create_bucket, plugins_with_hostile, slow_options, text};
use support::receiver::Receiver;
use support::{ADMIN_KEY, Server, repo};

/// How long any one thing the page does may take.
const WAIT: Duration = Duration::from_secs(30);

/// A `chromedriver` on a free port; killed when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn driver() -> Driver {
    for program in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
        assert!(
            Path::new(program).exists(),
            "{program} is missing: `make test` installs Debian's chromium and chromium-driver"
        );
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let child = Command::new("/usr/bin/chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + WAIT;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not listen");
        std::thread::sleep(Duration::from_millis(100));
    }
    Driver { child, url }
}

/// A headless Chromium session, with the flags this closed network needs.
async fn browser(driver: &Driver, profile: &Path) -> Client {
    let args = [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,900",
    ]
    .iter()
    .map(|a| (*a).to_owned())
    .chain([format!("--user-data-dir={}", profile.display())])
    .collect::<Vec<_>>();
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({"binary": "/usr/bin/chromium", "args": args}),
    );
    // ChromeDriver listens on loopback in plain HTTP: no TLS needed.
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .expect("a browser session")
}

/// Waits until the script `condition` (a JavaScript expression) is true.
async fn until(client: &Client, condition: &str, what: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let value = client
            .execute(&format!("return Boolean({condition});"), vec![])
            .await
            .expect("script runs");
        if value == Value::Bool(true) {
            return;
        }
        if Instant::now() > deadline {
            let said = client
                .execute(
                    "return document.getElementById('status').innerText + ' | ' + location.hash;",
                    vec![],
                )
                .await
                .unwrap_or_default();
            panic!("never: {what} (the page says: {said})");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The page's text.
async fn page_text(client: &Client) -> String {
    client
        .execute("return document.body.innerText;", vec![])
        .await
        .expect("script runs")
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// The element `locator` finds, once the page shows it.
async fn element(client: &Client, locator: Locator<'_>) -> fantoccini::elements::Element {
    client
        .wait()
        .at_most(WAIT)
        .for_element(locator)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Whether an action failed because the page replaced its element
/// (it re-renders as data arrives): it is found again and retried.
fn stale(error: &fantoccini::error::CmdError) -> bool {
    error.to_string().contains("stale element")
}

async fn type_into(client: &Client, css: &str, text: &str) {
    for _ in 0..50 {
        match element(client, Locator::Css(css))
            .await
            .send_keys(text)
            .await
        {
            Ok(()) => return,
            Err(e) if stale(&e) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) => panic!("typing into {css}: {e}"),
        }
    }
    panic!("{css} kept going stale");
}

/// Clicks the button whose text is `label`.
async fn press(client: &Client, label: &str) {
    let xpath = format!("//button[normalize-space()='{label}']");
    for _ in 0..50 {
        match element(client, Locator::XPath(&xpath)).await.click().await {
            Ok(()) => return,
            Err(e) if stale(&e) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) => panic!("pressing {label}: {e}"),
        }
    }
    panic!("button {label} kept going stale");
}

async fn go(client: &Client, server: &Server, hash: &str) {
    client
        .goto(&format!("{}/console/{hash}", server.url))
        .await
        .expect("navigates");
}

/// Keeps a screenshot of the page as a test artifact.
async fn screenshot(client: &Client, name: &str) -> PathBuf {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target"))
        .join("console-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    let path = dir.join(format!("{name}.png"));
    let png = client.screenshot().await.expect("a screenshot");
    std::fs::write(&path, png).expect("screenshot written");
    path
}

/// Nothing injected ever ran.
async fn nothing_ran(client: &Client) {
    let ran = client
        .execute("return window.__injected === undefined;", vec![])
        .await
        .expect("script runs");
    assert_eq!(ran, Value::Bool(true), "an injected script ran");
}

#[tokio::test]
async fn a_person_drives_a_batch_from_the_console() {
    let driver = driver();
    let plugins = plugins_with_hostile();
    let mut options = slow_options(plugins.path(), "10", &[]);
    options.args.push("--allow-private-webhooks".into());
    let server = Server::start_with(options);
    let receiver = Receiver::start().await;
    let (status, webhook) = server
        .post(
            "/v1/webhooks",
            json!({"url": format!("{}/hook", receiver.url), "event_types": ["batch.completed"]}),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{webhook}");
    let profile = tempfile::tempdir().expect("profile dir");
    let client = browser(&driver, profile.path()).await;

    // Sign in.
    go(&client, &server, "").await;
    type_into(&client, "#key", ADMIN_KEY).await;
    press(&client, "Sign in").await;
    until(
        &client,
        "!document.getElementById('nav').hidden",
        "signed in",
    )
    .await;

    // A bucket, and two files uploaded through the page, one of them
    // named with a script.
    go(&client, &server, "#/buckets").await;
    type_into(&client, "#bucket-name", "docs").await;
    press(&client, "Create").await;
    until(
        &client,
        "document.body.innerText.includes('docs')",
        "the bucket listed",
    )
    .await;
    let files = tempfile::tempdir().expect("files");
    let plain = files.path().join("TRIGGER plain.txt");
    std::fs::write(&plain, "TRIGGER once upon a time").expect("write");
    let sneaky = files
        .path()
        .join("<img src=x onerror=\"window.__injected=1\">.txt");
    std::fs::write(&sneaky, "TRIGGER an innocent text").expect("write");
    go(&client, &server, "#/buckets/docs").await;
    let input = element(&client, Locator::Css("#files")).await;
    input
        .send_keys(&format!("{}\n{}", plain.display(), sneaky.display()))
        .await
        .expect("files chosen");
    until(
        &client,
        "document.querySelectorAll('tbody tr').length === 2 && document.body.innerText.includes('onerror')",
        "both objects listed",
    )
    .await;
    until(
        &client,
        "[...document.querySelectorAll('.uploads li')].every(li => li.innerText.includes('uploaded'))",
        "both uploads done",
    )
    .await;
    screenshot(&client, "bucket").await;
    nothing_ran(&client).await;

    // A third object with a script in its metadata, through the API.
    let bucket = create_bucket(&server, "other").await;
    let (status, body) = server
        .post(
            "/v1/buckets/docs/objects",
            json!({"object_id": "noted", "text": "TRIGGER noted",
                   "metadata": {"note": "<script>window.__injected=2</script>"}}),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{body}");

    // A collection whose plugin refuses its parameter with a message that
    // quotes a script; then the real one.
    go(&client, &server, "#/collections").await;
    type_into(&client, "#collection-name", "bad").await;
    type_into(&client, "#collection-extractors", "hostile").await;
    type_into(
        &client,
        "#collection-params",
        r#"{"hostile": {"mode": "<img src=x onerror=window.__injected=3>"}}"#,
    )
    .await;
    press(&client, "Create").await;
    until(
        &client,
        "document.getElementById('status').innerText.includes('unknown mode')",
        "the plugin's refusal shown",
    )
    .await;
    nothing_ran(&client).await;
    // Away and back: a fresh form.
    go(&client, &server, "#/extractors").await;
    go(&client, &server, "#/collections").await;
    type_into(&client, "#collection-name", "text").await;
    type_into(&client, "#collection-extractors", "hostile").await;
    type_into(
        &client,
        "#collection-params",
        r#"{"hostile": {"mode": "slow"}}"#,
    )
    .await;
    press(&client, "Create").await;
    until(
        &client,
        "location.hash.startsWith('#/collections/col_')",
        "the collection page",
    )
    .await;
    until(
        &client,
        "document.querySelector('.tiers') !== null",
        "its tiers drawn",
    )
    .await;
    screenshot(&client, "collection").await;

    // Enough objects that the batch runs for a while (20 ms each, one per
    // call), so the page shows it running before it reaches 100 %.
    for i in 0..40 {
        let (status, _) = server
            .post(
                "/v1/buckets/docs/objects",
                json!({"object_id": format!("more-{i}"), "text": "TRIGGER more"}),
            )
            .await;
        assert_eq!(status, reqwest::StatusCode::CREATED);
    }

    // A batch of every object, submitted and watched to 100 % live: the
    // page, never reloaded, shows it running and then done.
    go(&client, &server, "#/batches?bucket=docs").await;
    until(
        &client,
        "document.getElementById('object-ids') !== null",
        "the batch form",
    )
    .await;
    press(&client, "Create").await;
    until(
        &client,
        "location.hash.includes('/batches/btch_')",
        "the batch page",
    )
    .await;
    press(&client, "Submit").await;
    until(
        &client,
        "document.body.innerText.includes('PROCESSING') && document.querySelector('.card progress')?.value < 100",
        "the batch running",
    )
    .await;
    client
        .execute("window.__sameLoad = true;", vec![])
        .await
        .expect("script runs");
    until(
        &client,
        "window.__sameLoad && document.querySelector('.card progress')?.value === 100 && document.body.innerText.includes('COMPLETED')",
        "the progress bar at 100 % from live events",
    )
    .await;
    until(
        &client,
        "document.body.innerText.includes('Workers') && document.body.innerText.includes('Shards')",
        "its shards and workers",
    )
    .await;
    screenshot(&client, "batch").await;
    let batch_url: String = client
        .execute("return location.hash;", vec![])
        .await
        .expect("script runs")
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(batch_url.contains("btch_"), "{batch_url}");

    // Its documents: one opened, the metadata's script shown as text.
    go(&client, &server, "#/collections/text").await;
    until(
        &client,
        "document.querySelectorAll('details.document').length === 43",
        "every document",
    )
    .await;
    let noted = client
        .find(Locator::XPath(
            "//details[summary[contains(., 'noted')]]/summary",
        ))
        .await
        .expect("the noted document");
    noted.click().await.expect("opened");
    until(
        &client,
        "document.body.innerText.includes('<script>window.__injected=2</script>')",
        "the metadata shown as text",
    )
    .await;
    nothing_ran(&client).await;

    // A second batch that hangs on its object, canceled from its page.
    let (status, _) = server
        .post(
            &format!("/v1/buckets/{bucket}/objects"),
            json!({"object_id": "stuck", "text": "TRIGGER forever"}),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::CREATED);
    let (status, collection) = server
        .post(
            "/v1/collections",
            json!({"collection_name": "stuck", "source": {"bucket_id": bucket},
                   "extractors": [{"name": "hostile", "params": {"mode": "loop"}}]}),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{collection}");
    let (status, stuck) = server
        .post(
            &format!("/v1/buckets/{bucket}/batches"),
            json!({"object_ids": ["stuck"]}),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{stuck}");
    let stuck_id = text(&stuck["batch_id"]).to_owned();
    go(
        &client,
        &server,
        &format!("#/buckets/{bucket}/batches/{stuck_id}"),
    )
    .await;
    press(&client, "Submit").await;
    until(&client, "document.body.innerText.includes('PROCESSING') || document.body.innerText.includes('QUEUED')", "running").await;
    press(&client, "Cancel").await;
    until(
        &client,
        "document.body.innerText.includes('CANCELED')",
        "canceled",
    )
    .await;

    // The webhook's delivery of the completed batch, redelivered.
    receiver
        .wait_for("/hook", |received| !received.is_empty())
        .await;
    go(
        &client,
        &server,
        &format!("#/webhooks/{}", text(&webhook["webhook_id"])),
    )
    .await;
    until(
        &client,
        "document.body.innerText.includes('batch.completed')",
        "the delivery listed",
    )
    .await;
    screenshot(&client, "webhook").await;
    press(&client, "Redeliver").await;
    until(
        &client,
        "document.getElementById('status').innerText.includes('Redelivery queued')",
        "the redelivery queued",
    )
    .await;
    receiver
        .wait_for("/hook", |received| received.len() >= 2)
        .await;

    // The batches list, live, as a person sees it.
    go(&client, &server, "#/batches?bucket=docs").await;
    until(
        &client,
        "document.querySelectorAll('tbody tr').length >= 1",
        "the batches listed",
    )
    .await;
    screenshot(&client, "batches").await;
    // The same list on a phone's screen.
    client.set_window_size(390, 844).await.expect("resized");
    until(
        &client,
        "document.querySelectorAll('tbody tr').length >= 1",
        "the list on a phone",
    )
    .await;
    screenshot(&client, "batches-phone").await;
    nothing_ran(&client).await;
    assert!(page_text(&client).await.contains("COMPLETED"));
    client.close().await.expect("the browser closes");
}
