//! Fetching a backend file chunk by chunk (what `/files/` serves and the cache keeps), its
//! sha256 checked.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use std::time::Instant;

use super::{hex, MediaError};
use crate::core::action::{ActionContext, ActionError};
use crate::core::ids::IdStore;
use crate::core::{Translator, V12Caller};

/// A file being fetched from the backend, chunk by chunk.
#[derive(Debug)]
pub struct Download {
    pub name: String,
    /// Total size, when the backend said.
    pub size: Option<u64>,
    pub sha256: Option<String>,
    state: DownloadState,
    started: Instant,
    /// The bytes so far, checked against `sha256` at the end (`None`: checked already, as a
    /// whole file is before its first byte goes anywhere).
    hash: Option<Sha256>,
}

/// A file's sha256 (lowercase hex) against the one the backend gave, if it gave one.
fn check_sha256(want: Option<&str>, got: &str) -> Result<(), MediaError> {
    match want.filter(|w| !w.is_empty()) {
        Some(want) if !want.eq_ignore_ascii_case(got) => Err(MediaError::BadAnswer {
            action: "get_file".into(),
            reason: format!("the file arrived with sha256 {got}, the backend said {want}"),
        }),
        _ => Ok(()),
    }
}

#[derive(Debug)]
enum DownloadState {
    Fragments { file_id: String, offset: u64, total: u64 },
    Whole(Option<Vec<u8>>),
}

fn bytes_field(data: &Value, action: &str) -> Result<Vec<u8>, MediaError> {
    let bad = |reason: &str| MediaError::BadAnswer { action: action.to_owned(), reason: reason.to_owned() };
    match data.get("data") {
        Some(Value::String(s)) => STANDARD.decode(s.trim()).map_err(|_| bad("`data` is not base64")),
        Some(Value::Array(items)) => items
            .iter()
            .map(|b| b.as_u64().filter(|n| *n < 256).map(|n| n as u8).ok_or_else(|| bad("bad byte")))
            .collect(),
        _ => Err(bad("no `data`")),
    }
}

impl<S: IdStore> Translator<S> {
    /// Starts fetching a backend file: `get_file_fragmented` when the backend has it, else
    /// `get_file` type `data`. Larger than the limit is refused before any byte moves.
    pub async fn open_download<C: V12Caller>(
        &self,
        ctx: ActionContext<'_>,
        caller: &C,
        file_id: &str,
    ) -> Result<Download, ActionError> {
        let limit = self.media.options.max_file_size;
        let started = Instant::now();
        let mut p = Map::new();
        p.insert("stage".into(), "prepare".into());
        p.insert("file_id".into(), file_id.into());
        match self.call(ctx, caller, "get_file_fragmented", p).await {
            Ok(info) => {
                let total = info.get("total_size").and_then(Value::as_u64).ok_or_else(|| MediaError::BadAnswer {
                    action: "get_file_fragmented".into(),
                    reason: "no `total_size`".into(),
                })?;
                if total > limit {
                    return Err(MediaError::TooLarge { what: format!("file {file_id}"), size: total, limit }.into());
                }
                return Ok(Download {
                    name: info.get("name").and_then(Value::as_str).unwrap_or(file_id).to_owned(),
                    size: Some(total),
                    sha256: info.get("sha256").and_then(Value::as_str).map(str::to_owned),
                    state: DownloadState::Fragments { file_id: file_id.to_owned(), offset: 0, total },
                    started,
                    hash: Some(Sha256::new()),
                });
            }
            Err(ActionError::Backend { retcode, .. }) if retcode == 10002 || retcode == 10001 => {}
            Err(e) => return Err(e),
        }
        let mut p = Map::new();
        p.insert("file_id".into(), file_id.into());
        p.insert("type".into(), "data".into());
        let info = self.call(ctx, caller, "get_file", p).await?;
        let bytes = bytes_field(&info, "get_file")?;
        let sha256 = info.get("sha256").and_then(Value::as_str).filter(|w| !w.is_empty());
        if sha256.is_some() {
            check_sha256(sha256, &hex(&Sha256::digest(&bytes)))?;
        }
        if bytes.len() as u64 > limit {
            return Err(
                MediaError::TooLarge { what: format!("file {file_id}"), size: bytes.len() as u64, limit }.into()
            );
        }
        Ok(Download {
            name: info.get("name").and_then(Value::as_str).unwrap_or(file_id).to_owned(),
            size: Some(bytes.len() as u64),
            sha256: sha256.map(str::to_owned),
            state: DownloadState::Whole(Some(bytes)),
            started,
            hash: None,
        })
    }

    /// The next chunk of a download; `None` at the end, once the whole file matched the sha256
    /// the backend gave (a mismatch is an error instead of the end).
    pub async fn next_chunk<C: V12Caller>(
        &self,
        ctx: ActionContext<'_>,
        caller: &C,
        download: &mut Download,
    ) -> Result<Option<Vec<u8>>, ActionError> {
        let chunk = self.next_piece(ctx, caller, download).await?;
        match (&chunk, &mut download.hash) {
            (Some(bytes), Some(hash)) => hash.update(bytes),
            (None, hash @ Some(_)) => {
                let got = hex(&hash.take().unwrap_or_default().finalize());
                check_sha256(download.sha256.as_deref(), &got)?;
            }
            _ => {}
        }
        Ok(chunk)
    }

    async fn next_piece<C: V12Caller>(
        &self,
        ctx: ActionContext<'_>,
        caller: &C,
        download: &mut Download,
    ) -> Result<Option<Vec<u8>>, ActionError> {
        let opts = &self.media.options;
        if download.started.elapsed() > opts.transfer_timeout {
            return Err(MediaError::Timeout(opts.transfer_timeout.as_secs()).into());
        }
        match &mut download.state {
            DownloadState::Whole(bytes) => Ok(bytes.take()),
            DownloadState::Fragments { file_id, offset, total } => {
                if *offset >= *total {
                    return Ok(None);
                }
                let size = (opts.fragment_size.max(1) as u64).min(*total - *offset);
                let mut p = Map::new();
                p.insert("stage".into(), "transfer".into());
                p.insert("file_id".into(), file_id.clone().into());
                p.insert("offset".into(), (*offset).into());
                p.insert("size".into(), size.into());
                let data = self.call(ctx, caller, "get_file_fragmented", p).await?;
                let chunk = bytes_field(&data, "get_file_fragmented")?;
                if chunk.is_empty() || chunk.len() as u64 > size {
                    return Err(MediaError::BadAnswer {
                        action: "get_file_fragmented".into(),
                        reason: format!("asked for {size} bytes at {offset}, got {}", chunk.len()),
                    }
                    .into());
                }
                *offset += chunk.len() as u64;
                Ok(Some(chunk))
            }
        }
    }
}
