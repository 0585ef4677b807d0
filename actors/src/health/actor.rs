//! The health decider behind the shell's [`Kind`]: one instance (`mall`), folding every event
//! tagged [`TAG`] — its checks, issues and notifications in `health-mall` and its repairs in the
//! products' streams — in log order.

use mall_events::RecordedEvent;
use mall_events::domain::{DomainEvent, HealthChecked};
use mall_events::health::TAG;

use super::{Decision, HealthState};
use crate::runtime::Runtime;
use crate::runtime::entity::{Kind, Source};

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

/// Folds every self-healing event after the state's position into it, with the decider's own
/// `evolve` (the check's shell keeps one state and brings it up to date before each use). An
/// event that does not decode is passed by, as the shell's loader does.
pub async fn catch_up_health(rt: &Runtime, state: &mut HealthState) -> Result<u64, mall_events::StoreError> {
    let mut folded = 0;
    loop {
        let batch = rt.store.read_by_tag(TAG, state.position + 1, 1_000).await?;
        if batch.is_empty() {
            return Ok(folded);
        }
        for e in &batch {
            match e.decode() {
                Ok(d) => state.evolve(e, &d),
                Err(err) => {
                    tracing::warn!(position = e.position, error = %err, "a self-healing event does not decode; passed by");
                    state.position = e.position;
                }
            }
            folded += 1;
        }
    }
}
