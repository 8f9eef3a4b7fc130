//! Text helpers shared by extractors.

/// The words of `text`, in order: maximal runs of letters, digits and `_`,
/// where an apostrophe (`'` or `’`) between two letters stays inside the
/// word (`don't`, `l'homme`). Everything else separates words.
///
/// A simplification of Unicode word segmentation (UAX #29) for text in
/// composed form: unlike it, `.` and `:` between letters or digits separate
/// words (`e.g` and `3.14` are two words each), and a run of Han or Thai
/// letters is one word (no dictionary). It makes one pass over the text and
/// does not allocate.
///
/// ```
/// let words: Vec<&str> = strata_sdk::text::words("L'homme n'a pas 2 chats, don't-care_x!").collect();
/// assert_eq!(words, ["L'homme", "n'a", "pas", "2", "chats", "don't", "care_x"]);
/// ```
pub fn words(text: &str) -> Words<'_> {
    Words { rest: text }
}

/// Iterator returned by [`words`].
#[derive(Debug, Clone)]
pub struct Words<'a> {
    rest: &'a str,
}

impl<'a> Iterator for Words<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let start = self.rest.find(is_word_char)?;
        let word = &self.rest[start..];
        let mut end = word.len();
        let mut after_letter = false;
        let mut chars = word.char_indices().peekable();
        while let Some((at, c)) = chars.next() {
            if is_word_char(c) {
                after_letter = c.is_alphabetic();
            } else if after_letter
                && matches!(c, '\'' | '’')
                && chars.peek().is_some_and(|&(_, next)| next.is_alphabetic())
            {
                after_letter = false;
            } else {
                end = at;
                break;
            }
        }
        self.rest = &word[end..];
        Some(&word[..end])
    }
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

#[cfg(test)]
mod tests {
    use super::words;

    fn split(text: &str) -> Vec<&str> {
        words(text).collect()
    }

    #[test]
    fn splits_on_spaces_and_punctuation() {
        assert_eq!(
            split("  The engine—fast, (really) fast.\nDone? "),
            ["The", "engine", "fast", "really", "fast", "Done"]
        );
        assert!(split("").is_empty());
        assert!(split(" ... !? ").is_empty());
    }

    #[test]
    fn keeps_apostrophes_between_letters() {
        assert_eq!(
            split("aujourd’hui l'été 'quoted' rock'n'roll dogs' 90's"),
            [
                "aujourd’hui",
                "l'été",
                "quoted",
                "rock'n'roll",
                "dogs",
                "90",
                "s"
            ]
        );
    }

    #[test]
    fn handles_any_script() {
        assert_eq!(
            split("Größe: Москва, 東京駅 x²"),
            ["Größe", "Москва", "東京駅", "x²"]
        );
    }
}
