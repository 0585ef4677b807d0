//! A district's marketing copy — tagline, description, SEO title and meta description — written
//! in a voice by the built-in writer (the same words for the same district, voice and
//! categories) and checked by the guardrails like every generated text. A voice's tone picks the
//! words, its style the shape of the sentences, its audience whom they address.

use mall_events::domain::{AttributeValue, DistrictCopy, Personality, Verdict};

use crate::guardrails::{self, DESCRIPTION, EvidenceBuilder, Field, SEO_META, SEO_TITLE};

/// The writer's id, recorded with what it wrote.
pub const WRITER: &str = "offline-district/1";

fn phrases(tone: &str) -> (&'static str, &'static str, &'static str) {
    // (tagline end, a sentence of the tone, an adjective)
    match tone.to_lowercase().as_str() {
        t if t.contains("playful") => {
            ("where play starts", "Every corner holds something to try, share and enjoy together", "cheerful")
        }
        t if t.contains("warm") => (
            "things to love for years",
            "Each piece is chosen to feel familiar from the first day and to stay close for many more",
            "friendly",
        ),
        t if t.contains("elegant") => (
            "quietly beautiful pieces",
            "Each piece is chosen for its lines, its materials and the calm it brings to a room",
            "refined",
        ),
        t if t.contains("technical") => (
            "well made and clearly described",
            "Each item is listed with its materials and its measurements so that choosing is simple",
            "precise",
        ),
        _ => ("chosen with care", "Each piece is chosen to be used often and to look good doing it", "thoughtful"),
    }
}

fn list(tags: &[String]) -> String {
    match tags {
        [] => "good things".into(),
        [a] => a.clone(),
        [a, b] => format!("{a} and {b}"),
        [a, b, c, ..] => format!("{a}, {b} and {c}"),
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().collect::<String>() + c.as_str()).unwrap_or_default()
}

/// Writes the district's copy in `voice`; `categories` are its products' commonest tags.
pub fn write(name: &str, voice: &Personality, categories: &[String]) -> DistrictCopy {
    let (tag_end, tone_sentence, adjective) = phrases(&voice.tone);
    let audience = voice.audience.trim_end_matches('.');
    let cats = list(categories);
    let scannable = voice.style.to_lowercase().contains("short") || voice.style.to_lowercase().contains("scannable");
    let description = if scannable {
        format!(
            "{name} is made for {audience}. {}. {tone_sentence}. Pick by category. See it all at a glance. \
             Find what fits your day and take it home.",
            capitalize(&cats)
        )
    } else {
        format!(
            "{name} brings together {cats} for {audience}. {tone_sentence}. Take your time to look around, \
             look closer at what catches your eye and find the piece that fits the way you live."
        )
    };
    DistrictCopy {
        tagline: format!("{name}: {tag_end}"),
        description,
        seo_title: format!("{name}: {adjective} {}", categories.first().map(String::as_str).unwrap_or("finds")),
        seo_description: format!("Discover {name}: {cats} for {audience}, chosen with care and easy to browse."),
    }
}

/// Checks the copy with the guardrails against the district's facts (its name and categories);
/// on success also returns it in its published (normalized) form.
pub fn check(copy: &DistrictCopy, name: &str, categories: &[String]) -> (Vec<Verdict>, Option<DistrictCopy>) {
    let evidence = categories
        .iter()
        .fold(EvidenceBuilder::default().title(name).district(name), |b, c| b.attribute(c, &AttributeValue::Bool(true)))
        .build();
    let fields = [
        Field { name: "tagline".into(), text: &copy.tagline, shape: &SEO_TITLE },
        Field { name: "description".into(), text: &copy.description, shape: &DESCRIPTION },
        Field { name: "seo_title".into(), text: &copy.seo_title, shape: &SEO_TITLE },
        Field { name: "seo_description".into(), text: &copy.seo_description, shape: &SEO_META },
    ];
    let outcome = guardrails::check(&fields, &evidence);
    if !outcome.passed() {
        return (outcome.verdicts, None);
    }
    let [tagline, description, seo_title, seo_description]: [String; 4] =
        outcome.texts.try_into().expect("one text per field");
    (outcome.verdicts, Some(DistrictCopy { tagline, description, seo_title, seo_description }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn voice(tone: &str, style: &str) -> Personality {
        Personality { tone: tone.into(), style: style.into(), audience: "families with young children".into() }
    }

    #[test]
    fn every_tone_and_style_writes_copy_the_guardrails_pass() {
        let cats = vec!["wooden toys".to_string(), "puzzles".to_string(), "kites".to_string()];
        for tone in ["playful", "warm", "elegant", "technical", "calm"] {
            for style in ["storytelling", crate::district::evolution::SCANNABLE] {
                let copy = write("Toy Town", &voice(tone, style), &cats);
                let (verdicts, passed) = check(&copy, "Toy Town", &cats);
                let failed: Vec<_> = verdicts.iter().filter(|v| !v.passed).collect();
                assert!(passed.is_some(), "{tone}/{style}: {copy:#?} {failed:#?}");
            }
        }
    }

    #[test]
    fn the_voice_changes_the_words_and_the_same_voice_the_same_words() {
        let cats = vec!["lamps".to_string()];
        let warm = write("Maison", &voice("warm", "storytelling"), &cats);
        assert_eq!(warm, write("Maison", &voice("warm", "storytelling"), &cats));
        assert_ne!(warm.tagline, write("Maison", &voice("technical", "storytelling"), &cats).tagline);
        assert_ne!(warm.description, write("Maison", &voice("warm", "short sentences"), &cats).description);
    }

    #[test]
    fn an_audience_that_makes_a_claim_is_refused_by_the_guardrails() {
        let cats = vec!["lamps".to_string()];
        let mut v = voice("warm", "storytelling");
        v.audience = "everyone, guaranteed the cheapest in town".into();
        let (verdicts, passed) = check(&write("Maison", &v, &cats), "Maison", &cats);
        assert!(passed.is_none(), "{verdicts:#?}");
    }
}
