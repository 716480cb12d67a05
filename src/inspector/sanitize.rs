//! Bounded, redacted copies of JSON bodies and texts for the inspector.
//!
//! Nothing the inspector keeps or shows is the original value: it is a copy made here, in which
//! every configured secret is `***` (in strings and in object keys), long strings are cut to a
//! prefix with a `…(N bytes)` marker, `base64://` payloads and `data` strings keep only a short
//! prefix, and arrays, objects and nesting beyond [`Limits`] end in a marker. The work done for
//! one string is bounded by its kept prefix (plus the longest secret), not by its length, so a
//! 20 MB upload costs as much as a short message.

use std::borrow::Cow;

use serde_json::{Map, Value};

/// What one sanitized copy keeps.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Bytes of a string kept before the `…(N bytes)` marker.
    pub string: usize,
    /// Bytes kept of a `data` string (file contents, usually base64).
    pub data: usize,
    /// Items of an array kept; one more item says how many were left out.
    pub array: usize,
    /// Keys of an object kept; one more key (`…`) says how many were left out.
    pub object: usize,
    /// Nesting kept; deeper arrays and objects become a marker.
    pub depth: usize,
}

/// The usual copy: enough to read a message, a file's name and the first of a long list.
pub const NORMAL: Limits = Limits { string: 300, data: 48, array: 50, object: 64, depth: 10 };
/// The copy made again when an item is still larger than its cap with [`NORMAL`].
pub const TIGHT: Limits = Limits { string: 60, data: 16, array: 8, object: 16, depth: 5 };

/// Bytes of an object key kept (keys are short; a long one is someone's data).
const KEY_MAX: usize = 80;
/// What a secret becomes.
pub const MASK: &str = "***";

/// Replaces configured secrets and bounds sizes.
/// When `s` was cut already (`prefix…(N bytes)`): the prefix's length and N.
fn cut_prefix(s: &str) -> Option<(usize, usize)> {
    let at = s.rfind("…(")?;
    let count = s[at + "…(".len()..].strip_suffix(" bytes)")?;
    Some((at, count.parse().ok()?))
}

#[derive(Debug, Default)]
pub struct Redactor {
    /// Non-empty, longest first (a secret that contains another is replaced whole).
    secrets: Vec<String>,
}

impl Redactor {
    pub fn new(mut secrets: Vec<String>) -> Redactor {
        secrets.retain(|s| !s.is_empty());
        secrets.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        secrets.dedup();
        Redactor { secrets }
    }

    /// `s` with every secret replaced, at most `max` bytes of it (a secret that starts within
    /// those bytes is replaced whole, never shown in part), then `…(N bytes)` when cut.
    pub fn text(&self, s: &str, max: usize) -> String {
        // Bodies pass here twice: a string cut before keeps the length of the original.
        let (body, total) = match cut_prefix(s) {
            Some((prefix, total)) => (&s[..prefix], Some(total)),
            None => (s, None),
        };
        let bytes = body.as_bytes();
        let mut out = String::with_capacity(body.len().min(max) + 16);
        let mut i = 0;
        while i < bytes.len() && i < max {
            if let Some(secret) = self.secrets.iter().find(|secret| bytes[i..].starts_with(secret.as_bytes())) {
                out.push_str(MASK);
                i += secret.len();
                continue;
            }
            // `i` is always on a character boundary: it only moves by whole characters and
            // whole secrets (which are strings themselves).
            let Some(c) = body.get(i..).and_then(|rest| rest.chars().next()) else { break };
            out.push(c);
            i += c.len_utf8();
        }
        if i < bytes.len() || total.is_some() {
            out.push_str(&format!("…({} bytes)", total.unwrap_or(bytes.len())));
        }
        out
    }

    /// `s` with every secret replaced and nothing cut (for short texts the bridge wrote, such as
    /// URLs and addresses in the status).
    pub fn whole<'a>(&self, s: &'a str) -> Cow<'a, str> {
        if self.secrets.iter().any(|secret| s.contains(secret.as_str())) {
            Cow::Owned(self.text(s, s.len()))
        } else {
            Cow::Borrowed(s)
        }
    }

    /// A string value, with the `base64://` and `data` rules.
    fn string(&self, key: Option<&str>, s: &str, limits: &Limits) -> String {
        if let Some(payload) = s.strip_prefix("base64://") {
            if payload.len() > limits.data {
                let total = cut_prefix(s).map_or(s.len(), |(_, total)| total);
                return format!("base64://…({total} bytes)");
            }
        }
        let max = if key == Some("data") { limits.data } else { limits.string };
        self.text(s, max)
    }

    /// A sanitized copy of `value`.
    pub fn value(&self, value: &Value, limits: &Limits) -> Value {
        self.walk(None, value, limits, 0)
    }

    /// A sanitized copy of an object.
    pub fn map(&self, map: &Map<String, Value>, limits: &Limits) -> Value {
        self.object(map, limits, 0)
    }

    fn walk(&self, key: Option<&str>, value: &Value, limits: &Limits, depth: usize) -> Value {
        match value {
            Value::String(s) => Value::String(self.string(key, s, limits)),
            Value::Array(items) if depth >= limits.depth => Value::String(format!("…(array of {})", items.len())),
            Value::Object(map) if depth >= limits.depth => Value::String(format!("…(object of {} keys)", map.len())),
            Value::Array(items) => {
                let mut out: Vec<Value> =
                    items.iter().take(limits.array).map(|v| self.walk(None, v, limits, depth + 1)).collect();
                if items.len() > limits.array {
                    out.push(Value::String(format!("…({} more items)", items.len() - limits.array)));
                }
                Value::Array(out)
            }
            Value::Object(map) => self.object(map, limits, depth),
            other => other.clone(),
        }
    }

    fn object(&self, map: &Map<String, Value>, limits: &Limits, depth: usize) -> Value {
        let mut out = Map::new();
        for (key, value) in map.iter().take(limits.object) {
            out.insert(self.text(key, KEY_MAX), self.walk(Some(key), value, limits, depth + 1));
        }
        if map.len() > limits.object {
            out.insert("…".into(), Value::String(format!("({} more keys)", map.len() - limits.object)));
        }
        Value::Object(out)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn redactor() -> Redactor {
        Redactor::new(vec!["s3cret".into(), "".into(), "tok-s3cret-long".into()])
    }

    #[test]
    fn long_strings_keep_a_prefix_and_say_how_long_they_were() {
        let r = Redactor::default();
        let long = "a".repeat(1000);
        let cut = r.value(&json!({"text": long}), &NORMAL);
        assert_eq!(cut["text"], format!("{}…(1000 bytes)", "a".repeat(300)));
        assert_eq!(r.value(&json!("short"), &NORMAL), json!("short"));
        // Never inside a character.
        let wide = "é".repeat(200);
        let cut = r.text(&wide, 301);
        assert!(cut.starts_with(&"é".repeat(150)) && cut.ends_with("…(400 bytes)"), "{cut}");
    }

    #[test]
    fn base64_and_data_payloads_are_cut_short() {
        let r = Redactor::default();
        let b64 = format!("base64://{}", "QUJD".repeat(5000));
        let v = r.value(&json!({"type": "image", "data": {"file": b64, "data": "x".repeat(500)}}), &NORMAL);
        assert_eq!(v["data"]["file"], "base64://…(20009 bytes)");
        // Cut again (every body passes twice), the counts stay the original's.
        let again = r.value(&v, &NORMAL);
        assert_eq!(again, v);
        assert_eq!(r.value(&v, &TIGHT)["data"]["file"], "base64://…(20009 bytes)");
        assert!(r.value(&v, &TIGHT)["data"]["data"].as_str().unwrap().ends_with("…(500 bytes)"));
        assert_eq!(v["data"]["data"], format!("{}…(500 bytes)", "x".repeat(48)));
        assert_eq!(r.value(&json!("base64://QUJD"), &NORMAL), json!("base64://QUJD"), "a tiny one stays");
    }

    #[test]
    fn arrays_objects_and_depth_are_bounded() {
        let r = Redactor::default();
        let v = r.value(&json!((0..100).collect::<Vec<_>>()), &NORMAL);
        assert_eq!(v.as_array().map(Vec::len), Some(51));
        assert_eq!(v[50], "…(50 more items)");
        let wide: Map<String, Value> = (0..100).map(|i| (format!("k{i:03}"), json!(i))).collect();
        let v = r.map(&wide, &NORMAL);
        assert_eq!(v.as_object().map(Map::len), Some(65));
        assert_eq!(v["…"], "(36 more keys)");
        let mut deep = json!("bottom");
        for _ in 0..20 {
            deep = json!([deep]);
        }
        let text = r.value(&deep, &NORMAL).to_string();
        assert!(text.contains("…(array of 1)") && !text.contains("bottom"), "{text}");
    }

    #[test]
    fn secrets_are_masked_inside_strings_keys_and_texts() {
        let r = redactor();
        let v = r.value(
            &json!({"url": "ws://h/?access_token=s3cret&x=1", "s3cret": 1, "nested": ["Bearer tok-s3cret-long"]}),
            &NORMAL,
        );
        let text = v.to_string();
        assert!(!text.contains("s3cret"), "{text}");
        assert_eq!(v["url"], "ws://h/?access_token=***&x=1");
        assert_eq!(v["***"], 1, "a key that is a secret");
        assert_eq!(v["nested"][0], "Bearer ***", "the longer secret is masked whole");
        assert_eq!(r.text("the backend refused token s3cret", 500), "the backend refused token ***");
        assert_eq!(r.whole("plain"), "plain");
    }

    #[test]
    fn a_secret_across_the_cut_is_masked_whole_not_shown_in_part() {
        let r = redactor();
        let s = format!("{}s3cret{}", "a".repeat(298), "b".repeat(100));
        let cut = r.text(&s, 300);
        assert!(!cut.contains("s3"), "{cut}");
        assert!(cut.starts_with(&format!("{}***", "a".repeat(298))), "{cut}");
        // A secret cut off by a long string's marker is not shown either.
        let s = format!("{}s3cret", "a".repeat(299));
        assert!(!r.text(&s, 300).contains("s3"));
    }
}
