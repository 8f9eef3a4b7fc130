//! `strata extractor`: inspect, validate and publish components.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;

use super::ExtractorCommand;
use super::serve::runtime;

/// Runs a `strata extractor` command.
pub(super) fn command(command: ExtractorCommand) -> anyhow::Result<ExitCode> {
    match command {
        ExtractorCommand::Inspect { file, json, engine } => {
            let extractor = engine.engine()?.load(&file)?;
            if json {
                let value = serde_json::json!({
                    "manifest": extractor.manifest().as_ref(),
                    "content_hash": extractor.content_hash(),
                    "interface": extractor.interface().name(),
                    "size_bytes": extractor.size_bytes(),
                });
                println!("{}", serde_json::to_string_pretty(&value)?);
            } else {
                print!("{}", describe(&extractor));
            }
            Ok(ExitCode::SUCCESS)
        }
        ExtractorCommand::Push { file, url, key } => runtime()?.block_on(push(&file, &url, &key)),
        ExtractorCommand::Validate { file, engine } => {
            let extractor = engine.engine()?.load(&file)?;
            println!(
                "{}: valid extractor {}",
                file.display(),
                extractor.manifest().id()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Uploads `file` to `url`'s registry with a progress bar; prints what the
/// server made of it.
async fn push(file: &Path, url: &str, key: &str) -> anyhow::Result<ExitCode> {
    use futures::StreamExt as _;
    let size = std::fs::metadata(file)
        .with_context(|| format!("reading {}", file.display()))?
        .len();
    let opened = tokio::fs::File::open(file)
        .await
        .with_context(|| format!("reading {}", file.display()))?;
    let bar =
        indicatif::ProgressBar::new(size).with_style(indicatif::ProgressStyle::with_template(
            "{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec}",
        )?);
    bar.set_message(format!("pushing {}", file.display()));
    // The key first: a server refuses an unauthorised upload before reading
    // it, and a client still sending sees a reset instead of the answer. An
    // empty publication is refused for its body (422) only once the key
    // may publish.
    let client = reqwest::Client::new();
    let endpoint = format!("{}/v1/extractors", url.trim_end_matches('/'));
    let answer = client
        .post(&endpoint)
        .bearer_auth(key)
        .header(reqwest::header::CONTENT_TYPE, "application/wasm")
        .send()
        .await
        .with_context(|| format!("reaching {endpoint}"))?;
    if answer.status() != reqwest::StatusCode::UNPROCESSABLE_ENTITY {
        let status = answer.status();
        let body: serde_json::Value = answer.json().await.unwrap_or_default();
        anyhow::bail!(
            "{url} refused the key ({status}): {}; publishing takes an admin key or one made with `strata keys create --publish`",
            body["detail"].as_str().unwrap_or("no detail")
        );
    }
    let progress = bar.clone();
    let stream = tokio_util::io::ReaderStream::new(opened).inspect(move |chunk| {
        if let Ok(chunk) = chunk {
            progress.inc(chunk.len() as u64);
        }
    });
    let response = client
        .post(&endpoint)
        .bearer_auth(key)
        .header(reqwest::header::CONTENT_TYPE, "application/wasm")
        .header(reqwest::header::CONTENT_LENGTH, size)
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .with_context(|| format!("sending {} to {endpoint}", file.display()))?;
    bar.finish_and_clear();
    let status = response.status();
    let body: serde_json::Value = response
        .json()
        .await
        .with_context(|| format!("{endpoint} answered {status} without JSON"))?;
    if !status.is_success() {
        anyhow::bail!(
            "{endpoint} refused {} ({status}): {}",
            file.display(),
            body["detail"].as_str().unwrap_or("no detail")
        );
    }
    let said = if status == reqwest::StatusCode::CREATED {
        "published"
    } else {
        "already published (same bytes)"
    };
    println!(
        "{}@{} {said}: sha256 {}, {} bytes",
        body["name"].as_str().unwrap_or("?"),
        body["version"].as_str().unwrap_or("?"),
        body["content_hash"].as_str().unwrap_or("?"),
        body["size_bytes"]
    );
    Ok(ExitCode::SUCCESS)
}

fn describe(extractor: &crate::engine::Extractor) -> String {
    use std::fmt::Write as _;
    let m = extractor.manifest();
    let mut out = String::new();
    let list = |items: &[String]| {
        if items.is_empty() {
            "-".to_owned()
        } else {
            items.join(", ")
        }
    };
    let _ = writeln!(out, "{} {}", m.name, m.version);
    let _ = writeln!(out, "  {}", m.description);
    let _ = writeln!(out, "depends on:   {}", list(&m.depends_on));
    let _ = writeln!(out, "inputs:       {}", list(&m.inputs));
    let _ = writeln!(
        out,
        "applies to:   {}",
        if m.mime_types.is_empty() {
            "every object".into()
        } else {
            m.mime_types.join(", ")
        }
    );
    let _ = writeln!(out, "batch size:   {} rows", m.batch_size);
    let _ = writeln!(out, "memory:       {} MiB", m.memory_limit_mb);
    let _ = writeln!(
        out,
        "component:    {} bytes, sha256 {}",
        extractor.size_bytes(),
        extractor.content_hash()
    );
    let _ = writeln!(
        out,
        "interface:    strata:extractor/{} ({})",
        extractor.interface(),
        extractor.interface().carries()
    );
    let _ = writeln!(out, "outputs:");
    for c in &m.outputs {
        let _ = writeln!(
            out,
            "  {:<14} {:<28} {}",
            c.name,
            c.data_type.to_string(),
            c.description
        );
    }
    let _ = writeln!(out, "parameters:   {}", m.params_schema);
    out
}
