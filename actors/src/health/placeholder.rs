//! The placeholder mall draws for a product whose image is broken: an SVG with the product's
//! title in its district's style (a palette chosen by the district's tone), the same bytes for
//! the same inputs. The title is a vendor's text: it is data, escaped, never markup.

use mall_events::domain::Personality;

/// The longest line of the title, in characters, and the most lines.
const LINE: usize = 22;
const LINES: usize = 3;

/// (background, accent, text) colours.
const PALETTES: &[(&str, &str, &str)] = &[
    ("#fff4d6", "#ff8a3d", "#3b2a1a"),
    ("#e8f4ff", "#2f6fde", "#15243b"),
    ("#eef7ee", "#3f9a55", "#183222"),
    ("#f6eefc", "#8a4fd1", "#2a1a3b"),
    ("#f2f2f2", "#5d6b78", "#1f2328"),
];

/// The palette of a tone: fixed ones for the common tones, any other by a stable hash.
fn palette(tone: Option<&str>) -> (&'static str, &'static str, &'static str) {
    let tone = tone.unwrap_or("").trim().to_lowercase();
    let i = match tone.as_str() {
        "playful" => 0,
        "technical" | "precise" => 1,
        "calm" | "natural" => 2,
        "luxurious" | "elegant" => 3,
        "" => 4,
        other => other.bytes().fold(2_166_136_261u32, |h, b| (h ^ b as u32).wrapping_mul(16_777_619)) as usize,
    };
    PALETTES[i % PALETTES.len()]
}

/// Text as XML character data or an attribute value: the five special characters escaped, and
/// characters XML cannot hold (controls, noncharacters) and invisible ones dropped.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control()
                || matches!(c, '\u{FFFE}' | '\u{FFFF}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}') =>
                {}
            c => out.push(c),
        }
    }
    out
}

/// The title in at most [`LINES`] lines of at most [`LINE`] characters, broken at spaces where it
/// can be, the last line ending in an ellipsis when the title is longer.
fn lines(title: &str) -> Vec<String> {
    let words: Vec<&str> = title.split_whitespace().collect();
    let mut out: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut cut = false;
    for w in words {
        for piece in w.chars().collect::<Vec<_>>().chunks(LINE).map(|c| c.iter().collect::<String>()) {
            let len = current.chars().count();
            if len > 0 && len + 1 + piece.chars().count() > LINE {
                out.push(std::mem::take(&mut current));
                if out.len() == LINES {
                    cut = true;
                    break;
                }
            }
            if !current.is_empty() {
                current.push(' ');
            }
            current.push_str(&piece);
        }
        if cut {
            break;
        }
    }
    if !cut && !current.is_empty() {
        out.push(current);
    }
    if cut && let Some(last) = out.last_mut() {
        let kept: String = last.chars().take(LINE - 1).collect();
        *last = format!("{kept}…");
    }
    out
}

/// The placeholder of a product titled `title` in the district named `district`.
pub fn svg(title: &str, district: &str, personality: Option<&Personality>) -> String {
    let (background, accent, ink) = palette(personality.map(|p| p.tone.as_str()));
    let lines = lines(title);
    let top = 200 - (lines.len() as i32 - 1) * 18;
    let mut text = String::new();
    for (i, l) in lines.iter().enumerate() {
        text.push_str(&format!("<tspan x=\"200\" y=\"{}\">{}</tspan>", top + i as i32 * 36, escape(l)));
    }
    let label = escape(&district.chars().take(40).collect::<String>());
    let name = escape(&title.chars().take(200).collect::<String>());
    format!(
        concat!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 400 400\" width=\"400\" height=\"400\" ",
            "role=\"img\" aria-label=\"{name}\">",
            "<rect width=\"400\" height=\"400\" fill=\"{bg}\"/>",
            "<rect x=\"24\" y=\"24\" width=\"352\" height=\"352\" rx=\"28\" fill=\"none\" stroke=\"{accent}\" stroke-width=\"6\"/>",
            "<text text-anchor=\"middle\" font-family=\"sans-serif\" font-size=\"28\" fill=\"{ink}\">{text}</text>",
            "<text x=\"200\" y=\"350\" text-anchor=\"middle\" font-family=\"sans-serif\" font-size=\"16\" fill=\"{accent}\">{label}</text>",
            "</svg>"
        ),
        name = name,
        bg = background,
        accent = accent,
        ink = ink,
        text = text,
        label = label,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn voice(tone: &str) -> Personality {
        Personality { tone: tone.into(), style: "short".into(), audience: "parents".into() }
    }

    /// Every `<` of the document opens one of the tags the drawing itself writes.
    fn only_our_tags(svg: &str) -> bool {
        let allowed = ["<svg ", "<rect ", "<text ", "<tspan ", "</tspan>", "</text>", "</svg>"];
        svg.match_indices('<').all(|(i, _)| allowed.iter().any(|t| svg[i..].starts_with(t)))
    }

    #[test]
    fn a_hostile_title_is_text_in_the_drawing_never_markup() {
        for title in [
            "<script>alert(1)</script>",
            "\"><svg onload=alert(1)>",
            "Train & 'cars' <b>bold</b>",
            "]]><!-- --><?xml?>",
            "A\u{0}B\u{7}C\u{1b}[31m\u{202E}evil",
        ] {
            let s = svg(title, "<Toys & Games>", Some(&voice("playful")));
            assert!(only_our_tags(&s), "{title}: {s}");
            assert!(!s.contains('\u{0}') && !s.contains('\u{202E}') && !s.contains('\u{1b}'), "{title}");
        }
        let s = svg("<script>", "Toys", None);
        assert!(s.contains("&lt;script&gt;"), "{s}");
    }

    #[test]
    fn the_same_product_draws_the_same_bytes_in_its_districts_colours() {
        let a = svg("Wooden train", "Toy Town", Some(&voice("playful")));
        assert_eq!(a, svg("Wooden train", "Toy Town", Some(&voice("playful"))));
        assert!(a.contains("#ff8a3d"), "playful is orange: {a}");
        let b = svg("Wooden train", "Toy Town", Some(&voice("technical")));
        assert_ne!(a, b, "another voice, other colours");
        assert!(a.contains(">Wooden train<") && a.contains(">Toy Town<"), "{a}");
        // Any tone gets a palette.
        assert!(svg("x", "d", Some(&voice("whimsical-noir"))).contains("fill=\"#"));
    }

    #[test]
    fn long_titles_wrap_into_three_lines_and_end_in_an_ellipsis() {
        let l = lines("The extraordinarily long wooden train with seven carriages and a little red caboose at the end");
        assert_eq!(l.len(), LINES, "{l:?}");
        assert!(l.iter().all(|x| x.chars().count() <= LINE), "{l:?}");
        assert!(l[2].ends_with('…'), "{l:?}");
        assert_eq!(lines("Wooden train"), ["Wooden train"]);
        // One unbroken word longer than a line is cut into pieces, characters intact.
        let l = lines(&"🚂".repeat(30));
        assert!(l.iter().all(|x| x.chars().count() <= LINE) && l[0].starts_with('🚂'), "{l:?}");
        assert!(lines("   ").is_empty());
        // A title of any size draws a bounded document.
        assert!(svg(&"train ".repeat(100_000), "d", None).len() < 4_000);
    }
}
