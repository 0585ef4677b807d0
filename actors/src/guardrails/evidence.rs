//! What counts as evidence for a generated text: the product's structured facts only — title,
//! attributes, price and currency, stock, district — never the vendor's free text (its
//! description, its tags) and never copy that mall generated earlier.
//!
//! An attribute's text value is a structured fact only while it is short (a value, not prose):
//! a vendor who writes a paragraph into an attribute has written free text.

use std::collections::{BTreeMap, HashSet};

use mall_events::domain::AttributeValue;

use super::numbers::{canonical, currencies, read_number_words};
use super::text::{Kind, Token, fold, join_letter_runs, normalize, tokenize};

/// The longest attribute text value (in words, in characters) that still counts as a fact.
pub const MAX_FACT_WORDS: usize = 8;
pub const MAX_FACT_CHARS: usize = 80;

/// A number the facts hold, and the words it stands beside there.
#[derive(Debug, Clone)]
pub struct NumberFact {
    pub value: f64,
    /// Canonical names of the words that may stand next to it in copy.
    pub context: HashSet<String>,
    /// Whether the fact is a percentage (`cotton_percent`, "100%").
    pub percent: bool,
    /// Where it comes from (`attributes.weight_g`, `title`, `price`, `stock`).
    pub source: String,
}

/// The evidence a text is checked against.
#[derive(Debug, Clone)]
pub struct Evidence {
    /// The tokens of every fact, for phrases a fact must carry.
    pub(crate) tokens: Vec<Token>,
    pub(crate) joined: Vec<Token>,
    /// Folded words of every fact, for words in other scripts a fact may carry (names).
    pub(crate) words: HashSet<String>,
    /// Digit strings of every number in the facts (a model number is not a phone number).
    pub(crate) digit_strings: HashSet<String>,
    pub(crate) numbers: Vec<NumberFact>,
    pub(crate) price: Option<f64>,
    pub(crate) currency: String,
    /// Whether a fact makes the price a sale (`discount_percent`, `sale`, `was_price`, ...).
    pub(crate) pricing: bool,
    /// The language copy must be written in.
    pub language: whatlang::Lang,
}

/// Builds [`Evidence`] from the structured facts.
#[derive(Debug, Default)]
pub struct EvidenceBuilder {
    texts: Vec<String>,
    numbers: Vec<NumberFact>,
    price: Option<f64>,
    currency: String,
    pricing: bool,
    language: Option<whatlang::Lang>,
}

fn context_of(words: &str) -> HashSet<String> {
    tokenize(&fold(&normalize(words)))
        .into_iter()
        .filter(Token::is_word)
        .flat_map(|t| [canonical(&t.text), t.text])
        .collect()
}

/// The words of an attribute key: `weight_g` → weight, g; `capacityMl` → capacity, ml.
fn key_words(key: &str) -> String {
    let mut out = String::new();
    let mut prev_lower = false;
    for c in key.chars() {
        if c.is_uppercase() && prev_lower {
            out.push(' ');
        }
        prev_lower = c.is_lowercase();
        out.push(if c.is_alphanumeric() { c } else { ' ' });
    }
    out
}

const PRICING_KEYS: &[&str] =
    &["discount", "sale", "rrp", "msrp", "compar", "was", "original", "offer", "promo", "clearanc"];
const PERCENT_KEYS: &[&str] = &["percent", "pct", "percentag", "share", "abv"];
const PRICING_WORDS: &[&str] = &["off", "discount", "sale", "save", "reduc"];
const STOCK_WORDS: &str = "stock left available units unit remaining pieces";

impl EvidenceBuilder {
    /// The product's title: its words are facts, and so are its numbers beside them.
    pub fn title(mut self, title: &str) -> Self {
        self.add_numbers(title, &context_of(title), "title", false);
        self.texts.push(title.to_string());
        self
    }

    /// One attribute. A text value longer than a value (see [`MAX_FACT_WORDS`]) is free text
    /// and not evidence; `false` flags carry nothing.
    pub fn attribute(mut self, key: &str, value: &AttributeValue) -> Self {
        let key_text = key_words(key);
        let key_context = context_of(&key_text);
        let key_folded = fold(&key_text);
        let is_pricing = PRICING_KEYS.iter().any(|k| key_folded.split_whitespace().any(|w| w.starts_with(k)));
        let is_percent =
            PERCENT_KEYS.iter().any(|k| key_folded.split_whitespace().any(|w| w.starts_with(k))) || key.contains('%');
        let mut context = key_context;
        if is_pricing {
            self.pricing = true;
            context.extend(PRICING_WORDS.iter().map(|w| w.to_string()));
        }
        match value {
            AttributeValue::Bool(false) => {}
            AttributeValue::Bool(true) => self.texts.push(key_text),
            AttributeValue::Number(n) => {
                self.numbers.push(NumberFact {
                    value: *n,
                    context,
                    percent: is_percent,
                    source: format!("attributes.{key}"),
                });
                self.texts.push(key_text);
            }
            AttributeValue::Text(t) => {
                let t = normalize(t);
                if t.split_whitespace().count() > MAX_FACT_WORDS || t.chars().count() > MAX_FACT_CHARS {
                    self.texts.push(key_text);
                    return self;
                }
                context.extend(context_of(&t));
                let percent = is_percent || t.contains('%');
                self.add_numbers(&t, &context, &format!("attributes.{key}"), percent);
                self.texts.push(format!("{key_text} {t}"));
            }
        }
        self
    }

    /// The price, as the decimal string it is stored as, and its currency code.
    pub fn price(mut self, price: &str, currency: &str) -> Self {
        self.price = price.parse::<f64>().ok();
        self.currency = currency.to_uppercase();
        if let Some(p) = self.price {
            let mut context = context_of("price priced cost costs");
            context.insert(currency.to_lowercase());
            self.numbers.push(NumberFact { value: p, context, percent: false, source: "price".into() });
        }
        self.texts.push(currency.to_string());
        self
    }

    /// Units in stock.
    pub fn stock(mut self, stock: u32) -> Self {
        self.numbers.push(NumberFact {
            value: stock as f64,
            context: context_of(STOCK_WORDS),
            percent: false,
            source: "stock".into(),
        });
        self
    }

    /// The district's name.
    pub fn district(mut self, name: &str) -> Self {
        self.add_numbers(name, &context_of(name), "district", false);
        self.texts.push(name.to_string());
        self
    }

    /// Words that the facts of a kind of text support by what that text is: a report on what
    /// shoppers did may say "shoppers" and "best seller" (the figures are the evidence), where
    /// product copy may not. No numbers come with them.
    pub fn vocabulary(mut self, words: &str) -> Self {
        self.texts.push(words.to_string());
        self
    }

    /// The language copy must be in (English unless set).
    pub fn language(mut self, lang: whatlang::Lang) -> Self {
        self.language = Some(lang);
        self
    }

    fn add_numbers(&mut self, text: &str, context: &HashSet<String>, source: &str, percent: bool) {
        for t in read_number_words(tokenize(&fold(&normalize(text)))) {
            if let Some(value) = t.number() {
                self.numbers.push(NumberFact { value, context: context.clone(), percent, source: source.to_string() });
            }
        }
    }

    pub fn build(self) -> Evidence {
        let all = self.texts.join(" \n ");
        let tokens = read_number_words(tokenize(&fold(&normalize(&all))));
        let joined = join_letter_runs(&tokens);
        let words = tokens.iter().filter(|t| t.is_word()).map(|t| t.text.clone()).collect();
        let digit_strings = tokenize(&fold(&all))
            .into_iter()
            .filter(|t| matches!(t.kind, Kind::Number { words: false, .. }))
            .map(|t| t.text.chars().filter(char::is_ascii_digit).collect())
            .collect();
        Evidence {
            tokens,
            joined,
            words,
            digit_strings,
            numbers: self.numbers,
            price: self.price,
            currency: self.currency,
            pricing: self.pricing,
            language: self.language.unwrap_or(whatlang::Lang::Eng),
        }
    }
}

impl Evidence {
    pub fn builder() -> EvidenceBuilder {
        EvidenceBuilder::default()
    }

    /// Evidence from the usual product facts.
    pub fn of_product(
        title: &str,
        attributes: &BTreeMap<String, AttributeValue>,
        price: &str,
        currency: &str,
        stock: Option<u32>,
        district: &str,
    ) -> Evidence {
        let mut b = Evidence::builder().title(title).price(price, currency).district(district);
        for (k, v) in attributes {
            b = b.attribute(k, v);
        }
        if let Some(s) = stock {
            b = b.stock(s);
        }
        b.build()
    }

    /// Whether a currency token names the product's currency.
    pub(crate) fn is_own_currency(&self, t: &Token) -> bool {
        currencies(t).is_some_and(|c| c.contains(&self.currency.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_give_numbers_with_the_words_they_stand_beside() {
        let e = Evidence::builder()
            .title("Wooden train")
            .attribute("weight_g", &AttributeValue::Number(250.0))
            .attribute("capacity", &AttributeValue::Text("350 ml".into()))
            .attribute("cotton_percent", &AttributeValue::Number(100.0))
            .price("24.90", "EUR")
            .build();
        let weight = e.numbers.iter().find(|n| n.value == 250.0).unwrap();
        assert!(weight.context.contains("g") && weight.context.contains("weight"), "{weight:?}");
        let cap = e.numbers.iter().find(|n| n.value == 350.0).unwrap();
        assert!(cap.context.contains("ml") && cap.context.contains("capac"), "{cap:?}");
        assert!(e.numbers.iter().any(|n| n.value == 100.0 && n.percent));
        assert_eq!((e.price, e.currency.as_str(), e.pricing), (Some(24.9), "EUR", false));
    }

    #[test]
    fn long_attribute_text_is_free_text_not_evidence() {
        let prose = "A cure for cancer that is 90% off, loved by thousands of customers everywhere";
        let e = Evidence::builder().title("Lamp").attribute("note", &AttributeValue::Text(prose.into())).build();
        assert!(!e.numbers.iter().any(|n| n.value == 90.0));
        assert!(!e.words.contains("cure"));
        let e = Evidence::builder().attribute("sale", &AttributeValue::Bool(true)).build();
        assert!(e.pricing);
    }
}
