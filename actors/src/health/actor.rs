//! The health decider behind the shell's [`Kind`]: one instance (`mall`), folding every event
//! tagged [`TAG`] — its checks, issues and notifications in `health-mall` and its repairs in the
//! products' streams — in log order.

use mall_events::RecordedEvent;
use mall_events::domain::{DomainEvent, HealthChecked};
use mall_events::health::TAG;

use super::{Decision, HealthState};
use crate::runtime::Runtime;
use crate::runtime::entity::{Kind, Source, Until, catch_up};

/// The health decider.
pub struct Health;

/// Its one instance.
pub const ID: &str = "mall";

impl Kind for Health {
    type Id = String;
    type State = HealthState;
    /// The check: what it examined and found.
    type Input = HealthChecked;
    type Decision = Decision;
    const NAME: &'static str = "health";
    fn source(_: &String) -> Source {
        Source::Tag(TAG.to_string())
    }
    fn route(e: &RecordedEvent, to: &mut dyn FnMut(String)) {
        if e.tags.iter().any(|t| t == TAG) {
            to(ID.to_string());
        }
    }
    fn cursor(s: &HealthState) -> u64 {
        s.position
    }
    fn last_position(s: &HealthState) -> u64 {
        s.position
    }
    fn decide(s: &HealthState, check: &HealthChecked) -> Vec<Decision> {
        super::decide(s, check)
    }
    fn evolve(s: &mut HealthState, e: &RecordedEvent, d: &DomainEvent, _: &Runtime) {
        s.evolve(e, d);
    }
    fn pass(s: &mut HealthState, e: &RecordedEvent) {
        s.position = e.position;
    }
}

/// Folds every self-healing event after the state's position into it (the check's shell keeps
/// one state and brings it up to date before each check).
pub async fn catch_up_health(rt: &Runtime, state: &mut HealthState) -> Result<u64, mall_events::StoreError> {
    catch_up::<Health>(rt, &ID.to_string(), state, Until::Head).await
}
