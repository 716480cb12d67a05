//! Media on this machine: the local files bots may name, the cache directory, and the bridge's
//! own file URLs (`GET /files/<token>` on the v11 HTTP server, and on forward WebSocket ports).
//!
//! [`LocalDirs`] is the core's [`LocalFiles`]: a path is resolved to its canonical form (so `..`
//! and symlinks are followed first) and read only when that lies inside an allowed directory or
//! the cache directory. Outside them every path gets the same refusal, existing or not, so bots
//! cannot probe the disk. Only regular files are opened, and without blocking (a FIFO or a device
//! is refused, never waited on); resolving, opening and every read together are bounded by the
//! transfer timeout. Reads are chunked; nothing holds a whole file in memory.
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
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame};
use hyper::header::{HeaderValue, CONTENT_DISPOSITION, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::core::media::{BoxFuture, LocalFile, LocalFiles, LocalSink, MediaError};
use crate::hub::{AccountCaller, Hub, Selection};

/// The directories bots may name files in, and the cache directory.
#[derive(Debug)]
pub struct LocalDirs {
    roots: Arc<Roots>,
    cache_max_bytes: u64,
    /// The longest opening a file, and then reading all of it, may take.
    time_limit: Duration,
}

/// Where local files may be read from, all canonical.
#[derive(Debug)]
struct Roots {
    allowed: Vec<PathBuf>,
    cache: PathBuf,
}

/// Longest path a bot may name (Linux's `PATH_MAX`); longer cannot name a file anyway.
const MAX_PATH_BYTES: usize = 4096;

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
        Ok(LocalDirs {
            roots: Arc::new(Roots { allowed, cache }),
            cache_max_bytes,
            time_limit: crate::core::media::MediaOptions::default().transfer_timeout,
        })
    }

    /// Bounds opening a file and reading all of it (the media transfer timeout): a slow or stuck
    /// disk gives the bot a timeout instead of no answer.
    pub fn with_time_limit(mut self, limit: Duration) -> LocalDirs {
        self.time_limit = limit;
        self
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

impl Roots {
    fn permitted(&self, canonical: &Path) -> bool {
        canonical.starts_with(&self.cache) || self.allowed.iter().any(|dir| canonical.starts_with(dir))
    }

    /// The canonical path and metadata of the regular file a bot named, or why not.
    ///
    /// Outside the allowed directories every path gets the same refusal, whether it exists, is
    /// readable or is a symlink, so a bot cannot probe the disk. A path that does not resolve
    /// (missing, or a directory on the way cannot be searched) is placed where it would be: its
    /// deepest ancestor that resolves, plus the rest as written; only there, inside an allowed
    /// directory, is "no such file" said. Anything but a regular file is refused before it is
    /// opened (a FIFO would block the reader, a device never ends).
    fn resolve(&self, path: &Path) -> Result<(PathBuf, std::fs::Metadata), MediaError> {
        let shown = path.display();
        let refused = || {
            MediaError::Refused(format!(
                "{shown} is outside the directories bots may send files from (allow one with --media-dir or [media] allowed-dirs)"
            ))
        };
        let canonical = match std::fs::canonicalize(path) {
            Ok(c) => c,
            Err(e) if self.would_be_inside(path) => return Err(io_error(&shown.to_string(), e)),
            Err(_) => return Err(refused()),
        };
        if !self.permitted(&canonical) {
            return Err(refused());
        }
        let meta = std::fs::metadata(&canonical).map_err(|e| io_error(&shown.to_string(), e))?;
        if !meta.is_file() {
            return Err(MediaError::Refused(format!("{shown} is not a regular file")));
        }
        Ok((canonical, meta))
    }

    /// Whether a path that does not resolve lies inside an allowed directory: its deepest
    /// ancestor that resolves joined with the remaining names. Each remaining name must be
    /// absent altogether (a dangling symlink could point anywhere) and none may be `..`
    /// (climbing out of something that does not exist); otherwise it counts as outside.
    fn would_be_inside(&self, path: &Path) -> bool {
        for ancestor in path.ancestors() {
            if ancestor != path {
                if let Ok(base) = std::fs::canonicalize(ancestor) {
                    let Ok(rest) = path.strip_prefix(ancestor) else { return false };
                    let plain = rest.components().all(|c| matches!(c, std::path::Component::Normal(_)));
                    return plain && self.permitted(&base.join(rest));
                }
            }
            if std::fs::symlink_metadata(ancestor).is_ok() {
                return false;
            }
        }
        false
    }

    /// Opens the file [`Roots::resolve`] found, without blocking on anything that is not a
    /// regular file (it could have been swapped for a FIFO since), and checks it is still that file.
    fn open(&self, path: &Path) -> Result<(std::fs::File, PathBuf, u64), MediaError> {
        let (canonical, meta) = self.resolve(path)?;
        let shown = path.display().to_string();
        let mut options = std::fs::OpenOptions::new();
        options.read(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::custom_flags(
            &mut options,
            libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_NOFOLLOW,
        );
        let file = options.open(&canonical).map_err(|e| io_error(&shown, e))?;
        let opened = file.metadata().map_err(|e| io_error(&shown, e))?;
        if !opened.is_file() || !same_file(&meta, &opened) {
            return Err(MediaError::Refused(format!("{shown} changed while being opened")));
        }
        Ok((file, canonical, opened.len()))
    }
}

#[cfg(unix)]
fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    (a.dev(), a.ino()) == (b.dev(), b.ino())
}

#[cfg(not(unix))]
fn same_file(_: &std::fs::Metadata, _: &std::fs::Metadata) -> bool {
    true
}

/// Runs blocking file work on the blocking pool, given up on at `deadline` (the work itself
/// then finishes in the background; the bot has its answer).
async fn within_deadline<T: Send + 'static>(
    deadline: Instant,
    limit: Duration,
    work: impl FnOnce() -> Result<T, MediaError> + Send + 'static,
) -> Result<T, MediaError> {
    match tokio::time::timeout_at(deadline, tokio::task::spawn_blocking(work)).await {
        Ok(Ok(result)) => result,
        Ok(Err(e)) => Err(MediaError::Io(format!("reading a local file failed: {e}"))),
        Err(_) => Err(MediaError::Timeout(limit.as_secs())),
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
    /// When reading it must be done by (the transfer timeout from the open).
    deadline: Instant,
    limit: Duration,
}

impl LocalFile for OpenFile {
    fn path(&self) -> &str {
        &self.path
    }

    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&mut self, offset: u64, len: usize) -> BoxFuture<'_, Result<Vec<u8>, MediaError>> {
        let (deadline, limit) = (self.deadline, self.limit);
        let read = async move {
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
        };
        Box::pin(async move {
            tokio::time::timeout_at(deadline, read).await.unwrap_or(Err(MediaError::Timeout(limit.as_secs())))
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
            if path.len() > MAX_PATH_BYTES {
                return Err(MediaError::BadReference(format!("a local path is at most {MAX_PATH_BYTES} bytes")));
            }
            let limit = self.time_limit;
            let deadline = Instant::now() + limit;
            let (roots, named) = (self.roots.clone(), PathBuf::from(path));
            let (file, canonical, size) = within_deadline(deadline, limit, move || roots.open(&named)).await?;
            Ok(Box::new(OpenFile {
                path: canonical.to_string_lossy().into_owned(),
                size,
                file: tokio::fs::File::from_std(file),
                deadline,
                limit,
            }) as Box<dyn LocalFile>)
        })
    }

    fn create<'a>(&'a self, key: &'a str, name: &'a str) -> BoxFuture<'a, Result<Box<dyn LocalSink>, MediaError>> {
        Box::pin(async move {
            use sha2::Digest;
            let digest = sha2::Sha256::digest(key.as_bytes());
            let stem = crate::core::media::hex(&digest[..12]);
            let name = safe_name(name);
            let target = self.roots.cache.join(if name.is_empty() { stem.clone() } else { format!("{stem}-{name}") });
            tokio::fs::create_dir_all(&self.roots.cache).await.map_err(|e| io_error("cache directory", e))?;
            let part = self.roots.cache.join(format!(".{stem}.{}.part", rand::random::<u32>()));
            let file = tokio::fs::File::create(&part).await.map_err(|e| io_error("cache file", e))?;
            Ok(Box::new(CacheFile {
                part,
                target,
                file: Some(file),
                dir: self.roots.cache.clone(),
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

    /// The refusal with the path the bot gave taken out, so refusals can be compared.
    fn refusal(dirs: &LocalDirs, path: &str) -> String {
        match block_on_open(dirs, path) {
            Err(MediaError::Refused(why)) => why.replace(path, "<path>"),
            other => panic!("{path}: {:?}", other.map(|f| f.path().to_owned())),
        }
    }

    fn block_on_open(dirs: &LocalDirs, path: &str) -> Result<Box<dyn LocalFile>, MediaError> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), dirs.open(path)).await })
            .unwrap_or_else(|_| panic!("{path}: opening did not finish"))
    }

    #[test]
    fn outside_the_allowed_directories_every_path_gets_the_same_refusal() {
        let root = temp("oracle");
        let (allowed, outside) = (root.join("pics"), root.join("secret"));
        std::fs::create_dir_all(&allowed).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("key"), b"secret").unwrap();
        std::fs::write(outside.join("locked"), b"secret").unwrap();
        std::fs::set_permissions(outside.join("locked"), std::os::unix::fs::PermissionsExt::from_mode(0o000)).unwrap();
        std::os::unix::fs::symlink(outside.join("key"), allowed.join("link")).unwrap();
        std::os::unix::fs::symlink(outside.join("gone"), allowed.join("dangling")).unwrap();
        std::os::unix::fs::symlink(&outside, allowed.join("secret-dir")).unwrap();
        let dirs = LocalDirs::new(vec![allowed.clone()], &root.join("cache"), 1 << 20).unwrap();

        let a = allowed.display();
        let o = outside.display();
        let paths = [
            format!("{o}/key"),
            format!("{o}/locked"),
            format!("{o}/missing"),
            format!("{o}/missing-dir/missing"),
            format!("{o}/key/below-a-file"),
            "/no-such-top-directory/x.png".to_owned(),
            format!("{a}/../secret/key"),
            format!("{a}/../secret/missing"),
            format!("{a}/link"),
            format!("{a}/dangling"),
            format!("{a}/secret-dir/key"),
            format!("{a}/secret-dir/missing"),
            format!("{a}/missing-dir/../../secret/key"),
            format!("{a}/missing-dir/../../secret/missing"),
        ];
        let first = refusal(&dirs, &paths[0]);
        assert!(first.contains("outside the directories"), "{first}");
        for path in &paths[1..] {
            assert_eq!(refusal(&dirs, path), first, "{path}");
        }
        // Inside, a missing file may say so.
        assert!(matches!(block_on_open(&dirs, &format!("{a}/missing.png")), Err(MediaError::NotFound(_))));
        assert!(matches!(block_on_open(&dirs, &format!("{a}/sub/missing.png")), Err(MediaError::NotFound(_))));
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn only_regular_files_are_opened_and_none_blocks() {
        let root = temp("kinds");
        let allowed = root.join("pics");
        std::fs::create_dir_all(allowed.join("dir")).unwrap();
        let fifo = allowed.join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(made.success());
        let _socket = std::os::unix::net::UnixListener::bind(allowed.join("socket")).unwrap();
        // /dev as an allowed directory: its devices are no files to send either.
        let dirs = LocalDirs::new(vec![allowed.clone(), PathBuf::from("/dev")], &root.join("cache"), 1 << 20).unwrap();
        for path in [fifo.clone(), allowed.join("socket"), allowed.join("dir"), "/dev/zero".into(), "/dev/null".into()]
        {
            let why = refusal(&dirs, path.to_str().unwrap());
            assert!(why.contains("not a regular file"), "{}: {why}", path.display());
        }
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
