//! The curated lexicons the checks match by meaning: phrases of stems and prefixes, so that one
//! entry covers a word's inflections (`cure` matches cured, cures, curing) and its disguises once
//! the text is folded (`ｃｕｒｅ`, `c\u{200B}ure`, `с​ure` in Cyrillic, `c u r e`).
//!
//! An entry is written as words separated by spaces: `cure` (the stem of the word), `detox*`
//! (any word starting so), `=my` (exactly that word), or a single sign (`★`, `%`).

use std::collections::HashMap;
use std::sync::LazyLock;

use super::text::{Kind, Token, stem};

/// One part of a phrase.
#[derive(Debug, Clone, PartialEq)]
enum Part {
    Stem(String),
    Prefix(String),
    Exact(String),
    Sign(char),
}

impl Part {
    fn matches(&self, t: &Token) -> bool {
        match (self, &t.kind) {
            (Part::Stem(s), Kind::Word) => t.stem == *s || t.text == *s,
            (Part::Prefix(p), Kind::Word) => t.text.starts_with(p.as_str()),
            (Part::Exact(w), Kind::Word) => t.text == *w,
            (Part::Sign(c), Kind::Sign(k)) => c == k,
            _ => false,
        }
    }
}

/// A phrase of a lexicon, and the category it belongs to.
#[derive(Debug, Clone)]
pub struct Phrase {
    pub text: &'static str,
    pub category: &'static str,
    parts: Vec<Part>,
}

impl Phrase {
    fn compile(text: &'static str, category: &'static str) -> Phrase {
        let parts = text
            .split_whitespace()
            .map(|w| {
                if let Some(p) = w.strip_suffix('*') {
                    Part::Prefix(p.to_string())
                } else if let Some(e) = w.strip_prefix('=') {
                    Part::Exact(e.to_string())
                } else if w.chars().count() == 1 && !w.chars().all(char::is_alphanumeric) {
                    Part::Sign(w.chars().next().expect("one char"))
                } else {
                    Part::Stem(stem(w))
                }
            })
            .collect();
        Phrase { text, category, parts }
    }

    /// Whether the phrase starts at `tokens[i]`; consecutive parts must be adjacent tokens.
    fn matches_at(&self, tokens: &[Token], i: usize) -> bool {
        self.parts.len() <= tokens.len() - i && self.parts.iter().zip(&tokens[i..]).all(|(p, t)| p.matches(t))
    }
}

/// A compiled lexicon, its phrases indexed by their first part so that a text is matched in
/// time proportional to its length, not to the lexicon's size.
pub struct Lexicon {
    pub phrases: Vec<Phrase>,
    /// Phrases whose first part is a stem, an exact word or a sign, by that text.
    by_word: HashMap<String, Vec<usize>>,
    /// Phrases whose first part is a prefix, by the prefix's first two characters.
    by_prefix: HashMap<String, Vec<usize>>,
}

fn head(s: &str) -> String {
    s.chars().take(2).collect()
}

/// A phrase found in a text, and the words it matched.
#[derive(Debug, Clone)]
pub struct Found<'a> {
    pub phrase: &'a Phrase,
    /// The text it matched, as folded.
    pub matched: String,
}

impl Lexicon {
    fn new(groups: &[(&'static str, &[&'static str])]) -> Lexicon {
        let phrases: Vec<Phrase> =
            groups.iter().flat_map(|(category, list)| list.iter().map(|p| Phrase::compile(p, category))).collect();
        let mut by_word: HashMap<String, Vec<usize>> = HashMap::new();
        let mut by_prefix: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, p) in phrases.iter().enumerate() {
            match &p.parts[0] {
                Part::Stem(w) | Part::Exact(w) => by_word.entry(w.clone()).or_default().push(i),
                Part::Sign(c) => by_word.entry(c.to_string()).or_default().push(i),
                Part::Prefix(x) => by_prefix.entry(head(x)).or_default().push(i),
            }
        }
        Lexicon { phrases, by_word, by_prefix }
    }

    /// The phrases that may start at `t`, in lexicon order.
    fn candidates(&self, t: &Token) -> Vec<usize> {
        let mut c: Vec<usize> = Vec::new();
        for key in [&t.stem, &t.text] {
            c.extend(self.by_word.get(key.as_str()).into_iter().flatten());
        }
        c.extend(self.by_prefix.get(&head(&t.text)).into_iter().flatten());
        c.sort_unstable();
        c.dedup();
        c
    }

    /// Every phrase found in `tokens`, in text order.
    pub fn find<'a>(&'a self, tokens: &[Token]) -> Vec<Found<'a>> {
        let mut out = Vec::new();
        for i in 0..tokens.len() {
            for p in self.candidates(&tokens[i]).into_iter().map(|k| &self.phrases[k]) {
                if p.matches_at(tokens, i) {
                    let matched = tokens[i..i + p.parts.len()].iter().map(|t| t.text.as_str()).collect::<Vec<_>>();
                    out.push(Found { phrase: p, matched: matched.join(" ") });
                }
            }
        }
        out
    }

    /// Whether any phrase of the lexicon with this text is found in `tokens`.
    pub fn contains(&self, phrase: &str, tokens: &[Token]) -> bool {
        self.phrases.iter().filter(|p| p.text == phrase).any(|p| (0..tokens.len()).any(|i| p.matches_at(tokens, i)))
    }
}

/// Claims that need proof: allowed only when the product's structured facts carry them.
pub static CLAIMS: LazyLock<Lexicon> = LazyLock::new(|| {
    Lexicon::new(&[
        (
            "health claim",
            &[
                "cure",
                "heal*",
                "remed*",
                "detox*",
                "reliev*",
                "relief",
                "allevia*",
                "therap*",
                "medic*",
                "clinic*",
                "doctor*",
                "physician*",
                "dermatolog*",
                "pharma*",
                "prescri*",
                "fda",
                "diagnos*",
                "immun*",
                "disease*",
                "illness*",
                "cancer*",
                "tumor*",
                "tumour*",
                "diabet*",
                "arthrit*",
                "insomnia",
                "anxiety",
                "depression",
                "inflamm*",
                "infection*",
                "antibacter*",
                "antivir*",
                "antimicrob*",
                "antisept*",
                "germ",
                "bacteri*",
                "virus*",
                "pain",
                "ache",
                "weight loss",
                "lose weight",
                "burn* fat",
                "fat burn*",
                "metabol*",
                "anti aging",
                "antiaging",
                "wrinkle*",
                "hormon*",
                "toxin*",
                "blood pressure",
                "cholesterol",
                "probiotic*",
                "boost* energy",
                "nhs",
                "who approved",
            ],
        ),
        (
            "safety claim",
            &[
                "non toxic",
                "nontoxic",
                "toxic",
                "child safe",
                "baby safe",
                "kid safe",
                "food safe",
                "skin safe",
                "pet safe",
                "safe for",
                "bpa",
                "lead free",
                "phthalat*",
                "certif*",
                "tested",
                "fireproof",
                "fire proof",
                "flame retard*",
                "shatterproof",
                "hypoallergen*",
                "allergen*",
                "safety",
                "safest",
                "harmless",
                "ce mark*",
                "ul listed",
            ],
        ),
        (
            "legal claim",
            &[
                "legal",
                "licens*",
                "licenc*",
                "patent*",
                "trademark*",
                "official*",
                "authoris*",
                "authoriz*",
                "complian*",
                "regulat*",
                "approv*",
                "endors*",
                "government*",
                "law",
                "copyright*",
            ],
        ),
        (
            "environmental claim",
            &[
                "eco",
                "eco friendly",
                "ecolog*",
                "sustainab*",
                "biodegrad*",
                "compost*",
                "recycl*",
                "carbon",
                "climate",
                "planet",
                "environment*",
                "zero waste",
                "plastic free",
                "organic*",
                "vegan",
                "cruelty free",
                "fair trade",
                "fairtrade",
                "ethical*",
                "renewable",
                "earth friendly",
            ],
        ),
        (
            "guarantee",
            &[
                "guarant*",
                "warrant*",
                "money back",
                "refund*",
                "risk free",
                "no risk",
                "lifetime",
                "forever",
                "unbreakable",
                "indestructible",
                "never break*",
                "never fail*",
                "never wear*",
                "no questions asked",
                "promis*",
                "satisfaction",
                "assured",
            ],
        ),
        (
            "social proof",
            &[
                "review*",
                "rate",
                "star",
                "★",
                "☆",
                "⭐",
                "testimoni*",
                "customer*",
                "buyer*",
                "shopper*",
                "client*",
                "verified",
                "satisf*",
                "bestsell*",
                "best sell*",
                "top sell*",
                "popular*",
                "loved by",
                "love it",
                "favorit*",
                "favourit*",
                "award*",
                "prize*",
                "winning",
                "as seen",
                "featured in",
                "trusted",
                "recommend*",
                "says it all",
                "people say",
                "everyone love*",
                "everybody love*",
                "thousands",
                "millions",
                "hundreds",
                "sold out",
                "selling fast",
                "sell out",
                "in demand",
                "viral",
                "trending",
                "famous",
                "celebrit*",
                "influencer*",
                "purchase ever",
            ],
        ),
        (
            "comparison with competitors",
            &[
                "the best",
                "best ever",
                "best in",
                "best on",
                "best of",
                "number one",
                "better than",
                "than any",
                "than other*",
                "unbeat*",
                "unmatch*",
                "unrival*",
                "unparallel*",
                "world* best",
                "world* first",
                "world* finest",
                "world* lead*",
                "industry lead*",
                "market lead*",
                "leading brand",
                "superior",
                "outperform*",
                "beat*",
                "competitor*",
                "other brand*",
                "rival*",
                "vs",
                "versus",
                "compared to",
                "compared with",
                "amazon",
                "ebay",
                "walmart",
                "ikea",
                "aliexpress",
                "temu",
                "shein",
                "etsy",
                "costco",
                "lidl",
                "aldi",
                "zalando",
                "wayfair",
                "argos",
                "tesco",
                "carrefour",
                "best buy",
                "samsung",
                "sony",
                "lego",
                "nike",
                "adidas",
                "dyson",
                "philips",
                "bosch",
                "playmobil",
                "hasbro",
                "mattel",
            ],
        ),
    ])
});

/// Prices, discounts and urgency: allowed only when a structured fact makes the product's
/// price a sale (an attribute such as `discount_percent` or `sale`).
pub static PRICING: LazyLock<Lexicon> = LazyLock::new(|| {
    Lexicon::new(&[(
        "pricing claim",
        &[
            "discount*",
            "sale",
            "clearance",
            "bargain*",
            "deal",
            "save money",
            "save up",
            "you save",
            "save on",
            "=savings",
            "cheap*",
            "lowest price",
            "low price",
            "best price",
            "price drop",
            "reduced price",
            "price reduc*",
            "markdown",
            "marked down",
            "rrp",
            "msrp",
            "compare at",
            "retail price",
            "usual price",
            "regular price",
            "normal price",
            "original price",
            "list price",
            "half price",
            "half the price",
            "half the usual",
            "half off",
            "% off",
            "off the price",
            "off retail",
            "free shipping",
            "free delivery",
            "free gift",
            "free return*",
            "for free",
            "at no cost",
            "no extra cost",
            "coupon*",
            "promo*",
            "voucher*",
            "limited time",
            "limited offer",
            "special offer",
            "offer end*",
            "today only",
            "act now",
            "order now",
            "buy now",
            "hurry",
            "while stock* last",
            "while supplies last",
            "last chance",
            "don't miss",
            "now only",
            "now just",
            "only today",
            "price match*",
            "value for money",
            "affordab*",
        ],
    )])
});

/// Links and contact details in words: never allowed.
pub static CONTACT: LazyLock<Lexicon> = LazyLock::new(|| {
    Lexicon::new(&[(
        "contact",
        &[
            "call us",
            "call now",
            "call today",
            "text us",
            "whatsapp",
            "telegram",
            "hotline",
            "contact us",
            "dm us",
            "message us",
            "email us",
            "e mail us",
            "reach us",
            "visit us",
            "visit our",
            "our website",
            "our site",
            "our store",
            "our shop",
            "link in bio",
            "click here",
            "click the link",
            "sign up",
            "subscribe",
            "www*",
            "http*",
            "dot com",
            "dot net",
            "dot org",
            "dot io",
            "dot shop",
            "dot co",
            "@",
        ],
    )])
});

/// Echoed instructions and role play: never allowed, whatever the facts say.
pub static INSTRUCTIONS: LazyLock<Lexicon> = LazyLock::new(|| {
    Lexicon::new(&[(
        "instruction echo",
        &[
            "system prompt",
            "system message",
            "system instruct*",
            "developer mode",
            "dev mode",
            "god mode",
            "jailbreak*",
            "dan mode",
            "do anything now",
            "prompt inject*",
            "the prompt",
            "my prompt",
            "your prompt",
            "as an ai",
            "=i am an ai",
            "=i'm an ai",
            "as a language model",
            "ignore all",
            "ignore the above",
            "ignore previous",
            "ignore prior",
            "ignore your",
            "disregard*",
            "override*",
            "you are now",
            "pretend to be",
            "new instruct*",
            "previous instruct*",
            "prior instruct*",
            "above instruct*",
            "my instruct*",
            "your instruct*",
            "these instruct*",
        ],
    )])
});

/// Secrets and the model talking about itself: allowed only when a structured fact names the
/// thing (a board game's tokens, a smart speaker's AI assistant).
pub static SENSITIVE: LazyLock<Lexicon> = LazyLock::new(|| {
    Lexicon::new(&[
        (
            "secret",
            &[
                "token",
                "password*",
                "passphrase*",
                "passcode*",
                "api key*",
                "apikey*",
                "secret key",
                "private key",
                "access key",
                "credential*",
                "bearer",
                "admin*",
                "root access",
                "sudo",
                "ssh",
                "env var*",
                "environment variable*",
            ],
        ),
        (
            "model talk",
            &["language model", "ai model", "ai assistant", "chatgpt", "openai", "gpt*", "llm", "anthropic"],
        ),
    ])
});

/// Things a model says that are not copy: refusals, chatter, placeholders. Never allowed.
pub static NOT_COPY: LazyLock<Lexicon> = LazyLock::new(|| {
    Lexicon::new(&[
        (
            "refusal",
            &[
                "=i can't",
                "=i cannot",
                "=i can not",
                "=i'm unable",
                "=i am unable",
                "=i won't",
                "=i will not",
                "=i'm sorry",
                "=i am sorry",
                "sorry but",
                "apologi*",
                "unable to help",
                "unable to assist",
                "unable to comply",
                "can't help",
                "cannot help",
                "can't assist",
                "cannot assist",
                "cannot provide",
                "can't provide",
                "not able to help",
                "must decline",
                "against my",
                "my guidelines",
                "content polic*",
                "not allowed to",
            ],
        ),
        (
            "chatter",
            &[
                "let me know",
                "feel free to ask",
                "feel free to reach",
                "hope this helps",
                "would you like",
                "happy to help",
                "as requested",
                "as you asked",
            ],
        ),
        (
            "placeholder",
            &[
                "lorem",
                "ipsum",
                "placeholder*",
                "tbd",
                "tba",
                "todo",
                "xxx",
                "xx",
                "product name",
                "brand name",
                "target audience",
                "your product",
                "company name",
                "product title",
            ],
        ),
    ])
});

/// The first person singular: copy speaks as the mall, never as a customer (a testimonial) or as
/// the model. Allowed only when the facts carry it (a title like "I Am Legend").
pub static FIRST_PERSON: LazyLock<Lexicon> = LazyLock::new(|| {
    Lexicon::new(&[("first person", &["=i", "=i'm", "=i've", "=i'd", "=i'll", "=me", "=my", "=mine", "=myself"])])
});

/// Openers that only a chat answer starts with ("Sure! Here is ...").
pub const OPENERS: &[&str] =
    &["sure", "certainly", "of course", "absolutely", "okay", "ok", "alright", "great", "yes", "no problem", "gladly"];

/// Role markers (`SYSTEM:`), which only injected or chat-formatted text carries.
pub const ROLES: &[&str] = &["system", "assistant", "user", "developer", "human", "ai", "bot", "admin", "instruction"];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guardrails::text::{fold, tokenize};

    fn found(lexicon: &Lexicon, s: &str) -> Vec<&'static str> {
        lexicon.find(&tokenize(&fold(s))).into_iter().map(|f| f.phrase.text).collect()
    }

    #[test]
    fn entries_match_inflections_prefixes_and_phrases() {
        assert_eq!(found(&CLAIMS, "It cured my back pain"), ["cure", "pain"]);
        assert_eq!(found(&CLAIMS, "Detoxifies and relieves"), ["detox*", "reliev*"]);
        assert_eq!(found(&CLAIMS, "with a money-back promise"), ["money back", "promis*"]);
        assert_eq!(found(&CLAIMS, "Rated five stars by happy customers"), ["rate", "star", "customer*"]);
        assert_eq!(found(&PRICING, "Now 40% off!"), ["% off"]);
        assert_eq!(found(&FIRST_PERSON, "It changed my life"), ["=my"]);
        assert!(found(&CLAIMS, "custom-made of natural beech, works best with water").is_empty());
        assert!(found(&FIRST_PERSON, "Myths and memes").is_empty(), "exact words only");
        assert_eq!(found(&PRICING, "It saves space in a small flat"), Vec::<&str>::new());
    }

    #[test]
    fn no_entry_is_written_twice() {
        let mut same = Vec::new();
        for lexicon in [&*CLAIMS, &*PRICING, &*CONTACT, &*INSTRUCTIONS, &*SENSITIVE, &*NOT_COPY, &*FIRST_PERSON] {
            for (i, a) in lexicon.phrases.iter().enumerate() {
                for b in &lexicon.phrases[i + 1..] {
                    if a.parts == b.parts {
                        same.push(format!("{:?} = {:?}", a.text, b.text));
                    }
                }
            }
        }
        assert!(same.is_empty(), "entries written twice: {same:?}");
    }

    #[test]
    fn contains_reports_a_phrase_in_other_tokens() {
        assert!(CLAIMS.contains("organic*", &tokenize(&fold("material organic cotton"))));
        assert!(!CLAIMS.contains("organic*", &tokenize(&fold("material cotton"))));
    }
}
