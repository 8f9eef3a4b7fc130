use std::sync::LazyLock;

use super::LangProfileList;
use super::table::InvertedProfiles;
use super::utils::{TrigramsWithPositions, get_trigrams_with_positions};
use super::{ARABIC_LANGS, CYRILLIC_LANGS, DEVANAGARI_LANGS, HEBREW_LANGS, LATIN_LANGS};
use super::{MAX_TOTAL_DISTANCE, MAX_TRIGRAM_DISTANCE};
use crate::Lang;
use crate::core::{FilterList, Info, InternalQuery, Text, calculate_confidence};
use crate::scripts::grouping::MultiLangScript;

#[derive(Debug)]
pub struct RawOutcome {
    pub trigrams_count: usize,
    #[allow(dead_code)]
    pub raw_distances: Vec<(Lang, u32)>,
    pub scores: Vec<(Lang, f64)>,
}

#[inline]
pub fn detect(iquery: &InternalQuery) -> Option<Info> {
    let raw_outcome = raw_detect(iquery);
    let RawOutcome {
        trigrams_count,
        scores,
        ..
    } = raw_outcome;

    let mut raw_scores_iter = scores.into_iter();

    let opt_lang_score1 = raw_scores_iter.next();
    let opt_lang_score2 = raw_scores_iter.next();

    // TODO: Logic is duplicated in alphabets. Consider refactoring
    opt_lang_score1.map(|(lang1, score1)| {
        let script = iquery.multi_lang_script.to_script();
        let confidence = if let Some((_, score2)) = opt_lang_score2 {
            calculate_confidence(score1, score2, trigrams_count)
        } else {
            1.0
        };
        Info::new(script, lang1, confidence)
    })
}

#[inline]
pub fn raw_detect(iquery: &InternalQuery) -> RawOutcome {
    let (lang_profile_list, inverted) = script_to_lang_profile_list(iquery.multi_lang_script);
    calculate_scores_in_profiles(
        &iquery.text,
        iquery.filter_list,
        lang_profile_list,
        inverted,
    )
}

static LATIN: LazyLock<InvertedProfiles> = LazyLock::new(|| InvertedProfiles::new(LATIN_LANGS));
static CYRILLIC: LazyLock<InvertedProfiles> =
    LazyLock::new(|| InvertedProfiles::new(CYRILLIC_LANGS));
static ARABIC: LazyLock<InvertedProfiles> = LazyLock::new(|| InvertedProfiles::new(ARABIC_LANGS));
static DEVANAGARI: LazyLock<InvertedProfiles> =
    LazyLock::new(|| InvertedProfiles::new(DEVANAGARI_LANGS));
static HEBREW: LazyLock<InvertedProfiles> = LazyLock::new(|| InvertedProfiles::new(HEBREW_LANGS));

fn script_to_lang_profile_list(
    script: MultiLangScript,
) -> (LangProfileList, &'static InvertedProfiles) {
    use MultiLangScript as MLS;
    match script {
        MLS::Latin => (LATIN_LANGS, &LATIN),
        MLS::Cyrillic => (CYRILLIC_LANGS, &CYRILLIC),
        MLS::Arabic => (ARABIC_LANGS, &ARABIC),
        MLS::Devanagari => (DEVANAGARI_LANGS, &DEVANAGARI),
        MLS::Hebrew => (HEBREW_LANGS, &HEBREW),
    }
}

#[inline]
fn calculate_scores_in_profiles(
    text: &Text,
    filter_list: &FilterList,
    lang_profile_list: LangProfileList,
    inverted: &InvertedProfiles,
) -> RawOutcome {
    let mut lang_distances: Vec<(Lang, u32)> = vec![];

    let TrigramsWithPositions { ranked, .. } = get_trigrams_with_positions(&text.lowercase());
    let unique_trigrams_count = ranked.len();

    // For every language, the sum of |position in text - rank in profile|
    // over the profile's trigrams the text has, and how many those are;
    // each trigram it lacks counts MAX_TRIGRAM_DISTANCE.
    let mut found_distance = vec![0u32; lang_profile_list.len()];
    let mut found = vec![0u32; lang_profile_list.len()];
    for (position, trigram) in ranked.iter().enumerate() {
        for &(l, rank) in inverted.postings(trigram) {
            found_distance[l as usize] += (position as i32 - rank as i32).unsigned_abs();
            found[l as usize] += 1;
        }
    }

    for (l, &(lang, lang_trigrams)) in lang_profile_list.iter().enumerate() {
        if !filter_list.is_allowed(lang) {
            continue;
        }
        let missing = lang_trigrams.len() as u32 - found[l];
        let dist = finish_distance(
            found_distance[l] + missing * MAX_TRIGRAM_DISTANCE,
            unique_trigrams_count,
        );
        lang_distances.push(((lang), dist));
    }

    // Sort languages by distance
    lang_distances.sort_unstable_by_key(|(_, dist)| *dist);

    let max_dist = unique_trigrams_count as u32 * MAX_TRIGRAM_DISTANCE;

    let raw_scores = lang_distances
        .iter()
        .map(|&(lang, distance)| (lang, distance_to_raw_score(distance, max_dist)))
        .collect();

    RawOutcome {
        trigrams_count: unique_trigrams_count,
        scores: raw_scores,
        raw_distances: lang_distances,
    }
}

/// A profile's distance to a text of `count` distinct ranked trigrams,
/// from the sum over the profile's trigrams.
#[inline]
fn finish_distance(mut total_dist: u32, count: usize) -> u32 {
    let count = count as u32;

    if MAX_TRIGRAM_DISTANCE > count {
        let delta = MAX_TRIGRAM_DISTANCE - count;
        total_dist -= delta * MAX_TRIGRAM_DISTANCE;
    }

    total_dist.clamp(0, MAX_TOTAL_DISTANCE)
}

#[inline]
fn distance_to_raw_score(distance: u32, max_distance: u32) -> f64 {
    let similarity = max_distance - distance;
    similarity as f64 / max_distance as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trigrams::{LangProfile, Trigram};

    /// Upstream's distance: every profile trigram looked up in the text's
    /// positions.
    fn upstream_distance(lang_trigrams: LangProfile, ranked: &[Trigram]) -> u32 {
        let positions: std::collections::HashMap<Trigram, u32> = ranked
            .iter()
            .enumerate()
            .map(|(i, &t)| (t, i as u32))
            .collect();
        let mut total_dist = 0u32;
        for (i, &trigram) in lang_trigrams.iter().enumerate() {
            let dist = match positions.get(&trigram) {
                Some(&n) => (n as i32 - i as i32).unsigned_abs(),
                None => MAX_TRIGRAM_DISTANCE,
            };
            total_dist += dist;
        }
        finish_distance(total_dist, ranked.len())
    }

    #[test]
    fn inverted_distances_equal_upstream_ones() {
        let texts = [
            "Die Ordnung muss für immer in diesem Codebase bleiben",
            "The quick brown fox jumps over the lazy dog near the river bank, again and again.",
            "Le chat est assis sur le tapis et regarde les oiseaux dans le jardin.",
            "a",
            "",
            "Быстрая коричневая лиса прыгает через ленивую собаку у реки.",
            "مرحبا بالعالم هذا نص عربي قصير",
            "यह एक छोटा हिंदी वाक्य है",
            "זהו משפט קצר בעברית",
        ];
        let long: String = texts
            .iter()
            .cycle()
            .take(200)
            .copied()
            .collect::<Vec<_>>()
            .join(" ");
        for text in texts.iter().copied().chain([long.as_str()]) {
            for script in [
                MultiLangScript::Latin,
                MultiLangScript::Cyrillic,
                MultiLangScript::Arabic,
                MultiLangScript::Devanagari,
                MultiLangScript::Hebrew,
            ] {
                let iq = InternalQuery {
                    text: Text::new(text),
                    filter_list: &FilterList::default(),
                    multi_lang_script: script,
                };
                let outcome = raw_detect(&iq);
                let (list, _) = script_to_lang_profile_list(script);
                let ranked = get_trigrams_with_positions(&iq.text.lowercase()).ranked;
                let mut expected: Vec<(Lang, u32)> = list
                    .iter()
                    .map(|&(lang, profile): &(Lang, LangProfile)| {
                        (lang, upstream_distance(profile, &ranked))
                    })
                    .collect();
                expected.sort_unstable_by_key(|(_, dist)| *dist);
                assert_eq!(outcome.raw_distances, expected, "{text}");
            }
        }
    }

    #[test]
    fn test_when_german_is_given() {
        let text = "Die Ordnung muss für immer in diesem Codebase bleiben";
        let iq = InternalQuery {
            text: Text::new(text),
            filter_list: &FilterList::default(),
            multi_lang_script: MultiLangScript::Latin,
        };
        let raw_outcome = raw_detect(&iq);

        assert_eq!(raw_outcome.trigrams_count, 50);

        let &(first_lang, first_score) = raw_outcome.scores.first().unwrap();
        let &(_last_lang, last_score) = raw_outcome.scores.last().unwrap();

        assert_eq!(first_lang, Lang::Deu);

        assert!(first_score >= 0.0);
        assert!(first_score <= 1.0);

        assert!(last_score >= 0.0);
        assert!(last_score <= 1.0);
    }
}
