//! District: its personality (the voice its copy is written in), its products' aggregate
//! performance, the conversion prior it lends its products, and its evolution — the last 30
//! days by day, the voice proposed or under test, the history of its voices and the categories
//! suggested to its merchant ([`evolution`]; its copy is written by [`copy`]).

pub mod actor;
pub mod copy;
pub mod evolution;

use std::collections::BTreeSet;

use mall_events::domain::{DomainEvent, Personality};
use mall_events::ids::{DistrictSlug, Position, ProductId};
use serde::{Deserialize, Serialize};

use crate::product::Counts;
use crate::stats::Prior;

/// A district's folded state: its own stream plus every event tagged with it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DistrictState {
    pub slug: Option<DistrictSlug>,
    pub name: String,
    pub personality: Option<Personality>,
    pub products: BTreeSet<ProductId>,
    /// Its products' signals.
    pub counts: Counts,
    /// The global position of the last event folded.
    pub position: Position,
    /// Its evolution: signals by day, the voice under test, the history of its voices.
    #[serde(default)]
    pub evolution: evolution::Evolution,
    /// The categories last suggested to its merchant.
    #[serde(default)]
    pub suggestions: Vec<mall_events::domain::CategorySuggestion>,
}

impl DistrictState {
    /// Folds one event (of the district's stream or tagged with the district). Total.
    pub fn evolve(&mut self, event: &DomainEvent, position: Position) {
        self.position = position;
        match event {
            DomainEvent::DistrictOpened(e) => {
                self.slug = Some(e.slug.clone());
                self.name = e.name.clone();
                self.personality = Some(e.personality.clone());
            }
            DomainEvent::ProductListed(e) => {
                self.products.insert(e.product_id.clone());
            }
            // A product moved here; one that moved away stays counted until a rebuild — its past
            // traffic still says something about this district's shoppers.
            DomainEvent::ProductEdited(e) if e.district.as_ref() == self.slug.as_ref() => {
                self.products.insert(e.product_id.clone());
            }
            e if e.is_signal() => {
                self.counts.add(e);
                self.day_add(e);
            }
            DomainEvent::VoiceEvolutionProposed(p) => {
                if let Some(current) = &self.personality {
                    self.evolution.proposed(p, current);
                }
            }
            DomainEvent::VoiceTestStarted(t) => {
                self.evolution.test = Some(evolution::VoiceTest {
                    evolution_id: t.evolution_id,
                    test_id: t.test_id,
                    started_at: t.at,
                    control: t.control.clone(),
                    challenger: t.challenger.clone(),
                    personality: t.personality.clone(),
                    arms: Default::default(),
                });
            }
            DomainEvent::VoiceEvolutionAbandoned(a) => self.evolution.abandoned(a.evolution_id, a.at),
            DomainEvent::VoiceTestConcluded(c) => {
                if self.evolution.test.as_ref().is_some_and(|t| t.test_id == c.test_id) {
                    self.personality = Some(c.personality.clone());
                }
                self.evolution.concluded(c);
            }
            DomainEvent::CategoriesSuggested(c) => self.suggestions = c.suggestions.clone(),
            _ => {}
        }
    }

    /// Counts a signal in its day and, while a voice is under test, in its shopper's arm.
    fn day_add(&mut self, e: &DomainEvent) {
        let (Some(at), Some(shopper)) = (e.signal_at(), e.shopper_id()) else { return };
        let day_number = evolution::day_of(at);
        let position = self.position;
        let new_day = !self.evolution.days.contains_key(&day_number);
        self.evolution.day_starts.entry(day_number).and_modify(|p| *p = (*p).min(position)).or_insert(position);
        let day = self.evolution.days.entry(day_number).or_default();
        day.counts.add(e);
        if let DomainEvent::ProductViewed(v) = e {
            day.dwell_ms = day.dwell_ms.saturating_add(v.dwell_ms);
        }
        let view = matches!(e, DomainEvent::ProductViewed(_));
        let conversion = matches!(e, DomainEvent::AddedToCart(_));
        if new_day {
            self.evolution.prune();
        }
        self.evolution.arm_count(shopper, view, conversion);
    }

    /// The prior its products' conversion is judged against: the district's own conversion,
    /// worth `strength` views.
    pub fn prior(&self, strength: f64) -> Prior {
        Prior::from_rate(self.counts.conversions(), self.counts.views, strength)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;

    #[test]
    fn given_an_opened_district_when_its_products_convert_then_its_prior_follows_them() {
        let mut d = DistrictState::default();
        for (i, e) in [opened("toys"), listed("p1", "toys", "A train")].iter().enumerate() {
            d.evolve(e, i as u64 + 1);
        }
        for i in 0..100 {
            d.evolve(&viewed("p1", &format!("s{i}")), 10 + i);
        }
        for i in 0..20 {
            d.evolve(&carted("p1", &format!("s{i}")), 200 + i);
        }
        assert_eq!(d.personality.as_ref().unwrap().tone, "playful");
        assert_eq!(d.products.len(), 1);
        let prior = d.prior(20.0);
        assert!((prior.mean() - 0.2).abs() < 0.01, "{prior:?}");
    }

    #[test]
    fn given_no_traffic_then_the_prior_is_the_weak_default() {
        let mut d = DistrictState::default();
        d.evolve(&opened("toys"), 1);
        assert_eq!(d.prior(20.0), Prior::DEFAULT);
    }
}
