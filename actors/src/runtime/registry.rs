//! The resident actors of one kind: activation on first message, a bound on how many stay
//! resident (the least recently used is passivated), and restart of an actor that stopped.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use actix::prelude::*;
use lru::LruCache;

use super::Runtime;
use super::entity::{EntityActor, Kind, Passivate};

/// The resident actors of kind `K`, spread over a few arbiters (threads).
pub struct Registry<K: Kind> {
    rt: Arc<Runtime>,
    arbiters: Vec<ArbiterHandle>,
    resident: Mutex<LruCache<K::Id, Addr<EntityActor<K>>>>,
}

impl<K: Kind> Registry<K>
where
    EntityActor<K>: Actor<Context = Context<EntityActor<K>>>,
{
    /// A registry whose actors run on `arbiters`.
    pub fn new(rt: Arc<Runtime>, arbiters: Vec<ArbiterHandle>) -> Self {
        let cap = NonZeroUsize::new(rt.config.max_resident.max(1)).expect("non-zero");
        Self { rt, arbiters, resident: Mutex::new(LruCache::new(cap)) }
    }

    /// The actor for `id`, activated if it is not resident.
    pub fn get(&self, id: &K::Id) -> Addr<EntityActor<K>> {
        let mut resident = self.resident.lock().expect("registry");
        if let Some(addr) = resident.get(id)
            && addr.connected()
        {
            return addr.clone();
        }
        let arbiter = &self.arbiters[fxhash(&id.to_string()) % self.arbiters.len()];
        let (rt, actor_id) = (self.rt.clone(), id.clone());
        let addr = EntityActor::<K>::start_in_arbiter(arbiter, move |_| EntityActor::new(actor_id, rt));
        if let Some((old_id, old)) = resident.push(id.clone(), addr.clone())
            && old_id != *id
        {
            old.do_send(Passivate);
        }
        addr
    }

    /// Sends `msg` to the actor for `id` and waits for its answer. An actor caught stopping
    /// (passivated a moment ago, its mailbox closing under the message) is replaced by a fresh
    /// one, which loads from its snapshot and the log, and asked again.
    pub async fn send<M>(&self, id: &K::Id, msg: M) -> Result<M::Result, MailboxError>
    where
        M: Message + Clone + Send + 'static,
        M::Result: Send,
        EntityActor<K>: Handler<M>,
    {
        let mut last = MailboxError::Closed;
        for _ in 0..3 {
            let addr = self.get(id);
            match addr.send(msg.clone()).await {
                Err(MailboxError::Closed) => {
                    let mut resident = self.resident.lock().expect("registry");
                    if resident.peek(id).is_some_and(|a| *a == addr) {
                        resident.pop(id);
                    }
                    last = MailboxError::Closed;
                }
                other => return other,
            }
        }
        Err(last)
    }

    /// How many actors are resident (stopped ones included until their slot is reused).
    pub fn resident(&self) -> usize {
        self.resident.lock().expect("registry").len()
    }

    /// Passivates every resident actor (on shutdown) and waits until they have saved their
    /// snapshots.
    pub async fn passivate_all(&self) {
        self.passivate_where(|_| true).await
    }

    /// Passivates the resident actors whose id `which` picks (those of a shard this process no
    /// longer runs) and waits until they have saved their snapshots.
    pub async fn passivate_where(&self, which: impl Fn(&K::Id) -> bool) {
        let addrs: Vec<Addr<EntityActor<K>>> = {
            let mut resident = self.resident.lock().expect("registry");
            let ids: Vec<K::Id> = resident.iter().map(|(id, _)| id.clone()).filter(|id| which(id)).collect();
            ids.iter().filter_map(|id| resident.pop(id)).collect()
        };
        futures_util::future::join_all(addrs.iter().map(|a| a.send(Passivate))).await;
    }
}

fn fxhash(s: &str) -> usize {
    crate::product::text_hash(s) as usize
}
