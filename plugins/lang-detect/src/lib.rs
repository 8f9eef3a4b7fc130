//! `lang-detect`: the language of a text (ISO 639-1 where one exists,
//! ISO 639-3 otherwise), its script and a confidence.

use strata_sdk::prelude::*;

/// The extractor.
pub struct LangDetect;

/// A configured session.
pub struct LangSession {
    min_chars: usize,
    sample_chars: usize,
}

const MIN_CHARS: Param = Param::uint(
    "min_chars",
    3,
    1,
    10_000,
    "texts with fewer letters get no language",
);
const SAMPLE_CHARS: Param = Param::uint(
    "sample_chars",
    4096,
    16,
    1_000_000,
    "only the first characters of a text are looked at",
);
const PARAMS: &[Param] = &[MIN_CHARS, SAMPLE_CHARS];

impl Extractor for LangDetect {
    type Session = LangSession;

    fn manifest() -> Manifest {
        Manifest::new(
            "lang-detect",
            "1.0.0",
            "Language of a text, with script and confidence",
        )
        .depends_on(["text-extract"])
        .input("text-extract.text")
        .output(Column::new(
            "language",
            DataType::Utf8,
            "ISO 639-1 code (639-3 when the language has none); null when undetermined",
        ))
        .output(Column::new(
            "language_name",
            DataType::Utf8,
            "English name of the language",
        ))
        .output(Column::new(
            "script",
            DataType::Utf8,
            "writing system, e.g. Latin",
        ))
        .output(Column::new("confidence", DataType::Float32, "0 to 1"))
        .output(Column::new(
            "reliable",
            DataType::Boolean,
            "whether the detection is considered reliable",
        ))
        .params(PARAMS)
        .batch_size(512)
        .memory_limit_mb(64)
    }

    fn open(params: &Params) -> Result<LangSession, OpenError> {
        params.check(PARAMS)?;
        Ok(LangSession {
            min_chars: params.uint(&MIN_CHARS)? as usize,
            sample_chars: params.uint(&SAMPLE_CHARS)? as usize,
        })
    }
}

/// What [`detect`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct Detected {
    /// ISO 639-1 code, or 639-3 when there is none.
    pub code: &'static str,
    /// English name.
    pub name: &'static str,
    /// Script name.
    pub script: String,
    /// 0 to 1.
    pub confidence: f32,
    /// Whether whatlang considers it reliable.
    pub reliable: bool,
}

/// Detects the language of `text`.
pub fn detect(text: &str) -> Option<Detected> {
    let info = whatlang::detect(text)?;
    let code3 = info.lang().code();
    let code = isolang::Language::from_639_3(code3)
        .and_then(|l| l.to_639_1())
        .unwrap_or(code3);
    Some(Detected {
        code,
        name: info.lang().eng_name(),
        script: info.script().to_string(),
        confidence: info.confidence() as f32,
        reliable: info.is_reliable(),
    })
}

impl Session for LangSession {
    fn process(&mut self, input: &Input) -> Result<Output, Error> {
        let texts = input.utf8("text-extract.text")?;
        let mut language = StringBuilder::new();
        let mut name = StringBuilder::new();
        let mut script = StringBuilder::new();
        let mut confidence = Float32Builder::new();
        let mut reliable = BooleanBuilder::new();
        for text in texts.iter() {
            let found = text
                .map(|t| sample(t, self.sample_chars))
                .filter(|t| has_letters(t, self.min_chars))
                .and_then(detect);
            match found {
                Some(d) => {
                    language.append_value(d.code);
                    name.append_value(d.name);
                    script.append_value(&d.script);
                    confidence.append_value(d.confidence);
                    reliable.append_value(d.reliable);
                }
                None => {
                    language.append_null();
                    name.append_null();
                    script.append_null();
                    confidence.append_value(0.0);
                    reliable.append_value(false);
                }
            }
        }
        Ok(Output::new(vec![
            Arc::new(language.finish()),
            Arc::new(name.finish()),
            Arc::new(script.finish()),
            Arc::new(confidence.finish()),
            Arc::new(reliable.finish()),
        ]))
    }
}

strata_sdk::export_extractor!(LangDetect);

/// The first `chars` characters of `text`.
fn sample(text: &str, chars: usize) -> &str {
    // A text of at most `chars` bytes has at most `chars` characters.
    if text.len() <= chars {
        return text;
    }
    match text.char_indices().nth(chars) {
        Some((cut, _)) => &text[..cut],
        None => text,
    }
}

/// Whether `text` has at least `letters` letters.
fn has_letters(text: &str, letters: usize) -> bool {
    text.chars()
        .filter(|c| c.is_alphabetic())
        .take(letters)
        .count()
        >= letters
}

#[cfg(test)]
mod tests {
    use strata_sdk::arrow_array::cast::AsArray;

    use super::*;

    #[test]
    fn detects_common_languages() {
        let cases = [
            (
                "Le chat est assis sur le tapis et regarde les oiseaux dans le jardin.",
                "fr",
                "French",
            ),
            (
                "The quick brown fox jumps over the lazy dog near the river bank.",
                "en",
                "English",
            ),
            (
                "Der schnelle braune Fuchs springt über den faulen Hund am Flussufer.",
                "de",
                "German",
            ),
            (
                "El rápido zorro marrón salta sobre el perro perezoso junto al río.",
                "es",
                "Spanish",
            ),
            (
                "Быстрая коричневая лиса прыгает через ленивую собаку у реки.",
                "ru",
                "Russian",
            ),
        ];
        for (text, code, name) in cases {
            let d = detect(text).expect(text);
            assert_eq!((d.code, d.name), (code, name), "{text}");
            assert!(d.confidence > 0.1, "{text}: {}", d.confidence);
        }
    }

    /// Sentences in many languages and scripts, alone, joined and cut at
    /// every length: the trigram tables must answer exactly as whatlang.
    #[test]
    fn detection_equals_upstream_whatlang_value_by_value() {
        let sentences = [
            "Le chat est assis sur le tapis et regarde les oiseaux dans le jardin.",
            "The quick brown fox jumps over the lazy dog near the river bank.",
            "Der schnelle braune Fuchs springt über den faulen Hund am Flussufer.",
            "El rápido zorro marrón salta sobre el perro perezoso junto al río.",
            "O rápido raposo castanho salta sobre o cão preguiçoso junto ao rio.",
            "La volpe marrone veloce salta sopra il cane pigro vicino al fiume.",
            "De snelle bruine vos springt over de luie hond bij de rivier.",
            "Szybki brązowy lis przeskakuje nad leniwym psem przy rzece.",
            "Rychlá hnědá liška skáče přes líného psa u řeky.",
            "Den snabba bruna räven hoppar över den lata hunden vid floden.",
            "Nopea ruskea kettu hyppää laiskan koiran yli joen rannalla.",
            "Hızlı kahverengi tilki nehir kıyısında tembel köpeğin üzerinden atlar.",
            "Con cáo nâu nhanh nhẹn nhảy qua con chó lười bên bờ sông.",
            "Быстрая коричневая лиса прыгает через ленивую собаку у реки.",
            "Швидка бура лисиця стрибає через ледачого пса біля річки.",
            "Бърза кафява лисица прескача мързеливо куче край реката.",
            "الثعلب البني السريع يقفز فوق الكلب الكسول بجانب النهر.",
            "روباه قهوه ای سریع از روی سگ تنبل کنار رودخانه می پرد.",
            "तेज़ भूरी लोमड़ी नदी के किनारे आलसी कुत्ते के ऊपर कूदती है।",
            "השועל החום המהיר קופץ מעל הכלב העצלן ליד הנהר.",
            "敏捷的棕色狐狸跳过了河边的懒狗。",
            "素早い茶色の狐が川のそばの怠け者の犬を飛び越える。",
            "빠른 갈색 여우가 강가의 게으른 개를 뛰어넘는다.",
            "Γρήγορη καφέ αλεπού πηδάει πάνω από τον τεμπέλη σκύλο.",
        ];
        let mut texts: Vec<String> = sentences.iter().map(|s| (*s).to_owned()).collect();
        for (i, a) in sentences.iter().enumerate() {
            let b = sentences[(i * 7 + 3) % sentences.len()];
            texts.push(format!("{a} {b} {a}"));
            texts.push(a.repeat(40));
            for cut in (1..a.len()).filter(|&c| a.is_char_boundary(c)).step_by(5) {
                texts.push(a[..cut].to_owned());
            }
        }
        for text in &texts {
            let ours = whatlang::detect(text).map(|info| {
                (
                    info.lang().code(),
                    info.script().to_string(),
                    info.confidence(),
                    info.is_reliable(),
                )
            });
            let upstream = whatlang_upstream::detect(text).map(|info| {
                (
                    info.lang().code(),
                    info.script().to_string(),
                    info.confidence(),
                    info.is_reliable(),
                )
            });
            assert_eq!(ours, upstream, "{text}");
        }
        assert!(texts.len() > 300, "{}", texts.len());
    }

    #[test]
    fn samples_cut_at_characters_not_bytes() {
        assert_eq!(sample("héllo wörld", 4), "héll");
        assert_eq!(sample("héllo", 5), "héllo");
        assert_eq!(sample("héllo", 50), "héllo");
        assert!(has_letters("a1 b2 c3", 3));
        assert!(!has_letters("a1 b2 33", 3));
    }

    #[test]
    fn short_or_missing_text_has_no_language() {
        let batch = RecordBatch::try_from_iter([(
            "text-extract.text",
            Arc::new(StringArray::from(vec![
                Some("Ceci est une phrase en français, sans aucun doute possible."),
                Some("42"),
                None,
            ])) as ArrayRef,
        )])
        .expect("batch");
        let out = strata_sdk::run::<LangDetect>("{}", batch).expect("processed");
        let language = out
            .column_by_name("language")
            .expect("language")
            .as_string::<i32>();
        assert_eq!(language.value(0), "fr");
        assert!(language.is_null(1));
        assert!(language.is_null(2));
        assert!(out.column_by_name("_error").is_none());
    }
}
