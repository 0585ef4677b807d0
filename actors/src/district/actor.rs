//! The district as an actor: its rules behind the shell's [`Kind`] trait.

use mall_events::RecordedEvent;
use mall_events::domain::DomainEvent;
use mall_events::ids::{DistrictSlug, tag};

use mall_events::domain::EvolutionInput;

use super::{DistrictState, evolution};
use crate::runtime::Runtime;
use crate::runtime::entity::{Kind, Source};

/// District actors.
pub struct District;
impl Kind for District {
    type Id = DistrictSlug;
    type State = DistrictState;
    /// The time, the other districts' figures and why it looks.
    type Input = EvolutionInput;
    type Decision = evolution::Decision;
    const NAME: &'static str = "district";
    /// District evolution: propose a change of voice, conclude its test, or hold.
    fn decide(s: &DistrictState, input: &EvolutionInput) -> Vec<evolution::Decision> {
        match (&s.slug, &s.personality) {
            (Some(slug), Some(p)) => {
                vec![evolution::decide(slug, p, &s.evolution, s.position, input, &evolution::Policy::default())]
            }
            _ => Vec::new(),
        }
    }
    fn source(id: &DistrictSlug) -> Source {
        Source::Tag(tag::district(id))
    }
    fn route(e: &RecordedEvent, to: &mut dyn FnMut(DistrictSlug)) {
        let mut tagged = false;
        for t in &e.tags {
            if let Some(d) = tag::district_of(t) {
                tagged = true;
                if let Ok(d) = DistrictSlug::parse(d) {
                    to(d);
                }
            }
        }
        if !tagged
            && let Some(d) = e.stream_id.as_str().strip_prefix("district-")
            && let Ok(d) = DistrictSlug::parse(d)
        {
            to(d);
        }
    }
    fn cursor(s: &DistrictState) -> u64 {
        s.position
    }
    fn last_position(s: &DistrictState) -> u64 {
        s.position
    }
    fn pass(s: &mut DistrictState, e: &RecordedEvent) {
        s.position = e.position;
    }
    fn evolve(s: &mut DistrictState, e: &RecordedEvent, d: &DomainEvent, _: &Runtime) {
        s.evolve(d, e.position);
    }
    fn show(s: &DistrictState, rt: &Runtime) {
        if let Some(slug) = &s.slug {
            let prior = s.prior(rt.config.policy.prior_strength);
            rt.priors.write().expect("priors").insert(slug.as_str().to_string(), prior);
        }
    }
}
