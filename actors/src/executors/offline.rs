//! The built-in offline generator: readable copy from the product's facts, in its district's
//! voice, shaped by the diagnosis, with no network and the same output for the same input.
//!
//! It only restates the facts it was given (title, the vendor's description, attributes, price,
//! tags), so its numbers and claims are the vendor's own; the guardrails check it all the same.

use std::fmt::Write;

use async_trait::async_trait;
use mall_events::domain::{AttributeValue, CommandKind};

use super::guardrails::{SEO_META_CHARS, SEO_TITLE_CHARS};
use super::{Facts, GenerationError, Generator};

/// The generator's version, recorded with everything it writes.
pub const VERSION: &str = "offline/1";

/// The offline generator.
#[derive(Debug, Clone, Copy, Default)]
pub struct OfflineGenerator;

const STOPWORDS: &[&str] = &[
    "a", "an", "and", "the", "of", "for", "with", "in", "on", "to", "by", "from", "at", "or", "is", "it", "its",
    "this", "that", "your", "our", "set",
];

fn humanize(key: &str) -> String {
    let k = key.replace(['_', '-'], " ");
    let mut c = k.chars();
    c.next().map(|f| f.to_uppercase().collect::<String>() + c.as_str()).unwrap_or_default()
}

fn value(v: &AttributeValue) -> Option<String> {
    match v {
        AttributeValue::Text(t) if !t.trim().is_empty() => Some(t.trim().to_string()),
        AttributeValue::Number(n) => Some(n.to_string()),
        AttributeValue::Bool(true) => Some("yes".into()),
        _ => None,
    }
}

fn sentence(s: &str) -> String {
    let s = s.trim();
    if s.is_empty() || s.ends_with(['.', '!', '?']) { s.to_string() } else { format!("{s}.") }
}

/// The words of the title and text attributes that make useful tags.
pub fn keywords(facts: &Facts) -> Vec<String> {
    let mut words = Vec::new();
    let mut push = |w: &str| {
        let w = w.trim_matches(|c: char| !c.is_alphanumeric()).to_lowercase();
        if w.len() > 2
            && !w.chars().all(|c| c.is_ascii_digit())
            && !STOPWORDS.contains(&w.as_str())
            && !words.contains(&w)
        {
            words.push(w);
        }
    };
    facts.title.split_whitespace().for_each(&mut push);
    for v in facts.attributes.values() {
        if let AttributeValue::Text(t) = v {
            t.split_whitespace().for_each(&mut push);
        }
    }
    facts.tags.iter().for_each(|t| push(t));
    facts.district.split_whitespace().for_each(&mut push);
    words
}

impl OfflineGenerator {
    /// Writes the raw text for `command`.
    pub fn write(command: CommandKind, facts: &Facts) -> String {
        match command {
            CommandKind::RewriteDescription => Self::description(facts),
            CommandKind::RegenerateTags => keywords(facts).into_iter().take(8).collect::<Vec<_>>().join(", "),
            CommandKind::UpdateSeo => {
                let mut title = format!("{} | {}", facts.title.trim(), facts.district.trim());
                if title.chars().count() > SEO_TITLE_CHARS {
                    title = facts.title.chars().take(SEO_TITLE_CHARS).collect();
                }
                let source = if facts.description.trim().is_empty() {
                    Self::description(facts)
                } else {
                    facts.description.clone()
                };
                let mut meta = String::new();
                for word in source.split_whitespace() {
                    if meta.chars().count() + word.chars().count() + 1 > SEO_META_CHARS {
                        break;
                    }
                    if !meta.is_empty() {
                        meta.push(' ');
                    }
                    meta.push_str(word);
                }
                format!("Title: {}\nMeta: {}", title.trim(), meta.trim())
            }
            CommandKind::RegenerateEmbedding => String::new(),
        }
    }

    fn description(f: &Facts) -> String {
        let title = f.title.trim();
        let tone = f.personality.as_ref().map(|p| p.tone.to_lowercase()).unwrap_or_default();
        let style = f.personality.as_ref().map(|p| p.style.to_lowercase()).unwrap_or_default();
        let audience = f.personality.as_ref().map(|p| p.audience.trim().to_string()).unwrap_or_default();
        let short = style.contains("short") || style.contains("minimal") || style.contains("concise");
        // After "the", a capitalized common title reads as a noun ("the stacking rings"); names
        // with more capitals ("the iPad", "the USB hub") stay as they are.
        let the_title = {
            let mut c = title.chars();
            match (c.next(), c.next()) {
                (Some(f), Some(g))
                    if f.is_uppercase() && g.is_lowercase() && !title[1..].chars().any(char::is_uppercase) =>
                {
                    f.to_lowercase().collect::<String>() + &title[f.len_utf8()..]
                }
                _ => title.to_string(),
            }
        };
        let mut out = String::new();
        // The opening carries the voice.
        let opening = if tone.contains("playful") || tone.contains("fun") {
            format!("Say hello to the {the_title}!")
        } else if tone.contains("warm") || tone.contains("friendly") || tone.contains("cozy") {
            format!("The {the_title}, made to be enjoyed every day.")
        } else if tone.contains("technical") || tone.contains("precise") || tone.contains("expert") {
            format!("{title}: the details that matter.")
        } else if tone.contains("luxur") || tone.contains("elegant") {
            format!("The {the_title}, quietly refined.")
        } else {
            format!("Meet the {the_title}.")
        };
        out.push_str(&opening);
        // A bounce means shoppers did not find what they came for at once: lead with the facts.
        let facts_line: Vec<String> =
            f.attributes.iter().filter_map(|(k, v)| value(v).map(|v| format!("{}: {v}", humanize(k)))).collect();
        let vendor = sentence(&f.description);
        let lead_with_facts = f.diagnosis == "high_bounce";
        if lead_with_facts && !facts_line.is_empty() {
            let _ = write!(out, " {}", sentence(&facts_line.join(". ")));
        }
        if !vendor.is_empty() && vendor != sentence(title) {
            let _ = write!(out, " {vendor}");
        }
        if !lead_with_facts && !facts_line.is_empty() {
            let _ = write!(out, " {}", sentence(&facts_line.join(". ")));
        }
        let themes: Vec<String> = f.tags.iter().take(4).map(|t| t.to_lowercase()).collect();
        if !themes.is_empty() && !short {
            let _ = write!(out, " A good pick for anyone looking for {}.", join_words(&themes));
        }
        if !audience.is_empty() {
            let _ = write!(out, " Chosen for {audience}.");
        }
        if !f.price.is_empty() {
            let _ = write!(out, " Yours for {} {}.", f.price, f.currency);
        }
        if !short && !f.district.is_empty() {
            let _ = write!(out, " Find it in {}.", f.district.trim());
        }
        out
    }
}

fn join_words(w: &[String]) -> String {
    match w {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

#[async_trait]
impl Generator for OfflineGenerator {
    fn id(&self) -> String {
        VERSION.to_string()
    }

    async fn generate(&self, command: CommandKind, facts: &Facts) -> (String, Result<String, GenerationError>) {
        // What the offline writer was given, in the same words a model would get: the audit
        // shows the task, the voice, the diagnosis and the facts it wrote from.
        (format!("[{VERSION}]\n{}", super::llm::prompt(command, facts)), Ok(Self::write(command, facts)))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use mall_events::domain::{Content, Personality};

    use super::*;
    use crate::executors::{guardrails, parse};

    fn facts(tone: &str) -> Facts {
        Facts {
            product_id: "p1".into(),
            title: "Wooden train".into(),
            description: "A train of beech wood.".into(),
            tags: vec!["wood".into(), "trains".into()],
            attributes: BTreeMap::from([
                ("color".to_string(), AttributeValue::Text("natural beech".into())),
                ("wagons".to_string(), AttributeValue::Number(3.0)),
            ]),
            price: "24.90".into(),
            currency: "EUR".into(),
            district: "Toy Town".into(),
            personality: Some(Personality {
                tone: tone.into(),
                style: "storytelling".into(),
                audience: "curious kids".into(),
            }),
            diagnosis: "weak_description".into(),
            reason: String::new(),
        }
    }

    #[test]
    fn it_writes_readable_copy_in_the_districts_voice_that_passes_the_guardrails() {
        for tone in ["playful", "warm", "technical", "elegant", "plain"] {
            let f = facts(tone);
            let text = OfflineGenerator::write(CommandKind::RewriteDescription, &f);
            assert!(
                text.to_lowercase().contains("wooden train")
                    && text.contains("curious kids")
                    && text.contains("Wagons: 3"),
                "{text}"
            );
            let verdicts = guardrails::check(&parse(CommandKind::RewriteDescription, &text).unwrap(), &f);
            assert!(verdicts.iter().all(|v| v.passed), "{tone}: {text}\n{verdicts:?}");
        }
        // After "the", a plain title reads as a noun; a name keeps its capitals.
        assert!(
            OfflineGenerator::write(CommandKind::RewriteDescription, &facts("playful"))
                .starts_with("Say hello to the wooden train!")
        );
        let mut named = facts("warm");
        named.title = "USB hub".into();
        assert!(OfflineGenerator::write(CommandKind::RewriteDescription, &named).starts_with("The USB hub,"));
        assert_ne!(
            OfflineGenerator::write(CommandKind::RewriteDescription, &facts("playful")),
            OfflineGenerator::write(CommandKind::RewriteDescription, &facts("technical"))
        );
    }

    #[test]
    fn tags_and_seo_parse_and_pass() {
        let f = facts("warm");
        for c in [CommandKind::RegenerateTags, CommandKind::UpdateSeo] {
            let content = parse(c, &OfflineGenerator::write(c, &f)).unwrap();
            assert!(guardrails::check(&content, &f).iter().all(|v| v.passed), "{content:?}");
            if let Content::Tags { tags } = content {
                assert!(tags.contains(&"wooden".to_string()) && tags.contains(&"beech".to_string()), "{tags:?}");
            }
        }
    }

    #[test]
    fn a_product_without_description_still_gets_copy_long_enough() {
        let mut f = facts("playful");
        f.description.clear();
        f.diagnosis = "missing_description".into();
        let text = OfflineGenerator::write(CommandKind::RewriteDescription, &f);
        assert!(text.chars().count() >= guardrails::DESCRIPTION_CHARS.0, "{text}");
    }
}
