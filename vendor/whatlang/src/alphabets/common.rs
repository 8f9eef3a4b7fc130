//! It's a hard-core optimized implementation of a relatively simple algorithm.
//! The explanation of the algorithm can be found in the parent module [crate::alphabets].

use super::RawOutcome;
use crate::core::{FilterList, LowercaseText};
use crate::utils::is_stop_char;
use crate::{Lang, Script};
use std::cmp::Reverse;
use std::collections::HashMap;
use std::sync::LazyLock;

/// Inverted map binding a character to a set of languages.
#[derive(Debug)]
pub struct InvertedAlphabets {
    /// Every character of any alphabet, sorted.
    chars: Vec<char>,
    /// The languages of `chars[i]`.
    langs: Vec<Vec<Lang>>,
    /// For `chars[i]` that most of the script's languages have (each
    /// once), the script's languages it lacks; otherwise `None`. Scoring
    /// such a character adds to every language and takes away from these,
    /// which is shorter than adding to the ones that have it.
    lacking: Vec<Option<Vec<Lang>>>,
    /// For a character below `DIRECT`, its position in `chars` plus one,
    /// or 0: one load instead of a binary search for most letters.
    direct: Vec<u16>,
}

/// The characters [`InvertedAlphabets::position`] finds without a search.
const DIRECT: usize = 0x250;

impl InvertedAlphabets {
    /// The position of `ch` in the sorted characters.
    #[inline]
    fn position(&self, ch: char) -> Option<usize> {
        match self.direct.get(ch as usize) {
            Some(0) => None,
            Some(&p) => Some(p as usize - 1),
            None => self.chars.binary_search(&ch).ok(),
        }
    }
}

/// Inverted map binding a character to a set of languages.
pub fn build_inverted_map(script: Script, alphabets: &[(Lang, &str)]) -> InvertedAlphabets {
    let mut map = HashMap::new();

    for (lang, alphabet) in alphabets {
        for c in alphabet.chars() {
            let entry = map.entry(c).or_insert_with(Vec::new);
            entry.push(*lang);
        }
    }

    let mut char_lang: Vec<_> = map.into_iter().collect();

    char_lang.sort_unstable_by_key(|(c, _)| *c);

    let mut chars = Vec::with_capacity(char_lang.len());
    let mut langs = Vec::with_capacity(char_lang.len());
    for (ch, languages) in char_lang {
        chars.push(ch);
        langs.push(languages);
    }

    let script_langs = script.langs();
    let lacking = langs
        .iter()
        .map(|languages: &Vec<Lang>| {
            let once = script_langs
                .iter()
                .all(|l| languages.iter().filter(|&m| m == l).count() <= 1);
            let within = languages.iter().all(|l| script_langs.contains(l));
            (once && within && languages.len() * 2 > script_langs.len()).then(|| {
                script_langs
                    .iter()
                    .filter(|l| !languages.contains(l))
                    .copied()
                    .collect()
            })
        })
        .collect();

    let mut direct = vec![0u16; DIRECT];
    for (position, &ch) in chars.iter().enumerate() {
        if let Some(slot) = direct.get_mut(ch as usize) {
            *slot = position as u16 + 1;
        }
    }

    InvertedAlphabets {
        chars,
        langs,
        lacking,
        direct,
    }
}

pub fn generic_alphabet_calculate_scores(
    script: Script,
    lang_map: &LazyLock<InvertedAlphabets>,
    text: &LowercaseText,
    filter_list: &FilterList,
) -> RawOutcome {
    let alphabets = &**lang_map;
    let (chars, langs) = (&alphabets.chars, &alphabets.langs);
    let script_langs = script.langs();

    // score of each character.
    let mut char_scores = vec![0; chars.len()];
    let mut max_raw_score = 0;
    // iterate over the text and scores characters.
    for ch in text.chars() {
        if is_stop_char(ch) {
            continue;
        }

        max_raw_score += 1;

        if let Some(position) = alphabets.position(ch) {
            // add 2 and remove max_raw_score at the end,
            // to keep the score interval of -max_raw_score..max_raw_score
            char_scores[position] += 2;
        }
    }

    // score of each lang.
    let mut lang_scores = vec![0; Lang::all().len()];
    // what each lang lacks of the common score.
    let mut lacked = vec![0; Lang::all().len()];
    let mut common_score: usize = 0;
    // iterate over scored characters to compute language's scores.
    for (position, char_score) in char_scores.into_iter().enumerate() {
        if char_score > 0 {
            // if current character is common to most Languages, increment a common score
            // and keep what the others lack, instead of iterating over all Languages scores.
            if let Some(lacking) = &alphabets.lacking[position] {
                common_score += char_score;
                for &lang in lacking {
                    lacked[lang as usize] += char_score;
                }
            } else {
                for &lang in &langs[position] {
                    lang_scores[lang as usize] += char_score;
                }
            }
        }
    }

    // remap languages with theirs scores.
    let mut raw_scores: Vec<(Lang, usize)> = script_langs
        .iter()
        .filter(|&&l| filter_list.is_allowed(l))
        .map(|&l| {
            let score = (lang_scores[l as usize] + common_score - lacked[l as usize])
                .saturating_sub(max_raw_score);
            (l, score)
        })
        .collect();

    raw_scores.sort_unstable_by_key(|(_, score)| Reverse(*score));

    let mut normalized_scores = vec![];

    for &(lang, raw_score) in raw_scores.iter() {
        let normalized_score = raw_score as f64 / max_raw_score as f64;
        normalized_scores.push((lang, normalized_score));
    }

    RawOutcome {
        count: max_raw_score,
        raw_scores,
        scores: normalized_scores,
    }
}
