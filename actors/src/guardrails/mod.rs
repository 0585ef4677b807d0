//! Guardrails: the one check that every generated text passes before anyone sees it — product
//! copy, SEO, tags, and whatever later systems write.
//!
//! The text is normalized first (NFKC), then read the way a shopper would read it: invisible and
//! bidirectional characters are refused, confusable letters are folded to the letters they
//! imitate, numbers written in words read as numbers, and words are compared by their stems.
//! Each check is its own function with its own verdict, recorded with the generation:
//!
//! | check | refuses |
//! |---|---|
//! | `characters` | control, invisible, bidirectional and private-use characters; symbols and emoji; mixed-script words |
//! | `markup` | HTML (spaced tags too), entities, markdown of any kind, code and template signs |
//! | `contact` | URLs, bare domains, `data:` and other schemes, e-mail addresses, phone numbers in digits or words, "call us" |
//! | `numbers` | any number the facts do not put there: money other than the product's price and currency, percentages no fact states, a dimension away from its attribute |
//! | `pricing` | discounts, sales, was/now, price comparisons and urgency, unless a fact makes the price a sale |
//! | `claims` | health, safety, legal, environmental and guarantee claims, social proof, superlatives against competitors and competitors' names — unless a fact carries the words |
//! | `instructions` | echoed instructions, role markers (`SYSTEM:`), secrets and the model talking about itself |
//! | `not_copy` | refusals, preambles and chatter, placeholders, JSON, the first person singular |
//! | `language` | words in another script, text in another language than the district's |
//! | `shape` | words, sentences, characters and lines outside what the prompt asked for |
//!
//! Evidence ([`Evidence`]) is the product's structured facts only: vendor free text and earlier
//! generated copy never support a number or a claim. A text that passes is published in its
//! normalized form.

mod evidence;
mod lexicon;
mod numbers;
pub mod shape;
mod text;

use std::sync::LazyLock;

use mall_events::domain::{Content, Seo, Verdict};
use unicode_security::MixedScript;

pub use evidence::{Evidence, EvidenceBuilder, MAX_FACT_CHARS, MAX_FACT_WORDS};
pub use shape::{
    DESCRIPTION, HASHTAG, INSTAGRAM_CAPTION, NARRATIVE, SEO_META, SEO_TITLE, Shape, TAG, TAGS_ALLOWED, TAGS_ASKED,
    TIKTOK_HOOK, TWEET,
};
pub use text::normalize;

/// Whether a character is invisible, direction-changing, a control or private-use character:
/// what must never reach a log line or a page unescaped.
pub fn is_invisible_or_unprintable(c: char) -> bool {
    is_invisible(c) || is_unprintable(c)
}

use lexicon::{CLAIMS, CONTACT, FIRST_PERSON, INSTRUCTIONS, Lexicon, NOT_COPY, OPENERS, PRICING, ROLES, SENSITIVE};
use numbers::{canonical, currencies, digit_word, is_cents, is_percent_after, read_number_words};
use text::{Kind, Token, fold, is_invisible, is_unprintable, join_letter_runs, tokenize};

/// The checks, in the order their verdicts are recorded.
pub const CHECKS: [&str; CHECK_FNS.len()] = {
    let mut names = [""; CHECK_FNS.len()];
    let mut i = 0;
    while i < names.len() {
        names[i] = CHECK_FNS[i].0;
        i += 1;
    }
    names
};

/// One field of generated text and the shape it was asked for.
#[derive(Debug, Clone)]
pub struct Field<'a> {
    /// Where it goes (`description`, `tags[2]`, `seo.title`).
    pub name: String,
    pub text: &'a str,
    pub shape: &'static Shape,
}

/// A field read for checking.
struct Read<'a> {
    field: &'a Field<'a>,
    /// NFKC form: what is checked for characters and markup, and published.
    normalized: String,
    /// Folded (lowercase, invisibles dropped, confusables folded).
    folded: String,
    /// Tokens, numbers in words read as numbers.
    tokens: Vec<Token>,
    /// The same with letter runs joined (`f.d.a` → `fda`).
    joined: Vec<Token>,
    /// Tokens before numbers in words were read (for phone numbers spelled digit by digit).
    raw: Vec<Token>,
}

impl<'a> Read<'a> {
    fn new(field: &'a Field<'a>) -> Self {
        let normalized = normalize(field.text);
        let folded = fold(&normalized);
        let raw = tokenize(&folded);
        let tokens = read_number_words(raw.clone());
        let joined = join_letter_runs(&tokens);
        Read { field, normalized, folded, tokens, joined, raw }
    }

    fn fail(&self, detail: impl std::fmt::Display) -> Result<(), String> {
        Err(format!("{}: {detail}", self.field.name))
    }
}

/// What the guardrail said of a set of fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// One verdict per check, in [`CHECKS`] order.
    pub verdicts: Vec<Verdict>,
    /// Each field's normalized text (what is published if every verdict passed).
    pub texts: Vec<String>,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        self.verdicts.iter().all(|v| v.passed)
    }
}

type Check = fn(&Read, &Evidence) -> Result<(), String>;

/// Each check, its function, and what a pass means.
const CHECK_FNS: [(&str, Check, &str); 10] = [
    ("characters", characters, "plain printable text"),
    ("markup", markup, "no markup"),
    ("contact", contact, "no links or contact details"),
    ("numbers", numbers_supported, "every number is where the facts put it"),
    ("pricing", pricing, "no discounts, comparisons or urgency"),
    ("claims", claims, "no claims the facts do not carry"),
    ("instructions", instructions, "no instructions, roles or secrets"),
    ("not_copy", not_copy, "reads as copy"),
    ("language", language, "in the district's language"),
    ("shape", shape_of, "the shape asked for"),
];

/// Runs every check over every field.
pub fn check(fields: &[Field], evidence: &Evidence) -> Outcome {
    let reads: Vec<Read> = fields.iter().map(Read::new).collect();
    let verdicts = CHECK_FNS
        .iter()
        .map(|(name, f, ok)| {
            let failed = reads.iter().find_map(|r| f(r, evidence).err());
            Verdict {
                check: (*name).to_string(),
                passed: failed.is_none(),
                detail: failed.unwrap_or_else(|| (*ok).into()),
            }
        })
        .collect();
    Outcome { verdicts, texts: reads.into_iter().map(|r| r.normalized).collect() }
}

/// Checks a text about figures (an analytics narrative): every check as for copy, except
/// `numbers`, which here lets a number through only when it is one of `figures` — as stated, or
/// rounded to fewer decimals — wherever it stands, money included. Numbers inside `names` (a
/// product's title quoted as a name) are not figures and are passed over; nothing else is.
pub fn check_figures(
    text: &str,
    shape: &'static Shape,
    evidence: &Evidence,
    figures: &[f64],
    names: &[&str],
) -> Outcome {
    let field = Field { name: shape.name.into(), text, shape };
    let read = Read::new(&field);
    // The numbers are read from the text with the names blanked out.
    let mut unnamed = normalize(text);
    let mut names: Vec<&str> = names.iter().copied().filter(|n| !n.trim().is_empty()).collect();
    names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    for n in names {
        unnamed = unnamed.replace(&normalize(n), " ");
    }
    let numbers_field = Field { name: shape.name.into(), text: &unnamed, shape };
    let numbers_read = Read::new(&numbers_field);
    // A figure is not a phone number (revenue of 34,692.00 has seven digits): contact details are
    // looked for with the figures masked.
    let masked = mask_figures(&unnamed, figures);
    let contact_field = Field { name: shape.name.into(), text: &masked, shape };
    let contact_read = Read::new(&contact_field);
    let verdicts = CHECK_FNS
        .iter()
        .map(|(name, f, ok)| {
            let result = match *name {
                "numbers" => figures_supported(&numbers_read, figures),
                "contact" => f(&contact_read, evidence),
                _ => f(&read, evidence),
            };
            let ok = if *name == "numbers" { "every number is one of the figures" } else { ok };
            Verdict {
                check: (*name).to_string(),
                passed: result.is_ok(),
                detail: result.err().unwrap_or_else(|| ok.into()),
            }
        })
        .collect();
    Outcome { verdicts, texts: vec![read.normalized] }
}

/// `text` with every number written in digits that is one of `figures` replaced by a word.
fn mask_figures(text: &str, figures: &[f64]) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        if !chars[i].is_ascii_digit() {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len()
            && (chars[i].is_ascii_digit()
                || (matches!(chars[i], ',' | '.') && chars.get(i + 1).is_some_and(char::is_ascii_digit)))
        {
            i += 1;
        }
        let run: String = chars[start..i].iter().collect();
        match run.replace(',', "").parse::<f64>() {
            Ok(v) if is_figure(v, figures) => out.push_str("figure"),
            _ => out.push_str(&run),
        }
    }
    out
}

/// Whether a number stated in a text is one of the figures (as given, or rounded to fewer
/// decimals: 23.46 may be said as 23.5 or 23).
pub fn is_figure(value: f64, figures: &[f64]) -> bool {
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs().max(1.0);
    figures.iter().map(|f| f.abs()).any(|f| {
        close(value, f)
            || close(value, (f * 100.0).round() / 100.0)
            || close(value, (f * 10.0).round() / 10.0)
            || close(value, f.round())
    })
}

fn figures_supported(r: &Read, figures: &[f64]) -> Result<(), String> {
    match r.tokens.iter().find(|t| t.number().is_some_and(|v| !is_figure(v, figures))) {
        Some(t) => r.fail(format!("the number {} is not one of the figures", t.text)),
        None => Ok(()),
    }
}

/// Whether one piece of text (a sentence, a tag) passes every check but shape on its own: what
/// the offline writer uses to keep only the pieces of vendor text it may repeat.
pub fn passes_alone(text: &str, shape: &'static Shape, evidence: &Evidence) -> bool {
    let field = Field { name: shape.name.into(), text, shape };
    let read = Read::new(&field);
    CHECK_FNS.iter().filter(|(name, ..)| *name != "shape").all(|(_, f, _)| f(&read, evidence).is_ok())
}

/// Checks generated content; on success also returns it in its normalized form, which is what
/// gets published. Embeddings are not text: they need only be non-empty and finite.
pub fn check_content(content: &Content, evidence: &Evidence) -> (Vec<Verdict>, Option<Content>) {
    match content {
        Content::Description { text } => {
            let o = check(&[Field { name: "description".into(), text, shape: &DESCRIPTION }], evidence);
            let published = o.passed().then(|| Content::Description { text: o.texts[0].clone() });
            (o.verdicts, published)
        }
        Content::Tags { tags } => {
            let fields: Vec<Field> = tags
                .iter()
                .enumerate()
                .map(|(i, t)| Field { name: format!("tags[{i}]"), text: t, shape: &TAG })
                .collect();
            let mut o = check(&fields, evidence);
            let (lo, hi) = TAGS_ALLOWED;
            if !(lo..=hi).contains(&tags.len())
                && let Some(v) = o.verdicts.iter_mut().find(|v| v.check == "shape")
            {
                *v = Verdict {
                    check: "shape".into(),
                    passed: false,
                    detail: format!("{} tags (allowed {lo} to {hi})", tags.len()),
                };
            }
            let published = o.passed().then(|| Content::Tags { tags: o.texts.clone() });
            (o.verdicts, published)
        }
        Content::Seo(seo) => {
            let o = check(
                &[
                    Field { name: "seo.title".into(), text: &seo.title, shape: &SEO_TITLE },
                    Field { name: "seo.meta_description".into(), text: &seo.meta_description, shape: &SEO_META },
                ],
                evidence,
            );
            let published = o
                .passed()
                .then(|| Content::Seo(Seo { title: o.texts[0].clone(), meta_description: o.texts[1].clone() }));
            (o.verdicts, published)
        }
        Content::Embedding { vector, .. } => {
            let ok = !vector.is_empty() && vector.iter().all(|x| x.is_finite());
            let v = Verdict {
                check: "finite".into(),
                passed: ok,
                detail: if ok { "every component is finite".into() } else { "empty or not finite".into() },
            };
            (vec![v], ok.then(|| content.clone()))
        }
    }
}

fn show(c: char) -> String {
    format!("U+{:04X}", c as u32)
}

/// Punctuation and signs plain copy may use (markup signs are left to the markup check, `@` to
/// the contact check, so that each names what it found).
fn is_plain_sign(c: char) -> bool {
    matches!(
        c,
        '.' | ','
            | ';'
            | ':'
            | '!'
            | '?'
            | '\''
            | '"'
            | '('
            | ')'
            | '-'
            | '/'
            | '&'
            | '+'
            | '%'
            | '°'
            | '×'
            | '·'
            | '\u{2010}'
            ..='\u{2015}'
                | '\u{2018}'
                | '\u{2019}'
                | '\u{201C}'
                | '\u{201D}'
                | '\u{2026}'
                | '™'
                | '®'
                | '©'
                | '<'
                | '>'
                | '{'
                | '}'
                | '['
                | ']'
                | '`'
                | '|'
                | '\\'
                | '*'
                | '_'
                | '#'
                | '~'
                | '^'
                | '='
                | '@'
                | '$'
                | '€'
                | '£'
                | '¥'
                | '¢'
                | '₹'
                | '₩'
                | '₽'
                | '₺'
                | '₪'
                | '₫'
                | '฿'
                | '₴'
                | '₱'
                | '₦'
    )
}

fn is_emoji(c: char) -> bool {
    matches!(c, '\u{1F300}'..='\u{1FAFF}' | '\u{2600}'..='\u{27BF}' | '\u{1F000}'..='\u{1F2FF}')
}

fn characters(r: &Read, _: &Evidence) -> Result<(), String> {
    for c in r.normalized.chars() {
        if is_unprintable(c) {
            return r.fail(format!("a control or private-use character ({})", show(c)));
        }
        if is_invisible(c) {
            return r.fail(format!("an invisible or direction-changing character ({})", show(c)));
        }
        if c.is_numeric() && !c.is_ascii_digit() {
            return r.fail(format!("a digit that is not 0-9 ({c}, {})", show(c)));
        }
        if c == '\t' || (c.is_whitespace() && c != ' ' && c != '\n') {
            return r.fail(format!("unusual white space ({})", show(c)));
        }
        let letter = c.is_alphabetic() || c.is_ascii_digit() || c == ' ' || c == '\n';
        let mark = matches!(c, '\u{0300}'..='\u{036F}');
        if !(letter || mark || is_plain_sign(c) || (r.field.shape.emoji && is_emoji(c))) {
            return r.fail(format!("a symbol that is not plain text ({c}, {})", show(c)));
        }
    }
    if let Some(w) = r
        .normalized
        .split(|c: char| !c.is_alphanumeric() && !matches!(c, '\'' | '\u{2019}'))
        .find(|w| !w.is_empty() && !w.is_single_script())
    {
        return r.fail(format!("a word mixing scripts ({w:?}), a disguise"));
    }
    Ok(())
}

fn markup(r: &Read, _: &Evidence) -> Result<(), String> {
    let text = &r.normalized;
    if let Some(c) = text.chars().find(|c| "<>{}[]`|\\*_#~^=".contains(*c)) {
        return r.fail(format!("the sign {c:?} (markup, code or a template)"));
    }
    // HTML entities: `&amp;`, `&#60;`, `&#x3c;`, and double-encoded ones.
    let lower = text.to_lowercase();
    for (i, _) in lower.match_indices('&') {
        let rest = &lower[i + 1..];
        let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '#').collect();
        if !name.is_empty() && rest[name.len()..].starts_with(';') {
            return r.fail(format!("the HTML entity &{name};"));
        }
    }
    for line in text.lines() {
        let l = line.trim_start();
        if l.starts_with(['•', '◦', '▪', '‣', '·', '-', '+']) {
            return r.fail(format!("a list item ({:?})", l.chars().take(20).collect::<String>()));
        }
    }
    use pulldown_cmark::{Event, Parser, Tag, TagEnd};
    for event in Parser::new(text) {
        let what = match event {
            Event::Start(Tag::Paragraph) | Event::End(TagEnd::Paragraph) | Event::Text(_) => continue,
            Event::SoftBreak | Event::HardBreak => continue,
            Event::Start(Tag::List(_)) | Event::Start(Tag::Item) => "a markdown list",
            Event::Start(Tag::Heading { .. }) => "a markdown heading",
            Event::Start(Tag::BlockQuote(_)) => "a quotation block",
            Event::Start(Tag::CodeBlock(_)) | Event::Code(_) => "code",
            Event::Start(Tag::Emphasis) | Event::Start(Tag::Strong) => "emphasis",
            Event::Start(Tag::Link { .. }) | Event::Start(Tag::Image { .. }) => "a link",
            Event::Html(_) | Event::InlineHtml(_) => "HTML",
            Event::Rule => "a horizontal rule",
            _ => "markup",
        };
        return r.fail(format!("{what} (markdown)"));
    }
    Ok(())
}

static LINKS: LazyLock<linkify::LinkFinder> = LazyLock::new(|| {
    let mut f = linkify::LinkFinder::new();
    f.url_must_have_scheme(false);
    f
});

const SCHEMES: &[&str] =
    &["data", "javascript", "vbscript", "mailto", "tel", "sms", "file", "ftp", "http", "https", "whatsapp", "skype"];

fn contact(r: &Read, e: &Evidence) -> Result<(), String> {
    if let Some(link) = LINKS.links(&r.normalized).next() {
        let kind = if matches!(link.kind(), linkify::LinkKind::Email) { "an e-mail address" } else { "a link" };
        return r.fail(format!("{kind} ({})", link.as_str()));
    }
    // Schemes (`data:text/html,...`), whether or not the finder knows them.
    for scheme in SCHEMES {
        if let Some(i) = r.folded.find(&format!("{scheme}:")) {
            let before = r.folded[..i].chars().next_back();
            if before.is_none_or(|c| !c.is_alphanumeric()) {
                return r.fail(format!("a {scheme}: link"));
            }
        }
    }
    for lexicon_tokens in [&r.tokens, &r.joined] {
        if let Some(f) = CONTACT.find(lexicon_tokens).first() {
            return r.fail(format!("contact details ({:?})", f.matched));
        }
    }
    // An address spelled out: "deals at example dot com".
    for (i, t) in r.tokens.iter().enumerate() {
        if t.text == "dot"
            && i > 0
            && r.tokens[i - 1].is_word()
            && r.tokens.get(i + 1).is_some_and(Token::is_word)
            && (r.tokens[..i].iter().rev().take(4).any(|p| p.text == "at") || r.tokens[i + 1].text.len() <= 4)
        {
            return r.fail(format!("an address spelled out ({} dot {})", r.tokens[i - 1].text, r.tokens[i + 1].text));
        }
    }
    // Phone numbers in digits: runs of numbers joined by spaces, dashes, dots or brackets.
    let mut run = String::new();
    for t in &r.raw {
        let joins = t.gap.chars().count() <= 3 && t.gap.chars().all(|c| " -.()/+".contains(c));
        match &t.kind {
            Kind::Number { words: false, .. } if run.is_empty() || joins => {
                run.extend(t.text.chars().filter(char::is_ascii_digit));
            }
            Kind::Sign('+') if run.is_empty() => {}
            _ => {
                phone_run(r, e, &run)?;
                run.clear();
                if let Kind::Number { words: false, .. } = &t.kind {
                    run.extend(t.text.chars().filter(char::is_ascii_digit));
                }
            }
        }
    }
    phone_run(r, e, &run)?;
    // Phone numbers in words: five or more digits spelled one by one.
    let mut spelled = 0;
    for t in &r.raw {
        if t.is_word() && digit_word(&t.text).is_some() && (spelled == 0 || t.gap.chars().all(|c| " -,".contains(c))) {
            spelled += 1;
            if spelled >= 5 {
                return r.fail("a phone number spelled out in words");
            }
        } else if matches!(t.kind, Kind::Number { words: false, .. }) && spelled > 0 {
            spelled += t.text.chars().filter(char::is_ascii_digit).count();
            if spelled >= 5 {
                return r.fail("a phone number mixing digits and words");
            }
        } else {
            spelled = 0;
        }
    }
    Ok(())
}

fn phone_run(r: &Read, e: &Evidence, digits: &str) -> Result<(), String> {
    if digits.len() >= 7 && !e.digit_strings.contains(digits) {
        return r.fail(format!("a phone number ({digits})"));
    }
    Ok(())
}

/// How far around a number (in tokens) the words of its fact may stand.
const NEAR: usize = 3;

fn numbers_supported(r: &Read, e: &Evidence) -> Result<(), String> {
    let t = &r.tokens;
    for (i, tok) in t.iter().enumerate() {
        let Some(value) = tok.number() else { continue };
        let prev = i.checked_sub(1).map(|j| &t[j]);
        let next = t.get(i + 1);
        // Money: a number beside a currency must be the product's own price, in its currency.
        let currency = [next, prev].into_iter().flatten().find(|c| currencies(c).is_some());
        if let Some(c) = currency {
            let amount = if is_cents(c) { value / 100.0 } else { value };
            let is_price = e.price.is_some_and(|p| (p - amount).abs() < 1e-9);
            if !(is_price && e.is_own_currency(c)) {
                return r.fail(format!("the amount {} {} is not the product's price", tok.text, c.text));
            }
            continue;
        }
        let percent = is_percent_after(next, t.get(i + 2));
        let window: Vec<String> = t[i.saturating_sub(NEAR)..(i + NEAR + 1).min(t.len())]
            .iter()
            .filter(|w| w.is_word())
            .map(|w| canonical(&w.text))
            .collect();
        let supported = e
            .numbers
            .iter()
            .filter(|f| (f.value - value).abs() < 1e-9 && (!percent || f.percent))
            .any(|f| window.iter().any(|w| f.context.contains(w)));
        if !supported {
            let what = if percent { "the percentage" } else { "the number" };
            let shown = if percent { format!("{}%", tok.text) } else { tok.text.clone() };
            let held = e.numbers.iter().find(|f| (f.value - value).abs() < 1e-9);
            return if let Some(f) = held {
                r.fail(format!("{what} {shown} stands away from the fact it comes from ({})", f.source))
            } else {
                r.fail(format!("{what} {shown} is not in the product's facts"))
            };
        }
    }
    Ok(())
}

fn pricing(r: &Read, e: &Evidence) -> Result<(), String> {
    if e.pricing {
        return Ok(());
    }
    for tokens in [&r.tokens, &r.joined] {
        if let Some(f) = PRICING.find(tokens).first() {
            return r.fail(format!("{:?} (a {})", f.matched, f.phrase.category));
        }
    }
    let t = &r.tokens;
    for (i, tok) in t.iter().enumerate() {
        // "40 off", "half off".
        if (tok.number().is_some() || tok.text == "half") && t.get(i + 1).is_some_and(|n| n.text == "off") {
            return r.fail(format!("\"{} off\" (a discount)", tok.text));
        }
        // "was 40, now 25": a price comparison (a number or a currency between or just after).
        if tok.text == "was"
            && let Some(k) = t[i + 1..].iter().take(8).position(|n| n.text == "now")
        {
            let span = &t[i + 1..(i + k + 5).min(t.len())];
            if span.iter().any(|n| n.number().is_some() || currencies(n).is_some()) {
                return r.fail("\"was ... now\" (a price comparison)");
            }
        }
    }
    Ok(())
}

/// The first phrase of `lexicon` found in the text that the evidence does not carry.
fn unsupported<'l>(lexicon: &'l Lexicon, r: &Read, e: &Evidence) -> Option<lexicon::Found<'l>> {
    for tokens in [&r.tokens, &r.joined] {
        for f in lexicon.find(tokens) {
            if !lexicon.contains(f.phrase.text, &e.tokens) && !lexicon.contains(f.phrase.text, &e.joined) {
                return Some(f);
            }
        }
    }
    None
}

fn claims(r: &Read, e: &Evidence) -> Result<(), String> {
    match unsupported(&CLAIMS, r, e) {
        Some(f) => r.fail(format!("{:?} (a {}) is not in the product's facts", f.matched, f.phrase.category)),
        None => Ok(()),
    }
}

fn instructions(r: &Read, e: &Evidence) -> Result<(), String> {
    for tokens in [&r.tokens, &r.joined] {
        if let Some(f) = INSTRUCTIONS.find(tokens).first() {
            return r.fail(format!("{:?} (an {})", f.matched, f.phrase.category));
        }
    }
    // "Ignore ... instructions" with words between.
    let t = &r.tokens;
    for (i, tok) in t.iter().enumerate() {
        if tok.text.starts_with("instruct") || tok.text.starts_with("prompt") || tok.text == "rules" {
            let near = &t[i.saturating_sub(5)..(i + 2).min(t.len())];
            let verbs = ["ignor", "disregard", "forget", "overrid", "bypass", "skip"];
            if near.iter().any(|n| verbs.iter().any(|v| n.text.starts_with(v))) {
                return r.fail(format!("an instruction echo (\"... {}\")", tok.text));
            }
        }
    }
    // Role markers: `SYSTEM:`, `assistant:`.
    for (i, tok) in t.iter().enumerate() {
        let next_gap = t.get(i + 1).map_or("", |n| n.gap.as_str());
        if ROLES.contains(&tok.text.as_str()) && next_gap.trim_start().starts_with(':') {
            return r.fail(format!("a role marker ({}:)", tok.text));
        }
    }
    if let Some(f) = unsupported(&SENSITIVE, r, e) {
        return r.fail(format!("{:?} (a {})", f.matched, f.phrase.category));
    }
    Ok(())
}

const COPY_WORDS: &[&str] =
    &["description", "copy", "tags", "tag", "title", "seo", "version", "rewrite", "text", "meta", "answer", "output"];

fn not_copy(r: &Read, e: &Evidence) -> Result<(), String> {
    for tokens in [&r.tokens, &r.joined] {
        if let Some(f) = NOT_COPY.find(tokens).first() {
            return r.fail(format!("{:?} (a {})", f.matched, f.phrase.category));
        }
    }
    let t = &r.tokens;
    if !t.is_empty() {
        // "Sure! ...", "Certainly, ...", "Of course: ..."
        for opener in OPENERS {
            let words: Vec<&str> = opener.split(' ').collect();
            let matches = words.iter().zip(t).all(|(w, tok)| *w == tok.text) && t.len() >= words.len();
            let punct = t.get(words.len()).is_none_or(|n| n.gap.contains(['!', ',', ':', '.']));
            if matches && punct {
                return r.fail(format!("a chat answer's opener ({opener:?})"));
            }
        }
        // "Here is the description ...", "Below is your new copy ...", at any sentence's start.
        let lead = ["here", "here's", "below"];
        for (i, tok) in t.iter().enumerate() {
            let starts = i == 0 || tok.gap.contains(['.', '!', '?', ':', '\n']);
            if starts
                && lead.contains(&tok.text.as_str())
                && t[i..].iter().take(7).any(|w| COPY_WORDS.contains(&w.text.as_str()))
            {
                return r.fail(format!("a preamble (\"{} ...\")", tok.text));
            }
        }
        // A label: "Description: ...", "Product description: ..."
        for (i, tok) in t.iter().take(3).enumerate() {
            let next_gap = t.get(i + 1).map_or("", |n| n.gap.as_str());
            if COPY_WORDS.contains(&tok.text.as_str()) && next_gap.trim_start().starts_with(':') {
                return r.fail(format!("a label ({}:)", tok.text));
            }
        }
    }
    // JSON and code: quoted keys.
    if r.normalized.contains("\":") || r.normalized.contains("\",") || r.normalized.contains("();") {
        return r.fail("JSON or code");
    }
    if let Some(f) = unsupported(&FIRST_PERSON, r, e) {
        return r.fail(format!("{:?} (the {}: a testimonial or the model speaking)", f.matched, f.phrase.category));
    }
    Ok(())
}

/// Sentences shorter than this are too short to tell their language reliably.
const MIN_LANGUAGE_WORDS: usize = 6;

fn language(r: &Read, e: &Evidence) -> Result<(), String> {
    use unicode_script::{Script, UnicodeScript};
    if writes_latin(e.language) {
        for t in r.tokens.iter().filter(|t| t.is_word()) {
            let foreign =
                t.text.chars().find(|c| !matches!(c.script(), Script::Latin | Script::Common | Script::Inherited));
            if let Some(c) = foreign
                && !e.words.contains(&t.text)
            {
                return r.fail(format!("{:?} is written in {:?} script", t.text, c.script()));
            }
        }
    }
    for sentence in shape::sentences(&r.normalized) {
        if sentence.split_whitespace().count() < MIN_LANGUAGE_WORDS {
            continue;
        }
        if let Some(info) = whatlang::detect(sentence)
            && info.lang() != e.language
            && info.is_reliable()
        {
            return r.fail(format!(
                "written in {} rather than {} ({:?})",
                info.lang().eng_name(),
                e.language.eng_name(),
                sentence.chars().take(40).collect::<String>()
            ));
        }
    }
    Ok(())
}

/// Whether a language is written in the Latin script.
fn writes_latin(lang: whatlang::Lang) -> bool {
    use whatlang::Lang::*;
    matches!(
        lang,
        Eng | Deu
            | Fra
            | Spa
            | Ita
            | Por
            | Nld
            | Pol
            | Swe
            | Dan
            | Nob
            | Fin
            | Ces
            | Slk
            | Hun
            | Ron
            | Tur
            | Hrv
            | Slv
            | Lit
            | Lav
            | Est
            | Cat
            | Ind
            | Vie
            | Tgl
            | Afr
            | Epo
            | Lat
            | Uzb
            | Aze
            | Tuk
            | Zul
            | Sna
            | Aka
            | Jav
    )
}

fn shape_of(r: &Read, _: &Evidence) -> Result<(), String> {
    match shape::check(&r.normalized, r.field.shape) {
        Ok(()) => Ok(()),
        Err(e) => r.fail(e),
    }
}

#[cfg(test)]
mod tests;
