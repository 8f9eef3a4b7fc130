//! `keywords`: the top-k key phrases of an English, French or German text,
//! scored with RAKE (Rapid Automatic Keyword Extraction): candidate phrases
//! are the runs of words between stop words and punctuation; a word scores
//! its degree over its frequency; a phrase scores the sum of its words.

use std::collections::HashMap;

use strata_sdk::prelude::*;
use strata_sdk::text::words;

/// The extractor.
pub struct Keywords;

/// A configured session.
pub struct KeywordsSession {
    k: usize,
    max_words: usize,
}

fn list_of(item: DataType) -> DataType {
    DataType::List(Arc::new(Field::new_list_field(item, true)))
}

const K: Param = Param::uint("k", 10, 1, 100, "number of key phrases kept");
const MAX_WORDS: Param = Param::uint("max_words", 3, 1, 8, "longest key phrase, in words");
const PARAMS: &[Param] = &[K, MAX_WORDS];

impl Extractor for Keywords {
    type Session = KeywordsSession;

    fn manifest() -> Manifest {
        Manifest::new(
            "keywords",
            "1.0.0",
            "Top-k key phrases of a text with RAKE scores",
        )
        .depends_on(["text-extract"])
        .input("text-extract.text")
        .output(Column::new(
            "keywords",
            list_of(DataType::Utf8),
            "key phrases, best first",
        ))
        .output(Column::new(
            "scores",
            list_of(DataType::Float32),
            "RAKE score of each key phrase",
        ))
        .params(PARAMS)
        .batch_size(256)
        .memory_limit_mb(64)
    }

    fn open(params: &Params) -> Result<KeywordsSession, OpenError> {
        params.check(PARAMS)?;
        Ok(KeywordsSession {
            k: params.uint(&K)? as usize,
            max_words: params.uint(&MAX_WORDS)? as usize,
        })
    }
}

impl Session for KeywordsSession {
    fn process(&mut self, input: &Input) -> Result<Output, Error> {
        let texts = input.utf8("text-extract.text")?;
        let mut keywords = ListBuilder::new(StringBuilder::new());
        let mut scores = ListBuilder::new(Float32Builder::new());
        for text in texts.iter() {
            match text {
                Some(text) => {
                    for (phrase, score) in rake(text, self.k, self.max_words) {
                        keywords.values().append_value(phrase);
                        scores.values().append_value(score);
                    }
                    keywords.append(true);
                    scores.append(true);
                }
                None => {
                    keywords.append_null();
                    scores.append_null();
                }
            }
        }
        Ok(Output::new(vec![
            Arc::new(keywords.finish()),
            Arc::new(scores.finish()),
        ]))
    }
}

strata_sdk::export_extractor!(Keywords);

/// The `k` best key phrases of `text` of at most `max_words` words, best
/// first (ties keep the order of first appearance).
pub fn rake(text: &str, k: usize, max_words: usize) -> Vec<(String, f32)> {
    let mut phrases: Vec<Vec<String>> = Vec::new();
    let mut current = Vec::new();
    for token in text.split_whitespace() {
        // Addresses and links are entities, not key phrases: they break a
        // phrase like punctuation does.
        if is_address_or_link(token) {
            phrases.push(std::mem::take(&mut current));
            continue;
        }
        for (i, piece) in token.split(is_delimiter).enumerate() {
            if i > 0 {
                phrases.push(std::mem::take(&mut current));
            }
            for word in words(piece) {
                let word = word.to_lowercase();
                let keep = word.chars().nth(1).is_some()
                    && word.chars().any(char::is_alphabetic)
                    && !is_stop_word(&word);
                if keep {
                    current.push(word);
                } else {
                    phrases.push(std::mem::take(&mut current));
                }
            }
        }
    }
    phrases.push(current);
    phrases.retain(|p| !p.is_empty() && p.len() <= max_words);

    let mut frequency: HashMap<&str, f32> = HashMap::new();
    let mut degree: HashMap<&str, f32> = HashMap::new();
    for phrase in &phrases {
        for word in phrase {
            *frequency.entry(word).or_default() += 1.0;
            *degree.entry(word).or_default() += phrase.len() as f32;
        }
    }
    let mut seen = HashMap::new();
    let mut scored: Vec<(String, f32, usize)> = Vec::new();
    for phrase in &phrases {
        let joined = phrase.join(" ");
        if seen.contains_key(&joined) {
            continue;
        }
        let score = phrase
            .iter()
            .map(|w| degree[w.as_str()] / frequency[w.as_str()])
            .sum();
        seen.insert(joined.clone(), ());
        let order = scored.len();
        scored.push((joined, score, order));
    }
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.2.cmp(&b.2)));
    scored.into_iter().take(k).map(|(p, s, _)| (p, s)).collect()
}

/// Punctuation that ends a phrase: sentence ends, clause marks, brackets,
/// quotes and slashes.
fn is_delimiter(c: char) -> bool {
    matches!(
        c,
        '.' | '!'
            | '?'
            | '…'
            | ','
            | ';'
            | ':'
            | '('
            | ')'
            | '['
            | ']'
            | '{'
            | '}'
            | '"'
            | '«'
            | '»'
            | '“'
            | '”'
            | '|'
            | '/'
            | '\\'
    )
}

fn is_address_or_link(token: &str) -> bool {
    token.contains('@')
        || token.starts_with("www.")
        || (token.contains(':') && token.contains("://"))
}

fn is_stop_word(word: &str) -> bool {
    STOP_WORDS.binary_search(&word).is_ok()
}

/// English, French and German stop words, sorted for binary search.
const STOP_WORDS: &[&str] = &[
    "a",
    "aber",
    "about",
    "above",
    "after",
    "again",
    "against",
    "ai",
    "aie",
    "all",
    "als",
    "also",
    "am",
    "an",
    "and",
    "any",
    "are",
    "as",
    "at",
    "au",
    "auch",
    "auf",
    "aus",
    "aux",
    "avec",
    "be",
    "because",
    "been",
    "before",
    "bei",
    "being",
    "below",
    "between",
    "bis",
    "both",
    "but",
    "by",
    "can",
    "ce",
    "ces",
    "cet",
    "cette",
    "could",
    "dann",
    "dans",
    "das",
    "dass",
    "de",
    "dem",
    "den",
    "der",
    "des",
    "did",
    "die",
    "do",
    "does",
    "doing",
    "donc",
    "dort",
    "down",
    "du",
    "durch",
    "during",
    "each",
    "ein",
    "eine",
    "einem",
    "einen",
    "einer",
    "elle",
    "elles",
    "en",
    "er",
    "es",
    "est",
    "et",
    "eu",
    "few",
    "for",
    "from",
    "further",
    "für",
    "gerne",
    "haben",
    "had",
    "has",
    "hat",
    "have",
    "having",
    "he",
    "her",
    "here",
    "hers",
    "herself",
    "hier",
    "him",
    "himself",
    "his",
    "how",
    "i",
    "if",
    "ihr",
    "ihre",
    "ihren",
    "il",
    "ils",
    "im",
    "in",
    "into",
    "is",
    "ist",
    "it",
    "its",
    "itself",
    "je",
    "jede",
    "jeden",
    "jeder",
    "jedes",
    "just",
    "kann",
    "können",
    "la",
    "le",
    "les",
    "leur",
    "leurs",
    "lui",
    "ma",
    "mais",
    "man",
    "me",
    "mehr",
    "mes",
    "might",
    "mit",
    "mon",
    "more",
    "most",
    "must",
    "my",
    "myself",
    "nach",
    "ne",
    "nicht",
    "no",
    "noch",
    "nor",
    "nos",
    "not",
    "notre",
    "nous",
    "now",
    "nur",
    "oder",
    "of",
    "off",
    "on",
    "once",
    "only",
    "or",
    "other",
    "ou",
    "our",
    "ours",
    "ourselves",
    "out",
    "over",
    "own",
    "par",
    "pas",
    "per",
    "pour",
    "qu",
    "que",
    "qui",
    "sa",
    "same",
    "sans",
    "se",
    "sehr",
    "sei",
    "sein",
    "ses",
    "she",
    "should",
    "sich",
    "sie",
    "sind",
    "so",
    "some",
    "son",
    "sont",
    "such",
    "sur",
    "ta",
    "te",
    "tes",
    "than",
    "that",
    "the",
    "their",
    "theirs",
    "them",
    "themselves",
    "then",
    "there",
    "these",
    "they",
    "this",
    "those",
    "through",
    "to",
    "ton",
    "too",
    "tu",
    "um",
    "un",
    "und",
    "under",
    "une",
    "uns",
    "unser",
    "unsere",
    "unseren",
    "unserer",
    "until",
    "up",
    "us",
    "very",
    "von",
    "vor",
    "vos",
    "votre",
    "vous",
    "war",
    "was",
    "we",
    "wenn",
    "werden",
    "were",
    "what",
    "when",
    "where",
    "which",
    "while",
    "who",
    "whom",
    "why",
    "wie",
    "will",
    "wir",
    "wird",
    "with",
    "would",
    "wurde",
    "you",
    "your",
    "yours",
    "yourself",
    "yourselves",
    "zu",
    "zum",
    "zur",
    "über",
];

#[cfg(test)]
mod tests {
    use strata_sdk::arrow_array::cast::AsArray;

    use super::*;

    #[test]
    fn stop_words_are_sorted() {
        assert!(STOP_WORDS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn ranks_multi_word_phrases_first() {
        let text = "Compatibility of systems of linear constraints over the set of natural \
            numbers. Criteria of compatibility of a system of linear Diophantine equations, \
            strict inequations, and nonstrict inequations are considered.";
        let got = rake(text, 3, 3);
        let phrases: Vec<&str> = got.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            phrases,
            [
                "linear diophantine equations",
                "linear constraints",
                "natural numbers"
            ]
        );
        assert!(got[0].1 > got[1].1 && got[1].1 >= got[2].1, "{got:?}");
    }

    #[test]
    fn phrases_end_at_sentence_ends_and_clause_marks() {
        let got = rake("Rust compiler. Borrow checker; memory model", 10, 4);
        let phrases: Vec<&str> = got.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(phrases, ["rust compiler", "borrow checker", "memory model"]);
    }

    #[test]
    fn addresses_are_not_key_phrases() {
        let got = rake(
            "Write to library help@example.org or see https://example.org/hours today.",
            10,
            3,
        );
        let phrases: Vec<&str> = got.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(phrases, ["write", "library", "see", "today"]);
    }

    #[test]
    fn session_respects_k_and_nulls() {
        let batch = RecordBatch::try_from_iter([(
            "text-extract.text",
            Arc::new(StringArray::from(vec![
                Some("The compiler checks the borrow rules. The borrow rules keep memory safe."),
                None,
            ])) as ArrayRef,
        )])
        .expect("batch");
        let out = strata_sdk::run::<Keywords>(r#"{"k": 1}"#, batch).expect("processed");
        let keywords = out
            .column_by_name("keywords")
            .expect("keywords")
            .as_list::<i32>();
        assert_eq!(keywords.value(0).len(), 1);
        assert!(keywords.is_null(1));
        assert!(strata_sdk::run::<Keywords>(r#"{"k": 0}"#, out).is_err());
    }
}
