//! `text-extract`: the readable text of an object.
//!
//! Decodes bytes (a BOM first, then the MIME type's `charset`, then strict
//! UTF-8, then Windows-1252, the web's Latin-1) and reduces HTML, Markdown
//! and JSON to readable text.

use encoding_rs::{Encoding, UTF_8, WINDOWS_1252};
use strata_sdk::prelude::*;

/// The extractor.
pub struct TextExtract;

/// A configured session.
pub struct TextSession {
    max_chars: usize,
}

const MAX_CHARS: Param = Param::uint(
    "max_chars",
    1_000_000,
    1,
    100_000_000,
    "text longer than this is cut",
);
const PARAMS: &[Param] = &[MAX_CHARS];

impl Extractor for TextExtract {
    type Session = TextSession;

    fn manifest() -> Manifest {
        Manifest::new(
            "text-extract",
            "1.0.0",
            "Readable text of text, HTML, Markdown and JSON objects, with its encoding",
        )
        .input("content")
        .input("mime_type")
        .output(Column::new("text", DataType::Utf8, "readable text"))
        .output(Column::new(
            "char_count",
            DataType::UInt64,
            "number of characters of `text`",
        ))
        .output(Column::new(
            "encoding",
            DataType::Utf8,
            "detected encoding of the bytes, e.g. UTF-8",
        ))
        .output(Column::new(
            "format",
            DataType::Utf8,
            "plain, html, markdown or json",
        ))
        .params(PARAMS)
        .mime_types([
            "text/*",
            "application/json",
            "application/ld+json",
            "application/xml",
            "application/xhtml+xml",
            "application/x-ndjson",
        ])
        .batch_size(256)
        .memory_limit_mb(128)
    }

    fn open(params: &Params) -> Result<TextSession, OpenError> {
        params.check(PARAMS)?;
        let max_chars = params.uint(&MAX_CHARS)? as usize;
        Ok(TextSession { max_chars })
    }
}

impl Session for TextSession {
    fn process(&mut self, input: &Input) -> Result<Output, Error> {
        let content = input.binary("content")?;
        let mime = input.utf8("mime_type")?;
        let rows = input.num_rows();
        let mut text = StringBuilder::with_capacity(rows, content.values().len());
        let mut chars = UInt64Builder::with_capacity(rows);
        let mut encoding = StringBuilder::new();
        let mut format = StringBuilder::new();
        let mut errors = Vec::with_capacity(rows);
        for row in 0..rows {
            if content.is_null(row) {
                text.append_null();
                chars.append_null();
                encoding.append_null();
                format.append_null();
                errors.push(Some("object has no content".to_owned()));
                continue;
            }
            let mime = if mime.is_null(row) {
                ""
            } else {
                mime.value(row)
            };
            let extracted = extract(content.value(row), mime, self.max_chars);
            text.append_value(&extracted.text);
            chars.append_value(extracted.text.chars().count() as u64);
            encoding.append_value(extracted.encoding);
            format.append_value(extracted.format.as_str());
            errors.push(None);
        }
        Ok(Output::new(vec![
            Arc::new(text.finish()),
            Arc::new(chars.finish()),
            Arc::new(encoding.finish()),
            Arc::new(format.finish()),
        ])
        .with_errors(errors))
    }
}

strata_sdk::export_extractor!(TextExtract);

/// The markup a text is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Plain text.
    Plain,
    /// HTML or XHTML.
    Html,
    /// Markdown.
    Markdown,
    /// JSON.
    Json,
}

impl Format {
    fn as_str(self) -> &'static str {
        match self {
            Format::Plain => "plain",
            Format::Html => "html",
            Format::Markdown => "markdown",
            Format::Json => "json",
        }
    }

    fn of(essence: &str, decoded: &str) -> Format {
        match essence {
            "text/html" | "application/xhtml+xml" => Format::Html,
            "text/markdown" | "text/x-markdown" => Format::Markdown,
            "application/json" | "application/ld+json" => Format::Json,
            _ if essence.ends_with("+json") => Format::Json,
            "" | "text/plain" => {
                let head = decoded.trim_start();
                let lower = head.get(..15).unwrap_or(head).to_ascii_lowercase();
                if lower.starts_with("<!doctype html") || lower.starts_with("<html") {
                    Format::Html
                } else {
                    Format::Plain
                }
            }
            _ => Format::Plain,
        }
    }
}

/// What [`extract`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct Extracted {
    /// Readable text.
    pub text: String,
    /// Encoding the bytes were decoded from.
    pub encoding: &'static str,
    /// Markup that was reduced.
    pub format: Format,
}

/// Decodes `bytes` and reduces their markup to readable text of at most
/// `max_chars` characters.
pub fn extract(bytes: &[u8], mime: &str, max_chars: usize) -> Extracted {
    let (decoded, encoding) = decode(bytes, charset(mime));
    let essence = mime
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let format = Format::of(&essence, &decoded);
    let mut text = match format {
        Format::Plain => decoded,
        Format::Html => html_text(&decoded),
        Format::Markdown => markdown_text(&decoded),
        Format::Json => json_text(&decoded).unwrap_or(decoded),
    };
    if let Some((cut, _)) = text.char_indices().nth(max_chars) {
        text.truncate(cut);
    }
    Extracted {
        text,
        encoding,
        format,
    }
}

fn charset(mime: &str) -> Option<&'static Encoding> {
    mime.split(';').skip(1).find_map(|param| {
        let (key, value) = param.split_once('=')?;
        if key.trim().eq_ignore_ascii_case("charset") {
            Encoding::for_label(value.trim().trim_matches('"').as_bytes())
        } else {
            None
        }
    })
}

fn decode(bytes: &[u8], declared: Option<&'static Encoding>) -> (String, &'static str) {
    if let Some((encoding, bom)) = Encoding::for_bom(bytes) {
        let (text, _) = encoding.decode_without_bom_handling(&bytes[bom..]);
        return (text.into_owned(), encoding.name());
    }
    if let Some(encoding) = declared.filter(|e| *e != UTF_8) {
        let (text, _) = encoding.decode_without_bom_handling(bytes);
        return (text.into_owned(), encoding.name());
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => (text.to_owned(), UTF_8.name()),
        Err(_) => {
            let (text, _) = WINDOWS_1252.decode_without_bom_handling(bytes);
            (text.into_owned(), WINDOWS_1252.name())
        }
    }
}

fn html_text(html: &str) -> String {
    let config = html2text::config::with_decorator(html2text::render::TrivialDecorator::new())
        .no_table_borders()
        .allow_width_overflow();
    match config.string_from_read(html.as_bytes(), 10_000) {
        Ok(text) => tidy(&text),
        Err(_) => html.to_owned(),
    }
}

fn markdown_text(markdown: &str) -> String {
    use pulldown_cmark::{Event, Parser, TagEnd};
    let mut out = String::with_capacity(markdown.len());
    for event in Parser::new(markdown) {
        match event {
            Event::Text(t) | Event::Code(t) => out.push_str(&t),
            Event::SoftBreak => out.push(' '),
            Event::HardBreak => out.push('\n'),
            Event::End(
                TagEnd::Paragraph
                | TagEnd::Heading(_)
                | TagEnd::Item
                | TagEnd::CodeBlock
                | TagEnd::TableRow
                | TagEnd::BlockQuote(_),
            ) => out.push('\n'),
            Event::End(TagEnd::TableCell) => out.push(' '),
            _ => {}
        }
    }
    tidy(&out)
}

fn json_text(json: &str) -> Option<String> {
    fn walk(value: &serde_json::Value, out: &mut Vec<String>) {
        match value {
            serde_json::Value::String(s) if !s.trim().is_empty() => out.push(s.trim().to_owned()),
            serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            serde_json::Value::Object(map) => map.values().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let value: serde_json::Value = serde_json::from_str(json).ok()?;
    let mut strings = Vec::new();
    walk(&value, &mut strings);
    Some(strings.join("\n"))
}

/// Trims trailing spaces and collapses runs of blank lines.
fn tidy(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank = 0;
    for line in text.lines().map(str::trim_end) {
        if line.trim().is_empty() {
            blank += 1;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank > 0 { "\n\n" } else { "\n" });
        }
        blank = 0;
        out.push_str(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use strata_sdk::arrow_array::cast::AsArray;
    use strata_sdk::arrow_array::types::UInt64Type;

    use super::*;

    fn check(bytes: &[u8], mime: &str, text: &str, encoding: &str, format: Format) {
        let got = extract(bytes, mime, usize::MAX);
        assert_eq!(got.text, text, "text of {mime}");
        assert_eq!(got.encoding, encoding, "encoding of {mime}");
        assert_eq!(got.format, format, "format of {mime}");
    }

    #[test]
    fn decodes_encodings() {
        check(
            "héllo".as_bytes(),
            "text/plain",
            "héllo",
            "UTF-8",
            Format::Plain,
        );
        let mut utf16le = vec![0xFF, 0xFE];
        utf16le.extend("Grüße".encode_utf16().flat_map(u16::to_le_bytes));
        check(&utf16le, "text/plain", "Grüße", "UTF-16LE", Format::Plain);
        let mut utf16be = vec![0xFE, 0xFF];
        utf16be.extend("日本".encode_utf16().flat_map(u16::to_be_bytes));
        check(&utf16be, "text/plain", "日本", "UTF-16BE", Format::Plain);
        check(
            b"caf\xe9 cr\xe8me",
            "text/plain",
            "café crème",
            "windows-1252",
            Format::Plain,
        );
        check(
            b"caf\xe9",
            "text/plain; charset=ISO-8859-1",
            "café",
            "windows-1252",
            Format::Plain,
        );
    }

    #[test]
    fn reduces_html() {
        let html = "<!DOCTYPE html><html><head><title>T</title><style>p{color:red}</style>\
            <script>var x = 1;</script></head><body><h1>Hello</h1><p>A <b>bold</b> \
            &amp; <a href='https://example.com'>linked</a> word.</p></body></html>";
        let got = extract(html.as_bytes(), "text/html; charset=utf-8", usize::MAX);
        assert_eq!(got.format, Format::Html);
        assert!(got.text.contains("Hello"), "{}", got.text);
        assert!(got.text.contains("A bold & linked word."), "{}", got.text);
        assert!(!got.text.contains('<'), "{}", got.text);
        assert!(!got.text.contains("color:red"), "{}", got.text);
        assert!(!got.text.contains("var x"), "{}", got.text);
        // Sniffed without a MIME type.
        assert_eq!(
            extract(html.as_bytes(), "", usize::MAX).format,
            Format::Html
        );
    }

    #[test]
    fn reduces_markdown_and_json() {
        check(
            b"# Title\n\nSome *emphasis* and `code`.\n\n- one\n- two\n",
            "text/markdown",
            "Title\nSome emphasis and code.\none\ntwo",
            "UTF-8",
            Format::Markdown,
        );
        check(
            br#"{"title": "Bonjour", "tags": ["a", "b"], "n": 3, "nested": {"body": "le monde"}}"#,
            "application/json",
            "Bonjour\na\nb\nle monde",
            "UTF-8",
            Format::Json,
        );
        // Invalid JSON stays as it is.
        check(
            b"{not json",
            "application/json",
            "{not json",
            "UTF-8",
            Format::Json,
        );
    }

    #[test]
    fn cuts_at_max_chars() {
        assert_eq!(extract("ééééé".as_bytes(), "text/plain", 3).text, "ééé");
    }

    #[test]
    fn session_marks_rows_without_content() {
        let batch = RecordBatch::try_from_iter([
            (
                "content",
                Arc::new(BinaryArray::from(vec![Some(&b"abc"[..]), None])) as ArrayRef,
            ),
            (
                "mime_type",
                Arc::new(StringArray::from(vec!["text/plain", "text/plain"])) as ArrayRef,
            ),
        ])
        .expect("batch");
        let out = strata_sdk::run::<TextExtract>("{}", batch).expect("processed");
        assert_eq!(out.num_rows(), 2);
        let chars = out.column_by_name("char_count").expect("char_count");
        assert_eq!(chars.as_primitive::<UInt64Type>().value(0), 3);
        let errors = out
            .column_by_name("_error")
            .expect("_error")
            .as_string::<i32>();
        assert!(errors.is_null(0));
        assert_eq!(errors.value(1), "object has no content");
    }

    #[test]
    fn rejects_bad_params() {
        let err = TextExtract::open(&Params::parse(r#"{"max_chars": 0}"#).expect("json"))
            .err()
            .expect("rejected");
        assert!(matches!(err, OpenError::InvalidParam { ref param, .. } if param == "max_chars"));
    }
}
