//! `word-stats`: words, sentences and average word length of the text that
//! `text-extract` produced. Copy this crate to start your own extractor.

use strata_sdk::prelude::*;

/// The extractor: a manifest and a way to open sessions.
pub struct WordStats;

/// A configured session. Parameters checked in `open` live here.
pub struct WordStatsSession {
    min_word_chars: usize,
}

/// Parameters are declared once: the manifest's JSON Schema and the
/// checks in `open` both come from these.
const MIN_WORD_CHARS: Param = Param::uint("min_word_chars", 1, 1, 100, "shorter words are not counted");
const PARAMS: &[Param] = &[MIN_WORD_CHARS];

impl Extractor for WordStats {
    type Session = WordStatsSession;

    fn manifest() -> Manifest {
        Manifest::new("word-stats", "0.1.0", "Words, sentences and average word length of a text")
            // Read another extractor's output: depend on it, then name
            // its column as `extractor.column`.
            .depends_on(["text-extract"])
            .input("text-extract.text")
            .output(Column::new("words", DataType::UInt32, "number of words"))
            .output(Column::new("sentences", DataType::UInt32, "number of sentences"))
            .output(Column::new("avg_word_chars", DataType::Float32, "average characters per word"))
            .params(PARAMS)
            .batch_size(256)
            .memory_limit_mb(32)
    }

    fn open(params: &Params) -> Result<WordStatsSession, OpenError> {
        // Name the bad parameter: the host shows the message to the user.
        params.check(PARAMS)?;
        Ok(WordStatsSession {
            min_word_chars: params.uint(&MIN_WORD_CHARS)? as usize,
        })
    }
}

impl Session for WordStatsSession {
    fn process(&mut self, input: &Input) -> Result<Output, Error> {
        let texts = input.utf8("text-extract.text")?;
        let mut words = UInt32Builder::new();
        let mut sentences = UInt32Builder::new();
        let mut average = Float32Builder::new();
        let mut errors = Vec::with_capacity(texts.len());
        for text in texts.iter() {
            // One value per row, in order; a row that fails gets nulls and
            // an error message, and the other rows carry on.
            let Some(text) = text else {
                words.append_null();
                sentences.append_null();
                average.append_null();
                errors.push(Some("no text".to_owned()));
                continue;
            };
            let counted: Vec<usize> = text
                .split(|c: char| !c.is_alphanumeric())
                .map(|w| w.chars().count())
                .filter(|&n| n >= self.min_word_chars)
                .collect();
            let ends = text.matches(['.', '!', '?']).count();
            words.append_value(counted.len() as u32);
            sentences.append_value(ends.max(usize::from(!counted.is_empty())) as u32);
            average.append_value(if counted.is_empty() {
                0.0
            } else {
                counted.iter().sum::<usize>() as f32 / counted.len() as f32
            });
            errors.push(None);
        }
        Ok(Output::new(vec![
            Arc::new(words.finish()),
            Arc::new(sentences.finish()),
            Arc::new(average.finish()),
        ])
        .with_errors(errors))
    }
}

strata_sdk::export_extractor!(WordStats);

#[cfg(test)]
mod tests {
    use strata_sdk::arrow_array::cast::AsArray;
    use strata_sdk::arrow_array::types::UInt32Type;

    use super::*;

    #[test]
    fn counts_words_and_sentences() {
        let batch = RecordBatch::try_from_iter([(
            "text-extract.text",
            Arc::new(StringArray::from(vec![Some("One two three. Four!"), None])) as ArrayRef,
        )])
        .expect("batch");
        // `strata_sdk::run` does natively what the host does with the component.
        let out = strata_sdk::run::<WordStats>("{}", batch).expect("processed");
        let words = out.column_by_name("words").expect("words").as_primitive::<UInt32Type>();
        assert_eq!(words.value(0), 4);
        let sentences = out.column_by_name("sentences").expect("sentences").as_primitive::<UInt32Type>();
        assert_eq!(sentences.value(0), 2);
        assert!(out.column_by_name("_error").expect("_error").is_valid(1));
    }
}
