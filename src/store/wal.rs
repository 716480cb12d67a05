//! The disk store's write-ahead log: `<data-dir>/bridge.wal`.
//!
//! Every batch of new ids is appended here as one frame and `fdatasync`ed before any caller is
//! answered, and only then committed to redb without syncing it. redb is made durable (and this
//! log emptied) at most about once a second, so the costly part of a durable B-tree commit
//! (writing back every touched page and syncing) is paid once for thousands of ids, not once per
//! batch, while the promise stays the same: no id reaches a bot before it is on disk.
//!
//! At start-up, what the log holds is applied to redb in one durable commit before anything
//! else runs. The operations are idempotent puts, so applying a frame twice (the bridge died
//! after redb's durable commit and before the log was emptied) changes nothing.
//!
//! A frame is `length (u32 LE) · CRC-32 of the payload (u32 LE) · payload`. A frame cut short or
//! with a wrong checksum ends the log: it is the batch whose sync never completed, so no caller
//! was answered for it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// One idempotent put, as the writer applied it to redb.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// A surrogate: `ids[v12] = n`, `surrogates[n] = v12`.
    Surrogate { n: i64, v12: String },
    /// A new message id: `messages[n] = stored`, `message_keys[key] = n`, `message_age[(at, n)]`.
    Message { n: i32, at: u64, key: String, stored: Vec<u8> },
    /// A message id's record replaced: `messages[n] = stored`.
    Save { n: i32, stored: Vec<u8> },
}

/// Largest frame read back: a batch is at most a few thousand ops of bounded size, so anything
/// bigger is damage, not data.
const MAX_FRAME: usize = 256 << 20;

const SURROGATE: u8 = 1;
const MESSAGE: u8 = 2;
const SAVE: u8 = 3;

/// Appends the encoding of `op` to `out`.
pub fn encode(op: &Op, out: &mut Vec<u8>) {
    fn bytes(out: &mut Vec<u8>, b: &[u8]) {
        out.extend_from_slice(&(b.len() as u32).to_le_bytes());
        out.extend_from_slice(b);
    }
    match op {
        Op::Surrogate { n, v12 } => {
            out.push(SURROGATE);
            out.extend_from_slice(&n.to_le_bytes());
            bytes(out, v12.as_bytes());
        }
        Op::Message { n, at, key, stored } => {
            out.push(MESSAGE);
            out.extend_from_slice(&n.to_le_bytes());
            out.extend_from_slice(&at.to_le_bytes());
            bytes(out, key.as_bytes());
            bytes(out, stored);
        }
        Op::Save { n, stored } => {
            out.push(SAVE);
            out.extend_from_slice(&n.to_le_bytes());
            bytes(out, stored);
        }
    }
}

/// Reads the ops of one frame's payload; `None` if it is not a sequence of whole ops.
pub fn decode(mut payload: &[u8]) -> Option<Vec<Op>> {
    fn take<'a>(p: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, rest) = p.split_at_checked(n)?;
        *p = rest;
        Some(head)
    }
    fn array<const N: usize>(p: &mut &[u8]) -> Option<[u8; N]> {
        take(p, N)?.try_into().ok()
    }
    fn bytes(p: &mut &[u8]) -> Option<Vec<u8>> {
        let len = u32::from_le_bytes(array(p)?) as usize;
        Some(take(p, len)?.to_vec())
    }
    fn text(p: &mut &[u8]) -> Option<String> {
        String::from_utf8(bytes(p)?).ok()
    }
    let mut ops = Vec::new();
    while let Some((&tag, rest)) = payload.split_first() {
        payload = rest;
        let p = &mut payload;
        ops.push(match tag {
            SURROGATE => Op::Surrogate { n: i64::from_le_bytes(array(p)?), v12: text(p)? },
            MESSAGE => Op::Message {
                n: i32::from_le_bytes(array(p)?),
                at: u64::from_le_bytes(array(p)?),
                key: text(p)?,
                stored: bytes(p)?,
            },
            SAVE => Op::Save { n: i32::from_le_bytes(array(p)?), stored: bytes(p)? },
            _ => return None,
        });
    }
    Some(ops)
}

/// Wraps an encoded payload into a frame.
fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 8);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// What reading a log found.
#[derive(Debug, Default)]
pub struct Recovered {
    pub ops: Vec<Op>,
    pub frames: usize,
    /// Bytes after the last whole frame (a write the crash cut short), ignored.
    pub torn_bytes: usize,
}

/// Reads every whole frame of `bytes` in order, stopping at the first that is cut short,
/// damaged or undecodable.
pub fn read_frames(bytes: &[u8]) -> Recovered {
    let mut found = Recovered::default();
    let mut at = 0;
    while let Some(header) = bytes.get(at..at + 8) {
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let Some(payload) = bytes.get(at + 8..at + 8 + len).filter(|_| len <= MAX_FRAME) else { break };
        if crc32fast::hash(payload) != crc {
            break;
        }
        let Some(ops) = decode(payload) else { break };
        found.ops.extend(ops);
        found.frames += 1;
        at += 8 + len;
    }
    found.torn_bytes = bytes.len() - at;
    found
}

/// The open log, appended to by the store's writer thread only.
#[derive(Debug)]
pub struct Wal {
    file: File,
    path: PathBuf,
    /// Bytes appended since it was last emptied.
    len: u64,
}

impl Wal {
    /// Where the log of the store in `dir` lives.
    pub fn path_in(dir: &Path) -> PathBuf {
        dir.join("bridge.wal")
    }

    /// Reads what the log at `path` holds (nothing if there is no log).
    pub fn recover(path: &Path) -> std::io::Result<Recovered> {
        let mut bytes = Vec::new();
        match File::open(path) {
            Ok(mut f) => {
                f.read_to_end(&mut bytes)?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        Ok(read_frames(&bytes))
    }

    /// Opens the log for appending, emptied: call once what it held is durable elsewhere.
    pub fn open_empty(path: &Path) -> std::io::Result<Wal> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        file.set_len(0)?;
        file.sync_all()?;
        Ok(Wal { file, path: path.to_owned(), len: 0 })
    }

    /// Appends `payload` (encoded ops) as one frame and waits until it is on disk.
    pub fn append_durably(&mut self, payload: &[u8]) -> std::io::Result<()> {
        let frame = frame(payload);
        self.file.write_all(&frame)?;
        self.file.sync_data()?;
        self.len += frame.len() as u64;
        Ok(())
    }

    /// Forgets everything appended: call right after a durable commit of the store.
    pub fn clear(&mut self) -> std::io::Result<()> {
        if self.len > 0 {
            self.file.set_len(0)?;
            self.file.sync_data()?;
            self.len = 0;
        }
        Ok(())
    }

    /// Bytes held since the last [`Wal::clear`].
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ops() -> Vec<Op> {
        vec![
            Op::Surrogate { n: 4_000_000_000_123, v12: "wxid_alice".into() },
            Op::Message { n: 42, at: 1_700_000_000_000, key: "10001\u{1f}m-1".into(), stored: b"{\"x\":1}".to_vec() },
            Op::Save { n: 42, stored: b"{\"x\":2}".to_vec() },
        ]
    }

    fn payload(ops: &[Op]) -> Vec<u8> {
        let mut p = Vec::new();
        for op in ops {
            encode(op, &mut p);
        }
        p
    }

    #[test]
    fn frames_read_back_in_order() {
        let mut log = frame(&payload(&ops()[..2]));
        log.extend(frame(&payload(&ops()[2..])));
        let found = read_frames(&log);
        assert_eq!((found.ops, found.frames, found.torn_bytes), (ops(), 2, 0));
    }

    #[test]
    fn a_torn_or_damaged_last_frame_ends_the_log() {
        let first = frame(&payload(&ops()[..1]));
        let second = frame(&payload(&ops()[1..]));
        for cut in 1..second.len() {
            let mut log = first.clone();
            log.extend_from_slice(&second[..cut]);
            let found = read_frames(&log);
            assert_eq!((found.frames, found.torn_bytes), (1, cut), "cut at {cut}");
            assert_eq!(found.ops, ops()[..1]);
        }
        let mut damaged = first.clone();
        let mut bad = second.clone();
        *bad.last_mut().unwrap() ^= 1;
        damaged.extend(bad);
        assert_eq!(read_frames(&damaged).frames, 1);
    }

    #[test]
    fn a_payload_that_is_not_whole_ops_is_refused() {
        let p = payload(&ops());
        for cut in 1..p.len() {
            let prefix = &p[..cut];
            if let Some(decoded) = decode(prefix) {
                // Only cuts on an op boundary decode.
                assert_eq!(payload(&decoded), prefix);
            }
        }
        assert_eq!(decode(&[9]), None);
        assert_eq!(read_frames(&frame(&[9, 9, 9])).frames, 0);
    }

    #[test]
    fn a_length_beyond_the_limit_is_damage() {
        let mut log = ((MAX_FRAME + 1) as u32).to_le_bytes().to_vec();
        log.extend([0; 4]);
        assert_eq!(read_frames(&log).frames, 0);
    }
}
