//! The protocol tables in `mappings/`: loaded, validated and indexed once at start-up.
//!
//! The files are embedded in the binary ([`Mappings::embedded`]) so the bridge runs with no files
//! around it; `--mappings DIR` loads the same file names from a directory instead. Every file is
//! checked strictly (unknown keys, unknown kinds and handlers are errors naming the file).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::Deserialize;
use serde_json::{Map, Value};

const FILES: [(&str, &str); 5] = [
    ("segments.toml", include_str!("../../mappings/segments.toml")),
    ("events.toml", include_str!("../../mappings/events.toml")),
    ("actions.toml", include_str!("../../mappings/actions.toml")),
    ("retcodes.toml", include_str!("../../mappings/retcodes.toml")),
    ("profiles/generic.toml", include_str!("../../mappings/profiles/generic.toml")),
];

#[derive(Debug, thiserror::Error)]
pub enum MappingError {
    #[error("mappings/{file}: {detail}")]
    Invalid { file: String, detail: String },
    #[error("mappings/{file}: cannot read: {source}")]
    Read { file: String, source: std::io::Error },
}

fn invalid(file: &str, detail: impl Into<String>) -> MappingError {
    MappingError::Invalid { file: file.to_owned(), detail: detail.into() }
}

/// How a field's value is converted between the two protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Carried as it is.
    Plain,
    /// User or group id: v11 integer ⇄ v12 string.
    Id,
    /// message_id: v11 int32 ⇄ v12 string, through the message table.
    Message,
    /// Kept a string on both sides (guild and channel ids).
    Str,
    Int,
    Bool,
    /// Number in v12, decimal text in v11 segments.
    Float,
    /// Media reference.
    File,
}

/// `name[:kind]` — where a field goes and how its value converts. An empty name drops it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldSpec {
    pub name: String,
    pub kind: Kind,
}

impl<'de> Deserialize<'de> for FieldSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        FieldSpec::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl FieldSpec {
    pub fn parse(s: &str) -> Result<FieldSpec, String> {
        let (name, kind) = s.split_once(':').unwrap_or((s, ""));
        let kind = match kind {
            "" => Kind::Plain,
            "id" => Kind::Id,
            "message" => Kind::Message,
            "str" => Kind::Str,
            "int" => Kind::Int,
            "bool" => Kind::Bool,
            "float" => Kind::Float,
            "file" => Kind::File,
            other => return Err(format!("unknown kind {other:?} in {s:?}")),
        };
        Ok(FieldSpec { name: name.to_owned(), kind })
    }
}

// ---- segments.toml ----

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SegmentsFile {
    standard: Vec<SegmentRow>,
    #[serde(default)]
    incoming: Vec<IncomingRow>,
    extension: ExtensionList,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentRow {
    pub v11: String,
    pub v12: String,
    /// v11 key → v12 key.
    pub fields: BTreeMap<String, FieldSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct IncomingRow {
    v12: String,
    v11: String,
    fields: BTreeMap<String, FieldSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExtensionList {
    types: Vec<String>,
}

/// One direction of a segment mapping: target type and source key → target field.
#[derive(Debug, Clone)]
pub struct SegmentMap {
    pub target: String,
    pub fields: BTreeMap<String, FieldSpec>,
}

// ---- events.toml ----

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsFile {
    message: BTreeMap<String, EventRow>,
    notice: BTreeMap<String, EventRow>,
    generic: GenericEvents,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventRow {
    pub v11: String,
    #[serde(default)]
    pub sub_type: BTreeMap<String, String>,
    #[serde(default)]
    pub self_sub_type: BTreeMap<String, String>,
    /// v12 field → v11 field.
    #[serde(default)]
    pub fields: BTreeMap<String, FieldSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenericEvents {
    pub id_fields: Vec<String>,
    pub message_fields: Vec<String>,
}

// ---- actions.toml ----

/// Actions whose translation is code, not a rename.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Handler {
    SendMessage,
    DeleteMessage,
    GetStatus,
    GetVersionInfo,
    CanSend,
    GetSupportedActions,
    QuickOperation,
    GetMsg,
    GetFile,
    DownloadFile,
    UploadFile,
    GetFileUrl,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionRow {
    #[serde(default)]
    pub handler: Option<Handler>,
    #[serde(default)]
    pub v12: Option<String>,
    /// v11 param → v12 param.
    #[serde(default)]
    pub params: BTreeMap<String, FieldSpec>,
    #[serde(default)]
    pub defaults: Map<String, Value>,
    #[serde(default)]
    pub response: ResponseRow,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseRow {
    #[serde(default)]
    pub list: bool,
    #[serde(default)]
    pub null: bool,
    /// v12 field → v11 field.
    #[serde(default)]
    pub fields: BTreeMap<String, FieldSpec>,
    #[serde(default)]
    pub defaults: Map<String, Value>,
    #[serde(default)]
    pub from_params: Vec<String>,
}

// ---- retcodes.toml ----

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RetcodesFile {
    rows: Vec<RetcodeRow>,
    fallback: RetcodeTarget,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RetcodeRow {
    from: i64,
    to: i64,
    msg: String,
    retcode: i64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetcodeTarget {
    pub msg: String,
    pub retcode: i64,
}

// ---- profiles ----

/// What a backend family calls the things v12 leaves to extensions.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub name: String,
    /// Extension prefix (without the dot), `[_a-z]+`.
    pub prefix: String,
}

impl Profile {
    /// `face` → `qq.face`.
    pub fn prefixed(&self, name: &str) -> String {
        format!("{}.{}", self.prefix, name)
    }

    /// `qq.face` → `face`; names without this profile's prefix come back unchanged.
    pub fn strip<'a>(&self, name: &'a str) -> &'a str {
        name.strip_prefix(self.prefix.as_str()).and_then(|r| r.strip_prefix('.')).unwrap_or(name)
    }
}

/// All tables, indexed for lookups.
#[derive(Debug, Clone)]
pub struct Mappings {
    /// v11 segment type → v12.
    pub segments_out: HashMap<String, SegmentMap>,
    /// v12 segment type → v11.
    pub segments_in: HashMap<String, SegmentMap>,
    /// v11 types sent as `<prefix>.<type>`.
    pub extension_segments: Vec<String>,
    /// `message.private`, `notice.friend_increase`, … → row.
    pub events: HashMap<String, EventRow>,
    pub generic_events: GenericEvents,
    pub actions: BTreeMap<String, ActionRow>,
    retcodes: Vec<(i64, i64, RetcodeTarget)>,
    retcode_fallback: RetcodeTarget,
    pub profile: Profile,
}

impl Mappings {
    /// The tables compiled into the binary.
    pub fn embedded() -> Result<Mappings, MappingError> {
        Mappings::from_sources(|name| {
            FILES.iter().find(|(n, _)| *n == name).map(|(_, text)| Ok((*text).to_owned())).unwrap_or_else(|| {
                Err(MappingError::Read { file: name.into(), source: std::io::ErrorKind::NotFound.into() })
            })
        })
    }

    /// The same files read from a directory.
    pub fn from_dir(dir: &Path) -> Result<Mappings, MappingError> {
        Mappings::from_sources(|name| {
            std::fs::read_to_string(dir.join(name)).map_err(|source| MappingError::Read { file: name.into(), source })
        })
    }

    fn from_sources(read: impl Fn(&str) -> Result<String, MappingError>) -> Result<Mappings, MappingError> {
        fn parse<T: serde::de::DeserializeOwned>(
            name: &str,
            read: &impl Fn(&str) -> Result<String, MappingError>,
        ) -> Result<T, MappingError> {
            toml::from_str(&read(name)?).map_err(|e| invalid(name, e.to_string()))
        }
        let segments: SegmentsFile = parse("segments.toml", &read)?;
        let events: EventsFile = parse("events.toml", &read)?;
        let actions: BTreeMap<String, ActionRow> = parse("actions.toml", &read)?;
        let retcodes: RetcodesFile = parse("retcodes.toml", &read)?;
        let profile: Profile = parse("profiles/generic.toml", &read)?;
        let maps = Mappings::index(segments, events, actions, retcodes, profile);
        maps.validate()?;
        Ok(maps)
    }

    fn index(
        segments: SegmentsFile,
        events: EventsFile,
        actions: BTreeMap<String, ActionRow>,
        retcodes: RetcodesFile,
        profile: Profile,
    ) -> Mappings {
        let mut segments_out = HashMap::new();
        let mut segments_in = HashMap::new();
        for row in segments.standard {
            let back = row
                .fields
                .iter()
                .map(|(v11, spec)| (spec.name.clone(), FieldSpec { name: v11.clone(), kind: spec.kind }))
                .collect();
            segments_in.insert(row.v12.clone(), SegmentMap { target: row.v11.clone(), fields: back });
            segments_out.insert(row.v11, SegmentMap { target: row.v12, fields: row.fields });
        }
        for row in segments.incoming {
            segments_in.insert(row.v12, SegmentMap { target: row.v11, fields: row.fields });
        }
        let mut event_rows = HashMap::new();
        for (kind, rows) in [("message", events.message), ("notice", events.notice)] {
            for (detail, row) in rows {
                event_rows.insert(format!("{kind}.{detail}"), row);
            }
        }
        Mappings {
            segments_out,
            segments_in,
            extension_segments: segments.extension.types,
            events: event_rows,
            generic_events: events.generic,
            actions,
            retcodes: retcodes
                .rows
                .into_iter()
                .map(|r| (r.from, r.to, RetcodeTarget { msg: r.msg, retcode: r.retcode }))
                .collect(),
            retcode_fallback: retcodes.fallback,
            profile,
        }
    }

    fn validate(&self) -> Result<(), MappingError> {
        let prefix_ok =
            !self.profile.prefix.is_empty() && self.profile.prefix.bytes().all(|b| b == b'_' || b.is_ascii_lowercase());
        if !prefix_ok {
            return Err(invalid("profiles/generic.toml", format!("prefix {:?} is not [_a-z]+", self.profile.prefix)));
        }
        for (name, row) in &self.actions {
            match (row.handler, &row.v12) {
                (Some(_), Some(_)) => {
                    return Err(invalid("actions.toml", format!("[{name}] has both handler and v12")))
                }
                (None, None) => {
                    return Err(invalid("actions.toml", format!("[{name}] needs a handler or a v12 action")))
                }
                _ => {}
            }
            if name.ends_with("_async") {
                return Err(invalid("actions.toml", format!("[{name}]: `_async` is stripped before lookup")));
            }
        }
        for required in ["message.private", "message.group", "message.channel"] {
            if !self.events.contains_key(required) {
                return Err(invalid("events.toml", format!("missing [{required}]")));
            }
        }
        for (v12, map) in &self.segments_in {
            if self.extension_segments.contains(v12) && self.segments_out.contains_key(v12) {
                return Err(invalid("segments.toml", format!("{v12} is both standard and extension")));
            }
            if map.target.is_empty() {
                return Err(invalid("segments.toml", format!("{v12} maps to an empty type")));
            }
        }
        Ok(())
    }

    /// The v11 `msg` and retcode for a failed v12 retcode.
    pub fn retcode(&self, v12: i64) -> &RetcodeTarget {
        self.retcodes
            .iter()
            .find(|(from, to, _)| (*from..=*to).contains(&v12))
            .map(|(_, _, target)| target)
            .unwrap_or(&self.retcode_fallback)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_tables_load_and_validate() {
        let m = Mappings::embedded().unwrap();
        assert_eq!(m.segments_out["at"].target, "mention");
        assert_eq!(m.segments_in["mention"].target, "at");
        assert_eq!(m.segments_in["mention"].fields["user_id"], FieldSpec { name: "qq".into(), kind: Kind::Id });
        assert_eq!(m.segments_in["audio"].target, "record");
        assert_eq!(m.events["notice.friend_increase"].v11, "friend_add");
        assert_eq!(m.actions["get_stranger_info"].v12.as_deref(), Some("get_user_info"));
        assert_eq!(m.retcode(10002).msg, "UNSUPPORTED_ACTION");
        assert_eq!(m.retcode(35004).msg, "LOGIC_ERROR");
        assert_eq!(m.retcode(-1).msg, "ERROR");
    }

    #[test]
    fn the_files_on_disk_are_the_embedded_ones() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings");
        let disk = Mappings::from_dir(&dir).unwrap();
        assert_eq!(disk.actions.len(), Mappings::embedded().unwrap().actions.len());
    }

    #[test]
    fn bad_tables_are_refused_with_the_file_named() {
        let dir = std::env::temp_dir().join(format!("ob-mappings-{}", std::process::id()));
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings");
        std::fs::create_dir_all(dir.join("profiles")).unwrap();
        for (name, _) in FILES {
            std::fs::copy(src.join(name), dir.join(name)).unwrap();
        }
        std::fs::write(dir.join("actions.toml"), "[x]\nv12 = \"y\"\nparams = { a = \"b:weird\" }\n").unwrap();
        let err = Mappings::from_dir(&dir).unwrap_err().to_string();
        assert!(err.contains("actions.toml") && err.contains("weird"), "{err}");
        std::fs::write(dir.join("actions.toml"), "[x]\nhandler = \"send_message\"\nbogus = 1\n").unwrap();
        let err = Mappings::from_dir(&dir).unwrap_err().to_string();
        assert!(err.contains("bogus"), "{err}");
        std::fs::write(dir.join("actions.toml"), "[x]\n").unwrap();
        assert!(Mappings::from_dir(&dir).unwrap_err().to_string().contains("needs a handler"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
