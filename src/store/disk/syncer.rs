//! The syncer thread: takes what the callers decided, journals it and syncs it (group commit),
//! tells the callers how far the journal is on disk, and hands the entries to the folder.

use std::sync::atomic::Ordering;
use std::sync::{mpsc as std_mpsc, Arc};
use std::time::{Duration, Instant};

use super::folder::Fold;
use super::{CommitTimes, Shared};
use crate::store::journal::{Entry, Journal};
use crate::sync::LockUnpoisoned;

/// Two batches in a row of at least this many entries, each come at [`BURST_RATE`] or more, are
/// a burst: the syncer lets the next one grow before syncing it.
const BURST_FROM: usize = 8;
/// Entries a second, counted over the time a batch took to gather: since the batch before it
/// was taken (its sync, and whatever time the syncer then waited for entries).
const BURST_RATE: f64 = 40_000.0;
/// How long a burst's batch is let grow: at 100 000 entries a second, about 50 entries more per
/// sync. Longer (1 ms was measured) holds the events waiting for the sync back more than the
/// syncs saved give the process.
const GROW: Duration = Duration::from_micros(500);

/// One journal sync, as the syncer remembers it.
#[derive(Debug, Default, Clone, Copy)]
struct Batch {
    entries: usize,
    /// From the batch before it being taken to this one being taken: the time its entries had.
    gathered: Duration,
}

impl Batch {
    /// Whether the entries came as fast as a burst's. Counted over the time they had, not over
    /// the last sync alone: at a steady rate the events come in clumps (those read together),
    /// and a clump's entries, come at once, would read as a burst of hundreds of thousands a
    /// second and be held back for nothing.
    fn burst(&self) -> bool {
        self.entries >= BURST_FROM && self.entries as f64 >= BURST_RATE * self.gathered.as_secs_f64()
    }
}
/// The syncer thread: takes what the callers decided, journals it, and says how far the
/// journal is on disk.
pub(super) struct Syncer {
    pub(super) journal: Journal,
    pub(super) shared: Arc<Shared>,
    pub(super) folds: std_mpsc::SyncSender<Fold>,
    /// The folder's thread, woken when the syncer stops.
    pub(super) folder: std::thread::Thread,
    pub(super) commits: CommitTimes,
}

impl Syncer {
    pub(super) fn run(mut self) {
        // The last two batches: their sizes and how long they took to gather.
        let (mut last, mut before_last) = (Batch::default(), Batch::default());
        let mut last_taken = Instant::now();
        loop {
            let (entries, seq, unfolded) = {
                let mut state = self.shared.state.lock_unpoisoned();
                if state.open.is_empty() {
                    if self.shared.closed.load(Ordering::Acquire) {
                        break;
                    }
                    // Decisions made from now on wake the thread.
                    self.shared.syncer_idle.store(true, Ordering::Release);
                    drop(state);
                    std::thread::park();
                    continue;
                }
                // Under a sustained burst a sync costs the process about as much CPU as the
                // entries it carries, and wakes every caller waiting for it: let the batch grow
                // for [`GROW`], so a burst pays for a few times fewer. (Growing for as long as
                // the last sync took, ~100-300 µs here, halved the syncs; this halves them
                // again.) Not at a steady rate, where a batch is the few events read together,
                // nor after a slow sync there, whose large batch came slowly: either would only
                // add to the latency.
                if last.burst() && before_last.burst() && state.open.len() < last.entries {
                    drop(state);
                    std::thread::park_timeout(GROW);
                    state = self.shared.state.lock_unpoisoned();
                }
                let unfolded = state.unfolded(self.shared.folded.load(Ordering::Acquire));
                (std::mem::take(&mut state.open), state.seq, unfolded)
            };
            let started = Instant::now();
            let gathered = started.duration_since(last_taken);
            last_taken = started;
            let Some(file) = self.append(&entries) else { break };
            let took = started.elapsed();
            (before_last, last) = (last, Batch { entries: entries.len(), gathered });
            if let Some(histogram) = self.commits.get() {
                histogram.observe(took.as_secs_f64());
            }
            self.shared.durable.send_modify(|d| d.seq = seq);
            // The folder is gone only when its thread died: the entries stay in the journal and
            // are applied when the store opens next.
            let bytes = entries.iter().map(Entry::bytes).sum();
            if self.folds.send(Fold { file, last: seq, entries, bytes }).is_err() {
                tracing::error!("id store folder stopped; journalled ids reach the database at the next start");
            }
            // Enough for a large commit: the folder need not wait for more.
            if unfolded.enough_to_fold() {
                self.folder.unpark();
            }
        }
        let Syncer { folds, folder, .. } = self;
        drop(folds);
        folder.unpark();
    }

    /// Journals the entries and syncs them; says to which file. A failed write is tried again
    /// once (the journal goes on in a new file); when that fails too, the store stops taking
    /// decisions and everyone waiting is told.
    pub(super) fn append(&mut self, entries: &[Entry]) -> Option<u64> {
        let mut file = self.journal.number();
        let mut written = self.journal.append(entries);
        if let Err(error) = &written {
            tracing::error!(%error, "id store journal write failed; writing again in a new file");
            file = self.journal.number();
            written = self.journal.append(entries);
        }
        let error = match written {
            Ok(()) => return Some(file),
            Err(error) => error,
        };
        let why =
            format!("the id store journal cannot be written ({error}); restart the bridge once the disk is fixed");
        tracing::error!(error = %why, "id store stops");
        self.shared.state.lock_unpoisoned().failed = Some(why.clone());
        self.shared.durable.send_modify(|d| d.failed = Some(why));
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The syncer lets a batch grow only in a burst: not at a steady rate (a few entries per
    /// sync, however fast they were decided once they came), nor after one slow sync there
    /// (many entries, come slowly), whose events are late already.
    #[test]
    fn only_a_bursts_batches_are_let_grow() {
        let batch = |entries, micros| Batch { entries, gathered: Duration::from_micros(micros) };
        assert!(!batch(1, 150).burst(), "a steady rate");
        assert!(!batch(10, 1_000).burst(), "5 000 events a second, read five at a time");
        assert!(!batch(10, 2_000).burst(), "one slow sync at a steady rate");
        assert!(!batch(5, 50).burst(), "too few entries to be worth waiting for");
        assert!(batch(12, 150).burst(), "80 000 entries a second");
    }
}
