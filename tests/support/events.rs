//! A reader of Server-Sent Events over a streaming response, parsed by
//! the wire format (fields, blank-line-separated events) so the tests see
//! exactly what a browser's or the CLI's reader would.

use std::time::Duration;

use reqwest::Response;
use serde_json::Value;

/// One event.
#[derive(Debug, Clone)]
pub struct Event {
    /// `event:`
    pub event: String,
    /// `id:`
    pub id: String,
    /// `data:`, as JSON.
    pub data: Value,
}

/// The events of one response, read as they arrive.
pub struct Events {
    response: Response,
    buffer: String,
}

impl Events {
    /// Reads `response`, which must be a 200 `text/event-stream`.
    pub fn new(response: Response) -> Events {
        assert_eq!(response.status(), reqwest::StatusCode::OK);
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(
            content_type.starts_with("text/event-stream"),
            "{content_type}"
        );
        Events {
            response,
            buffer: String::new(),
        }
    }

    /// The next event (comments, which keep the connection alive, are
    /// skipped), or `None` when the stream ends. Fails the test after
    /// `limit` without one.
    pub async fn next_within(&mut self, limit: Duration) -> Option<Event> {
        tokio::time::timeout(limit, self.next())
            .await
            .unwrap_or_else(|_| panic!("no event within {limit:?}"))
    }

    async fn next(&mut self) -> Option<Event> {
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                if let Some(event) = parse(&block) {
                    return Some(event);
                }
            }
            let chunk = self.response.chunk().await.expect("reading the stream")?;
            self.buffer
                .push_str(std::str::from_utf8(&chunk).expect("UTF-8 events"));
        }
    }
}

/// An event block, or `None` for a comment alone.
fn parse(block: &str) -> Option<Event> {
    let (mut event, mut id, mut data) = (String::from("message"), String::new(), Vec::new());
    for line in block.lines() {
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => event = value.to_owned(),
            "id" => id = value.to_owned(),
            "data" => data.push(value),
            _ => {}
        }
    }
    if data.is_empty() {
        return None;
    }
    let data = serde_json::from_str(&data.join("\n")).expect("each event's data is JSON");
    Some(Event { event, id, data })
}
