//! What a v11 `file=` names: a URL, a local path, inline base64, or a backend's file_id.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;

use super::MediaError;

/// What a v11 `file=` names.
#[derive(Debug, Clone, PartialEq)]
pub enum MediaSource {
    Url(String),
    /// A local path, decoded from a `file://` URL or given bare.
    Local(String),
    /// Inline data, already decoded.
    Data(Vec<u8>),
    /// Not a resource: a file_id the backend gave.
    FileId(String),
}

/// Reads a v11 media reference. Base64 is decoded here (bounded by `limit` bytes decoded).
pub fn parse_source(file: &str, limit: u64) -> Result<MediaSource, MediaError> {
    let file = file.trim();
    let lower = file.get(..12).unwrap_or(file).to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        return Ok(MediaSource::Url(file.to_owned()));
    }
    if let Some(b64) = file.strip_prefix("base64://") {
        let b64 = b64.trim();
        let decoded_len = (b64.len() as u64 / 4) * 3;
        if decoded_len > limit + 3 {
            return Err(MediaError::TooLarge { what: "the base64 data".into(), size: decoded_len, limit });
        }
        let cleaned: String;
        let text = if b64.bytes().any(|b| b.is_ascii_whitespace()) {
            cleaned = b64.chars().filter(|c| !c.is_ascii_whitespace()).collect();
            &cleaned
        } else {
            b64
        };
        let data = STANDARD
            .decode(text)
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(text.trim_end_matches('=')))
            .or_else(|_| URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')))
            .map_err(|e| MediaError::BadReference(format!("base64:// data does not decode: {e}")))?;
        if data.len() as u64 > limit {
            return Err(MediaError::TooLarge { what: "the base64 data".into(), size: data.len() as u64, limit });
        }
        return Ok(MediaSource::Data(data));
    }
    if file.starts_with("base16384://") {
        return Err(MediaError::BadReference(
            "base16384:// is not supported by this bridge; send base64:// instead".into(),
        ));
    }
    if lower.starts_with("file://") {
        return Ok(MediaSource::Local(file_url_path(&file[7..])?));
    }
    if file.starts_with('/') || is_windows_absolute(file) {
        return Ok(MediaSource::Local(file.to_owned()));
    }
    Ok(MediaSource::FileId(file.to_owned()))
}

fn is_windows_absolute(p: &str) -> bool {
    let b = p.as_bytes();
    b.len() > 2 && b[0].is_ascii_alphabetic() && b[1] == b':' && (b[2] == b'\\' || b[2] == b'/')
}

/// The path of a `file://` URL after the scheme: `/abs`, `localhost/abs`, or `/C:/x` on Windows;
/// percent-escapes decoded.
fn file_url_path(rest: &str) -> Result<String, MediaError> {
    let rest = rest.strip_prefix("localhost").unwrap_or(rest);
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let decoded = percent_encoding::percent_decode_str(rest)
        .decode_utf8()
        .map_err(|_| MediaError::BadReference("file:// path is not UTF-8".into()))?
        .into_owned();
    if let Some(win) = decoded.strip_prefix('/').filter(|p| is_windows_absolute(p)) {
        return Ok(win.to_owned());
    }
    if !decoded.starts_with('/') {
        return Err(MediaError::BadReference(format!("file:// URL must name an absolute path, not {decoded:?}")));
    }
    Ok(decoded)
}
