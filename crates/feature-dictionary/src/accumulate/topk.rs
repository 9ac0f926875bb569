//! Top-k examples with their context.

use std::cmp::Ordering;

use smallvec::SmallVec;

use crate::ingest::TokenId;

/// Context values held without a heap allocation: a window of ±5 (the default) fits, so
/// admitting an example (tens per feature while the top-k and samples fill) never calls the
/// allocator; wider windows spill to the heap.
pub const INLINE_CONTEXT: usize = 11;

/// A context's tokens.
pub type ContextTokens = SmallVec<[TokenId; INLINE_CONTEXT]>;
/// A context's activations.
pub type ContextActivations = SmallVec<[f32; INLINE_CONTEXT]>;

/// A firing kept as an example, with the context needed to show it later.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde-state", derive(serde::Serialize, serde::Deserialize))]
pub struct Example {
    /// Activation value.
    pub activation: f32,
    /// Sequence index.
    pub sequence: u64,
    /// Position in the sequence.
    pub position: u32,
    /// Position of the first context token.
    pub context_start: u32,
    /// Context tokens (the firing token included).
    pub context_tokens: ContextTokens,
    /// This feature's activation on each context token.
    pub context_activations: ContextActivations,
    /// Index, in its feature's column of the current batch, of the firing whose context is
    /// still to be filled (`u32::MAX` once filled); only set while a batch is accumulated.
    pub pending: u32,
}

impl Default for Example {
    fn default() -> Self {
        Self {
            activation: 0.0,
            sequence: 0,
            position: 0,
            context_start: 0,
            context_tokens: ContextTokens::new(),
            context_activations: ContextActivations::new(),
            pending: u32::MAX,
        }
    }
}

impl Example {
    /// Token id of the firing token.
    pub fn token(&self) -> TokenId {
        self.context_tokens[(self.position - self.context_start) as usize]
    }
}

/// Largest top-k reserved up front (a huge k grows as needed).
const MAX_RESERVE: usize = 1024;

/// The deterministic example order: activation descending, then sequence, then position.
#[inline]
pub fn rank(a_act: f32, a_seq: u64, a_pos: u32, b_act: f32, b_seq: u64, b_pos: u32) -> Ordering {
    b_act
        .total_cmp(&a_act)
        .then(a_seq.cmp(&b_seq))
        .then(a_pos.cmp(&b_pos))
}

fn cmp_examples(a: &Example, b: &Example) -> Ordering {
    rank(
        a.activation,
        a.sequence,
        a.position,
        b.activation,
        b.sequence,
        b.position,
    )
}

/// The best `k` examples of one feature. Unsorted while accumulating; `worst` tracks the
/// entry a better candidate would replace.
#[derive(Debug, Clone, Default, PartialEq)]
#[cfg_attr(feature = "serde-state", derive(serde::Serialize, serde::Deserialize))]
pub struct TopK {
    items: Vec<Example>,
    /// `items[i].activation`, packed: finding the next entry to replace scans these (one or
    /// two cache lines) instead of every example.
    activations: Vec<f32>,
    worst: usize,
}

impl TopK {
    /// Activation a candidate must reach to be considered (−∞ while not full, +∞ when
    /// `k == 0`: nothing is kept). A candidate equal to it may still lose on (sequence,
    /// position); [`TopK::accepts`] decides.
    #[inline]
    pub fn threshold(&self, k: usize) -> f32 {
        if k == 0 {
            f32::INFINITY
        } else if self.items.len() < k {
            f32::NEG_INFINITY
        } else {
            self.items[self.worst].activation
        }
    }

    /// Whether a candidate would enter the top `k`.
    pub fn accepts(&self, k: usize, act: f32, seq: u64, pos: u32) -> bool {
        if k == 0 {
            return false;
        }
        if self.items.len() < k {
            return true;
        }
        let w = &self.items[self.worst];
        rank(act, seq, pos, w.activation, w.sequence, w.position) == Ordering::Less
    }

    /// Inserts an example that [`TopK::accepts`] approved.
    pub fn insert(&mut self, k: usize, ex: Example) {
        self.insert_with(k, |slot| *slot = ex);
    }

    /// Example in slot `i` (as returned by [`TopK::insert_with`]), to complete it; its
    /// activation must not change (it decides the order).
    pub fn slot_mut(&mut self, i: usize) -> &mut Example {
        &mut self.items[i]
    }

    /// Inserts an approved example by filling a slot in place: when full, the evicted
    /// example's buffers are reused, so the steady state allocates nothing. Returns the slot.
    #[inline]
    pub fn insert_with(&mut self, k: usize, fill: impl FnOnce(&mut Example)) -> usize {
        let slot = if self.items.len() < k {
            if self.items.is_empty() {
                // One allocation for the k examples instead of log2(k) regrowths.
                self.items.reserve_exact(k.min(MAX_RESERVE));
                self.activations.reserve_exact(k.min(MAX_RESERVE));
            }
            self.items.push(Example::default());
            self.activations.push(0.0);
            self.items.len() - 1
        } else {
            self.worst
        };
        fill(&mut self.items[slot]);
        self.activations[slot] = self.items[slot].activation;
        // `worst` only matters once the list is full.
        if self.items.len() >= k {
            self.recompute_worst();
        }
        slot
    }

    fn recompute_worst(&mut self) {
        // Runs on every admission: compare activations first and fall back to the full
        // (sequence, position) order only on exact ties.
        let mut worst = 0;
        for i in 1..self.activations.len() {
            let (a, w) = (self.activations[i], self.activations[worst]);
            if a < w
                || (a == w && cmp_examples(&self.items[i], &self.items[worst]) == Ordering::Greater)
            {
                worst = i;
            }
        }
        self.worst = worst;
    }

    /// Keeps the best `k` of both (exact: the union's top `k`).
    pub fn merge(&mut self, other: TopK, k: usize) {
        self.items.extend(other.items);
        self.items.sort_by(cmp_examples);
        self.items.truncate(k);
        self.activations = self.items.iter().map(|e| e.activation).collect();
        self.recompute_worst();
    }

    /// Visits every example, any order (activations must not change: they decide the order).
    pub fn for_each_mut(&mut self, f: impl FnMut(&mut Example)) {
        self.items.iter_mut().for_each(f);
    }

    /// Examples, any order.
    pub fn examples(&self) -> impl Iterator<Item = &Example> {
        self.items.iter()
    }

    /// Examples in rank order.
    pub fn sorted(&self) -> Vec<Example> {
        let mut v = self.items.clone();
        v.sort_by(cmp_examples);
        v
    }

    /// Number of examples held.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether no example is held.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}
