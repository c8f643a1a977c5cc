//! What the service shares across connections: the serving model (swappable
//! without a restart) and the split-consignment window.

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use crate::domain::{Declaration, RateTable, ReferenceData};
use crate::features::history::PartyKeys;
use crate::features::window::{SplitSignal, SplitWindow};
use crate::model::ModelArtifact;
use crate::scoring::{Assessment, Scorer};

/// Shards of the split window: parcels of one buyer always land in one shard.
const SHARDS: usize = 16;

/// The split window shared by every stream, in shards so that streams rarely
/// wait for each other.
#[derive(Debug)]
pub struct SharedWindow {
    shards: Vec<Mutex<SplitWindow>>,
}

impl Default for SharedWindow {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(SplitWindow::default()))
                .collect(),
        }
    }
}

impl SharedWindow {
    pub fn observe(&self, keys: &PartyKeys, d: &Declaration, rates: &RateTable) -> SplitSignal {
        let declared_cents = d
            .items
            .iter()
            .filter_map(|i| rates.to_eur_cents(i.intrinsic_value))
            .sum();
        let shard = &self.shards[(keys.address % SHARDS as u64) as usize];
        // A poisoned shard only means another request panicked mid-update;
        // the window stays usable.
        let mut window = shard
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        window.observe(keys, d.lodged_at, declared_cents)
    }
}

/// The state behind every RPC.
#[derive(Debug)]
pub struct ServiceState {
    scorer: ArcSwap<Scorer>,
    window: SharedWindow,
    reference: ReferenceData<'static>,
}

impl ServiceState {
    pub fn new(model: ModelArtifact, reference: ReferenceData<'static>) -> Self {
        Self {
            scorer: ArcSwap::from_pointee(Scorer::new(Arc::new(model))),
            window: SharedWindow::default(),
            reference,
        }
    }

    /// The scorer serving now; hold it for a whole batch so that one batch is
    /// scored by one model.
    pub fn scorer(&self) -> Arc<Scorer> {
        self.scorer.load_full()
    }

    /// Swaps in another model; requests in flight finish on the old one.
    pub fn swap_model(&self, model: ModelArtifact) {
        self.scorer.store(Arc::new(Scorer::new(Arc::new(model))));
    }

    pub fn reference(&self) -> &ReferenceData<'static> {
        &self.reference
    }

    /// Scores a checked declaration with `scorer`, updating the split window.
    pub fn score(&self, scorer: &Scorer, d: &Declaration) -> Assessment {
        let keys = PartyKeys::of(d);
        let split = self.window.observe(&keys, d, self.reference.rates);
        scorer.score_with_keys(d, &keys, split)
    }
}
