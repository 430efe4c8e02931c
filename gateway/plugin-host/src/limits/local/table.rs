//! The table behind [`super::Local`]: each limit's state in a slot of a slab, found by its
//! storage key through an index. A slot is named by a [`Cell`] (its index and the generation of
//! its occupant), so that a standing plan reaches its limits without hashing or building a key:
//! a cell whose slot was freed since (swept) no longer matches, and is found again by key.

use std::collections::HashMap;

/// Live keys one owner may have; past it, an acquire on a new key is refused.
pub const MAX_KEYS_PER_OWNER: usize = 10_000;
/// Live keys in all; expired ones are swept when the table is full.
const MAX_KEYS: usize = 200_000;

#[derive(Debug, Clone)]
pub(super) enum State {
    /// GCRA's theoretical arrival time, Unix microseconds.
    Rate {
        tat_us: f64,
    },
    Count {
        value: u64,
    },
    Slots {
        held: Held,
    },
}

#[derive(Debug, Clone)]
pub(super) struct Entry {
    pub state: State,
    /// Unix ms after which the entry means nothing (a window over, a bucket full again).
    pub expires_ms: u64,
    pub owner_len: usize,
}

pub(super) type Map<V> = HashMap<String, V, foldhash::fast::RandomState>;
/// A slots limit's holders, hold id → (amount, lapses at Unix ms), with their sum and a bound on
/// the earliest lapse kept alongside: until some hold lapses, what is in use is known without
/// visiting them (a check runs under the table's lock, once per request, with up to the limit's
/// concurrency of holders).
#[derive(Debug, Clone)]
pub(super) struct Held {
    holds: HashMap<u64, (u64, u64), foldhash::fast::RandomState>,
    /// The sum of the amounts in `holds`.
    total: u64,
    /// No hold lapses before this (Unix ms); `u64::MAX` when there is none.
    first_lapse: u64,
}

impl Default for Held {
    fn default() -> Self {
        Held { holds: HashMap::default(), total: 0, first_lapse: u64::MAX }
    }
}

impl Held {
    /// The units held at `now_ms`, lapsed holds not counted.
    pub fn in_use(&self, now_ms: u64) -> u64 {
        if self.first_lapse > now_ms {
            return self.total;
        }
        self.holds.values().filter(|(_, lapses)| *lapses > now_ms).map(|(n, _)| *n).sum()
    }

    /// Forgets the holds that lapsed by `now_ms`.
    pub fn sweep(&mut self, now_ms: u64) {
        if self.first_lapse > now_ms {
            return;
        }
        self.holds.retain(|_, (_, lapses)| *lapses > now_ms);
        self.total = self.holds.values().map(|(n, _)| *n).sum();
        self.first_lapse = self.holds.values().map(|(_, lapses)| *lapses).min().unwrap_or(u64::MAX);
    }

    pub fn insert(&mut self, hold: u64, amount: u64, lapses_ms: u64) {
        if let Some((old, _)) = self.holds.insert(hold, (amount, lapses_ms)) {
            self.total = self.total.saturating_sub(old);
        }
        self.total = self.total.saturating_add(amount);
        // A replaced hold's lapse may stay the bound: early, which only costs a sweep.
        self.first_lapse = self.first_lapse.min(lapses_ms);
    }

    pub fn remove(&mut self, hold: u64) {
        if let Some((amount, _)) = self.holds.remove(&hold) {
            self.total = self.total.saturating_sub(amount);
        }
        if self.holds.is_empty() {
            self.first_lapse = u64::MAX;
        }
    }
}

/// Where one limit's state lives: a slot and the generation of the entry in it, packed as
/// `generation << 32 | index`. Generations start at 1, so 0 names nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cell(pub u64);

impl Cell {
    fn new(index: u32, generation: u32) -> Self {
        Cell(u64::from(generation) << 32 | u64::from(index))
    }

    fn index(self) -> usize {
        (self.0 & 0xFFFF_FFFF) as usize
    }

    fn generation(self) -> u32 {
        (self.0 >> 32) as u32
    }
}

#[derive(Debug)]
struct Slot {
    generation: u32,
    entry: Option<Entry>,
    /// The window its key names (windows and months), to tell when a cell's window is over.
    window: u64,
}

#[derive(Debug, Default)]
pub(super) struct Table {
    index: Map<u32>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    keys_per_owner: Map<usize>,
}

impl Table {
    /// The cell holding `key`'s state, live or not.
    pub fn find(&self, key: &str) -> Option<Cell> {
        let index = *self.index.get(key)?;
        let slot = self.slots.get(index as usize)?;
        Some(Cell::new(index, slot.generation))
    }

    /// The entry `cell` names, if the slot still holds that entry (live or not), with the
    /// window its key names.
    pub fn slot(&self, cell: Cell) -> Option<(&Entry, u64)> {
        let slot = self.slots.get(cell.index()).filter(|s| s.generation == cell.generation())?;
        Some((slot.entry.as_ref()?, slot.window))
    }

    pub fn entry_mut(&mut self, cell: Cell) -> Option<&mut Entry> {
        self.slots.get_mut(cell.index()).filter(|s| s.generation == cell.generation())?.entry.as_mut()
    }

    /// `key`'s entry if it is live at `now_ms`.
    pub fn live(&self, key: &str, now_ms: u64) -> Option<&Entry> {
        self.find(key).and_then(|c| self.slot(c)).map(|(e, _)| e).filter(|e| e.expires_ms > now_ms)
    }

    fn sweep(&mut self, now_ms: u64) {
        let Table { index, slots, free, keys_per_owner } = self;
        index.retain(|key, i| {
            let Some(slot) = slots.get_mut(*i as usize) else { return false };
            let live = slot.entry.as_ref().is_some_and(|e| e.expires_ms > now_ms);
            if !live {
                let owner_len = slot.entry.as_ref().map_or(0, |e| e.owner_len);
                if let Some(n) = key.get(..owner_len).and_then(|o| keys_per_owner.get_mut(o)) {
                    *n = n.saturating_sub(1);
                }
                // A new generation: cells naming the old entry no longer match.
                slot.entry = None;
                slot.generation = slot.generation.wrapping_add(1).max(1);
                free.push(*i);
            }
            live
        });
        keys_per_owner.retain(|_, n| *n > 0);
    }

    /// Whether a new key of this owner fits.
    pub fn room_for(&mut self, key: &str, owner_len: usize, now_ms: u64) -> bool {
        if self.live(key, now_ms).is_some() {
            return true;
        }
        let owner = key.get(..owner_len).unwrap_or("");
        let full = |t: &Table| {
            t.keys_per_owner.get(owner).copied().unwrap_or(0) >= MAX_KEYS_PER_OWNER || t.index.len() >= MAX_KEYS
        };
        if full(self) {
            self.sweep(now_ms);
        }
        !full(self)
    }

    /// Sets `key`'s entry, in its slot when it has one.
    pub fn insert(&mut self, key: String, entry: Entry, window: u64) -> Cell {
        if let Some(cell) = self.find(&key)
            && let Some(slot) = self.slots.get_mut(cell.index())
        {
            slot.entry = Some(entry);
            slot.window = window;
            return cell;
        }
        let owner = key.get(..entry.owner_len).unwrap_or("").to_owned();
        let slot = Slot { generation: 1, entry: Some(entry), window };
        let index = match self.free.pop() {
            Some(i) => {
                let generation = self.slots.get(i as usize).map_or(1, |s| s.generation);
                if let Some(s) = self.slots.get_mut(i as usize) {
                    *s = Slot { generation, ..slot };
                }
                i
            }
            None => {
                self.slots.push(slot);
                u32::try_from(self.slots.len() - 1).unwrap_or(u32::MAX)
            }
        };
        self.index.insert(key, index);
        *self.keys_per_owner.entry(owner).or_default() += 1;
        Cell::new(index, self.slots.get(index as usize).map_or(1, |s| s.generation))
    }
}

#[cfg(test)]
mod held_tests {
    use super::Held;

    #[test]
    fn what_is_held_counts_only_live_holds() {
        let mut held = Held::default();
        held.insert(1, 2, 100);
        held.insert(2, 3, 200);
        assert_eq!(held.in_use(50), 5);
        assert_eq!(held.in_use(100), 3, "the first hold lapsed");
        held.sweep(150);
        assert_eq!(held.in_use(150), 3);
        held.insert(2, 1, 300);
        assert_eq!(held.in_use(150), 1, "a hold taken again counts once");
        held.remove(2);
        held.remove(9);
        assert_eq!(held.in_use(0), 0);
        held.insert(3, 4, 400);
        assert_eq!(held.in_use(350), 4, "emptied, the bound starts again");
    }
}
