//! Outgoing media: every reference in a bot's message becomes a backend file_id, uploaded whole
//! or in fragments, or remembered from an earlier upload.

use std::time::Instant;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::{
    account_key, hex, parse_source, reference_label, BoxFuture, CacheKind, LocalFile, MediaError, MediaSource,
    UploadMode, MEDIA_TYPES,
};
use crate::core::action::{ActionContext, ActionError};
use crate::core::ids::IdStore;
use crate::core::message::Segment;
use crate::core::segment::SegmentError;
use crate::core::{Translator, V12Caller};

/// Largest file sent in one `upload_file` when the backend has no fragmented upload.
const MAX_SINGLE_FALLBACK: u64 = 16 << 20;

/// Bytes being uploaded: in memory, or read from a local file as they are sent.
enum Content {
    Bytes(Vec<u8>),
    File(Box<dyn LocalFile>),
}

impl Content {
    fn size(&self) -> u64 {
        match self {
            Content::Bytes(b) => b.len() as u64,
            Content::File(f) => f.size(),
        }
    }

    async fn read(&mut self, offset: u64, len: usize) -> Result<Vec<u8>, MediaError> {
        match self {
            Content::Bytes(b) => {
                let start = (offset as usize).min(b.len());
                Ok(b[start..(start + len).min(b.len())].to_vec())
            }
            Content::File(f) => {
                let chunk = f.read_at(offset, len).await?;
                if chunk.is_empty() && len > 0 {
                    return Err(MediaError::Io(format!("{} ended early (changed while being sent?)", f.path())));
                }
                Ok(chunk)
            }
        }
    }

    /// The whole content's sha256 (lowercase hex), reading a file in chunks.
    async fn sha256(&mut self, chunk: usize) -> Result<String, MediaError> {
        let mut h = Sha256::new();
        match self {
            Content::Bytes(b) => h.update(b),
            Content::File(_) => {
                let size = self.size();
                let mut offset = 0;
                while offset < size {
                    let part = self.read(offset, chunk.min((size - offset) as usize)).await?;
                    offset += part.len() as u64;
                    h.update(&part);
                }
            }
        }
        Ok(hex(&h.finalize()))
    }
}

/// What [`Translator::upload_media`] did: the cache keys of reused uploads (forgotten and retried
/// when the send fails).
#[derive(Debug, Default)]
pub struct Uploaded {
    pub reused: Vec<String>,
    pub uploads: usize,
}

fn file_id_of(data: &Value, action: &str) -> Result<String, ActionError> {
    data.get("file_id")
        .and_then(crate::core::v12::id_string)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| MediaError::BadAnswer { action: action.to_owned(), reason: "no `file_id`".into() }.into())
}

/// A file name for an upload: what the bot said, else the last path or URL segment, else the
/// content hash with an extension sniffed from the first bytes.
fn upload_name(given: Option<String>, source: &str, head: &[u8], sha256: &str) -> String {
    if let Some(name) = given.filter(|n| !n.trim().is_empty()) {
        return name;
    }
    let last = source.split(['?', '#']).next().unwrap_or("").rsplit(['/', '\\']).next().unwrap_or("");
    if !last.is_empty() && last.len() <= 128 && !source.starts_with("base64://") {
        return last.to_owned();
    }
    let ext = match head {
        [0x89, b'P', b'N', b'G', ..] => ".png",
        [0xff, 0xd8, 0xff, ..] => ".jpg",
        [b'G', b'I', b'F', b'8', ..] => ".gif",
        [b'R', b'I', b'F', b'F', _, _, _, _, b'W', b'E', b'B', b'P', ..] => ".webp",
        [b'#', b'!', b'A', b'M', b'R', ..] => ".amr",
        [0x02, b'#', b'!', b'S', b'I', b'L', b'K', ..] | [b'#', b'!', b'S', b'I', b'L', b'K', ..] => ".silk",
        [b'I', b'D', b'3', ..] => ".mp3",
        [_, _, _, _, b'f', b't', b'y', b'p', ..] => ".mp4",
        _ => "",
    };
    format!("{}{ext}", &sha256[..16.min(sha256.len())])
}

impl<S: IdStore> Translator<S> {
    /// Replaces every media reference in a v11 message (forward nodes' contents included) with a
    /// backend file_id, uploading as needed. Download hints (`cache`, `proxy`, `timeout`, `c`) are consumed here; `url` is the
    /// fallback go-cqhttp uses when `file` is missing. With `reuse` false nothing remembered is
    /// used (the retry after a failed send).
    pub async fn upload_media<C: V12Caller>(
        &self,
        ctx: ActionContext<'_>,
        caller: &C,
        segments: &mut [Segment],
        reuse: bool,
    ) -> Result<Uploaded, ActionError> {
        let mut done = Uploaded::default();
        self.upload_within(ctx, caller, segments, reuse, 0, &mut done).await?;
        Ok(done)
    }

    /// [`Translator::upload_media`] at a depth of forward nodes: a node's content is a message
    /// whose media go the same way (its content is left a list of segments).
    fn upload_within<'a, C: V12Caller>(
        &'a self,
        ctx: ActionContext<'a>,
        caller: &'a C,
        segments: &'a mut [Segment],
        reuse: bool,
        depth: usize,
        done: &'a mut Uploaded,
    ) -> BoxFuture<'a, Result<(), ActionError>> {
        Box::pin(async move {
            for seg in segments.iter_mut() {
                if seg.kind == "node" {
                    let Some(mut content) = crate::core::forward::node_content(seg)? else { continue };
                    if depth >= crate::core::forward::MAX_NODE_DEPTH {
                        return Err(SegmentError::BadSegment {
                            kind: "node".into(),
                            reason: format!("forwards nest at most {} deep", crate::core::forward::MAX_NODE_DEPTH),
                        }
                        .into());
                    }
                    self.upload_within(ctx, caller, &mut content, reuse, depth + 1, done).await?;
                    seg.data.insert("content", Segment::list_into_value(content));
                    continue;
                }
                if MEDIA_TYPES.contains(&seg.kind.as_str()) {
                    self.upload_segment(ctx, caller, seg, reuse, done).await?;
                }
            }
            Ok(())
        })
    }

    async fn upload_segment<C: V12Caller>(
        &self,
        ctx: ActionContext<'_>,
        caller: &C,
        seg: &mut Segment,
        reuse: bool,
        done: &mut Uploaded,
    ) -> Result<(), ActionError> {
        // go-cqhttp's group-file segment names its file `path`; an image may fall back to `url`.
        let key = ["file", "path", "url"].into_iter().find(|k| seg.str_of(k).is_some_and(|v| !v.is_empty()));
        let Some(key) = key else { return Ok(()) };
        let file = seg.str_of(key).unwrap_or_default();
        let no_cache = seg.str_of("cache").is_some_and(|c| c.trim() == "0");
        let name = seg.str_of("name");
        for hint in ["cache", "proxy", "timeout", "c", "path"] {
            seg.data.remove(hint);
        }
        if key == "url" {
            seg.data.remove("url");
        }
        let source = parse_source(&file, self.media.options.max_file_size)?;
        if let MediaSource::FileId(id) = source {
            seg.data.insert("file", id.into());
            return Ok(());
        }
        let (file_id, reused) = self.upload_source(ctx, caller, source, &file, name, reuse && !no_cache).await?;
        match reused {
            Some(k) => done.reused.push(k),
            None => done.uploads += 1,
        }
        seg.data.insert("file", file_id.into());
        Ok(())
    }

    /// Uploads one resource; returns the file_id and, when a remembered upload was used, its key.
    async fn upload_source<C: V12Caller>(
        &self,
        ctx: ActionContext<'_>,
        caller: &C,
        source: MediaSource,
        reference: &str,
        name: Option<String>,
        reuse: bool,
    ) -> Result<(String, Option<String>), ActionError> {
        let opts = &self.media.options;
        let me = account_key(ctx);
        let started = Instant::now();
        let mut content = match source {
            MediaSource::FileId(id) => return Ok((id, None)),
            MediaSource::Url(url) => {
                let key = format!("{me}\nurl\n{url}");
                if reuse {
                    if let Some(id) = self.media.remembered(CacheKind::Upload, &key).await {
                        return Ok((id, Some(key)));
                    }
                }
                let mut p = Map::new();
                p.insert("type".into(), "url".into());
                p.insert("name".into(), upload_name(name, &url, &[], "").into());
                p.insert("url".into(), url.clone().into());
                let data = self.call(ctx, caller, "upload_file", p).await?;
                let id = file_id_of(&data, "upload_file")?;
                self.media.remember(CacheKind::Upload, key, id.clone()).await;
                return Ok((id, None));
            }
            MediaSource::Data(bytes) => Content::Bytes(bytes),
            MediaSource::Local(path) => {
                let files = self.media.files.as_ref().ok_or_else(|| {
                    MediaError::Refused(format!(
                        "{path}: local files are not allowed (no allowed directories are configured; see `[media] allowed-dirs`)"
                    ))
                })?;
                Content::File(files.open(&path).await?)
            }
        };
        let size = content.size();
        if size > opts.max_file_size {
            return Err(
                MediaError::TooLarge { what: reference_label(reference), size, limit: opts.max_file_size }.into()
            );
        }
        let chunk = opts.fragment_size.max(1);
        let sha256 = content.sha256(chunk).await?;
        let key = format!("{me}\nsha256\n{sha256}");
        if reuse {
            if let Some(id) = self.media.remembered(CacheKind::Upload, &key).await {
                return Ok((id, Some(key)));
            }
        }
        let head = content.read(0, 16.min(size as usize)).await?;
        let name = upload_name(name, reference, &head, &sha256);
        let id = match (&content, ctx.backend.upload.unwrap_or(opts.upload)) {
            (Content::File(f), UploadMode::Path) => {
                let mut p = Map::new();
                p.insert("type".into(), "path".into());
                p.insert("name".into(), name.into());
                p.insert("path".into(), f.path().to_owned().into());
                p.insert("sha256".into(), sha256.clone().into());
                file_id_of(&self.call(ctx, caller, "upload_file", p).await?, "upload_file")?
            }
            _ if size > opts.fragment_threshold => {
                match self.upload_fragmented(ctx, caller, &mut content, &name, &sha256, started).await {
                    Err(ActionError::Backend { retcode: 10002, .. }) if size <= MAX_SINGLE_FALLBACK => {
                        tracing::info!(size, "backend has no upload_file_fragmented; uploading in one piece");
                        self.upload_whole(ctx, caller, &mut content, name, &sha256).await?
                    }
                    other => other?,
                }
            }
            _ => self.upload_whole(ctx, caller, &mut content, name, &sha256).await?,
        };
        self.media.remember(CacheKind::Upload, key, id.clone()).await;
        Ok((id, None))
    }

    async fn upload_whole<C: V12Caller>(
        &self,
        ctx: ActionContext<'_>,
        caller: &C,
        content: &mut Content,
        name: String,
        sha256: &str,
    ) -> Result<String, ActionError> {
        let bytes = content.read(0, content.size() as usize).await?;
        let mut p = Map::new();
        p.insert("type".into(), "data".into());
        p.insert("name".into(), name.into());
        p.insert("data".into(), STANDARD.encode(&bytes).into());
        drop(bytes);
        p.insert("sha256".into(), sha256.into());
        file_id_of(&self.call(ctx, caller, "upload_file", p).await?, "upload_file")
    }

    async fn upload_fragmented<C: V12Caller>(
        &self,
        ctx: ActionContext<'_>,
        caller: &C,
        content: &mut Content,
        name: &str,
        sha256: &str,
        started: Instant,
    ) -> Result<String, ActionError> {
        const ACTION: &str = "upload_file_fragmented";
        let opts = &self.media.options;
        let size = content.size();
        let mut p = Map::new();
        p.insert("stage".into(), "prepare".into());
        p.insert("name".into(), name.into());
        p.insert("total_size".into(), size.into());
        let tmp = file_id_of(&self.call(ctx, caller, ACTION, p).await?, ACTION)?;
        let mut offset = 0u64;
        while offset < size {
            if started.elapsed() > opts.transfer_timeout {
                return Err(MediaError::Timeout(opts.transfer_timeout.as_secs()).into());
            }
            let part = content.read(offset, opts.fragment_size.max(1).min((size - offset) as usize)).await?;
            let len = part.len() as u64;
            let mut p = Map::new();
            p.insert("stage".into(), "transfer".into());
            p.insert("file_id".into(), tmp.clone().into());
            p.insert("offset".into(), offset.into());
            p.insert("data".into(), STANDARD.encode(&part).into());
            drop(part);
            self.call(ctx, caller, ACTION, p).await?;
            offset += len;
        }
        let mut p = Map::new();
        p.insert("stage".into(), "finish".into());
        p.insert("file_id".into(), tmp.into());
        p.insert("sha256".into(), sha256.into());
        file_id_of(&self.call(ctx, caller, ACTION, p).await?, ACTION)
    }
}

#[cfg(test)]
mod tests {
    use super::upload_name;

    #[test]
    fn upload_names_come_from_the_bot_the_path_or_the_content() {
        assert_eq!(upload_name(Some("x.png".into()), "/a/b.jpg", &[], "ff"), "x.png");
        assert_eq!(upload_name(None, "/a/b.jpg", &[], "ff"), "b.jpg");
        assert_eq!(upload_name(None, "http://h/p/c.gif?x=1", &[], "ff"), "c.gif");
        assert_eq!(
            upload_name(None, "base64://iVBOR", &[0x89, b'P', b'N', b'G'], "0123456789abcdef99"),
            "0123456789abcdef.png"
        );
    }
}
