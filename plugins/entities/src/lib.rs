//! `entities`: e-mail addresses, URLs and phone numbers in a text, with
//! their character offsets (Unicode scalar values, end exclusive).

use regex::Regex;
use strata_sdk::arrow_array::{ListArray, StructArray};
use strata_sdk::arrow_buffer::OffsetBuffer;
use strata_sdk::arrow_schema::Fields;
use strata_sdk::prelude::*;

/// The extractor.
pub struct Entities;

/// A configured session with compiled patterns.
pub struct EntitiesSession {
    patterns: Patterns,
    max_per_text: usize,
}

/// One entity found in a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entity {
    /// `email`, `url` or `phone`.
    pub kind: &'static str,
    /// The text of the entity.
    pub value: String,
    /// Offset of the first character.
    pub start: u32,
    /// Offset after the last character.
    pub end: u32,
}

fn entity_fields() -> Fields {
    Fields::from(vec![
        Field::new("kind", DataType::Utf8, false),
        Field::new("value", DataType::Utf8, false),
        Field::new("start", DataType::UInt32, false),
        Field::new("end", DataType::UInt32, false),
    ])
}

fn entities_type() -> DataType {
    DataType::List(Arc::new(Field::new_list_field(
        DataType::Struct(entity_fields()),
        true,
    )))
}

const MAX_PER_TEXT: Param = Param::uint("max_per_text", 1000, 1, 100_000, "entities kept per text");
const PARAMS: &[Param] = &[MAX_PER_TEXT];

impl Extractor for Entities {
    type Session = EntitiesSession;

    fn manifest() -> Manifest {
        Manifest::new(
            "entities",
            "1.0.0",
            "E-mail addresses, URLs and phone numbers with offsets",
        )
        .depends_on(["text-extract"])
        .input("text-extract.text")
        .output(Column::new(
            "entities",
            entities_type(),
            "entities in order of appearance: kind, value, start, end (character offsets)",
        ))
        .output(Column::new("count", DataType::UInt32, "number of entities"))
        .params(PARAMS)
        .batch_size(256)
        .memory_limit_mb(96)
    }

    fn open(params: &Params) -> Result<EntitiesSession, OpenError> {
        params.check(PARAMS)?;
        Ok(EntitiesSession {
            patterns: Patterns::new().map_err(|e| OpenError::Other(e.to_string()))?,
            max_per_text: params.uint(&MAX_PER_TEXT)? as usize,
        })
    }
}

/// Compiled patterns.
pub struct Patterns {
    email: Regex,
    url: Regex,
    phone: Regex,
}

impl Patterns {
    /// Compiles the patterns. Word boundaries are ASCII ones (`(?-u:\b)`):
    /// Unicode boundaries would push the regex engine off its fast DFA on
    /// any non-ASCII text, and the entities themselves are ASCII.
    pub fn new() -> Result<Self, regex::Error> {
        Ok(Patterns {
            email: Regex::new(
                r"(?i)(?-u:\b)[a-z0-9][a-z0-9._%+-]*@[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*\.[a-z]{2,}(?-u:\b)",
            )?,
            url: Regex::new(r#"(?i)(?-u:\b)(?:https?://|www\.)[^\s<>"'`]+"#)?,
            phone: Regex::new(
                r"(?:\+[0-9]{1,3}[\s.-]?)?(?:\([0-9]{1,4}\)[\s.-]?)?[0-9]{1,4}(?:[\s.-][0-9]{2,4}){1,5}(?-u:\b)",
            )?,
        })
    }

    /// The entities of `text`, in order of appearance.
    pub fn find(&self, text: &str, max: usize) -> Vec<Entity> {
        let mut spans: Vec<(usize, usize, &'static str)> = Vec::new();
        for m in self.url.find_iter(text) {
            let trimmed = m
                .as_str()
                .trim_end_matches(['.', ',', ';', ':', '!', '?', ')', ']']);
            spans.push((m.start(), m.start() + trimmed.len(), "url"));
        }
        for m in self.email.find_iter(text) {
            if !overlaps(&spans, m.start(), m.end()) {
                spans.push((m.start(), m.end(), "email"));
            }
        }
        for m in self.phone.find_iter(text) {
            let digits = m.as_str().chars().filter(char::is_ascii_digit).count();
            let international = m.as_str().starts_with('+');
            let plausible = (9..=15).contains(&digits) || (international && digits >= 7);
            if plausible && !overlaps(&spans, m.start(), m.end()) {
                spans.push((m.start(), m.end(), "phone"));
            }
        }
        spans.sort_unstable();
        spans.truncate(max);
        let mut entities = Vec::with_capacity(spans.len());
        let (mut byte, mut chars) = (0, 0u32);
        let mut offset = |to: usize| {
            chars += text[byte..to].chars().count() as u32;
            byte = to;
            chars
        };
        for (start, end, kind) in spans {
            let start_char = offset(start);
            let end_char = offset(end);
            entities.push(Entity {
                kind,
                value: text[start..end].to_owned(),
                start: start_char,
                end: end_char,
            });
        }
        entities
    }
}

fn overlaps(spans: &[(usize, usize, &str)], start: usize, end: usize) -> bool {
    spans.iter().any(|&(s, e, _)| start < e && s < end)
}

impl Session for EntitiesSession {
    fn process(&mut self, input: &Input) -> Result<Output, Error> {
        let texts = input.utf8("text-extract.text")?;
        let mut kind = StringBuilder::new();
        let mut value = StringBuilder::new();
        let mut start = UInt32Builder::new();
        let mut end = UInt32Builder::new();
        let mut offsets = vec![0i32];
        let mut valid = Vec::with_capacity(texts.len());
        let mut count = UInt32Builder::with_capacity(texts.len());
        for text in texts.iter() {
            let found = text
                .map(|t| self.patterns.find(t, self.max_per_text))
                .unwrap_or_default();
            for e in &found {
                kind.append_value(e.kind);
                value.append_value(&e.value);
                start.append_value(e.start);
                end.append_value(e.end);
            }
            let last = offsets.last().copied().unwrap_or(0);
            offsets.push(last + found.len() as i32);
            valid.push(text.is_some());
            count.append_option(text.map(|_| found.len() as u32));
        }
        let items = StructArray::try_new(
            entity_fields(),
            vec![
                Arc::new(kind.finish()),
                Arc::new(value.finish()),
                Arc::new(start.finish()),
                Arc::new(end.finish()),
            ],
            None,
        )?;
        let DataType::List(item_field) = entities_type() else {
            unreachable!("entities_type is a list")
        };
        let list = ListArray::try_new(
            item_field,
            OffsetBuffer::new(offsets.into()),
            Arc::new(items),
            Some(valid.into()),
        )?;
        Ok(Output::new(vec![Arc::new(list), Arc::new(count.finish())]))
    }
}

strata_sdk::export_extractor!(Entities);

#[cfg(test)]
mod tests {
    use strata_sdk::arrow_array::cast::AsArray;
    use strata_sdk::arrow_array::types::UInt32Type;

    use super::*;

    fn find(text: &str) -> Vec<(&'static str, String, u32, u32)> {
        Patterns::new()
            .expect("patterns")
            .find(text, 100)
            .into_iter()
            .map(|e| (e.kind, e.value, e.start, e.end))
            .collect()
    }

    #[test]
    fn finds_each_kind_with_char_offsets() {
        let text = "Écrivez à marie.curie@example.fr ou visitez https://example.org/a?b=1. \
                    Tél : +33 1 23 45 67 89, bureau (555) 123-4567.";
        let got = find(text);
        let kinds: Vec<&str> = got.iter().map(|g| g.0).collect();
        assert_eq!(kinds, ["email", "url", "phone", "phone"], "{got:?}");
        assert_eq!(got[0].1, "marie.curie@example.fr");
        assert_eq!(got[1].1, "https://example.org/a?b=1");
        assert_eq!(got[2].1, "+33 1 23 45 67 89");
        let chars: Vec<char> = text.chars().collect();
        for (_, value, start, end) in &got {
            let slice: String = chars[*start as usize..*end as usize].iter().collect();
            assert_eq!(&slice, value, "offsets are character offsets");
        }
    }

    #[test]
    fn dates_and_short_numbers_are_not_phones() {
        assert!(find("Published 2024-01-15, page 12, version 1.2.3").is_empty());
    }

    #[test]
    fn session_builds_lists() {
        let batch = RecordBatch::try_from_iter([(
            "text-extract.text",
            Arc::new(StringArray::from(vec![
                Some("mail a@b.io and c@d.io"),
                Some("none"),
                None,
            ])) as ArrayRef,
        )])
        .expect("batch");
        let out = strata_sdk::run::<Entities>("{}", batch).expect("processed");
        let count = out
            .column_by_name("count")
            .expect("count")
            .as_primitive::<UInt32Type>();
        assert_eq!((count.value(0), count.value(1)), (2, 0));
        assert!(count.is_null(2));
        let list = out
            .column_by_name("entities")
            .expect("entities")
            .as_list::<i32>();
        assert_eq!(list.value(0).len(), 2);
        assert!(list.is_null(2));
    }
}
