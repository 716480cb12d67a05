//! Media on this machine: the local files bots may name, the cache directory, and the bridge's
//! own file URLs (`GET /files/<token>` on the v11 HTTP server).
//!
//! [`LocalDirs`] is the core's [`LocalFiles`]: a path is resolved to its canonical form (so `..`
//! and symlinks are followed first) and read only when that lies inside an allowed directory or
//! the cache directory. Reads are chunked; nothing holds a whole file in memory.
//!
//! [`serve_file`] answers a served URL: the token is checked (its signature names the account
//! and file_id, so URLs need no access token and cannot be guessed), then the file is streamed
//! from the backend chunk by chunk through a channel of two chunks, so a slow client holds at
//! most a few fragments in memory. Larger than `max-file-size` is refused before any byte moves.

use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame};
use hyper::header::{HeaderValue, CONTENT_DISPOSITION, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::core::media::{BoxFuture, LocalFile, LocalFiles, LocalSink, MediaError};
use crate::hub::{AccountCaller, Hub, Selection};

/// The directories bots may name files in, and the cache directory.
#[derive(Debug)]
pub struct LocalDirs {
    allowed: Vec<PathBuf>,
    cache: PathBuf,
    cache_max_bytes: u64,
}

impl LocalDirs {
    /// `allowed` must be canonical. `cache` is created when the first file goes in (its parent
    /// now, if missing), so a bridge that never caches leaves nothing behind.
    pub fn new(allowed: Vec<PathBuf>, cache: &Path, cache_max_bytes: u64) -> std::io::Result<LocalDirs> {
        let cache = match std::fs::canonicalize(cache) {
            Ok(c) => c,
            Err(_) => {
                let parent = cache.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
                std::fs::create_dir_all(parent)?;
                let name =
                    cache.file_name().ok_or_else(|| std::io::Error::other("the cache directory needs a name"))?;
                std::fs::canonicalize(parent)?.join(name)
            }
        };
        Ok(LocalDirs { allowed, cache, cache_max_bytes })
    }

    fn permitted(&self, canonical: &Path) -> bool {
        canonical.starts_with(&self.cache) || self.allowed.iter().any(|dir| canonical.starts_with(dir))
    }

    /// Deletes the oldest cache files until the directory holds at most the limit.
    fn prune_cache(dir: &Path, max_bytes: u64) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        let mut files: Vec<(std::time::SystemTime, u64, PathBuf)> = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let meta = e.metadata().ok()?;
                meta.is_file().then(|| (meta.modified().unwrap_or(std::time::UNIX_EPOCH), meta.len(), e.path()))
            })
            .collect();
        let mut total: u64 = files.iter().map(|f| f.1).sum();
        files.sort();
        for (_, len, path) in files {
            if total <= max_bytes {
                break;
            }
            if std::fs::remove_file(&path).is_ok() {
                total -= len;
            }
        }
    }
}

fn io_error(what: &str, e: std::io::Error) -> MediaError {
    match e.kind() {
        std::io::ErrorKind::NotFound => MediaError::NotFound(format!("{what}: no such file")),
        std::io::ErrorKind::PermissionDenied => MediaError::Refused(format!("{what}: permission denied")),
        _ => MediaError::Io(format!("{what}: {e}")),
    }
}

struct OpenFile {
    path: String,
    size: u64,
    file: tokio::fs::File,
}

impl LocalFile for OpenFile {
    fn path(&self) -> &str {
        &self.path
    }

    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&mut self, offset: u64, len: usize) -> BoxFuture<'_, Result<Vec<u8>, MediaError>> {
        Box::pin(async move {
            let what = self.path.clone();
            self.file.seek(SeekFrom::Start(offset)).await.map_err(|e| io_error(&what, e))?;
            let mut buf = vec![0u8; len];
            let mut filled = 0;
            while filled < len {
                let n = self.file.read(&mut buf[filled..]).await.map_err(|e| io_error(&what, e))?;
                if n == 0 {
                    break;
                }
                filled += n;
            }
            buf.truncate(filled);
            Ok(buf)
        })
    }
}

struct CacheFile {
    part: PathBuf,
    target: PathBuf,
    file: Option<tokio::fs::File>,
    dir: PathBuf,
    max_bytes: u64,
}

impl LocalSink for CacheFile {
    fn write(&mut self, chunk: Vec<u8>) -> BoxFuture<'_, Result<(), MediaError>> {
        Box::pin(async move {
            let file = self.file.as_mut().ok_or_else(|| MediaError::Io("cache file already finished".into()))?;
            file.write_all(&chunk).await.map_err(|e| io_error("cache file", e))
        })
    }

    fn finish(mut self: Box<Self>) -> BoxFuture<'static, Result<String, MediaError>> {
        Box::pin(async move {
            if let Some(mut file) = self.file.take() {
                file.flush().await.map_err(|e| io_error("cache file", e))?;
            }
            tokio::fs::rename(&self.part, &self.target).await.map_err(|e| io_error("cache file", e))?;
            let (dir, max) = (self.dir.clone(), self.max_bytes);
            let _ = tokio::task::spawn_blocking(move || LocalDirs::prune_cache(&dir, max)).await;
            Ok(self.target.to_string_lossy().into_owned())
        })
    }
}

impl Drop for CacheFile {
    fn drop(&mut self) {
        if self.file.is_some() {
            let _ = std::fs::remove_file(&self.part);
        }
    }
}

/// A file name safe in any directory: ASCII letters, digits, `.`, `-`, `_`; at most 64 bytes.
fn safe_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') { c } else { '_' })
        .take(64)
        .collect();
    cleaned.trim_start_matches('.').to_owned()
}

impl LocalFiles for LocalDirs {
    fn open<'a>(&'a self, path: &'a str) -> BoxFuture<'a, Result<Box<dyn LocalFile>, MediaError>> {
        Box::pin(async move {
            if !Path::new(path).is_absolute() {
                return Err(MediaError::BadReference(format!(
                    "{path}: a local file must be named by an absolute path"
                )));
            }
            let canonical = tokio::fs::canonicalize(path).await.map_err(|e| io_error(path, e))?;
            if !self.permitted(&canonical) {
                return Err(MediaError::Refused(format!(
                    "{path} is outside the directories bots may send files from (allow one with --media-dir or [media] allowed-dirs)"
                )));
            }
            let file = tokio::fs::File::open(&canonical).await.map_err(|e| io_error(path, e))?;
            let meta = file.metadata().await.map_err(|e| io_error(path, e))?;
            if !meta.is_file() {
                return Err(MediaError::Refused(format!("{path} is not a regular file")));
            }
            Ok(Box::new(OpenFile { path: canonical.to_string_lossy().into_owned(), size: meta.len(), file })
                as Box<dyn LocalFile>)
        })
    }

    fn create<'a>(&'a self, key: &'a str, name: &'a str) -> BoxFuture<'a, Result<Box<dyn LocalSink>, MediaError>> {
        Box::pin(async move {
            use sha2::Digest;
            let digest = sha2::Sha256::digest(key.as_bytes());
            let stem = crate::core::media::hex(&digest[..12]);
            let name = safe_name(name);
            let target = self.cache.join(if name.is_empty() { stem.clone() } else { format!("{stem}-{name}") });
            tokio::fs::create_dir_all(&self.cache).await.map_err(|e| io_error("cache directory", e))?;
            let part = self.cache.join(format!(".{stem}.{}.part", rand::random::<u32>()));
            let file = tokio::fs::File::create(&part).await.map_err(|e| io_error("cache file", e))?;
            Ok(Box::new(CacheFile {
                part,
                target,
                file: Some(file),
                dir: self.cache.clone(),
                max_bytes: self.cache_max_bytes,
            }) as Box<dyn LocalSink>)
        })
    }
}

/// A response body fed chunk by chunk from a task.
pub struct ChannelBody {
    rx: mpsc::Receiver<Result<Bytes, std::io::Error>>,
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.rx.poll_recv(cx).map(|item| item.map(|r| r.map(Frame::data)))
    }
}

/// What the file route answers: a streamed file, or a status with a short text.
pub enum Served {
    File(Response<ChannelBody>),
    Status(StatusCode, &'static str),
}

/// `GET /files/<token>`: the backend file the token names, streamed.
pub async fn serve_file(hub: Arc<Hub>, token: &str) -> Served {
    let Some((v11_self, file_id)) = hub.translator.media.verify_token(token) else {
        return Served::Status(StatusCode::NOT_FOUND, "no such file");
    };
    let Selection::Ready(entry) = hub.select(Some(v11_self)) else {
        return Served::Status(StatusCode::SERVICE_UNAVAILABLE, "the bot account is not connected");
    };
    let backend = hub.backend_info(entry.link().id);
    let ctx = hub.translator.context(&entry.account, &backend, Default::default());
    let download = match hub.translator.open_download(ctx, &AccountCaller(&entry), &file_id).await {
        Ok(d) => d,
        Err(error) => {
            tracing::info!(%error, file_id, "cannot serve a backend file");
            let status = match error {
                crate::core::action::ActionError::Media(MediaError::TooLarge { .. }) => StatusCode::PAYLOAD_TOO_LARGE,
                crate::core::action::ActionError::Backend { .. } => StatusCode::NOT_FOUND,
                _ => StatusCode::BAD_GATEWAY,
            };
            return Served::Status(status, "the backend cannot give this file");
        }
    };
    let (tx, rx) = mpsc::channel(2);
    let mut response = Response::new(ChannelBody { rx });
    let headers = response.headers_mut();
    if let Some(size) = download.size {
        headers.insert(CONTENT_LENGTH, HeaderValue::from(size));
    }
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type(&download.name)));
    let disposition = format!("inline; filename=\"{}\"", safe_name(&download.name));
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        headers.insert(CONTENT_DISPOSITION, v);
    }
    let task_hub = hub.clone();
    tokio::spawn(async move {
        let mut download = download;
        let backend = task_hub.backend_info(entry.link().id);
        let ctx = task_hub.translator.context(&entry.account, &backend, Default::default());
        loop {
            match task_hub.translator.next_chunk(ctx, &AccountCaller(&entry), &mut download).await {
                Ok(Some(chunk)) => {
                    if tx.send(Ok(Bytes::from(chunk))).await.is_err() {
                        return; // the client went away
                    }
                }
                Ok(None) => return,
                Err(error) => {
                    tracing::warn!(%error, file_id, "serving a backend file failed midway");
                    let _ = tx.send(Err(std::io::Error::other(error.to_string()))).await;
                    return;
                }
            }
        }
    });
    Served::File(response)
}

/// A `Content-Type` from a file name's extension (bots mostly look at the bytes anyway).
fn content_type(name: &str) -> &'static str {
    let ext = name.rsplit('.').next().unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "mp4" => "video/mp4",
        "mp3" => "audio/mpeg",
        "amr" => "audio/amr",
        "silk" => "audio/silk",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ob-media-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::canonicalize(&d).unwrap()
    }

    #[tokio::test]
    async fn only_files_inside_allowed_directories_are_read() {
        let root = temp("allowed");
        let allowed = root.join("pics");
        let outside = root.join("secret");
        std::fs::create_dir_all(&allowed).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(allowed.join("a.png"), b"picture").unwrap();
        std::fs::write(outside.join("key"), b"secret").unwrap();
        std::os::unix::fs::symlink(outside.join("key"), allowed.join("link")).unwrap();
        let dirs = LocalDirs::new(vec![allowed.clone()], &root.join("cache"), 1 << 20).unwrap();

        let mut f = dirs.open(allowed.join("a.png").to_str().unwrap()).await.unwrap();
        assert_eq!(f.size(), 7);
        assert_eq!(f.read_at(2, 100).await.unwrap(), b"cture");
        for escape in [
            outside.join("key").to_string_lossy().into_owned(),
            format!("{}/../secret/key", allowed.display()),
            allowed.join("link").to_string_lossy().into_owned(),
        ] {
            let e = dirs.open(&escape).await.err().unwrap();
            assert!(matches!(e, MediaError::Refused(_)), "{escape}: {e:?}");
        }
        assert!(matches!(
            dirs.open(allowed.join("nope").to_str().unwrap()).await.err().unwrap(),
            MediaError::NotFound(_)
        ));
        assert!(matches!(dirs.open("relative/a.png").await.err().unwrap(), MediaError::BadReference(_)));
        assert!(matches!(dirs.open(allowed.to_str().unwrap()).await.err().unwrap(), MediaError::Refused(_)));
        let _ = std::fs::remove_dir_all(&root);
    }

    #[tokio::test]
    async fn cache_files_appear_whole_and_the_cache_stays_bounded() {
        let root = temp("cache");
        let dirs = LocalDirs::new(Vec::new(), &root.join("cache"), 10).unwrap();
        let mut sink = dirs.create("k1", "../a b.png").await.unwrap();
        sink.write(b"12345".to_vec()).await.unwrap();
        sink.write(b"678".to_vec()).await.unwrap();
        let first = sink.finish().await.unwrap();
        assert!(first.ends_with("-_a_b.png") && Path::new(&first).starts_with(root.join("cache")), "{first}");
        assert_eq!(std::fs::read(&first).unwrap(), b"12345678");
        // A cached file can be sent back.
        assert_eq!(dirs.open(&first).await.unwrap().size(), 8);
        // An unfinished file leaves nothing behind.
        let mut sink = dirs.create("k2", "b").await.unwrap();
        sink.write(b"xx".to_vec()).await.unwrap();
        drop(sink);
        assert_eq!(std::fs::read_dir(root.join("cache")).unwrap().count(), 1);
        // Over the limit, the oldest goes.
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mut sink = dirs.create("k3", "c").await.unwrap();
        sink.write(b"abcdefgh".to_vec()).await.unwrap();
        let second = sink.finish().await.unwrap();
        assert!(!Path::new(&first).exists() && Path::new(&second).exists());
        let _ = std::fs::remove_dir_all(&root);
    }
}
