//! Text as the checks read it: normalized (NFKC), with invisible characters found or removed,
//! confusable letters folded to the ASCII letters they imitate, and cut into tokens — words
//! (with their stems), numbers (digits or words) and signs.

use std::sync::LazyLock;

use rust_stemmers::{Algorithm, Stemmer};
use unicode_normalization::UnicodeNormalization;

/// The NFKC form of `raw`, with line ends as `\n` and each line's trailing spaces removed.
/// Compatibility forms (fullwidth `ｆｄａ`, ligatures, superscripts) become the plain letters
/// they stand for; what it returns is what is checked and, if every check passes, published.
pub fn normalize(raw: &str) -> String {
    let nfkc: String = raw.replace("\r\n", "\n").replace('\r', "\n").nfkc().collect();
    nfkc.lines().map(str::trim_end).collect::<Vec<_>>().join("\n").trim().to_string()
}

pub use mall_events::text::{is_invisible, is_unprintable};

/// `s` lowercased, invisible characters removed, and every non-ASCII letter that imitates
/// ASCII letters (Cyrillic `с`, Greek `ο`, ...) replaced by them (UTS #39 skeletons, kept only
/// where they are plain ASCII, so that `m` stays `m`). Curly apostrophes become `'`.
pub fn fold(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars().filter(|c| !is_invisible(*c)) {
        if c == '\u{2019}' || c == '\u{2018}' || c == '\u{02BC}' {
            out.push('\'');
        } else if c.is_ascii() {
            out.push(c.to_ascii_lowercase());
        } else {
            let lower: String = c.to_lowercase().collect();
            let skeleton: String = unicode_security::skeleton(&lower).collect();
            if !skeleton.is_empty() && skeleton.chars().all(|k| k.is_ascii_alphanumeric()) {
                out.push_str(&skeleton.to_ascii_lowercase());
            } else {
                out.push_str(&lower);
            }
        }
    }
    out
}

/// What a token is.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// Letters (and apostrophes inside them).
    Word,
    /// A number, written in digits or in words.
    Number { value: f64, digits: usize, words: bool },
    /// Any other sign that is not plain punctuation: `%`, `€`, `#`, `@`, `+`, ...
    Sign(char),
}

/// One token of folded text.
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    /// The folded text of the token.
    pub text: String,
    /// The English stem of a word (the text itself for numbers and signs).
    pub stem: String,
    pub kind: Kind,
    /// What stands between the previous token and this one (spaces, punctuation).
    pub gap: String,
}

impl Token {
    pub fn is_word(&self) -> bool {
        self.kind == Kind::Word
    }

    pub fn number(&self) -> Option<f64> {
        match self.kind {
            Kind::Number { value, .. } => Some(value),
            _ => None,
        }
    }
}

static STEMMER: LazyLock<Stemmer> = LazyLock::new(|| Stemmer::create(Algorithm::English));

/// The English stem of a folded word (`cured` → `cure`, `ratings` → `rate`).
pub fn stem(word: &str) -> String {
    STEMMER.stem(word).into_owned()
}

/// Punctuation that separates tokens and carries no meaning of its own for the checks.
fn is_separator(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '.' | ',' | ';' | ':' | '!' | '?' | '\'' | '"' | '(' | ')' | '-' | '\u{2010}'
                ..='\u{2015}' | '\u{2026}' | '\u{201C}' | '\u{201D}' | '\u{00AB}' | '\u{00BB}' | '/'
        )
}

/// Cuts folded text into tokens. Numbers in digits take `1,000`, `24.90` and `24,90`; digits
/// glued to letters are split (`10cm` → `10`, `cm`; `cur3` → `cur`, `3`).
pub fn tokenize(folded: &str) -> Vec<Token> {
    let chars: Vec<char> = folded.chars().collect();
    let mut tokens = Vec::new();
    let mut gap = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_alphabetic() {
            let start = i;
            while i < chars.len()
                && (chars[i].is_alphabetic()
                    || is_mark(chars[i])
                    || (chars[i] == '\'' && i + 1 < chars.len() && chars[i + 1].is_alphabetic() && i > start))
            {
                i += 1;
            }
            let text: String = chars[start..i].iter().collect();
            tokens.push(Token { stem: stem(&text), text, kind: Kind::Word, gap: std::mem::take(&mut gap) });
        } else if c.is_ascii_digit() {
            let start = i;
            let mut groups: Vec<String> = vec![String::new()];
            let mut seps: Vec<char> = Vec::new();
            while i < chars.len() {
                let d = chars[i];
                if let Some(v) = d.to_digit(10) {
                    groups.last_mut().expect("a group").push(char::from_digit(v, 10).expect("a digit"));
                    i += 1;
                } else if (d == '.' || d == ',') && i + 1 < chars.len() && chars[i + 1].is_ascii_digit() {
                    seps.push(d);
                    groups.push(String::new());
                    i += 1;
                } else {
                    break;
                }
            }
            let text: String = chars[start..i].iter().collect();
            for (value, digits) in parse_number(&groups, &seps) {
                tokens.push(Token {
                    text: text.clone(),
                    stem: text.clone(),
                    kind: Kind::Number { value, digits, words: false },
                    gap: std::mem::take(&mut gap),
                });
            }
        } else if is_separator(c) || is_mark(c) {
            gap.push(c);
            i += 1;
        } else {
            tokens.push(Token {
                text: c.to_string(),
                stem: c.to_string(),
                kind: Kind::Sign(c),
                gap: std::mem::take(&mut gap),
            });
            i += 1;
        }
    }
    tokens
}

fn is_mark(c: char) -> bool {
    matches!(c, '\u{0300}'..='\u{036F}' | '\u{1AB0}'..='\u{1AFF}' | '\u{1DC0}'..='\u{1DFF}' | '\u{20D0}'..='\u{20FF}')
}

/// Reads digit groups and the separators between them as one number (`1,000`, `1.234,56`,
/// `24.90`) or, when they make no number (`2.0.1`), as each group on its own.
fn parse_number(groups: &[String], seps: &[char]) -> Vec<(f64, usize)> {
    let digits = |s: &str| s.len();
    let whole = |g: &[String]| g.concat();
    let parse = |s: String| s.parse::<f64>().unwrap_or(0.0);
    let count: usize = groups.iter().map(|g| digits(g)).sum();
    match seps {
        [] => vec![(parse(groups[0].clone()), count)],
        [sep] => {
            // One separator: a comma before exactly three digits groups thousands; otherwise it
            // is a decimal point.
            if *sep == ',' && groups[1].len() == 3 {
                vec![(parse(whole(groups)), count)]
            } else {
                vec![(parse(format!("{}.{}", groups[0], groups[1])), count)]
            }
        }
        _ => {
            let last = *seps.last().expect("separators");
            let inner_same = seps[..seps.len() - 1].iter().all(|s| *s == seps[0]);
            let inner_thousands = groups[1..groups.len() - 1].iter().all(|g| g.len() == 3);
            if seps.iter().all(|s| *s == seps[0]) && groups[1..].iter().all(|g| g.len() == 3) {
                vec![(parse(whole(groups)), count)]
            } else if inner_same && inner_thousands && last != seps[0] {
                let int = whole(&groups[..groups.len() - 1]);
                vec![(parse(format!("{int}.{}", groups.last().expect("a group"))), count)]
            } else {
                groups.iter().map(|g| (parse(g.clone()), digits(g))).collect()
            }
        }
    }
}

/// Runs of three or more single letters (`f.d.a`, `c u r e`) joined into one word: a second
/// view of the tokens in which spelled-out disguises read as the words they spell.
pub fn join_letter_runs(tokens: &[Token]) -> Vec<Token> {
    let single = |t: &Token| t.is_word() && t.text.chars().count() == 1;
    let mut out = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        let mut j = i;
        while j < tokens.len() && single(&tokens[j]) && (j == i || tokens[j].gap.chars().count() <= 2) {
            j += 1;
        }
        if j - i >= 3 {
            let text: String = tokens[i..j].iter().map(|t| t.text.as_str()).collect();
            out.push(Token { stem: stem(&text), text, kind: Kind::Word, gap: tokens[i].gap.clone() });
            i = j;
        } else {
            out.push(tokens[i].clone());
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(s: &str) -> Vec<String> {
        tokenize(&fold(&normalize(s))).into_iter().map(|t| t.text).collect()
    }

    fn numbers(s: &str) -> Vec<f64> {
        tokenize(&fold(s)).iter().filter_map(Token::number).collect()
    }

    #[test]
    fn compatibility_forms_and_confusables_fold_to_the_letters_they_imitate() {
        assert_eq!(normalize("ｆｄａ approved"), "fda approved");
        assert_eq!(fold("\u{0441}ure"), "cure", "a Cyrillic es reads as c");
        assert_eq!(fold("c\u{200B}ure"), "cure", "zero-width characters are dropped");
        assert_eq!(fold("F\u{200B}DA"), "fda");
        assert_eq!(fold("It\u{2019}s"), "it's");
        assert_eq!(fold("burn"), "burn", "ASCII is never folded (rn is not m)");
        assert_eq!(fold("Crème brûlée"), "crème brûlée");
    }

    #[test]
    fn tokens_split_words_numbers_and_signs() {
        assert_eq!(texts("A 10cm train, 24.90 €!"), ["a", "10", "cm", "train", "24.90", "€"]);
        assert_eq!(texts("It's 40% off"), ["it's", "40", "%", "off"]);
        assert_eq!(texts("cur3"), ["cur", "3"]);
        assert_eq!(
            numbers("1,000 and 24,90 and 1.234,56 and 1,234.5 and 2.0.1"),
            [1000.0, 24.9, 1234.56, 1234.5, 2.0, 0.0, 1.0]
        );
        let t = tokenize(&fold("money-back"));
        assert_eq!((t[1].text.as_str(), t[1].gap.as_str()), ("back", "-"));
        assert_eq!(tokenize("ratings")[0].stem, "rate");
    }

    #[test]
    fn spelled_out_letter_runs_join_into_the_word_they_spell() {
        let joined: Vec<String> = join_letter_runs(&tokenize(&fold("It is f.d.a approved and c u r e s")))
            .into_iter()
            .map(|t| t.text)
            .collect();
        assert_eq!(joined, ["it", "is", "fda", "approved", "and", "cures"]);
        let kept: Vec<String> = join_letter_runs(&tokenize("a b")).into_iter().map(|t| t.text).collect();
        assert_eq!(kept, ["a", "b"]);
    }
}
