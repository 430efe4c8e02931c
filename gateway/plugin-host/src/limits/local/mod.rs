//! Limits kept in this process: exact for one replica. The same algorithm as the Redis
//! script in [`super::shared`], written once more in Rust and tested against a reference model.
//!
//! Two ways in, to one table: [`Local::acquire`] finds each limit by its storage key (a plugin's
//! `acquire`), and [`Local::acquire_planned`] by the [`Cell`]s a standing plan remembers, with
//! no key built or hashed while they stay valid.

mod check;
mod table;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use smallvec::SmallVec;

pub use table::{Cell, MAX_KEYS_PER_OWNER};

use super::{Ask, Decision, Ending, Grant, Kind, LimitState, MAX_SLOTS_PER_CALL, Taken, calendar, delta, emission_us};
use table::{State, Table};

/// The window an ask's key names at `now_ms` (0 for rates and slots, whose keys have none).
fn window_of(ask: &Ask, now_ms: u64) -> u64 {
    match ask.kind {
        Kind::Window => now_ms / ask.period_ms.max(1),
        Kind::Month => calendar::month(now_ms).0,
        Kind::Rate | Kind::Slots => 0,
    }
}

/// Where a standing plan's limits were last found in the table, one per limit. Only a hint:
/// each is checked under the table's lock before use and looked up again by key when its slot
/// was freed or its window is over.
#[derive(Debug, Default)]
pub struct Cells(Box<[AtomicU64]>);

impl Cells {
    pub fn new(limits: usize) -> Self {
        Cells((0..limits).map(|_| AtomicU64::new(0)).collect())
    }

    fn get(&self, i: usize) -> Cell {
        Cell(self.0.get(i).map_or(0, |c| c.load(Ordering::Relaxed)))
    }

    fn set(&self, i: usize, cell: Cell) {
        if let Some(c) = self.0.get(i) {
            c.store(cell.0, Ordering::Relaxed);
        }
    }
}

/// What a planned acquire took, to end it without building the keys.
#[derive(Debug, Clone, PartialEq)]
pub struct TakenCells {
    pub hold: u64,
    /// When it was taken (Unix ms): a window's key, should it be needed, is the one of then.
    pub at_ms: u64,
    pub cells: SmallVec<[Cell; 4]>,
    pub amounts: SmallVec<[u64; 4]>,
}

/// The states of one decision's limits.
pub type States = SmallVec<[LimitState; 4]>;

/// The outcome of [`Local::acquire_planned`].
#[derive(Debug)]
pub enum Planned {
    Granted {
        states: States,
        taken: TakenCells,
    },
    /// Nothing was taken.
    Refused,
    /// A limit has no state yet (or an amount is out of bounds): decide with [`Local::acquire`].
    Unresolved,
}

/// Limits in this process's memory.
#[derive(Debug, Default)]
pub struct Local {
    table: Mutex<Table>,
    next_hold: AtomicU64,
}

impl Local {
    fn table(&self) -> Option<MutexGuard<'_, Table>> {
        self.table.lock().ok()
    }

    /// Takes every ask's amount at `now_us` (Unix microseconds), all or none.
    pub fn acquire(&self, asks: &[Ask], now_us: u64) -> Grant {
        let now_ms = now_us / 1000;
        let hold = self.next_hold.fetch_add(1, Ordering::Relaxed) + 1;
        let refused = |states, index: usize, retry| Grant {
            decision: Decision { granted: false, refused_by: u32::try_from(index).ok(), retry_after_ms: retry, states },
            taken: Vec::new(),
            shared: false,
        };
        let Some(mut table) = self.table() else {
            return refused(vec![LimitState::default(); asks.len()], 0, Some(1000));
        };
        let mut states = Vec::with_capacity(asks.len());
        let mut writes = Vec::with_capacity(asks.len());
        let mut refusal: Option<(usize, Option<u64>)> = None;
        for (i, ask) in asks.iter().enumerate() {
            let key = ask.storage_key(now_ms);
            let current = table.live(&key, now_ms).map(|e| &e.state);
            let checked = check::check(ask, ask.amount, current, now_us);
            states.push(checked.state);
            match checked.verdict {
                Ok(write) => writes.push((key, write)),
                Err(retry) => {
                    refusal = refusal.or(Some((i, retry)));
                }
            }
        }
        if let Some((index, retry)) = refusal {
            return refused(states, index, retry);
        }
        // Room for new keys is checked before anything is written, so a refusal changes nothing.
        if let Some(i) = writes.iter().position(|(key, w)| !table.room_for(key, w.owner_len(), now_ms)) {
            return refused(states, i, Some(1000));
        }
        let taken = asks
            .iter()
            .zip(&writes)
            .map(|(ask, (key, _))| Taken {
                storage_key: key.clone(),
                kind: ask.kind,
                amount: ask.amount,
                limit: ask.limit,
                period_ms: ask.period_ms,
                on_settle: ask.on_settle,
                hold,
                leased: false,
            })
            .collect();
        for (ask, (key, write)) in asks.iter().zip(writes) {
            let current = table.find(&key).and_then(|c| table.entry_mut(c));
            if let Some(new) = write.apply(current, hold, now_ms) {
                table.insert(key, new, window_of(ask, now_ms));
            }
        }
        Grant {
            decision: Decision { granted: true, refused_by: None, retry_after_ms: None, states },
            taken,
            shared: false,
        }
    }

    /// Takes `amounts[i]` of each ask (their own `amount`s are not read), all or none, finding
    /// the limits through `cells` (updated when one had to be looked up again). The same
    /// decision as [`Local::acquire`]; `Unresolved` when a limit has no entry yet (creating one
    /// is [`Local::acquire`]'s, with its room check).
    pub fn acquire_planned(&self, asks: &[Ask], amounts: &[u64], cells: &Cells, now_us: u64) -> Planned {
        let now_ms = now_us / 1000;
        let Some(mut table) = self.table() else { return Planned::Unresolved };
        let mut states = States::new();
        let mut found: SmallVec<[Cell; 4]> = SmallVec::new();
        let mut writes = SmallVec::<[check::Write; 4]>::new();
        let mut refused = false;
        for (i, (ask, &amount)) in asks.iter().zip(amounts).enumerate() {
            if ask.kind == Kind::Slots && amount > MAX_SLOTS_PER_CALL {
                return Planned::Unresolved;
            }
            let window = window_of(ask, now_ms);
            let mut cell = cells.get(i);
            if table.slot(cell).is_none_or(|(_, w)| w != window) {
                let Some(again) = table.find(&ask.storage_key(now_ms)) else { return Planned::Unresolved };
                cells.set(i, again);
                cell = again;
            }
            let current = table.slot(cell).map(|(e, _)| e).filter(|e| e.expires_ms > now_ms).map(|e| &e.state);
            let checked = check::check(ask, amount, current, now_us);
            states.push(checked.state);
            found.push(cell);
            match checked.verdict {
                Ok(write) => writes.push(write),
                Err(_) => refused = true,
            }
        }
        if refused {
            return Planned::Refused;
        }
        let hold = self.next_hold.fetch_add(1, Ordering::Relaxed) + 1;
        for (cell, write) in found.iter().zip(writes) {
            // Every cell names an entry (checked above), so nothing is left to insert.
            let _ = write.apply(table.entry_mut(*cell), hold, now_ms);
        }
        let taken = TakenCells { hold, at_ms: now_ms, cells: found, amounts: amounts.iter().copied().collect() };
        Planned::Granted { states, taken }
    }

    /// Ends a hold at `now_us`. A window that has ended since is left alone (its key is gone or
    /// another window's); a rate or count never goes below empty.
    pub fn end(&self, taken: &[Taken], ending: Ending, now_us: u64) {
        let now_ms = now_us / 1000;
        let Some(mut table) = self.table() else { return };
        for t in taken {
            let Some(cell) = table.find(&t.storage_key) else { continue };
            if let Some(entry) = table.entry_mut(cell).filter(|e| e.expires_ms > now_ms) {
                check::end(entry, t.delta(ending), t.emission_us(), t.hold);
            }
        }
    }

    /// Ends what [`Local::acquire_planned`] took of `asks`, as [`Local::end`] would.
    pub fn end_planned(&self, asks: &[Ask], taken: &TakenCells, ending: Ending, now_us: u64) {
        let now_ms = now_us / 1000;
        let Some(mut table) = self.table() else { return };
        for ((ask, cell), amount) in asks.iter().zip(&taken.cells).zip(&taken.amounts) {
            let change = delta(*amount, ask.on_settle, ending);
            if change == 0 {
                continue;
            }
            // A slot freed since is found by its key, as the keyed path would find it.
            let cell = match table.slot(*cell) {
                Some(_) => Some(*cell),
                None => table.find(&ask.storage_key(taken.at_ms)),
            };
            if let Some(entry) = cell.and_then(|c| table.entry_mut(c)).filter(|e| e.expires_ms > now_ms) {
                check::end(entry, change, emission_us(ask.period_ms, ask.limit), taken.hold);
            }
        }
    }

    /// The units in use of a count or slots limit, or the bucket's debt in units for a rate
    /// (for tests and inspection).
    pub fn level(&self, storage_key: &str, now_us: u64) -> f64 {
        let now_ms = now_us / 1000;
        let Some(table) = self.table() else { return 0.0 };
        match table.live(storage_key, now_ms).map(|e| &e.state) {
            Some(State::Count { value }) => *value as f64,
            Some(State::Slots { held }) => held.in_use(now_ms) as f64,
            Some(State::Rate { tat_us }) => (*tat_us - now_us as f64).max(0.0),
            None => 0.0,
        }
    }
}

#[cfg(test)]
mod tests;
