//! What text every backend and read side can hold: the one home of the character classes that
//! the edge refuses (controls, NUL) or does not count (invisible characters), shared by record
//! validation and the guardrails.

/// Whether `c` is invisible or reorders text: Unicode's default-ignorable code points
/// (zero-width spaces and joiners, bidirectional controls, soft hyphens, variation selectors,
/// tag characters), line and paragraph separators, and other format characters.
pub fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}' | '\u{FFA0}'
        | '\u{FFF0}'..='\u{FFFB}' | '\u{1BCA0}'..='\u{1BCA3}' | '\u{1D173}'..='\u{1D17A}'
        | '\u{E0000}'..='\u{E0FFF}')
}

/// Whether `c` is a control (other than a line feed), private-use, non- or replacement
/// character.
pub fn is_unprintable(c: char) -> bool {
    (c.is_control() && c != '\n')
        || matches!(c, '\u{E000}'..='\u{F8FF}' | '\u{F0000}'..='\u{10FFFF}' | '\u{FDD0}'..='\u{FDEF}' | '\u{FFFC}' | '\u{FFFD}')
        || (c as u32 & 0xFFFE) == 0xFFFE
}

/// How many characters of `s` a reader sees: neither white space nor invisible.
pub fn visible_len(s: &str) -> usize {
    s.chars().filter(|c| !c.is_whitespace() && !is_invisible(*c) && !c.is_control()).count()
}

/// The first control character in `s` that a field may not hold: any, or any but line feeds
/// and tabs where the field holds lines (a description).
pub fn forbidden_control(s: &str, multiline: bool) -> Option<char> {
    s.chars().find(|c| c.is_control() && !(multiline && matches!(c, '\n' | '\t' | '\r')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invisible_characters_do_not_count_and_controls_are_found() {
        assert_eq!(visible_len("\u{200B}\u{200B} \u{FEFF}"), 0);
        assert_eq!(visible_len("a\u{200B}b"), 2);
        assert_eq!(forbidden_control("a\u{0}b", true), Some('\u{0}'));
        assert_eq!(forbidden_control("a\nb", true), None);
        assert_eq!(forbidden_control("a\nb", false), Some('\n'));
        for c in ['\u{200B}', '\u{202E}', '\u{2066}', '\u{2028}', '\u{FEFF}', '\u{00AD}', '\u{E0041}'] {
            assert!(is_invisible(c), "{c:?}");
        }
        for c in ['\u{0000}', '\u{0007}', '\u{E000}', '\u{FFFD}', '\u{FFFF}'] {
            assert!(is_unprintable(c), "{c:?}");
        }
    }
}
