//! Numbers as the checks see them: numbers written in words read as numbers (`nine ninety-nine`,
//! `forty`), currencies by code, symbol and name, percentages, and units with their spellings.

use super::text::{Kind, Token, stem};

const UNITS: &[(&str, f64)] = &[
    ("zero", 0.0),
    ("one", 1.0),
    ("two", 2.0),
    ("three", 3.0),
    ("four", 4.0),
    ("five", 5.0),
    ("six", 6.0),
    ("seven", 7.0),
    ("eight", 8.0),
    ("nine", 9.0),
    ("ten", 10.0),
    ("eleven", 11.0),
    ("twelve", 12.0),
    ("thirteen", 13.0),
    ("fourteen", 14.0),
    ("fifteen", 15.0),
    ("sixteen", 16.0),
    ("seventeen", 17.0),
    ("eighteen", 18.0),
    ("nineteen", 19.0),
    ("dozen", 12.0),
    ("dozens", 12.0),
];
const TENS: &[(&str, f64)] = &[
    ("twenty", 20.0),
    ("thirty", 30.0),
    ("forty", 40.0),
    ("fifty", 50.0),
    ("sixty", 60.0),
    ("seventy", 70.0),
    ("eighty", 80.0),
    ("ninety", 90.0),
];
const SCALES: &[(&str, f64)] = &[
    ("hundred", 100.0),
    ("hundreds", 100.0),
    ("thousand", 1_000.0),
    ("thousands", 1_000.0),
    ("million", 1e6),
    ("millions", 1e6),
    ("billion", 1e9),
    ("billions", 1e9),
];

fn lookup(table: &[(&str, f64)], w: &str) -> Option<f64> {
    table.iter().find(|(k, _)| *k == w).map(|(_, v)| *v)
}

/// The digit a single word spells (`oh` and `o` read as zero in phone numbers), if any.
pub fn digit_word(w: &str) -> Option<u8> {
    match w {
        "oh" | "o" => Some(0),
        _ => lookup(UNITS, w).filter(|v| *v < 10.0).map(|v| v as u8),
    }
}

/// `tokens` with numbers written in words turned into number tokens: `forty` → 40,
/// `twenty-one` → 21, `nine ninety-nine` → 9 and 99, `two hundred and fifty` → 250. A lone
/// `one` is left a word (it is more often "the one you need" than a count).
pub fn read_number_words(tokens: Vec<Token>) -> Vec<Token> {
    let mut out: Vec<Token> = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        let t = &tokens[i];
        let is_num = |t: &Token| {
            t.is_word()
                && (lookup(UNITS, &t.text).is_some()
                    || lookup(TENS, &t.text).is_some()
                    || lookup(SCALES, &t.text).is_some())
        };
        if !is_num(t) {
            out.push(t.clone());
            i += 1;
            continue;
        }
        let start = i;
        let (mut total, mut current) = (0.0f64, 0.0f64);
        // What the last word was: 1 unit or teen, 2 tens, 3 scale.
        let mut last = 0;
        while i < tokens.len() {
            let w = tokens[i].text.as_str();
            // "two hundred and fifty": `and` continues a number after a scale.
            if w == "and" && last == 3 && tokens.get(i + 1).is_some_and(is_num) {
                i += 1;
                continue;
            }
            if !is_num(&tokens[i]) {
                break;
            }
            if let Some(v) = lookup(UNITS, w) {
                if last == 1 || (last == 2 && v >= 10.0) {
                    break;
                }
                current += v;
                last = 1;
            } else if let Some(v) = lookup(TENS, w) {
                if last == 1 || last == 2 {
                    break;
                }
                current += v;
                last = 2;
            } else if let Some(v) = lookup(SCALES, w) {
                if v == 100.0 {
                    current = current.max(1.0) * v;
                } else {
                    total += current.max(1.0) * v;
                    current = 0.0;
                }
                last = 3;
            }
            i += 1;
        }
        let words: Vec<&str> = tokens[start..i].iter().map(|t| t.text.as_str()).collect();
        if words == ["one"] {
            out.push(tokens[start].clone());
            continue;
        }
        let text = words.join(" ");
        out.push(Token {
            stem: text.clone(),
            text,
            kind: Kind::Number { value: total + current, digits: 0, words: true },
            gap: tokens[start].gap.clone(),
        });
    }
    out
}

/// The currencies a token names: a symbol, an ISO code or a name. `¢` and `cent` name a
/// hundredth (see [`is_cents`]).
pub fn currencies(t: &Token) -> Option<&'static [&'static str]> {
    const DOLLARS: &[&str] = &["USD", "CAD", "AUD", "NZD", "SGD", "HKD", "MXN"];
    let by_sign = |c: char| -> Option<&'static [&'static str]> {
        Some(match c {
            '€' => &["EUR"],
            '$' => DOLLARS,
            '£' => &["GBP"],
            '¥' => &["JPY", "CNY"],
            '₹' => &["INR"],
            '₩' => &["KRW"],
            '₽' => &["RUB"],
            '₺' => &["TRY"],
            '₪' => &["ILS"],
            '₫' => &["VND"],
            '฿' => &["THB"],
            '₴' => &["UAH"],
            '₱' => &["PHP"],
            '₦' => &["NGN"],
            '¢' => &["USD", "EUR", "CAD", "AUD"],
            _ => return None,
        })
    };
    match &t.kind {
        Kind::Sign(c) => by_sign(*c),
        Kind::Word => Some(match t.text.as_str() {
            "eur" | "euro" | "euros" => &["EUR"],
            "usd" => &["USD"],
            "dollar" | "dollars" | "bucks" => DOLLARS,
            "gbp" | "quid" | "pound" | "pounds" => &["GBP"],
            "chf" | "franc" | "francs" => &["CHF"],
            "jpy" | "yen" => &["JPY"],
            "cny" | "yuan" | "rmb" => &["CNY"],
            "cad" => &["CAD"],
            "aud" => &["AUD"],
            "nzd" => &["NZD"],
            "sek" | "krona" | "kronor" => &["SEK"],
            "nok" | "dkk" | "krone" | "kroner" => &["NOK", "DKK"],
            "pln" | "zloty" | "zł" => &["PLN"],
            "czk" => &["CZK"],
            "huf" => &["HUF"],
            "inr" | "rupee" | "rupees" => &["INR"],
            "krw" | "won" => &["KRW"],
            "rub" | "ruble" | "rubles" => &["RUB"],
            "try" => &["TRY"],
            "brl" | "reais" => &["BRL"],
            "mxn" | "peso" | "pesos" => &["MXN"],
            "zar" | "rand" => &["ZAR"],
            "sgd" => &["SGD"],
            "hkd" => &["HKD"],
            "cent" | "cents" => &["USD", "EUR", "CAD", "AUD"],
            _ => return None,
        }),
        Kind::Number { .. } => None,
    }
}

/// Whether a currency token names hundredths (`¢`, `cents`).
pub fn is_cents(t: &Token) -> bool {
    matches!(t.kind, Kind::Sign('¢')) || matches!(t.text.as_str(), "cent" | "cents")
}

/// Whether the tokens after a number make it a percentage (`%`, `percent`, `per cent`, `pct`).
pub fn is_percent_after(next: Option<&Token>, after: Option<&Token>) -> bool {
    match next {
        Some(t) if matches!(t.kind, Kind::Sign('%') | Kind::Sign('‰')) => true,
        Some(t) if matches!(t.text.as_str(), "percent" | "percentage" | "pct") => true,
        Some(t) if t.text == "per" => after.is_some_and(|a| a.text == "cent"),
        _ => false,
    }
}

/// Units and their spellings, each mapped to one canonical name, so that a fact keyed
/// `weight_g` supports "250 grams" as well as "250 g".
const UNIT_NAMES: &[(&str, &[&str])] = &[
    ("g", &["g", "gram", "grams", "gramme", "grammes", "gr"]),
    ("kg", &["kg", "kilogram", "kilograms", "kilo", "kilos", "kgs"]),
    ("mg", &["mg", "milligram", "milligrams"]),
    ("l", &["l", "litre", "liter", "litres", "liters", "ltr"]),
    ("ml", &["ml", "millilitre", "milliliter", "millilitres", "milliliters"]),
    ("cl", &["cl", "centilitre", "centiliter", "centilitres", "centiliters"]),
    ("cm", &["cm", "centimetre", "centimeter", "centimetres", "centimeters", "cms"]),
    ("mm", &["mm", "millimetre", "millimeter", "millimetres", "millimeters"]),
    ("m", &["m", "metre", "meter", "metres", "meters"]),
    ("km", &["km", "kilometre", "kilometer", "kilometres", "kilometers"]),
    ("in", &["in", "inch", "inches"]),
    ("ft", &["ft", "foot", "feet"]),
    ("lb", &["lb", "lbs", "pound", "pounds"]),
    ("oz", &["oz", "ounce", "ounces"]),
    ("w", &["w", "watt", "watts"]),
    ("kw", &["kw", "kilowatt", "kilowatts"]),
    ("v", &["v", "volt", "volts"]),
    ("mah", &["mah"]),
    ("h", &["h", "hr", "hrs", "hour", "hours"]),
    ("min", &["min", "mins", "minute", "minutes"]),
    ("s", &["s", "sec", "secs", "second", "seconds"]),
    ("pc", &["pc", "pcs", "piece", "pieces"]),
    ("yr", &["yr", "yrs", "year", "years", "yo"]),
    ("month", &["month", "months", "mo", "mos"]),
    ("gb", &["gb", "gigabyte", "gigabytes"]),
    ("tb", &["tb", "terabyte", "terabytes"]),
    ("hz", &["hz", "hertz"]),
    ("degree", &["°", "degree", "degrees"]),
];

/// The name a word is compared by: a unit's canonical name, or the word's stem.
pub fn canonical(word: &str) -> String {
    for (name, spellings) in UNIT_NAMES {
        if spellings.contains(&word) {
            return (*name).to_string();
        }
    }
    stem(word)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guardrails::text::{fold, tokenize};

    fn values(s: &str) -> Vec<f64> {
        read_number_words(tokenize(&fold(s))).iter().filter_map(Token::number).collect()
    }

    #[test]
    fn numbers_in_words_read_as_numbers() {
        assert_eq!(values("nine ninety-nine"), [9.0, 99.0]);
        assert_eq!(values("forty percent"), [40.0]);
        assert_eq!(values("two hundred and fifty grams"), [250.0]);
        assert_eq!(values("three thousand five hundred"), [3500.0]);
        assert_eq!(values("thousands of happy buyers"), [1000.0]);
        assert_eq!(values("the one you need, one of a kind"), Vec::<f64>::new());
        assert_eq!(values("twenty-one"), [21.0]);
        assert_eq!(values("a dozen eggs and 12 more"), [12.0, 12.0]);
    }

    #[test]
    fn currencies_are_known_by_sign_code_and_name() {
        let t = tokenize(&fold("€ eur euros $ usd bucks cents £"));
        let names: Vec<Option<&[&str]>> = t.iter().map(currencies).collect();
        assert!(names.iter().all(Option::is_some), "{names:?}");
        assert_eq!(currencies(&t[0]), Some(&["EUR"][..]));
        assert!(is_cents(&t[6]));
        assert_eq!(currencies(&tokenize("wood")[0]), None);
    }

    #[test]
    fn units_have_one_canonical_name() {
        assert_eq!(canonical("grams"), "g");
        assert_eq!(canonical("g"), "g");
        assert_eq!(canonical("centimeters"), "cm");
        assert_eq!(canonical("wagons"), "wagon");
    }
}
