//! Message values shared by both protocol versions: a segment is `{type, data}`.
//!
//! v11 and v12 use the same segment envelope; what differs is the vocabulary inside it. This module
//! only holds the envelope and the helpers every translator needs to read a data value leniently.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One message segment: `{"type": …, "data": {…}}`. `data` may be `null` or absent on input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub data: Map<String, Value>,
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Map<String, Value>, D::Error> {
    Ok(Option::<Map<String, Value>>::deserialize(d)?.unwrap_or_default())
}

impl Segment {
    pub fn new(kind: impl Into<String>) -> Self {
        Segment { kind: kind.into(), data: Map::new() }
    }

    pub fn text(text: impl Into<String>) -> Self {
        Segment::new("text").with("text", text.into())
    }

    /// Builder: sets one data field.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.data.insert(key.to_owned(), value.into());
        self
    }

    /// Reads a segment from a borrowed `{type, data}` value, as its `Deserialize` does (`data`
    /// absent or `null` is empty; other keys are ignored) but copying the data map whole.
    pub fn read(v: &Value) -> Option<Segment> {
        let obj = v.as_object()?;
        let kind = obj.get("type")?.as_str()?.to_owned();
        let data = match obj.get("data") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(data)) => data.clone(),
            Some(_) => return None,
        };
        Some(Segment { kind, data })
    }

    /// The segment as a JSON value, without copying its data.
    pub fn into_value(self) -> Value {
        let mut m = Map::with_capacity(2);
        m.insert("type".into(), Value::String(self.kind));
        m.insert("data".into(), Value::Object(self.data));
        Value::Object(m)
    }

    /// A data value as text, the way v11 reads it: strings as they are, numbers and booleans in
    /// their JSON form, `null` as absent, objects and arrays as compact JSON.
    pub fn str_of(&self, key: &str) -> Option<String> {
        self.data.get(key).and_then(value_as_text)
    }
}

/// Renders any JSON value as the text v11 would carry for it (`None` for `null`).
pub fn value_as_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        other => Some(other.to_string()),
    }
}
