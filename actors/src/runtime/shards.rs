//! Which actors this process runs. The actors are split into [`SHARDS`] shards by a hash of the
//! stream (or tag) their events come from; with several nodes on one database each shard is a
//! lease, and a node runs — delivers to, lets decide and append — the actors of the shards it
//! holds, each append carrying its shard's fencing token. One process alone (the embedded
//! store) holds every shard, unfenced.

use mall_events::{Fence, StoreError};
use tokio::sync::watch;

use super::entity::{Kind, Source};

/// How many shards the actors are split into (every node must agree: it is part of the layout).
pub const SHARDS: usize = 8;

/// A shard held: its fencing token and the position its actors were delivered to by the last
/// holder (`None`: this process's own saved checkpoint).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    pub token: i64,
    pub checkpoint: Option<u64>,
}

/// The lease of shard `k`.
pub fn lease(k: usize) -> String {
    format!("actors:{k}")
}

/// The shard of an actor whose events come from `key` (a stream id or a tag): FNV-1a, the same
/// on every node and every build.
pub fn shard_of(key: &str) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % SHARDS as u64) as usize
}

/// The shard of an actor of kind `K`.
pub fn shard_of_actor<K: Kind>(id: &K::Id) -> usize {
    match K::source(id) {
        Source::Stream(s) => shard_of(s.as_str()),
        Source::Tag(t) => shard_of(&t),
    }
}

/// The shards this process holds, as they change.
#[derive(Clone)]
pub struct Shards {
    held: watch::Receiver<Vec<Option<Held>>>,
    leased: bool,
}

impl Default for Shards {
    fn default() -> Self {
        Self::all()
    }
}

impl Shards {
    /// Every shard, for good, unfenced (one process per log).
    pub fn all() -> Self {
        let (tx, rx) = watch::channel(vec![Some(Held { token: 0, checkpoint: None }); SHARDS]);
        // The value stays readable after the sender is gone.
        drop(tx);
        Self { held: rx, leased: false }
    }

    /// The shards as leases tell them (one entry per shard).
    pub fn leased(held: watch::Receiver<Vec<Option<Held>>>) -> Self {
        Self { held, leased: true }
    }

    /// Whether the shards are leases (appends carry fences).
    pub fn is_leased(&self) -> bool {
        self.leased
    }

    /// Follows the shards changing hands.
    pub fn watch(&self) -> watch::Receiver<Vec<Option<Held>>> {
        self.held.clone()
    }

    /// Whether this process holds shard `k`.
    pub fn holds_shard(&self, k: usize) -> bool {
        self.held.borrow().get(k).is_some_and(Option::is_some)
    }

    /// Whether this process runs the actor of kind `K` for `id`.
    pub fn holds<K: Kind>(&self, id: &K::Id) -> bool {
        self.holds_shard(shard_of_actor::<K>(id))
    }

    /// The fence an append by the actor of kind `K` for `id` carries (`None` when unleased);
    /// refused while its shard is not held here.
    pub fn fence<K: Kind>(&self, id: &K::Id) -> Result<Option<Fence>, StoreError> {
        let k = shard_of_actor::<K>(id);
        match self.held.borrow().get(k).copied().flatten() {
            Some(_) if !self.leased => Ok(None),
            Some(h) => Ok(Some(Fence { lease: lease(k), token: h.token })),
            None => Err(StoreError::Fenced { lease: lease(k), token: None }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::entity::Product;

    #[test]
    fn the_hash_is_stable_and_spreads() {
        // Fixed values: a change here moves actors between shards across a rolling upgrade.
        assert_eq!(shard_of(""), (0xcbf2_9ce4_8422_2325u64 % SHARDS as u64) as usize);
        let mut per = [0usize; SHARDS];
        for i in 0..8_000 {
            per[shard_of(&format!("product-p{i}"))] += 1;
        }
        assert!(per.iter().all(|n| (800..1_200).contains(n)), "{per:?}");
    }

    #[test]
    fn a_shard_not_held_fences_its_actors_off() {
        let (tx, rx) = watch::channel(vec![None; SHARDS]);
        let shards = Shards::leased(rx);
        let id = mall_events::ids::ProductId::parse("p1").unwrap();
        let k = shard_of_actor::<Product>(&id);
        assert!(matches!(
            shards.fence::<Product>(&id),
            Err(StoreError::Fenced { lease: l, token: None }) if l == lease(k)
        ));
        let mut held = vec![None; SHARDS];
        held[k] = Some(Held { token: 7, checkpoint: Some(3) });
        tx.send(held).unwrap();
        assert!(shards.holds::<Product>(&id));
        assert_eq!(shards.fence::<Product>(&id).unwrap(), Some(Fence { lease: lease(k), token: 7 }));
        assert!(Shards::all().fence::<Product>(&id).unwrap().is_none());
    }
}
