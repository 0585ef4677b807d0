//! Customer segmentation (issue 15, for the segmentation plugin): each shopper's purchase
//! history as customer-lifetime models read it, RFM scores over a population, and a lifecycle
//! segment — all as of a business date, so the figures can be checked against a reference
//! implementation on real transactions.
//!
//! As of `as_of`, counting purchases up to it (later ones are ignored):
//! - `frequency`: distinct purchase days − 1 (repeat purchases, as BG/NBD-style models define it);
//! - `recency`: days from the first purchase day to the last (the age at the last repeat);
//! - `age` (`T`): days from the first purchase day to `as_of`;
//! - `monetary`: average spend per purchase day after the first (0 without a repeat), or the
//!   first day's spend for the RFM score when there is no repeat.
//!
//! Lifecycle: `prospect` (no purchase yet), `new` (one purchase day, within [`NEW_DAYS`]),
//! `active` (last purchase within [`ACTIVE_DAYS`]), `at_risk` (within [`LOST_DAYS`]), `lost`.

use std::collections::BTreeMap;

use chrono::NaiveDate;

pub const NEW_DAYS: i64 = 30;
pub const ACTIVE_DAYS: i64 = 90;
pub const LOST_DAYS: i64 = 180;

/// A shopper's purchases by day (spend in ten-thousandths).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Purchases(pub BTreeMap<NaiveDate, u64>);

impl Purchases {
    pub fn observe(&mut self, day: NaiveDate, spend_e4: u64) {
        *self.0.entry(day).or_default() += spend_e4;
    }
}

/// The figures as of a date.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Figures {
    pub frequency: u64,
    pub recency: i64,
    pub age: i64,
    /// Average spend per repeat purchase day (ten-thousandths; 0 without a repeat).
    pub monetary_e4: f64,
    /// Spend per purchase day, every day counted (for RFM's M).
    pub spend_per_day_e4: f64,
    pub days_since_last: i64,
}

/// The figures of `p` as of `as_of` (`None`: no purchase by then).
pub fn figures(p: &Purchases, as_of: NaiveDate) -> Option<Figures> {
    let days: Vec<(&NaiveDate, &u64)> = p.0.range(..=as_of).collect();
    let (first, _) = days.first()?;
    let (last, _) = days.last()?;
    let repeats: Vec<u64> = days.iter().skip(1).map(|(_, s)| **s).collect();
    let total: u64 = days.iter().map(|(_, s)| **s).sum();
    Some(Figures {
        frequency: repeats.len() as u64,
        recency: (**last - **first).num_days(),
        age: (as_of - **first).num_days(),
        monetary_e4: if repeats.is_empty() { 0.0 } else { repeats.iter().sum::<u64>() as f64 / repeats.len() as f64 },
        spend_per_day_e4: total as f64 / days.len() as f64,
        days_since_last: (as_of - **last).num_days(),
    })
}

/// A lifecycle segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Lifecycle {
    Prospect,
    New,
    Active,
    AtRisk,
    Lost,
}

pub fn lifecycle(f: Option<&Figures>) -> Lifecycle {
    match f {
        None => Lifecycle::Prospect,
        Some(f) if f.frequency == 0 && f.age <= NEW_DAYS => Lifecycle::New,
        Some(f) if f.days_since_last <= ACTIVE_DAYS => Lifecycle::Active,
        Some(f) if f.days_since_last <= LOST_DAYS => Lifecycle::AtRisk,
        Some(_) => Lifecycle::Lost,
    }
}

/// RFM scores 1–5 (5 best: recent, frequent, big spenders) by quintile within the population:
/// each of `figures` gets (R, F, M). Ties share a score (the quintile of their first rank).
pub fn rfm(figures: &[Figures]) -> Vec<(u8, u8, u8)> {
    fn quintiles(values: &[f64]) -> Vec<u8> {
        let n = values.len();
        let mut sorted: Vec<f64> = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        values
            .iter()
            .map(|v| {
                let below = sorted.partition_point(|x| x < v);
                (1 + (5 * below) / n.max(1)).min(5) as u8
            })
            .collect()
    }
    let r = quintiles(&figures.iter().map(|f| -(f.days_since_last as f64)).collect::<Vec<_>>());
    let f = quintiles(&figures.iter().map(|f| f.frequency as f64).collect::<Vec<_>>());
    let m = quintiles(&figures.iter().map(|f| f.spend_per_day_e4).collect::<Vec<_>>());
    r.into_iter().zip(f).zip(m).map(|((r, f), m)| (r, f, m)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, m, day).unwrap()
    }

    #[test]
    fn figures_are_the_lifetime_models_own_by_hand() {
        let mut p = Purchases::default();
        p.observe(d(1, 10), 100_000); // 10.00
        p.observe(d(1, 10), 50_000); // the same day: one purchase day, 15.00
        p.observe(d(2, 9), 200_000);
        p.observe(d(3, 11), 400_000);
        p.observe(d(6, 1), 999_999); // after the business date: ignored
        let f = figures(&p, d(3, 31)).unwrap();
        assert_eq!((f.frequency, f.recency, f.age, f.days_since_last), (2, 60, 80, 20));
        assert_eq!(f.monetary_e4, 300_000.0, "the repeats' average");
        assert_eq!(f.spend_per_day_e4, 250_000.0);
        assert_eq!(figures(&p, d(1, 9)), None, "nothing bought by then");
    }

    #[test]
    fn the_lifecycle_moves_with_time() {
        let mut p = Purchases::default();
        p.observe(d(1, 1), 10_000);
        let at = |p: &Purchases, day: NaiveDate| lifecycle(figures(p, day).as_ref());
        assert_eq!(lifecycle(None), Lifecycle::Prospect);
        assert_eq!(at(&p, d(1, 20)), Lifecycle::New);
        assert_eq!(at(&p, d(3, 1)), Lifecycle::Active, "one purchase, 59 days ago");
        assert_eq!(at(&p, d(5, 1)), Lifecycle::AtRisk);
        assert_eq!(at(&p, d(8, 1)), Lifecycle::Lost);
        p.observe(d(7, 20), 10_000);
        assert_eq!(at(&p, d(8, 1)), Lifecycle::Active, "a repeat brings them back");
    }

    #[test]
    fn rfm_scores_are_quintiles_of_the_population() {
        let people: Vec<Figures> = (0..10)
            .map(|i| Figures {
                frequency: i,
                recency: 0,
                age: 100,
                monetary_e4: 0.0,
                spend_per_day_e4: (10 - i) as f64,
                days_since_last: 100 - 10 * i as i64,
            })
            .collect();
        let s = rfm(&people);
        // The 10th shopper: the most recent and most frequent, the smallest spender.
        assert_eq!(s[9], (5, 5, 1));
        assert_eq!(s[0], (1, 1, 5));
        assert_eq!(s[4], (3, 3, 3));
    }
}
