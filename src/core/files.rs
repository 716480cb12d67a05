//! go-cqhttp's file actions over v12's file API: `get_image` / `get_record`, `download_file`,
//! `upload_group_file` / `upload_private_file` and `get_group_file_url` / `get_private_file_url`.
//!
//! A received media segment's v11 `file` is the backend's file_id, so these actions take it as
//! is. Files a bot should get as a local path (go-cqhttp answers paths under `data/cache`) are
//! fetched from the backend chunk by chunk into the bridge's cache directory.

use serde_json::{json, Map, Value};

use super::action::{required_str, ActionContext, ActionError};
use super::ids::IdStore;
use super::mapping::SendTarget;
use super::media::MediaError;
use super::message::{value_as_text, Segment};
use super::{Translator, V12Caller};

/// A file fetched into the cache directory.
struct Cached {
    path: String,
    name: String,
    size: u64,
}

/// go-cqhttp's `headers` param: `"K=V\r\nK=V"` or `["K=V", …]` (also `K: V`), as a v12 header map.
fn read_headers(v: Option<&Value>) -> Map<String, Value> {
    let lines: Vec<String> = match v {
        Some(Value::String(s)) => s.split(['\r', '\n']).map(str::to_owned).collect(),
        Some(Value::Array(items)) => items.iter().filter_map(value_as_text).collect(),
        Some(Value::Object(m)) => {
            return m.iter().filter_map(|(k, v)| Some((k.clone(), value_as_text(v)?.into()))).collect()
        }
        _ => Vec::new(),
    };
    lines
        .iter()
        .filter_map(|line| {
            let (k, v) = line.split_once('=').or_else(|| line.split_once(':'))?;
            let k = k.trim();
            (!k.is_empty()).then(|| (k.to_owned(), Value::String(v.trim().to_owned())))
        })
        .collect()
}

impl<S: IdStore> Translator<S> {
    /// Fetches a backend file into the cache directory, checking its sha256 when the backend
    /// gave one.
    async fn fetch_to_cache<C: V12Caller>(
        &self,
        ctx: ActionContext<'_>,
        caller: &C,
        file_id: &str,
    ) -> Result<Cached, ActionError> {
        let files = self
            .media
            .files()
            .ok_or_else(|| MediaError::Refused("the bridge has no cache directory for downloaded files".into()))?;
        let mut download = self.open_download(ctx, caller, file_id).await?;
        let key = download.sha256.clone().unwrap_or_else(|| format!("{}-{file_id}", ctx.account.self_id.user_id));
        let mut sink = files.create(&key, &download.name).await?;
        let mut size = 0u64;
        // The download checks the sha256 at its end; a mismatch drops the unfinished cache file.
        while let Some(chunk) = self.next_chunk(ctx, caller, &mut download).await? {
            size += chunk.len() as u64;
            sink.write(chunk).await?;
        }
        let path = sink.finish().await?;
        Ok(Cached { path, name: download.name, size })
    }

    /// `get_image` / `get_record`: `{file (local path), url, filename, size}`.
    pub(super) async fn get_image<C: V12Caller>(
        &self,
        ctx: ActionContext<'_>,
        caller: &C,
        params: &Map<String, Value>,
    ) -> Result<Value, ActionError> {
        let file_id = required_str(params, "file")?;
        let url = self.file_url(ctx, caller, &file_id).await;
        match self.fetch_to_cache(ctx, caller, &file_id).await {
            Ok(c) => Ok(json!({ "file": c.path, "url": url.unwrap_or_default(), "filename": c.name, "size": c.size })),
            // The bot can still fetch it by URL.
            Err(error) if url.is_some() => {
                tracing::warn!(%error, file_id, "cannot cache the file locally; answering its URL as `file`");
                let url = url.unwrap_or_default();
                Ok(json!({ "file": url, "url": url, "filename": file_id, "size": 0 }))
            }
            Err(error) => Err(error),
        }
    }

    /// `download_file`: the backend fetches `url` (with `headers`), the bridge caches it: `{file}`.
    pub(super) async fn download_file<C: V12Caller>(
        &self,
        ctx: ActionContext<'_>,
        caller: &C,
        params: &Map<String, Value>,
    ) -> Result<Value, ActionError> {
        let url = required_str(params, "url")?;
        let mut p = Map::new();
        p.insert("type".into(), "url".into());
        let name = params
            .get("name")
            .and_then(value_as_text)
            .unwrap_or_else(|| url.split(['?', '#']).next().unwrap_or("").rsplit('/').next().unwrap_or("").to_owned());
        p.insert("name".into(), if name.is_empty() { "download".to_owned() } else { name }.into());
        p.insert("url".into(), url.into());
        let headers = read_headers(params.get("headers"));
        if !headers.is_empty() {
            p.insert("headers".into(), Value::Object(headers));
        }
        let data = self.call(ctx, caller, "upload_file", p).await?;
        let file_id = data
            .get("file_id")
            .and_then(super::v12::id_string)
            .ok_or_else(|| MediaError::BadAnswer { action: "upload_file".into(), reason: "no `file_id`".into() })?;
        let cached = self.fetch_to_cache(ctx, caller, &file_id).await?;
        Ok(json!({ "file": cached.path }))
    }

    /// `upload_group_file` / `upload_private_file`: the file (a local path, as go-cqhttp takes,
    /// or any other media form) is uploaded and sent as a `file` segment. `folder` travels as an
    /// extension field of the segment.
    pub(super) async fn upload_chat_file<C: V12Caller>(
        &self,
        target: Option<SendTarget>,
        ctx: ActionContext<'_>,
        caller: &C,
        params: &Map<String, Value>,
    ) -> Result<Value, ActionError> {
        let target = Self::send_target(target, params)?;
        let mut seg = Segment::new("file").with("file", required_str(params, "file")?);
        for key in ["name", "folder"] {
            if let Some(v) = params.get(key).and_then(value_as_text).filter(|v| !v.is_empty()) {
                seg.data.insert(key, v.into());
            }
        }
        let mut segments = vec![seg];
        self.upload_media(ctx, caller, &mut segments, true).await?;
        self.send_segments(ctx, caller, &target, segments).await?;
        Ok(Value::Null)
    }

    /// `get_group_file_url` / `get_private_file_url`: `{url}`.
    pub(super) async fn get_file_url<C: V12Caller>(
        &self,
        ctx: ActionContext<'_>,
        caller: &C,
        params: &Map<String, Value>,
    ) -> Result<Value, ActionError> {
        let file_id = required_str(params, "file_id")?;
        match self.file_url(ctx, caller, &file_id).await {
            Some(url) => Ok(json!({ "url": url })),
            None => Err(MediaError::NotFound(format!(
                "the backend gives no URL for file {file_id}, and the bridge has no HTTP address to serve it from"
            ))
            .into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn download_headers_are_read_in_go_cqhttp_forms() {
        let want = json!({"User-Agent": "x", "Referer": "http://a/?q=1"});
        assert_eq!(Value::Object(read_headers(Some(&json!("User-Agent=x\r\nReferer=http://a/?q=1")))), want);
        assert_eq!(Value::Object(read_headers(Some(&json!(["User-Agent=x", "Referer=http://a/?q=1"])))), want);
        assert_eq!(Value::Object(read_headers(Some(&json!(["User-Agent: x"])))), json!({"User-Agent": "x"}));
        assert!(read_headers(None).is_empty());
    }
}
