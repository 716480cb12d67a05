//! Message values shared by both protocol versions: a segment is `{type, data}`.
//!
//! v11 and v12 use the same segment envelope; what differs is the vocabulary inside it. This module
//! only holds the envelope and the helpers every translator needs to read a data value leniently.

use std::hash::BuildHasher;

pub use compact_str::CompactString;

use hashbrown::HashTable;
use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// One message segment: `{"type": …, "data": {…}}`. `data` may be `null` or absent on input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    #[serde(rename = "type")]
    pub kind: CompactString,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub data: Data,
}

fn null_as_empty<'de, D: Deserializer<'de>>(d: D) -> Result<Data, D::Error> {
    Ok(Option::<Data>::deserialize(d)?.unwrap_or_default())
}

impl Segment {
    pub fn new(kind: impl Into<CompactString>) -> Self {
        Segment { kind: kind.into(), data: Data::new() }
    }

    pub fn text(text: impl Into<String>) -> Self {
        let data = Data::single(CompactString::const_new("text"), Value::String(text.into()));
        Segment { kind: CompactString::const_new("text"), data }
    }

    /// Builder: sets one data field.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.data.insert(key, value.into());
        self
    }

    /// Reads a segment from a borrowed `{type, data}` value, as its `Deserialize` does (`data`
    /// absent or `null` is empty; other keys are ignored), copying what it holds.
    pub fn read(v: &Value) -> Option<Segment> {
        let seg = SegmentRef::read(v)?;
        Some(Segment { kind: seg.kind.into(), data: seg.entries().map(|(k, v)| (k, v.clone())).collect() })
    }

    /// Segments as the JSON list they are in a message, without copying their data.
    pub fn list_into_value(segments: Vec<Segment>) -> Value {
        Value::Array(segments.into_iter().map(Segment::into_value).collect())
    }

    /// The segment as a JSON value, without copying its data.
    pub fn into_value(self) -> Value {
        let mut m = Map::with_capacity(2);
        m.insert("type".into(), Value::String(self.kind.into_string()));
        m.insert("data".into(), Value::Object(self.data.into_map()));
        Value::Object(m)
    }

    /// The segment as a JSON value (a copy).
    pub fn to_value(&self) -> Value {
        let mut m = Map::with_capacity(2);
        m.insert("type".into(), Value::String(self.kind.to_string()));
        m.insert("data".into(), Value::Object(self.data.iter().map(|(k, v)| (k.to_owned(), v.clone())).collect()));
        Value::Object(m)
    }

    /// A data value as text, the way v11 reads it: strings as they are, numbers and booleans in
    /// their JSON form, `null` as absent, objects and arrays as compact JSON.
    pub fn str_of(&self, key: &str) -> Option<String> {
        self.data.get(key).and_then(value_as_text)
    }
}

/// A segment read in place from a JSON value (`{type, data}`, `data` absent or `null` being
/// empty) or borrowed from a [`Segment`]. Translating from it copies each value once, into the
/// segment it becomes.
#[derive(Debug, Clone, Copy)]
pub struct SegmentRef<'a> {
    pub kind: &'a str,
    data: Option<DataRef<'a>>,
}

#[derive(Debug, Clone, Copy)]
enum DataRef<'a> {
    Json(&'a Map<String, Value>),
    Data(&'a Data),
}

/// `map.get(key)` for the small objects a peer's message is made of: up to 8 keys are compared
/// front to back, which costs less than hashing the key (`serde_json`'s map hashes with SipHash);
/// a larger map is looked up by hash, so a peer's many keys cost no more than before.
pub fn lookup<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    if map.len() <= 8 {
        map.iter().find_map(|(k, v)| (k == key).then_some(v))
    } else {
        map.get(key)
    }
}

impl<'a> SegmentRef<'a> {
    pub fn read(v: &'a Value) -> Option<SegmentRef<'a>> {
        let obj = v.as_object()?;
        let kind = lookup(obj, "type")?.as_str()?;
        let data = match lookup(obj, "data") {
            None | Some(Value::Null) => None,
            Some(Value::Object(data)) => Some(DataRef::Json(data)),
            Some(_) => return None,
        };
        Some(SegmentRef { kind, data })
    }

    pub fn of(seg: &'a Segment) -> SegmentRef<'a> {
        SegmentRef { kind: &seg.kind, data: Some(DataRef::Data(&seg.data)) }
    }

    pub fn get(&self, key: &str) -> Option<&'a Value> {
        match self.data? {
            DataRef::Json(map) => lookup(map, key),
            DataRef::Data(data) => data.get(key),
        }
    }

    /// A data value as text, the way v11 reads it (see [`Segment::str_of`]).
    pub fn str_of(&self, key: &str) -> Option<String> {
        self.get(key).and_then(value_as_text)
    }

    pub fn len(&self) -> usize {
        match self.data {
            None => 0,
            Some(DataRef::Json(map)) => map.len(),
            Some(DataRef::Data(data)) => data.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn entries(&self) -> impl Iterator<Item = (&'a str, &'a Value)> {
        let (json, data) = match self.data {
            None => (None, None),
            Some(DataRef::Json(map)) => (Some(map), None),
            Some(DataRef::Data(data)) => (None, Some(data)),
        };
        let json = json.into_iter().flatten().map(|(k, v)| (k.as_str(), v));
        json.chain(data.into_iter().flat_map(|data| data.iter()))
    }
}

/// A segment's data: its keys in the order they came, each once (a repeated key keeps its first
/// place and takes the last value, as `serde_json`'s ordered map does).
///
/// A segment holds a handful of keys, so a vector searched front to back costs less than hashing
/// every key into a map; the CQ parser and the event path build one per segment. Past
/// [`Data::INDEXED`] keys (a segment a peer stuffed with thousands) a hash index takes over, so
/// building any segment stays linear in its size.
#[derive(Debug, Clone, Default)]
pub struct Data {
    entries: Vec<(CompactString, Value)>,
    /// Positions in `entries` by key, once there are more than [`Data::INDEXED`] of them.
    index: Option<Box<Index>>,
}

#[derive(Debug, Clone)]
struct Index {
    table: HashTable<usize>,
    /// Keys come from peers: std's keyed SipHash keeps chosen collisions from slowing the table.
    hasher: std::hash::RandomState,
}

impl Index {
    fn of(entries: &[(CompactString, Value)]) -> Box<Index> {
        let hasher = std::hash::RandomState::new();
        let mut table = HashTable::with_capacity(entries.len());
        for (i, (k, _)) in entries.iter().enumerate() {
            table.insert_unique(hasher.hash_one(k.as_str()), i, |&j| hasher.hash_one(entries[j].0.as_str()));
        }
        Box::new(Index { table, hasher })
    }
}

impl Data {
    /// Above this many keys, lookups go through a hash index.
    pub const INDEXED: usize = 16;

    pub fn new() -> Data {
        Data::default()
    }

    pub fn with_capacity(n: usize) -> Data {
        Data { entries: Vec::with_capacity(n.min(Data::INDEXED)), index: None }
    }

    /// Data of one key.
    pub fn single(key: impl Into<CompactString>, value: Value) -> Data {
        Data { entries: vec![(key.into(), value)], index: None }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn position(&self, key: &str) -> Option<usize> {
        match &self.index {
            Some(index) => index.table.find(index.hasher.hash_one(key), |&i| self.entries[i].0 == key).copied(),
            None => self.entries.iter().position(|(k, _)| k == key),
        }
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.position(key).map(|i| &self.entries[i].1)
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut Value> {
        self.position(key).map(|i| &mut self.entries[i].1)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.position(key).is_some()
    }

    /// Sets `key`: in its place when present (giving back the old value), else last.
    pub fn insert(&mut self, key: impl Into<CompactString>, value: Value) -> Option<Value> {
        let key = key.into();
        if let Some(i) = self.position(&key) {
            return Some(std::mem::replace(&mut self.entries[i].1, value));
        }
        let at = self.entries.len();
        match &mut self.index {
            Some(index) => {
                let hasher = &index.hasher;
                let entries = &self.entries;
                index
                    .table
                    .insert_unique(hasher.hash_one(key.as_str()), at, |&j| hasher.hash_one(entries[j].0.as_str()));
            }
            None if at == Data::INDEXED => {
                self.entries.push((key, value));
                self.index = Some(Index::of(&self.entries));
                return None;
            }
            None => {}
        }
        self.entries.push((key, value));
        None
    }

    /// Appends `key`, which the caller knows is absent (checked in debug builds), without
    /// searching for it.
    pub(crate) fn push_new(&mut self, key: impl Into<CompactString>, value: Value) {
        let key = key.into();
        debug_assert!(!self.contains_key(&key), "`{key}` is already present");
        if self.index.is_some() || self.entries.len() >= Data::INDEXED {
            self.insert(key, value);
        } else {
            self.entries.push((key, value));
        }
    }

    /// Sets `key` only when it is absent.
    pub fn insert_if_absent(&mut self, key: &str, value: impl FnOnce() -> Value) {
        if !self.contains_key(key) {
            self.insert(key.to_owned(), value());
        }
    }

    /// Removes `key`, keeping the others in order.
    pub fn remove(&mut self, key: &str) -> Option<Value> {
        let i = self.position(key)?;
        let (_, value) = self.entries.remove(i);
        self.index = (self.entries.len() > Data::INDEXED).then(|| Index::of(&self.entries));
        Some(value)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(k, _)| k.as_str())
    }

    pub fn values(&self) -> impl Iterator<Item = &Value> {
        self.entries.iter().map(|(_, v)| v)
    }

    /// The data as a JSON object, keys in order.
    pub fn into_map(self) -> Map<String, Value> {
        self.entries.into_iter().map(|(k, v)| (k.into_string(), v)).collect()
    }
}

/// A [`Data`] being read from an object, key by key. Each key read sets its bit ([`key_bit`]): a
/// key whose bit no key before it set is new, and goes last without a search of the keys before
/// it. Searching them for each key made reading an object quadratic in its keys: a v11 event's
/// fourteen keys took ninety-one comparisons, about a twentieth of a v11 link's event.
#[derive(Debug, Default)]
pub struct Reading {
    data: Data,
    bits: u64,
}

impl Reading {
    pub fn with_capacity(n: usize) -> Reading {
        Reading { data: Data::with_capacity(n), bits: 0 }
    }

    /// [`Data::insert`]: a repeated key keeps its first place and takes the last value.
    pub fn insert(&mut self, key: impl Into<CompactString>, value: Value) {
        let key = key.into();
        let bit = key_bit(&key);
        if self.bits & bit == 0 {
            self.bits |= bit;
            self.data.push_new(key, value);
        } else {
            self.data.insert(key, value);
        }
    }

    pub fn done(self) -> Data {
        self.data
    }
}

/// A key's bit for [`Reading`]: from its length and its first and last bytes, mixed so the keys
/// that come together (an event's, a segment's) take different bits. Keys are a peer's choice:
/// keys that share a bit are searched for as any key was before.
fn key_bit(key: &str) -> u64 {
    let b = key.as_bytes();
    let (first, last) = (b.first().copied().unwrap_or(0), b.last().copied().unwrap_or(0));
    let mixed = (b.len() as u64 ^ u64::from(first) << 8 ^ u64::from(last) << 16).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    1 << (mixed >> 58)
}

/// Same keys with equal values, in any order (as JSON objects compare).
impl PartialEq for Data {
    fn eq(&self, other: &Data) -> bool {
        self.len() == other.len() && self.iter().all(|(k, v)| other.get(k) == Some(v))
    }
}

impl<K: Into<CompactString>> FromIterator<(K, Value)> for Data {
    fn from_iter<I: IntoIterator<Item = (K, Value)>>(iter: I) -> Data {
        let iter = iter.into_iter();
        let mut data = Reading::with_capacity(iter.size_hint().0);
        for (k, v) in iter {
            data.insert(k, v);
        }
        data.done()
    }
}

impl From<Map<String, Value>> for Data {
    fn from(map: Map<String, Value>) -> Data {
        map.into_iter().collect()
    }
}

impl IntoIterator for Data {
    type Item = (CompactString, Value);
    type IntoIter = std::vec::IntoIter<(CompactString, Value)>;
    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

impl<'a> IntoIterator for &'a Data {
    type Item = (&'a str, &'a Value);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (CompactString, Value)>,
        fn(&'a (CompactString, Value)) -> (&'a str, &'a Value),
    >;
    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }
}

impl std::ops::Index<&str> for Data {
    type Output = Value;
    /// The value of `key`, or `null` when absent (as indexing a JSON value gives).
    fn index(&self, key: &str) -> &Value {
        static NULL: Value = Value::Null;
        self.get(key).unwrap_or(&NULL)
    }
}

impl Serialize for Data {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.len()))?;
        for (k, v) in &self.entries {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Data {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Data, D::Error> {
        struct DataVisitor;
        impl<'de> Visitor<'de> for DataVisitor {
            type Value = Data;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a segment's data object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Data, A::Error> {
                let mut data = Reading::with_capacity(access.size_hint().unwrap_or(0));
                while let Some((k, v)) = access.next_entry::<CompactString, Value>()? {
                    data.insert(k, v);
                }
                Ok(data.done())
            }
        }
        d.deserialize_map(DataVisitor)
    }
}

/// Renders any JSON value as the text v11 would carry for it (`None` for `null`).
pub fn value_as_text(v: &Value) -> Option<String> {
    value_text(v).map(std::borrow::Cow::into_owned)
}

/// [`value_as_text`], borrowed where the value is a string already.
pub fn value_text(v: &Value) -> Option<std::borrow::Cow<'_, str>> {
    use std::borrow::Cow;
    match v {
        Value::Null => None,
        Value::String(s) => Some(Cow::Borrowed(s)),
        Value::Bool(b) => Some(Cow::Owned(b.to_string())),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        other => Some(Cow::Owned(other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn keys(data: &Data) -> Vec<&str> {
        data.keys().collect()
    }

    #[test]
    fn data_keeps_order_and_a_repeated_key_keeps_its_first_place_with_the_last_value() {
        let data: Data = serde_json::from_str(r#"{"b": 1, "a": 2, "b": 3}"#).unwrap();
        assert_eq!(keys(&data), ["b", "a"]);
        assert_eq!(data["b"], json!(3));
        assert_eq!(data["missing"], Value::Null);
        assert_eq!(serde_json::to_string(&data).unwrap(), r#"{"b":3,"a":2}"#);
        // Equality is that of JSON objects: order does not matter.
        let other: Data = serde_json::from_str(r#"{"a": 2, "b": 3}"#).unwrap();
        assert_eq!(data, other);
        assert_ne!(data, Data::from(json!({"a": 2}).as_object().unwrap().clone()));
    }

    #[test]
    fn data_remove_keeps_the_rest_in_order() {
        let mut data: Data = ["x", "y", "z"].iter().map(|k| (k.to_string(), json!(k))).collect();
        assert_eq!(data.remove("y"), Some(json!("y")));
        assert_eq!(data.remove("y"), None);
        assert_eq!(keys(&data), ["x", "z"]);
        data.insert_if_absent("x", || json!("no"));
        data.insert_if_absent("w", || json!("w"));
        assert_eq!(keys(&data), ["x", "z", "w"]);
        assert_eq!(data["x"], json!("x"));
    }

    /// Across the size where the hash index takes over, and back below it after removals, every
    /// key is found, repeated keys are replaced in place and order is kept.
    #[test]
    fn data_with_many_keys_behaves_as_with_few() {
        let n = Data::INDEXED * 4;
        let mut data = Data::new();
        for round in 0..2 {
            for i in 0..n {
                let old = data.insert(format!("k{i}"), json!(i * 10 + round));
                assert_eq!(old.is_some(), round == 1, "k{i} round {round}");
            }
        }
        assert_eq!(data.len(), n);
        for i in 0..n {
            assert_eq!(data.get(&format!("k{i}")), Some(&json!(i * 10 + 1)));
        }
        assert_eq!(keys(&data)[..3], ["k0", "k1", "k2"]);
        for i in (0..n).step_by(2) {
            assert!(data.remove(&format!("k{i}")).is_some());
        }
        assert_eq!(data.len(), n / 2);
        for i in 0..n {
            assert_eq!(data.contains_key(&format!("k{i}")), i % 2 == 1, "k{i}");
        }
        *data.get_mut("k1").unwrap() = json!("changed");
        assert_eq!(data.into_map().into_iter().next(), Some(("k1".to_owned(), json!("changed"))));
    }

    /// Keys that share their bit (same length, first and last bytes) and keys that do not, read
    /// in any order and repeated: what is read is what inserting each key in turn makes, and
    /// every key read is found.
    #[test]
    fn reading_an_object_is_inserting_its_keys_in_turn_whatever_bits_they_share() {
        use proptest::prelude::*;
        // Few distinct keys, many sharing a bit: "a?z" and "b?z" differ only in the middle.
        let key = prop_oneof!["[ab][a-d]z".prop_map(String::from), "[a-z]{0,3}".prop_map(String::from)];
        proptest!(ProptestConfig::with_cases(256), |(members in prop::collection::vec((key, any::<u8>()), 0..60))| {
            let mut read = Reading::default();
            let mut model: Map<String, Value> = Map::new();
            for (k, v) in &members {
                read.insert(k.as_str(), json!(v));
                model.insert(k.clone(), json!(v));
            }
            let read = read.done();
            prop_assert_eq!(keys(&read), model.keys().map(String::as_str).collect::<Vec<_>>());
            for (k, v) in &model {
                prop_assert_eq!(read.get(k), Some(v));
            }
        });
    }

    #[test]
    fn segment_data_may_be_null_or_absent() {
        for raw in [r#"{"type":"face","data":null}"#, r#"{"type":"face"}"#] {
            let seg: Segment = serde_json::from_str(raw).unwrap();
            assert_eq!(seg, Segment::new("face"), "{raw}");
        }
        assert!(serde_json::from_str::<Segment>(r#"{"type":"face","data":[1]}"#).is_err());
    }
}
