//! The disk store's journal: what a caller of the disk store waits for.
//!
//! The store's writer decides a batch (message ids claimed, records saved, surrogates claimed),
//! appends it here and syncs the file (`fdatasync`) before anyone is answered: one sequential
//! write and one sync per batch. The redb file catches up behind, in large transactions of its
//! own ([`super::disk`]); once it holds a file's entries durably, the file is deleted. A redb
//! commit per batch wrote about 16 scattered pages and redid its B-tree bookkeeping each time,
//! which bounded the event path however few ids a batch held.
//!
//! Files are `journal/<number>.log`, numbered in the order they were written. Each entry is the
//! payload's length (u32 LE), its CRC-32 (u32 LE), then the payload: a kind byte, then
//! - `1`, a message: its number (i32 LE), its key text's length (u32 LE) and bytes, its row
//!   ([`crate::core::record::Row`]) to the end;
//! - `2`, a surrogate: its number (i64 LE), the v12 id to the end.
//!
//! Entries are upserts, applied in order, so replaying an entry redb already holds changes
//! nothing. A crash while appending leaves the last entry cut short or failing its checksum:
//! reading a file stops there (nothing after it was answered).
//!
//! A file is filled with zeros ahead of its entries, a [`ZERO_AHEAD`] at a time, and entries
//! overwrite them: a sync then writes the entries' pages and the device's cache flush, not the
//! file's size and block map as well (about a third of a sync's cost on the machines measured,
//! where each sync costs the process more CPU than the entries it carries). Reading stops at
//! the zeros (no entry has an empty payload).
//!
//! Still, the sync after each extension of the zeros carried the new blocks and the file's size
//! to the file system's journal: 1.5–2 ms where a sync takes 0.16 (traced at 5 000 events/s, one
//! such sync every second), and the events waiting for it made much of the disk store's p99.
//! So once a file is half full, a thread of its own fills the next one with zeros, writes them
//! back a piece at a time (`store::disk::paced::write_back`, so that the journal's own
//! syncs meanwhile wait for a piece at most) and syncs it, as [`SPARE`]; the file after this one
//! is that spare, renamed, and needs no extension at all. A spare not ready in time (a burst
//! faster than the filling) is left to the file after; the next file is then made as before.
//! A file made that way, or the first one after a start, is left for the spare as soon as the
//! spare is ready, which it starts filling once the file has grown by its first [`ZERO_AHEAD`]
//! (a store that writes little never fills one). A spare left over when the bridge stopped is
//! the first file of the next start.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A journal file is closed and a new one started past this size, so that folded entries are
/// deleted in pieces.
pub const FILE_BYTES: u64 = 16 << 20;
/// Largest entry read back: a row is bounded by the largest message the bridge accepts.
const MAX_ENTRY: usize = 64 << 20;
/// How far ahead of the entries a file is filled with zeros.
pub const ZERO_AHEAD: u64 = 1 << 20;
/// The next file, being filled with zeros, or filled and synced (not a `<number>.log`: never
/// read as entries, never deleted as folded).
pub const SPARE: &str = "next.spare";

const MESSAGE: u8 = 1;
const SURROGATE: u8 = 2;

/// One decision of the store's writer, as journalled and then folded into redb.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    /// Message `n` is `key_text`'s, with this row (its time included).
    Message { n: i32, key_text: Arc<str>, row: Arc<[u8]> },
    /// Surrogate `n` stands for `v12`.
    Surrogate { n: i64, v12: Box<str> },
}

impl Entry {
    /// The bytes of ids and row it holds: what keeping it in memory costs beyond its fixed size.
    pub fn bytes(&self) -> u64 {
        match self {
            Entry::Message { key_text, row, .. } => (key_text.len() + row.len()) as u64,
            Entry::Surrogate { v12, .. } => v12.len() as u64,
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; 8]);
        match self {
            Entry::Message { n, key_text, row } => {
                out.push(MESSAGE);
                out.extend_from_slice(&n.to_le_bytes());
                out.extend_from_slice(&(key_text.len() as u32).to_le_bytes());
                out.extend_from_slice(key_text.as_bytes());
                out.extend_from_slice(row);
            }
            Entry::Surrogate { n, v12 } => {
                out.push(SURROGATE);
                out.extend_from_slice(&n.to_le_bytes());
                out.extend_from_slice(v12.as_bytes());
            }
        }
        let payload = &out[start + 8..];
        let (len, crc) = (payload.len() as u32, crc32fast::hash(payload));
        out[start..start + 4].copy_from_slice(&len.to_le_bytes());
        out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    }

    fn decode(payload: &[u8]) -> Option<Entry> {
        let (&kind, rest) = payload.split_first()?;
        match kind {
            MESSAGE => {
                let (n, rest) = rest.split_first_chunk::<4>()?;
                let (len, rest) = rest.split_first_chunk::<4>()?;
                let len = u32::from_le_bytes(*len) as usize;
                if rest.len() < len {
                    return None;
                }
                let (key, row) = rest.split_at(len);
                Some(Entry::Message {
                    n: i32::from_le_bytes(*n),
                    key_text: std::str::from_utf8(key).ok()?.into(),
                    row: row.into(),
                })
            }
            SURROGATE => {
                let (n, rest) = rest.split_first_chunk::<8>()?;
                Some(Entry::Surrogate { n: i64::from_le_bytes(*n), v12: std::str::from_utf8(rest).ok()?.into() })
            }
            _ => None,
        }
    }
}

/// The journal file being written.
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    file: File,
    number: u64,
    /// Where the next entry goes.
    len: u64,
    /// How far the file is filled (with entries, then zeros).
    filled: u64,
    buf: Vec<u8>,
    /// Why appending is no longer possible.
    broken: Option<String>,
    /// The thread filling [`SPARE`], once this file is half full.
    spare: Option<std::thread::JoinHandle<io::Result<()>>>,
    /// This file grows by extension (it was not a spare): it is left for the spare as soon as
    /// that is ready, which starts filling early. Off after a spare failed, so that a failing
    /// disk does not start one after each append.
    early: bool,
}

impl Journal {
    /// Starts a new file numbered `number` in `dir` (created if missing).
    pub fn create(dir: &Path, number: u64) -> io::Result<Journal> {
        std::fs::create_dir_all(dir)?;
        let file = OpenOptions::new().create(true).truncate(true).write(true).open(path_of(dir, number))?;
        sync_dir(dir)?;
        Ok(Journal::of(dir, file, number, 0))
    }

    /// The first file of a start, numbered `number`: the spare the last run left, if any (it
    /// holds nothing but zeros), else a new file.
    pub fn start(dir: &Path, number: u64) -> io::Result<Journal> {
        std::fs::create_dir_all(dir)?;
        match std::fs::metadata(dir.join(SPARE)) {
            Ok(left) if left.is_file() => {
                match take_spare(dir, number) {
                    // Filled as far as its length (less where a crash cut its filling short).
                    Ok(file) => return Ok(Journal::of(dir, file, number, left.len().min(FILE_BYTES))),
                    Err(error) => {
                        tracing::warn!(%error, "id store journal: the spare file left over could not be used")
                    }
                }
            }
            _ => {}
        }
        Journal::create(dir, number)
    }

    fn of(dir: &Path, file: File, number: u64, filled: u64) -> Journal {
        let early = filled < FILE_BYTES;
        Journal { dir: dir.to_owned(), file, number, len: 0, filled, buf: Vec::new(), broken: None, spare: None, early }
    }

    /// The file after this one: the spare when it is ready (renamed to its number, no zeros to
    /// add), else a new file; a spare still being filled stays with the next file.
    fn next(&mut self) -> io::Result<Journal> {
        let number = self.number + 1;
        let finished = self.spare.take_if(|filling| filling.is_finished());
        // Past the match below, a finished spare is one that failed.
        let spare_failed = finished.is_some();
        if let Some(filling) = finished {
            match filling.join() {
                Ok(Ok(())) => match self.take_spare(number) {
                    Ok(next) => return Ok(next),
                    Err(error) => tracing::warn!(%error, "id store journal: the spare file could not be used"),
                },
                Ok(Err(error)) => tracing::warn!(%error, "id store journal: the spare file could not be filled"),
                Err(_) => tracing::warn!("id store journal: the thread filling the spare file failed"),
            }
        }
        let mut next = Journal::create(&self.dir, number)?;
        // A spare still being filled goes on for the next file; after one failed, none starts
        // early.
        next.spare = self.spare.take();
        next.early = !spare_failed;
        Ok(next)
    }

    fn take_spare(&self, number: u64) -> io::Result<Journal> {
        let file = take_spare(&self.dir, number)?;
        Ok(Journal::of(&self.dir, file, number, FILE_BYTES))
    }

    /// Starts filling the spare once this file is half full, or has grown by its first
    /// [`ZERO_AHEAD`] when it is [`early`](Self::early) (at most one thread at a time).
    fn start_spare(&mut self) {
        let from = if self.early { ZERO_AHEAD } else { FILE_BYTES / 2 };
        if self.spare.is_some() || self.len < from {
            return;
        }
        let path = self.dir.join(SPARE);
        let started = std::thread::Builder::new().name("id-store-spare".into()).spawn(move || fill_spare(&path));
        match started {
            Ok(filling) => self.spare = Some(filling),
            Err(error) => tracing::warn!(%error, "id store journal: no thread to fill the spare file"),
        }
    }

    /// Where the entries of the file written now end (zeros follow).
    pub fn end(&self) -> u64 {
        self.len
    }

    /// The number of the file entries go to now.
    pub fn number(&self) -> u64 {
        self.number
    }

    /// Appends the entries and syncs them to disk; starts a new file afterwards when this one
    /// is full. On a failure the file is cut back to where it was (so that entries nobody was
    /// told about are not replayed) and later entries go to a new file, as pages a failed sync
    /// left behind cannot be trusted to reach the disk. When even that fails, every later
    /// append fails too: the store then answers errors until it is opened again.
    pub fn append(&mut self, entries: &[Entry]) -> io::Result<()> {
        if let Some(why) = &self.broken {
            return Err(io::Error::other(why.clone()));
        }
        self.buf.clear();
        for entry in entries {
            entry.encode(&mut self.buf);
        }
        let written = self.write_at_len().and_then(|()| self.file.sync_data());
        if let Err(error) = written {
            let recovered = self
                .file
                .set_len(self.len)
                .and_then(|()| self.file.sync_data())
                .and_then(|()| Journal::create(&self.dir, self.number + 1));
            match recovered {
                Ok(mut next) => {
                    // The spare (synced apart from this file) stays for the file after.
                    next.spare = self.spare.take();
                    *self = next
                }
                Err(again) => {
                    self.broken = Some(format!(
                        "the journal could not be cut back after a failed write ({again}); restart the bridge"
                    ))
                }
            }
            return Err(error);
        }
        self.len += self.buf.len() as u64;
        // A burst leaves a large buffer behind: keep what a usual batch needs.
        if self.buf.capacity() > 1 << 20 {
            self.buf = Vec::new();
        }
        let spare_ready = self.early && self.spare.as_ref().is_some_and(|filling| filling.is_finished());
        if self.len >= FILE_BYTES || spare_ready {
            *self = self.next()?;
        }
        self.start_spare();
        Ok(())
    }
}

impl Drop for Journal {
    /// Waits for the spare being filled, if any: a store opened again on the same folder (in
    /// this process) takes the spare as its first file, and must not find it still being
    /// written with zeros.
    fn drop(&mut self) {
        if let Some(filling) = self.spare.take() {
            let _ = filling.join();
        }
    }
}

/// Renames the spare in `dir` to the journal file numbered `number`, and opens it to write.
fn take_spare(dir: &Path, number: u64) -> io::Result<File> {
    let path = path_of(dir, number);
    std::fs::rename(dir.join(SPARE), &path)?;
    sync_dir(dir)?;
    OpenOptions::new().write(true).open(&path)
}

/// Fills `path` with [`FILE_BYTES`] of zeros, written back a piece at a time, and syncs it.
fn fill_spare(path: &Path) -> io::Result<()> {
    static ZEROS: [u8; 64 << 10] = [0; 64 << 10];
    let mut file = OpenOptions::new().create(true).truncate(true).write(true).open(path)?;
    for _ in 0..FILE_BYTES / ZEROS.len() as u64 {
        file.write_all(&ZEROS)?;
    }
    crate::store::disk::paced::write_back(&file, &[(0, FILE_BYTES)]);
    file.sync_all()
}

impl Journal {
    /// Writes the buffer where the entries end, the zeros ahead first when it would pass them.
    fn write_at_len(&mut self) -> io::Result<()> {
        let end = self.len + self.buf.len() as u64;
        if end > self.filled {
            let to = end.div_ceil(ZERO_AHEAD) * ZERO_AHEAD;
            static ZEROS: [u8; 64 << 10] = [0; 64 << 10];
            self.file.seek(SeekFrom::Start(self.filled))?;
            while self.filled < to {
                let n = (to - self.filled).min(ZEROS.len() as u64);
                self.file.write_all(&ZEROS[..n as usize])?;
                self.filled += n;
            }
        }
        self.file.seek(SeekFrom::Start(self.len))?;
        self.file.write_all(&self.buf)
    }
}

fn path_of(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number:020}.log"))
}

/// A new or deleted file's name is itself on disk only once its directory is synced.
#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Elsewhere a directory cannot be opened as a file; the file system keeps its names itself.
#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

/// The journal files in `dir`, oldest first (none when the directory does not exist).
pub fn files(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut files = Vec::new();
    for entry in entries {
        let path = entry?.path();
        let number = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".log"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(number) = number {
            files.push((number, path));
        }
    }
    files.sort();
    Ok(files)
}

/// A journal file's entries, up to the first one cut short or damaged; the second value says
/// what stopped the reading early, if anything did. The file is read as far as its entries go,
/// not through the zeros after them.
pub fn read(path: &Path) -> io::Result<(Vec<Entry>, Option<String>)> {
    let file = File::open(path)?;
    let size = file.metadata()?.len();
    let mut file = io::BufReader::with_capacity(64 << 10, file);
    let mut entries = Vec::new();
    let mut payload = Vec::new();
    let mut at = 0u64;
    loop {
        let mut head = [0u8; 8];
        match read_up_to(&mut file, &mut head)? {
            0 => break,
            8 => {}
            _ => return Ok((entries, Some(format!("an entry cut short at byte {at}")))),
        }
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        if len == 0 {
            // The zeros ahead of the entries.
            break;
        }
        // Nothing is allocated for a length the file cannot hold (a torn or damaged head).
        if len > MAX_ENTRY || len as u64 > size.saturating_sub(at + 8) {
            return Ok((entries, Some(format!("an entry cut short at byte {at}"))));
        }
        payload.resize(len, 0);
        if read_up_to(&mut file, &mut payload)? < len {
            return Ok((entries, Some(format!("an entry cut short at byte {at}"))));
        }
        if crc32fast::hash(&payload) != crc {
            return Ok((entries, Some(format!("a damaged entry at byte {at}"))));
        }
        let Some(entry) = Entry::decode(&payload) else {
            return Ok((entries, Some(format!("an unreadable entry at byte {at}"))));
        };
        entries.push(entry);
        at += 8 + len as u64;
    }
    Ok((entries, None))
}

/// Reads into `buf` until it is full or the file ends; how many bytes it read.
fn read_up_to(from: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match from.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Deletes the files numbered below `number` (their entries are in redb for good).
pub fn remove_before(dir: &Path, number: u64) -> io::Result<()> {
    let mut removed = false;
    for (n, path) in files(dir)? {
        if n >= number {
            break;
        }
        std::fs::remove_file(&path)?;
        removed = true;
    }
    if removed {
        sync_dir(dir)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ob-journal-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn message(n: i32) -> Entry {
        Entry::Message { n, key_text: format!("bot\u{1f}m{n}").into(), row: vec![1, 2, 3, n as u8].into() }
    }

    #[test]
    fn entries_read_back_as_written_in_order() {
        let d = dir("order");
        let mut journal = Journal::create(&d, 7).unwrap();
        let written = vec![message(1), Entry::Surrogate { n: -5_000_000_001, v12: "wxid_é".into() }, message(2)];
        journal.append(&written[..2]).unwrap();
        journal.append(&written[2..]).unwrap();
        let found = files(&d).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, 7);
        assert_eq!(read(&found[0].1).unwrap(), (written, None));
        let _ = std::fs::remove_dir_all(&d);
    }

    /// A crash while appending: the entries before the cut are read, and the reading says why
    /// it stopped; a flipped byte in a payload is caught by its checksum.
    #[test]
    fn a_cut_or_damaged_tail_stops_the_reading_there() {
        let d = dir("torn");
        let mut journal = Journal::create(&d, 1).unwrap();
        journal.append(&[message(1), message(2), message(3)]).unwrap();
        let path = files(&d).unwrap().remove(0).1;
        let whole = std::fs::read(&path).unwrap();
        let end = journal.end() as usize;
        assert_eq!(whole.len() as u64, ZERO_AHEAD, "zeros ahead");
        assert!(whole[end..].iter().all(|&b| b == 0));
        let one = end / 3;
        for cut in [end - 1, end - one + 4, end - one + 9] {
            // The file's end cut off, or the entry's last bytes never written over the zeros.
            std::fs::write(&path, &whole[..cut]).unwrap();
            let (entries, why) = read(&path).unwrap();
            assert_eq!(entries, vec![message(1), message(2)], "cut at {cut}");
            assert!(why.unwrap().contains("cut short"), "cut at {cut}");
            let mut zeroed = whole.clone();
            zeroed[cut..end].fill(0);
            std::fs::write(&path, &zeroed).unwrap();
            assert_eq!(read(&path).unwrap().0, vec![message(1), message(2)], "zeros from {cut}");
        }
        let mut damaged = whole.clone();
        damaged[one + 10] ^= 0x40;
        std::fs::write(&path, &damaged).unwrap();
        let (entries, why) = read(&path).unwrap();
        assert_eq!(entries, vec![message(1)]);
        assert!(why.unwrap().contains("damaged"));
        let _ = std::fs::remove_dir_all(&d);
    }

    /// Once a file is half full the next one is filled apart; the file after the full one is
    /// that spare, which needs no zeros added, and its entries read back as any file's.
    #[test]
    fn the_file_after_a_full_one_is_the_spare_filled_while_it_filled() {
        let d = dir("spare");
        let mut journal = Journal::create(&d, 1).unwrap();
        let half = Entry::Message { n: 1, key_text: "k".into(), row: vec![7; FILE_BYTES as usize / 2].into() };
        journal.append(std::slice::from_ref(&half)).unwrap();
        let filling = journal.spare.as_ref().expect("a half-full file starts the spare");
        let since = std::time::Instant::now();
        while !filling.is_finished() {
            assert!(since.elapsed() < std::time::Duration::from_secs(30), "the spare is filled in time");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(std::fs::metadata(d.join(SPARE)).unwrap().len(), FILE_BYTES);
        let numbers: Vec<u64> = files(&d).unwrap().into_iter().map(|(n, _)| n).collect();
        assert_eq!(numbers, vec![1], "the spare is no journal file");

        journal.append(std::slice::from_ref(&half)).unwrap();
        assert_eq!((journal.number(), journal.filled), (2, FILE_BYTES), "the spare became the next file");
        assert!(!d.join(SPARE).exists());
        journal.append(&[message(3), message(4)]).unwrap();
        let second = path_of(&d, 2);
        assert_eq!(std::fs::metadata(&second).unwrap().len(), FILE_BYTES, "no zeros added");
        assert_eq!(read(&second).unwrap(), (vec![message(3), message(4)], None));
        assert_eq!(read(&path_of(&d, 1)).unwrap().0, vec![half.clone(), half]);
        let _ = std::fs::remove_dir_all(&d);
    }

    /// A file that grows by extension starts the spare once it has grown by its first
    /// `ZERO_AHEAD`, and is left for it as soon as it is ready; a spare left over is the first
    /// file of the next start.
    #[test]
    fn a_file_made_by_extension_is_left_for_the_spare_once_it_is_ready() {
        let d = dir("early");
        let mut journal = Journal::start(&d, 1).unwrap();
        assert_eq!(journal.filled, 0, "no spare left over: a new file");
        let piece = Entry::Message { n: 1, key_text: "k".into(), row: vec![7; ZERO_AHEAD as usize / 4].into() };
        let mut written = Vec::new();
        while journal.spare.is_none() {
            assert!(journal.end() <= ZERO_AHEAD, "the spare starts after the first extension");
            journal.append(std::slice::from_ref(&piece)).unwrap();
            written.push(piece.clone());
        }
        let since = std::time::Instant::now();
        while !journal.spare.as_ref().unwrap().is_finished() {
            assert!(since.elapsed() < std::time::Duration::from_secs(30), "the spare is filled in time");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        journal.append(&[message(2)]).unwrap();
        written.push(message(2));
        assert_eq!((journal.number(), journal.filled), (2, FILE_BYTES), "left for the spare once it was ready");
        assert!(!journal.early, "a spare is not left early");
        assert_eq!(read(&path_of(&d, 1)).unwrap(), (written, None));
        journal.append(&[message(3)]).unwrap();
        assert_eq!(read(&path_of(&d, 2)).unwrap(), (vec![message(3)], None));
        drop(journal);

        // A spare left over when the bridge stopped (here filled by hand) starts the next run.
        fill_spare(&d.join(SPARE)).unwrap();
        let mut journal = Journal::start(&d, 3).unwrap();
        assert_eq!((journal.number(), journal.filled, journal.early), (3, FILE_BYTES, false));
        assert!(!d.join(SPARE).exists());
        journal.append(&[message(4)]).unwrap();
        assert_eq!(std::fs::metadata(path_of(&d, 3)).unwrap().len(), FILE_BYTES, "no zeros added");
        assert_eq!(read(&path_of(&d, 3)).unwrap(), (vec![message(4)], None));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_full_file_is_followed_by_the_next_and_old_ones_are_removed() {
        let d = dir("rotate");
        let mut journal = Journal::create(&d, 1).unwrap();
        let big = Entry::Message { n: 1, key_text: "k".into(), row: vec![0; FILE_BYTES as usize].into() };
        journal.append(std::slice::from_ref(&big)).unwrap();
        assert_eq!(journal.number(), 2, "a new file after a full one");
        journal.append(&[message(2)]).unwrap();
        let numbers: Vec<u64> = files(&d).unwrap().into_iter().map(|(n, _)| n).collect();
        assert_eq!(numbers, vec![1, 2]);
        remove_before(&d, 2).unwrap();
        let left = files(&d).unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(read(&left[0].1).unwrap().0, vec![message(2)]);
        let _ = std::fs::remove_dir_all(&d);
    }
}
