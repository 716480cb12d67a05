//! redb's file, written back to the disk in pieces before each sync.
//!
//! A durable redb commit writes every page changed since the last one (about 4 MB in a thousand
//! scattered pages for 16 384 folded messages) and then syncs the file. Written all at once, those
//! pages sit in the device's queue, and every journal sync issued meanwhile waits for them: on
//! the disk measured, 12–13 ms every 3 s at 5 000 events/s, which set the events' p99. Here the
//! pages redb wrote since its last sync are pushed to the device a piece at a time
//! (`sync_file_range`, [`PIECE`] bytes each, waiting for each piece), so a journal sync issued
//! meanwhile waits for one piece at most; the sync that follows finds them written and only
//! flushes the device. Durability is unchanged: redb's sync is still the file's `fdatasync`.
//!
//! Elsewhere than Linux there is no `sync_file_range`: the pages go with the sync, as before.

use std::fs::File;
use std::ops::Bound;
use std::sync::Mutex;

use redb::backends::FileBackend;
use redb::{BackendError, StorageBackend};

use crate::sync::LockUnpoisoned;

/// What redb's file backend fails with (without its `experimental-api-5` feature).
type BackendIoError = std::io::Error;

/// Bytes written back before waiting for them: a journal sync issued meanwhile waits for about
/// this much more. (Traced at 5 000 events/s, the journal syncs that overlapped the write-back
/// took 1–3 ms with pieces of 256 KiB, mostly 0.5–1 ms with these.)
const PIECE: u64 = 64 << 10;
/// Most written ranges remembered between two syncs (16 bytes each); past it the whole file is
/// written back in pieces instead.
const MOST_RANGES: usize = if cfg!(test) { 64 } else { 1 << 16 };

/// Whether there is `sync_file_range` to write back with: elsewhere the written ranges are not
/// even remembered.
const WRITES_BACK: bool = cfg!(target_os = "linux");

/// redb's file backend, with the pages it wrote written back in pieces before each sync.
#[derive(Debug)]
pub(super) struct PacedFile {
    inner: FileBackend,
    /// The same file, for `sync_file_range`.
    file: File,
    written: Mutex<Written>,
}

/// What was written since the last sync.
#[derive(Debug, Default)]
struct Written {
    ranges: Vec<(u64, u64)>,
    /// More ranges than [`MOST_RANGES`] were written: the whole file goes.
    overflowed: bool,
}

impl PacedFile {
    pub(super) fn new(file: File) -> std::io::Result<PacedFile> {
        let same = file.try_clone()?;
        let inner = FileBackend::new(file).map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(PacedFile { inner, file: same, written: Mutex::new(Written::default()) })
    }

    /// Writes back what was written since the last sync (sorted and merged; the whole file past
    /// [`MOST_RANGES`]), a piece at a time.
    fn write_back_written(&self) {
        let Written { ranges, overflowed } = std::mem::take(&mut *self.written.lock_unpoisoned());
        let ranges =
            if overflowed { vec![(0, self.file.metadata().map(|m| m.len()).unwrap_or(0))] } else { merged(ranges) };
        write_back(&self.file, &ranges);
    }
}

/// Writes `ranges` of `file` back to the disk a [`PIECE`] at a time, waiting for each piece, so
/// that a journal sync issued meanwhile waits for one piece at most. Elsewhere than Linux it
/// does nothing: the pages go with the file's next sync.
pub(in crate::store) fn write_back(file: &File, ranges: &[(u64, u64)]) {
    #[cfg(target_os = "linux")]
    for piece in pieces(ranges) {
        for &(start, end) in &piece {
            sync_file_range(file, start, end, libc::SYNC_FILE_RANGE_WRITE);
        }
        if let (Some(first), Some(last)) = (piece.first(), piece.last()) {
            sync_file_range(file, first.0, last.1, libc::SYNC_FILE_RANGE_WAIT_AFTER);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, ranges);
}

/// `sync_file_range(2)` over `start..end` of `file`: no kept crate offers it (`rustix` and
/// `nix` do not), so it is called here (this and `allocator`'s option are the crate's `unsafe`).
/// Its errors show in the sync that follows, which writes whatever this did not.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn sync_file_range(file: &File, start: u64, end: u64, flags: libc::c_uint) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(start), i64::try_from(end - start)) else { return };
    // SAFETY: the call reads no memory of this process; it is given a file descriptor that
    // `file` owns and keeps open for the call's duration, and an offset and length the kernel
    // checks itself.
    unsafe { libc::sync_file_range(file.as_raw_fd(), offset, len, flags) };
}

/// The ranges cut into pieces of [`PIECE`] bytes (the last one shorter), in order.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn pieces(ranges: &[(u64, u64)]) -> Vec<Vec<(u64, u64)>> {
    let mut pieces = Vec::new();
    let (mut piece, mut bytes) = (Vec::new(), 0);
    for &(mut start, end) in ranges {
        while start < end {
            let until = end.min(start + (PIECE - bytes));
            piece.push((start, until));
            bytes += until - start;
            start = until;
            if bytes == PIECE {
                pieces.push(std::mem::take(&mut piece));
                bytes = 0;
            }
        }
    }
    if !piece.is_empty() {
        pieces.push(piece);
    }
    pieces
}

/// Sorted, with overlapping and touching ranges joined.
fn merged(mut ranges: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    ranges.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
    for (start, end) in ranges {
        match out.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => out.push((start, end)),
        }
    }
    out
}

impl StorageBackend for PacedFile {
    fn len(&self) -> Result<u64, BackendIoError> {
        self.inner.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), BackendIoError> {
        self.inner.read(offset, out)
    }

    fn set_len(&self, len: u64) -> Result<(), BackendIoError> {
        self.inner.set_len(len)
    }

    fn sync_data(&self) -> Result<(), BackendIoError> {
        if WRITES_BACK {
            self.write_back_written();
        }
        self.inner.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), BackendIoError> {
        self.inner.write(offset, data)?;
        if !WRITES_BACK {
            return Ok(());
        }
        let mut written = self.written.lock_unpoisoned();
        if written.ranges.len() < MOST_RANGES {
            written.ranges.push((offset, offset + data.len() as u64));
        } else {
            written.ranges = Vec::new();
            written.overflowed = true;
        }
        Ok(())
    }

    fn close(&self) -> Result<(), BackendIoError> {
        self.inner.close()
    }

    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_range(start, end)
    }

    fn try_lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.query_lock_range(start, end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_go_in_pieces_of_equal_size() {
        let ranges = [(0, 4096), (8192, 8192 + 2 * PIECE), (10 * PIECE, 10 * PIECE + 100)];
        let pieces = pieces(&ranges);
        let sizes: Vec<u64> = pieces.iter().map(|p| p.iter().map(|(s, e)| e - s).sum()).collect();
        assert_eq!(sizes, vec![PIECE, PIECE, 4096 + 100]);
        assert_eq!(pieces[0], vec![(0, 4096), (8192, 8192 + PIECE - 4096)]);
        assert_eq!(pieces[2], vec![(8192 + 2 * PIECE - 4096, 8192 + 2 * PIECE), (10 * PIECE, 10 * PIECE + 100)]);
        assert!(super::pieces(&[]).is_empty());
    }

    /// What a database on this backend committed is in its file, whether a commit wrote a few
    /// ranges or more than are remembered (the whole file then goes in pieces).
    #[test]
    fn a_database_on_it_keeps_what_it_committed() {
        use redb::{ReadableDatabase, TableDefinition};
        const T: TableDefinition<u32, &[u8]> = TableDefinition::new("t");
        let dir = std::env::temp_dir().join(format!("ob-paced-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.redb");
        let open = || {
            let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path);
            redb::Builder::new().create_with_backend(PacedFile::new(file.unwrap()).unwrap()).unwrap()
        };
        let db = open();
        let value = vec![7u8; 3000];
        for (from, count) in [(0u32, 2_000u32), (2_000, 3)] {
            let txn = db.begin_write().unwrap();
            {
                let mut table = txn.open_table(T).unwrap();
                for k in from..from + count {
                    table.insert(k, value.as_slice()).unwrap();
                }
            }
            txn.commit().unwrap();
        }
        drop(db);
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_read().unwrap();
        let table = txn.open_table(T).unwrap();
        for k in [0, 1_999, 2_000, 2_002] {
            assert_eq!(table.get(k).unwrap().unwrap().value(), value.as_slice(), "key {k}");
        }
        drop((table, txn, db));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn written_ranges_are_sorted_and_joined() {
        assert_eq!(merged(vec![(8, 12), (0, 4), (4, 6), (10, 16), (20, 24)]), vec![(0, 6), (8, 16), (20, 24)]);
        assert_eq!(merged(Vec::new()), Vec::new());
    }
}
