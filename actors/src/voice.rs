//! Voice commerce: a transcript ("find me a blue teapot under 30 euros", "add two of those to
//! my cart") read as an intent with its words, quantity and price bounds, products matched to it,
//! and a reply to speak. Speech to text is the client's. Pure: the shell gives the catalog rows
//! and the shopper's last results.

use crate::guardrails::normalize;

/// What a transcript asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Intent {
    /// Products matching `words`, within the price bounds.
    Search { words: Vec<String>, max_price: Option<f64>, min_price: Option<f64> },
    /// `quantity` of the product(s) just found.
    AddToCart { quantity: u32 },
    /// Something else: the reply says what can be asked.
    Unknown,
}

impl Intent {
    pub fn name(&self) -> &'static str {
        match self {
            Intent::Search { .. } => "search",
            Intent::AddToCart { .. } => "add_to_cart",
            Intent::Unknown => "unknown",
        }
    }
}

const FILLER: &[&str] = &[
    "find",
    "me",
    "a",
    "an",
    "the",
    "some",
    "please",
    "show",
    "i",
    "want",
    "need",
    "looking",
    "look",
    "for",
    "search",
    "do",
    "you",
    "have",
    "any",
    "can",
    "get",
    "would",
    "like",
    "to",
    "buy",
    "something",
    "with",
    "of",
    "in",
    "is",
    "are",
    "there",
    "that",
    "which",
    "my",
    "what",
    "and",
];
const CURRENCY_WORDS: &[&str] =
    &["euro", "euros", "eur", "€", "dollar", "dollars", "usd", "$", "pound", "pounds", "gbp", "£", "bucks"];

/// A number written in digits or as a word up to twenty.
fn number(w: &str) -> Option<f64> {
    const WORDS: &[&str] = &[
        "zero",
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "eleven",
        "twelve",
        "thirteen",
        "fourteen",
        "fifteen",
        "sixteen",
        "seventeen",
        "eighteen",
        "nineteen",
        "twenty",
    ];
    let w = w.trim_start_matches(['€', '$', '£']).trim_end_matches(['€', '$', '£']);
    w.replace(',', ".").parse::<f64>().ok().filter(|x| x.is_finite() && *x >= 0.0).or_else(|| match w {
        "a" | "an" => Some(1.0),
        "couple" => Some(2.0),
        _ => WORDS.iter().position(|x| *x == w).map(|i| i as f64),
    })
}

/// Reads a transcript.
pub fn intent(transcript: &str) -> Intent {
    let text = normalize(transcript).to_lowercase();
    let words: Vec<String> = text
        .split(|c: char| c.is_whitespace() || matches!(c, ',' | '!' | '?' | ';' | ':' | '"'))
        .map(|w| w.trim_end_matches('.').to_string())
        .filter(|w| !w.is_empty())
        .collect();
    let has = |w: &str| words.iter().any(|x| x == w);
    if (has("add") || has("put")) && (has("cart") || has("basket") || has("those") || has("that") || has("it")) {
        let quantity = words
            .iter()
            .filter(|w| !matches!(w.as_str(), "a" | "an"))
            .find_map(|w| number(w))
            .filter(|q| *q >= 1.0 && *q <= 1_000.0)
            .map(|q| q as u32)
            .unwrap_or(1);
        return Intent::AddToCart { quantity };
    }
    let (mut max_price, mut min_price) = (None, None);
    let mut keep = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let w = words[i].as_str();
        let bound = match (w, words.get(i + 1).map(String::as_str)) {
            ("under" | "below" | "max" | "maximum" | "within", _) => Some((true, 1)),
            ("less" | "cheaper" | "lower", Some("than")) => Some((true, 2)),
            ("up", Some("to")) => Some((true, 2)),
            ("over" | "above" | "min" | "minimum", _) => Some((false, 1)),
            ("more", Some("than")) => Some((false, 2)),
            _ => None,
        };
        if let Some((upper, skip)) = bound
            && let Some(n) = words.get(i + skip).and_then(|x| number(x))
        {
            if upper {
                max_price = Some(n)
            } else {
                min_price = Some(n)
            }
            i += skip + 1;
            if words.get(i).is_some_and(|c| CURRENCY_WORDS.contains(&c.as_str())) {
                i += 1;
            }
            continue;
        }
        if !FILLER.contains(&w) && !CURRENCY_WORDS.contains(&w) && w.chars().any(char::is_alphanumeric) {
            keep.push(w.trim_matches(|c: char| !c.is_alphanumeric()).to_string());
        }
        i += 1;
    }
    if keep.is_empty() && max_price.is_none() && min_price.is_none() {
        return Intent::Unknown;
    }
    Intent::Search { words: keep, max_price, min_price }
}

/// A product as voice search sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub product_id: String,
    pub title: String,
    /// Title, tags and short attribute values, lowercase.
    pub text: String,
    pub price: f64,
    pub currency: String,
    pub in_stock: bool,
}

/// The products matching a search, best first: in stock, within the bounds, with the most of
/// its words (singulars match plurals), then the cheaper, then by title.
pub fn search<'a>(
    items: &'a [Item],
    words: &[String],
    max: Option<f64>,
    min: Option<f64>,
    limit: usize,
) -> Vec<&'a Item> {
    let stem = |w: &str| w.trim_end_matches("es").trim_end_matches('s').to_string();
    let wanted: Vec<String> = words.iter().map(|w| stem(w)).filter(|w| !w.is_empty()).collect();
    let mut scored: Vec<(usize, &Item)> = items
        .iter()
        .filter(|i| i.in_stock && max.is_none_or(|m| i.price <= m) && min.is_none_or(|m| i.price >= m))
        .map(|i| {
            let have: Vec<String> = i.text.split(|c: char| !c.is_alphanumeric()).map(stem).collect();
            (wanted.iter().filter(|w| have.contains(w)).count(), i)
        })
        .filter(|(n, _)| *n > 0 || wanted.is_empty())
        .collect();
    scored.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.price.total_cmp(&b.1.price)).then(a.1.title.cmp(&b.1.title)));
    scored.into_iter().take(limit).map(|(_, i)| i).collect()
}

fn quantity_words(n: u32) -> String {
    const W: &[&str] = &["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"];
    W.get(n as usize).map(|w| w.to_string()).unwrap_or_else(|| n.to_string())
}

/// What to say back.
pub fn reply(intent: &Intent, found: &[&Item]) -> String {
    match intent {
        Intent::Search { words, max_price, .. } => {
            let what = if words.is_empty() { "products".to_string() } else { words.join(" ") };
            let bound = max_price.map(|m| format!(" under {m}")).unwrap_or_default();
            match found {
                [] => format!("I found nothing for {what}{bound}. Try other words, or a higher price."),
                [one] => format!("I found one: {} at {:.2} {}.", one.title, one.price, one.currency),
                many => {
                    let listed: Vec<String> =
                        many.iter().take(3).map(|i| format!("{} at {:.2} {}", i.title, i.price, i.currency)).collect();
                    format!(
                        "I found {} for {what}{bound}. The first: {}.",
                        quantity_words(many.len() as u32),
                        listed.join("; ")
                    )
                }
            }
        }
        Intent::AddToCart { quantity } => match found.first() {
            None => "Which product? Search for one first, then ask me to add it.".into(),
            Some(i) => format!("Adding {} of {} to your cart.", quantity_words(*quantity), i.title),
        },
        Intent::Unknown => "You can ask me to find a product, for example a blue teapot under 30 euros.".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str, title: &str, text: &str, price: f64) -> Item {
        Item {
            product_id: id.into(),
            title: title.into(),
            text: text.into(),
            price,
            currency: "EUR".into(),
            in_stock: true,
        }
    }

    #[test]
    fn transcripts_become_intents_with_words_quantities_and_prices() {
        assert_eq!(
            intent("Find me a blue teapot under 30 euros"),
            Intent::Search { words: vec!["blue".into(), "teapot".into()], max_price: Some(30.0), min_price: None }
        );
        assert_eq!(
            intent("show me wooden toys more than 10 and less than 25.50"),
            Intent::Search {
                words: vec!["wooden".into(), "toys".into()],
                max_price: Some(25.5),
                min_price: Some(10.0)
            }
        );
        assert_eq!(intent("add two of those to my cart"), Intent::AddToCart { quantity: 2 });
        assert_eq!(intent("Add it to the basket"), Intent::AddToCart { quantity: 1 });
        assert_eq!(intent("put 3 in my cart"), Intent::AddToCart { quantity: 3 });
        assert_eq!(intent("um"), Intent::Search { words: vec!["um".into()], max_price: None, min_price: None });
        assert_eq!(intent("please"), Intent::Unknown);
    }

    #[test]
    fn search_matches_words_within_the_price_and_in_stock() {
        let mut sold_out = item("x", "Blue teapot deluxe", "blue teapot deluxe", 20.0);
        sold_out.in_stock = false;
        let items = vec![
            item("a", "Blue teapot", "blue teapot porcelain", 24.0),
            item("b", "Blue teapots set", "blue teapots set", 45.0),
            item("c", "Red teapot", "red teapot", 19.0),
            sold_out,
        ];
        let Intent::Search { words, max_price, min_price } = intent("find me a blue teapot under 30 euros") else {
            panic!()
        };
        let found = search(&items, &words, max_price, min_price, 5);
        let ids: Vec<&str> = found.iter().map(|i| i.product_id.as_str()).collect();
        assert_eq!(ids, ["a", "c"], "both words first, then one; over 30 and sold out left out");
        assert_eq!(
            reply(&Intent::Search { words, max_price, min_price }, &found),
            "I found two for blue teapot under 30. The first: Blue teapot at 24.00 EUR; Red teapot at 19.00 EUR."
        );
        assert_eq!(reply(&Intent::AddToCart { quantity: 2 }, &found[..1]), "Adding two of Blue teapot to your cart.");
        assert!(reply(&Intent::AddToCart { quantity: 2 }, &[]).starts_with("Which product?"));
    }
}
