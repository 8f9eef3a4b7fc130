//! `hash-embed`: a fixed-dimension embedding by feature hashing of word
//! unigrams, word bigrams and character n-grams, L2-normalised.
//!
//! Each feature is hashed with XXH64 to a dimension and a sign. XXH64 needs
//! only 64-bit arithmetic, so it runs as fast in WebAssembly (which has no
//! 64×64→128-bit multiply) as natively. Counts are dampened
//! (`1 + ln(count)`) before normalisation, so texts sharing words and word
//! pieces have a high cosine similarity.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use strata_sdk::prelude::*;
use xxhash_rust::xxh64::xxh64;

/// The extractor.
pub struct HashEmbed;

/// A configured session.
pub struct EmbedSession {
    config: Config,
}

/// What an embedding is made of.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Config {
    /// Number of dimensions.
    pub dim: usize,
    /// Character n-gram length (0: none).
    pub char_ngram: usize,
    /// Whether word bigrams are features.
    pub word_bigrams: bool,
}

const DEFAULT_DIM: u32 = 256;

/// The embedding column's type for `dim` dimensions.
pub fn embedding_type(dim: usize) -> DataType {
    DataType::FixedSizeList(
        Arc::new(Field::new_list_field(DataType::Float32, true)),
        dim as i32,
    )
}

fn columns(dim: usize) -> [Column; 2] {
    [
        Column::new(
            "embedding",
            embedding_type(dim),
            "unit-length feature-hashing embedding; null for text without words",
        ),
        Column::new("token_count", DataType::UInt32, "number of words"),
    ]
}

const DIM: Param = Param::uint("dim", DEFAULT_DIM, 8, 4096, "number of dimensions");
const CHAR_NGRAM: Param = Param::uint(
    "char_ngram",
    3,
    0,
    6,
    "character n-gram length; 0 turns them off",
);
const WORD_BIGRAMS: Param =
    Param::boolean("word_bigrams", true, "whether pairs of words are features");
const PARAMS: &[Param] = &[DIM, CHAR_NGRAM, WORD_BIGRAMS];

impl Extractor for HashEmbed {
    type Session = EmbedSession;

    fn manifest() -> Manifest {
        let [embedding, tokens] = columns(DEFAULT_DIM as usize);
        Manifest::new(
            "hash-embed",
            "1.0.0",
            "Feature-hashing embedding of word and character n-grams",
        )
        .depends_on(["text-extract"])
        .input("text-extract.text")
        .output(embedding)
        .output(tokens)
        .params(PARAMS)
        .batch_size(256)
        .memory_limit_mb(64)
    }

    fn open(params: &Params) -> Result<EmbedSession, OpenError> {
        params.check(PARAMS)?;
        Ok(EmbedSession {
            config: Config {
                dim: params.uint(&DIM)? as usize,
                char_ngram: params.uint(&CHAR_NGRAM)? as usize,
                word_bigrams: params.boolean(&WORD_BIGRAMS)?,
            },
        })
    }
}

impl Session for EmbedSession {
    fn columns(&self) -> Option<Vec<Column>> {
        Some(columns(self.config.dim).to_vec())
    }

    fn process(&mut self, input: &Input) -> Result<Output, Error> {
        let texts = input.utf8("text-extract.text")?;
        let dim = self.config.dim;
        let mut embedding =
            FixedSizeListBuilder::new(Float32Builder::with_capacity(texts.len() * dim), dim as i32);
        let mut tokens = UInt32Builder::with_capacity(texts.len());
        for text in texts.iter() {
            let (vector, count) = match text {
                Some(text) => embed(text, &self.config),
                None => (None, 0),
            };
            match vector {
                Some(vector) => {
                    embedding.values().append_slice(&vector);
                    embedding.append(true);
                }
                None => {
                    embedding.values().append_nulls(dim);
                    embedding.append(false);
                }
            }
            if text.is_some() {
                tokens.append_value(count as u32);
            } else {
                tokens.append_null();
            }
        }
        Ok(Output::new(vec![
            Arc::new(embedding.finish()),
            Arc::new(tokens.finish()),
        ]))
    }
}

strata_sdk::export_extractor!(HashEmbed);

/// The embedding of `text` (`None` when it has no words) and its word count.
pub fn embed(text: &str, config: &Config) -> (Option<Vec<f32>>, usize) {
    let words: Vec<String> = strata_sdk::text::words(text)
        .map(str::to_lowercase)
        .collect();
    let mut counts: Counts = HashMap::with_capacity_and_hasher(words.len() * 8, Default::default());
    let mut add = |feature: &str, kind: u64, weight: f32| {
        *counts.entry(xxh64(feature.as_bytes(), kind)).or_default() += weight;
    };
    // Buffers reused across words: no allocation per feature.
    let mut chars: Vec<char> = Vec::new();
    let mut gram = String::new();
    for word in &words {
        add(word, 1, 1.0);
        if config.char_ngram > 0 {
            chars.clear();
            chars.push('<');
            chars.extend(word.chars());
            chars.push('>');
            for window in chars.windows(config.char_ngram) {
                gram.clear();
                gram.extend(window);
                add(&gram, 2, 0.5);
            }
        }
    }
    if config.word_bigrams {
        for pair in words.windows(2) {
            gram.clear();
            gram.push_str(&pair[0]);
            gram.push(' ');
            gram.push_str(&pair[1]);
            add(&gram, 3, 0.7);
        }
    }
    if counts.is_empty() {
        return (None, words.len());
    }
    let mut vector = vec![0f32; config.dim];
    for (hash, weight) in counts {
        let slot = (hash % config.dim as u64) as usize;
        let sign = if hash >> 63 == 0 { 1.0 } else { -1.0 };
        vector[slot] += sign * (1.0 + weight.ln().max(0.0));
    }
    let norm = vector.iter().map(|v| v * v).sum::<f32>().sqrt();
    if norm == 0.0 {
        return (None, words.len());
    }
    vector.iter_mut().for_each(|v| *v /= norm);
    (Some(vector), words.len())
}

/// Feature counts keyed by feature hash. The keys are XXH64 hashes already,
/// so the map uses them as they are instead of hashing them again.
type Counts = HashMap<u64, f32, BuildHasherDefault<HashAsIs>>;

#[derive(Default)]
struct HashAsIs(u64);

impl Hasher for HashAsIs {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[cfg(test)]
mod tests {
    use strata_sdk::arrow_array::cast::AsArray;
    use strata_sdk::arrow_array::types::Float32Type;

    use super::*;

    const CONFIG: Config = Config {
        dim: 256,
        char_ngram: 3,
        word_bigrams: true,
    };

    fn cosine(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn unit_length_and_similar_texts_closer() {
        let a = embed("The cat sat on the mat", &CONFIG).0.expect("a");
        let b = embed("A cat sat on a mat", &CONFIG).0.expect("b");
        let c = embed("Quarterly revenue grew in emerging markets", &CONFIG)
            .0
            .expect("c");
        assert!((cosine(&a, &a) - 1.0).abs() < 1e-5);
        assert!(cosine(&a, &b) > 0.5, "{}", cosine(&a, &b));
        assert!(cosine(&a, &b) > cosine(&a, &c) + 0.3);
        assert_eq!(
            embed("The cat sat on the mat", &CONFIG).0.expect("again"),
            a,
            "deterministic"
        );
    }

    #[test]
    fn dim_parameter_sets_the_output_type() {
        let batch = RecordBatch::try_from_iter([(
            "text-extract.text",
            Arc::new(StringArray::from(vec![
                Some("hello world"),
                Some("  "),
                None,
            ])) as ArrayRef,
        )])
        .expect("batch");
        let out = strata_sdk::run::<HashEmbed>(r#"{"dim": 32}"#, batch).expect("processed");
        let embedding = out.column_by_name("embedding").expect("embedding");
        assert_eq!(embedding.data_type(), &embedding_type(32));
        let list = embedding.as_fixed_size_list();
        let first = list.value(0);
        let norm: f32 = first
            .as_primitive::<Float32Type>()
            .values()
            .iter()
            .map(|v| v * v)
            .sum();
        assert!((norm - 1.0).abs() < 1e-5);
        assert!(list.is_null(1) && list.is_null(2));
    }
}
