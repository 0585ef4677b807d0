//! The shape a text was asked for — words, sentences, characters, lines — stated once: the
//! prompt asks for [`Shape::asked`], the guardrail allows [`Shape::allowed`] (the same request
//! with a stated tolerance, since models count words loosely), and nothing else.

/// Bounds of one measure, inclusive.
pub type Range = (usize, usize);

/// Bounds on a text's measures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bounds {
    pub words: Range,
    /// `None` where sentences are not counted (titles, tags).
    pub sentences: Option<Range>,
    pub chars: Range,
}

/// What a field of generated text must look like.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shape {
    /// What the text is (`description`, `SEO title`, ...), for the prompt and for verdicts.
    pub name: &'static str,
    /// What the prompt asks for.
    pub asked: Bounds,
    /// What the guardrail lets through.
    pub allowed: Bounds,
    pub max_sentence_words: usize,
    /// No word (a run without spaces) longer than this.
    pub max_word_chars: usize,
    /// Lines with text (paragraphs).
    pub max_lines: usize,
    /// Lowercase only (tags).
    pub lowercase: bool,
    /// Emoji and pictographs allowed (social posts; never product copy).
    pub emoji: bool,
}

/// A product description.
pub const DESCRIPTION: Shape = Shape {
    name: "description",
    asked: Bounds { words: (40, 120), sentences: Some((3, 8)), chars: (200, 800) },
    allowed: Bounds { words: (30, 150), sentences: Some((2, 10)), chars: (150, 1_100) },
    max_sentence_words: 45,
    max_word_chars: 30,
    max_lines: 3,
    lowercase: false,
    emoji: false,
};

/// An SEO title.
pub const SEO_TITLE: Shape = Shape {
    name: "SEO title",
    asked: Bounds { words: (2, 10), sentences: None, chars: (20, 60) },
    allowed: Bounds { words: (2, 12), sentences: None, chars: (10, 66) },
    max_sentence_words: 12,
    max_word_chars: 30,
    max_lines: 1,
    lowercase: false,
    emoji: false,
};

/// A meta description.
pub const SEO_META: Shape = Shape {
    name: "meta description",
    asked: Bounds { words: (10, 28), sentences: Some((1, 2)), chars: (70, 155) },
    allowed: Bounds { words: (8, 35), sentences: Some((1, 3)), chars: (50, 165) },
    max_sentence_words: 35,
    max_word_chars: 30,
    max_lines: 1,
    lowercase: false,
    emoji: false,
};

/// One tag.
pub const TAG: Shape = Shape {
    name: "tag",
    asked: Bounds { words: (1, 3), sentences: None, chars: (3, 30) },
    allowed: Bounds { words: (1, 4), sentences: None, chars: (2, 32) },
    max_sentence_words: 4,
    max_word_chars: 30,
    max_lines: 1,
    lowercase: true,
    emoji: false,
};

/// An analytics narrative: a few short paragraphs about a period's figures.
pub const NARRATIVE: Shape = Shape {
    name: "narrative",
    asked: Bounds { words: (50, 220), sentences: Some((4, 14)), chars: (250, 1_600) },
    allowed: Bounds { words: (20, 320), sentences: Some((2, 20)), chars: (100, 2_400) },
    max_sentence_words: 50,
    max_word_chars: 40,
    max_lines: 8,
    lowercase: false,
    emoji: false,
};

/// A TikTok hook: what is said in a video's first three seconds (about eight spoken words).
pub const TIKTOK_HOOK: Shape = Shape {
    name: "TikTok hook",
    asked: Bounds { words: (4, 12), sentences: Some((1, 2)), chars: (15, 90) },
    allowed: Bounds { words: (3, 15), sentences: Some((1, 2)), chars: (10, 110) },
    max_sentence_words: 15,
    max_word_chars: 30,
    max_lines: 1,
    lowercase: false,
    emoji: true,
};

/// An Instagram caption (the platform allows 2,200 characters; the hashtags are apart).
pub const INSTAGRAM_CAPTION: Shape = Shape {
    name: "Instagram caption",
    asked: Bounds { words: (15, 80), sentences: Some((2, 6)), chars: (80, 500) },
    allowed: Bounds { words: (8, 120), sentences: Some((1, 8)), chars: (40, 2_200) },
    max_sentence_words: 35,
    max_word_chars: 30,
    max_lines: 6,
    lowercase: false,
    emoji: true,
};

/// One tweet of a thread (the platform's limit: 280 characters).
pub const TWEET: Shape = Shape {
    name: "tweet",
    asked: Bounds { words: (4, 40), sentences: Some((1, 3)), chars: (20, 260) },
    allowed: Bounds { words: (2, 50), sentences: Some((1, 4)), chars: (8, 280) },
    max_sentence_words: 35,
    max_word_chars: 30,
    max_lines: 2,
    lowercase: false,
    emoji: true,
};

/// A hashtag's word (without `#`): one lowercase word.
pub const HASHTAG: Shape = Shape {
    name: "hashtag",
    asked: Bounds { words: (1, 1), sentences: None, chars: (3, 24) },
    allowed: Bounds { words: (1, 1), sentences: None, chars: (2, 30) },
    max_sentence_words: 1,
    max_word_chars: 30,
    max_lines: 1,
    lowercase: true,
    emoji: false,
};

/// How many tags are asked for, and allowed.
pub const TAGS_ASKED: Range = (5, 10);
pub const TAGS_ALLOWED: Range = (3, 12);

impl Shape {
    /// The request in words, for the prompt: "40 to 120 words in 3 to 8 sentences".
    pub fn ask(&self) -> String {
        let a = &self.asked;
        let mut s = format!("{} to {} words", a.words.0, a.words.1);
        if let Some((lo, hi)) = a.sentences {
            s.push_str(&format!(" in {lo} to {hi} sentences"));
        }
        s.push_str(&format!(", at most {} characters", a.chars.1));
        if self.max_lines == 1 {
            s.push_str(", on one line");
        }
        s
    }
}

/// The sentences of a text: runs ending in `.`, `!`, `?` or `…` before a space or the end
/// (so `24.90` ends nothing).
pub fn sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    for (k, (i, c)) in chars.iter().enumerate() {
        let at_break = chars.get(k + 1).is_none_or(|(_, n)| n.is_whitespace());
        if matches!(c, '.' | '!' | '?' | '…') && at_break {
            let s = text[start..i + c.len_utf8()].trim();
            if s.chars().any(char::is_alphanumeric) {
                out.push(s);
            }
            start = i + c.len_utf8();
        }
    }
    let rest = text[start..].trim();
    if rest.chars().any(char::is_alphanumeric) {
        out.push(rest);
    }
    out
}

/// Checks `text` (normalized) against `shape`; the error says what is out of bounds.
pub fn check(text: &str, shape: &Shape) -> Result<(), String> {
    let a = &shape.allowed;
    let words = text.split_whitespace().count();
    let chars = text.chars().count();
    let name = shape.name;
    if words < a.words.0 || words > a.words.1 {
        return Err(format!("{words} words (the {name} may have {} to {})", a.words.0, a.words.1));
    }
    if chars < a.chars.0 || chars > a.chars.1 {
        return Err(format!("{chars} characters (the {name} may have {} to {})", a.chars.0, a.chars.1));
    }
    if let Some(long) = text.split_whitespace().find(|w| w.chars().count() > shape.max_word_chars) {
        let shown: String = long.chars().take(40).collect();
        return Err(format!("a word of {} characters ({shown}…)", long.chars().count()));
    }
    let lines = text.lines().filter(|l| !l.trim().is_empty()).count();
    if lines > shape.max_lines {
        return Err(format!("{lines} lines (the {name} may have {})", shape.max_lines));
    }
    let parts = sentences(text);
    if let Some((lo, hi)) = a.sentences
        && (parts.len() < lo || parts.len() > hi)
    {
        return Err(format!("{} sentences (the {name} may have {lo} to {hi})", parts.len()));
    }
    if let Some(s) = parts.iter().find(|s| s.split_whitespace().count() > shape.max_sentence_words) {
        return Err(format!(
            "a sentence of {} words (at most {})",
            s.split_whitespace().count(),
            shape.max_sentence_words
        ));
    }
    if shape.lowercase && text.chars().any(char::is_uppercase) {
        return Err(format!("the {name} must be lowercase"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_end_at_stops_before_spaces_not_inside_numbers() {
        assert_eq!(sentences("It costs 24.90 EUR. Buy it! Really?"), ["It costs 24.90 EUR.", "Buy it!", "Really?"]);
        assert_eq!(sentences("No stop at the end"), ["No stop at the end"]);
    }

    #[test]
    fn the_prompt_asks_for_what_the_guardrail_allows_with_tolerance() {
        assert_eq!(DESCRIPTION.ask(), "40 to 120 words in 3 to 8 sentences, at most 800 characters");
        for s in [DESCRIPTION, SEO_TITLE, SEO_META, TAG] {
            assert!(s.allowed.words.0 <= s.asked.words.0 && s.allowed.words.1 >= s.asked.words.1);
            assert!(s.allowed.chars.0 <= s.asked.chars.0 && s.allowed.chars.1 >= s.asked.chars.1);
        }
    }

    #[test]
    fn out_of_shape_text_is_refused_with_the_measure() {
        assert!(check("Short.", &DESCRIPTION).unwrap_err().contains("words"));
        let one_word = "x".repeat(4_500);
        assert!(check(&one_word, &SEO_TITLE).is_err());
        let long = "This sentence goes on and on ".repeat(10) + ".";
        assert!(check(&format!("{long} {long}"), &DESCRIPTION).unwrap_err().contains("sentence of"));
        assert!(check("Wooden Toys", &TAG).unwrap_err().contains("lowercase"));
        assert!(check("wooden toys", &TAG).is_ok());
        assert!(check("A train\nof wood", &SEO_TITLE).unwrap_err().contains("lines"));
    }
}
