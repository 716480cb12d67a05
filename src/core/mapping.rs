//! The protocol tables in `mappings/`: loaded, validated and indexed once at start-up.
//!
//! The files are embedded in the binary ([`Mappings::embedded`]) so the bridge runs with no files
//! around it; `--mappings DIR` loads the same file names from a directory instead. Every file is
//! checked strictly (unknown keys, unknown kinds and handlers are errors naming the file).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::Deserialize;
use serde_json::{Map, Value};

const FILES: [(&str, &str); 4] = [
    ("segments.toml", include_str!("../../mappings/segments.toml")),
    ("events.toml", include_str!("../../mappings/events.toml")),
    ("actions.toml", include_str!("../../mappings/actions.toml")),
    ("retcodes.toml", include_str!("../../mappings/retcodes.toml")),
];

// `PROFILE_FILES`: every `mappings/profiles/*.toml`, found by build.rs, so adding a backend is
// adding a file.
include!(concat!(env!("OUT_DIR"), "/profiles.rs"));

/// The profile a backend gets when its implementation name matches no other.
pub const GENERIC: &str = "generic";
/// The profile of a OneBot v11 implementation no other profile names.
pub const V11: &str = "v11";

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
    /// A forward-message node list (go-cqhttp's `messages`): each node's content is a message,
    /// translated and its media uploaded like any other (src/core/forward.rs).
    Nodes,
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
            "nodes" => Kind::Nodes,
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
    /// v11 keys a bot's segment must have (each among `fields`): without one it is refused.
    #[serde(default)]
    pub required: Vec<String>,
    /// v11 keys (among `fields`) given this value when a bot's segment leaves them out.
    #[serde(default)]
    pub defaults: BTreeMap<String, serde_json::Value>,
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
    /// Outgoing only: the keys a segment must have, as (v11 key, its v12 name; empty when the
    /// row's fields do not name it, which `Mappings::validate` refuses).
    pub required: Vec<(String, String)>,
    /// Outgoing only: (v11 key, its v12 name, value) set when the segment has no such key.
    pub defaults: Vec<(String, String, serde_json::Value)>,
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
    /// v12 fields the v11 event cannot be made without: an event lacking one (or carrying one
    /// that is no id, or no message for `message`) is dropped with a warning.
    #[serde(default)]
    pub required: Vec<String>,
}

/// Fields every message event needs for go-cqhttp's shape (its `required` must list them).
const MESSAGE_REQUIRED: [&str; 3] = ["message_id", "user_id", "message"];

/// A message row requires what every v11 message has; a notice row requires only fields it maps.
fn check_event_row(file: &str, name: &str, row: &EventRow) -> Result<(), MappingError> {
    if name.starts_with("message.") {
        if let Some(field) = MESSAGE_REQUIRED.iter().find(|f| !row.required.iter().any(|r| r == *f)) {
            return Err(invalid(file, format!("[{name}] `required` must list `{field}`")));
        }
    } else if let Some(field) = row.required.iter().find(|f| !row.fields.contains_key(*f)) {
        return Err(invalid(file, format!("[{name}] requires `{field}`, which its `fields` do not map")));
    }
    Ok(())
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
    /// `set_*_add_request`: the profile's answer to a request event; `v12` (if any) is the
    /// action for flags the bridge did not make.
    AnswerRequest,
    /// `get_forward_msg`: the row's `v12` call, its nodes' sender ids and contents translated
    /// into go-cqhttp's shape.
    GetForwardMsg,
    /// Message history (`get_group_msg_history`, NTQQ's `get_friend_msg_history`): the row's
    /// `v12` call; the answer's `messages` that are v12 message events become v11 message events
    /// with the bridge's ids (assigned and stored, so `get_msg` and replies work on them).
    MessageHistory,
    /// Nothing to do on this bridge (`reload_event_filter`: there is no event filter); `null`.
    Acknowledge,
    /// `get_updates` that reached the core: no HTTP server with long polling took it.
    GetUpdates,
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
    /// Another v12 action when a param is false or 0 (Walle-Q's `unset_group_admin` for
    /// `enable: false`, `unban_group_member` for `duration: 0`).
    #[serde(default)]
    pub when_off: Option<WhenOff>,
    /// Read backwards for a OneBot v11 backend: the bridge's `v12` call becomes this action
    /// (`src/backends/v11/edge.rs`). Of the plain rows naming one v12 action, at most one may.
    #[serde(default = "yes")]
    pub reverse: bool,
    /// Where a `send_message` or `upload_file` row sends: its chat kind, the id taken from the
    /// param go-cqhttp names for it; none: chosen by the params as go-cqhttp's `send_msg` does.
    #[serde(default)]
    pub target: Option<SendTarget>,
}

/// The chat a sending action's row names (`target = "group"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SendTarget {
    /// `user_id`.
    Private,
    /// `group_id`.
    Group,
    /// `guild_id` and `channel_id`.
    Channel,
}

fn yes() -> bool {
    true
}

/// `when_off = { param = "enable", v12 = "unset_group_admin" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhenOff {
    pub param: String,
    pub v12: String,
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
    /// Ids nested in the answer, as dotted paths (`*` for every item of a list:
    /// `files.*.uploader`), v12 string → v11 integer; everything around them is kept.
    #[serde(default)]
    pub ids: Vec<String>,
    /// Only the listed fields, defaults and params: go-cqhttp's exact shape, the backend's other
    /// fields dropped (else they are kept, the profile prefix removed).
    #[serde(default)]
    pub exact: bool,
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

/// What a backend family calls the things v12 leaves to extensions (`mappings/profiles/*.toml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub name: String,
    /// Extension prefix (without the dot), `[_a-z]+`; empty for a backend whose extensions are
    /// unprefixed (Walle-Q).
    pub prefix: String,
    /// What the profile is for, one line (it heads the compatibility matrix).
    #[serde(default)]
    pub description: String,
    /// Implementation names (`version.impl`, `X-Impl`, `12.<impl>`) that select this profile:
    /// the name itself, or the name followed by a dotted version (`walle-q.v2`). Case-insensitive.
    #[serde(default)]
    pub implementations: Vec<String>,
}

impl Profile {
    /// `face` → `qq.face` (`face` for an unprefixed profile).
    pub fn prefixed(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_owned()
        } else {
            // By hand: every extension segment a bot sends is named here, and `format!` cost
            // more than the rest of the naming.
            let mut out = String::with_capacity(self.prefix.len() + 1 + name.len());
            out.push_str(&self.prefix);
            out.push('.');
            out.push_str(name);
            out
        }
    }

    /// `qq.face` → `Some("face")`; `None` for names without this profile's prefix (and for every
    /// name when the profile has none).
    pub fn strip_own<'a>(&self, name: &'a str) -> Option<&'a str> {
        if self.prefix.is_empty() {
            return None;
        }
        name.strip_prefix(self.prefix.as_str()).and_then(|r| r.strip_prefix('.'))
    }

    /// `qq.face` → `face`; names without this profile's prefix come back unchanged.
    pub fn strip<'a>(&self, name: &'a str) -> &'a str {
        if self.prefix.is_empty() {
            return name;
        }
        name.strip_prefix(self.prefix.as_str()).and_then(|r| r.strip_prefix('.')).unwrap_or(name)
    }

    /// Whether an implementation name selects this profile.
    pub fn serves(&self, implementation: &str) -> bool {
        let imp = implementation.trim().to_ascii_lowercase();
        self.implementations.iter().any(|n| {
            let n = n.to_ascii_lowercase();
            imp == n || imp.strip_prefix(&n).is_some_and(|rest| rest.starts_with('.'))
        })
    }
}

/// A profile file: the profile, and what it changes in the base tables.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileFile {
    #[serde(flatten)]
    profile: Profile,
    /// v11 action → this backend's call (replaces the base row).
    #[serde(default)]
    actions: BTreeMap<String, ActionRow>,
    /// v11 action → why this backend cannot do it (answered as a failure without a call).
    #[serde(default)]
    unsupported: BTreeMap<String, String>,
    /// v11 extension segment type → this backend's segment type (both directions), or
    /// `{ type, fields = { v11 key = "their key[:kind]" } }` when its data differs too.
    #[serde(default)]
    segments: BTreeMap<String, SegmentName>,
    /// Extra or replaced event rows: `notice.<detail_type>`, `message.<detail_type>`.
    #[serde(default)]
    events: EventsOverlay,
    /// Request events (`request.<detail_type>`) and how the bot's answer reaches the backend.
    #[serde(default)]
    requests: BTreeMap<String, RequestRow>,
    /// The backend action that looks a message up by id (`get_msg` when the bridge never saw it).
    #[serde(default)]
    get_message: Option<String>,
    /// A v11 action no table names is called as `<prefix>.<action>` with its params as given,
    /// instead of being refused (a backend that speaks v11 itself knows actions we do not).
    #[serde(default)]
    pass_unknown_actions: bool,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum SegmentName {
    Name(String),
    Row {
        #[serde(rename = "type")]
        kind: String,
        #[serde(default)]
        fields: BTreeMap<String, FieldSpec>,
    },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsOverlay {
    #[serde(default)]
    message: BTreeMap<String, EventRow>,
    #[serde(default)]
    notice: BTreeMap<String, EventRow>,
}

/// A backend request event: its v11 shape, what goes into the v11 `flag`, and the backend action
/// that answers it (called by `set_friend_add_request` / `set_group_add_request`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestRow {
    /// v11 `request_type`: `friend` or `group`.
    pub v11: String,
    /// v11 `sub_type` (`add`, `invite`), if any.
    #[serde(default)]
    pub sub_type: Option<String>,
    /// v12 field → v11 field.
    #[serde(default)]
    pub fields: BTreeMap<String, FieldSpec>,
    /// v12 fields packed into the flag, in order (their JSON types kept).
    pub flag: Vec<String>,
    /// The v12 action that answers the request, with the flag's fields as params.
    pub answer: String,
    /// v11 answer param → v12 param (`approve = "accept:bool"`, `reason = "message"`).
    #[serde(default)]
    pub answer_params: BTreeMap<String, FieldSpec>,
    /// Constant params of the answer.
    #[serde(default)]
    pub answer_defaults: Map<String, Value>,
    /// For a backend whose answer can only accept (no `approve` param): the action that rejects,
    /// if it has one. Without it, a rejection is refused rather than turned into an acceptance.
    #[serde(default)]
    pub reject: Option<String>,
}

/// A table looked up on every event or segment. Its keys are ours (loaded from `mappings/`, never
/// added to from a wire), so foldhash's fast hasher serves instead of SipHash: a peer chooses
/// what is looked up, never what the table holds, so it cannot make lookups collide.
pub type Table<V> = HashMap<String, V, foldhash::fast::RandomState>;

/// All tables, indexed for lookups.
#[derive(Debug, Clone)]
pub struct Mappings {
    /// v11 segment type → v12.
    pub segments_out: Table<SegmentMap>,
    /// v12 segment type → v11.
    pub segments_in: Table<SegmentMap>,
    /// v11 types sent as `<prefix>.<type>`.
    pub extension_segments: Vec<String>,
    /// `message.private`, `notice.friend_increase`, … → row.
    pub events: Table<EventRow>,
    pub generic_events: GenericEvents,
    pub actions: BTreeMap<String, ActionRow>,
    retcodes: Vec<(i64, i64, RetcodeTarget)>,
    retcode_fallback: RetcodeTarget,
    pub profile: Profile,
    /// v11 action → why this backend cannot do it.
    pub unsupported: BTreeMap<String, String>,
    /// v11 extension segment type → this backend's type, and back.
    pub segment_names: BTreeMap<String, String>,
    /// v11 extension segment type → its data keys under this backend's names and kinds.
    pub segment_fields: BTreeMap<String, BTreeMap<String, FieldSpec>>,
    /// The same, read back: v11 type → their key → v11 key.
    pub segment_fields_in: BTreeMap<String, BTreeMap<String, FieldSpec>>,
    /// `request.<detail_type>` → row.
    pub requests: BTreeMap<String, RequestRow>,
    /// The backend's get-message action, if it has one.
    pub get_message: Option<String>,
    /// Actions no table names go to the backend under the prefix instead of being refused.
    pub pass_unknown_actions: bool,
}

/// Every profile's tables: the base files overlaid with each `profiles/*.toml`.
#[derive(Debug, Clone)]
pub struct MappingSet {
    profiles: BTreeMap<String, std::sync::Arc<Mappings>>,
}

impl MappingSet {
    /// The tables compiled into the binary.
    pub fn embedded() -> Result<MappingSet, MappingError> {
        let read = |name: &str| {
            FILES
                .iter()
                .chain(PROFILE_FILES.iter())
                .find(|(n, _)| *n == name)
                .map(|(_, t)| Ok((*t).to_owned()))
                .unwrap_or_else(|| {
                    Err(MappingError::Read { file: name.into(), source: std::io::ErrorKind::NotFound.into() })
                })
        };
        let names = PROFILE_FILES.iter().map(|(n, _)| n.to_string()).collect();
        MappingSet::from_sources(names, read)
    }

    /// The same files read from a directory (every `profiles/*.toml` in it).
    pub fn from_dir(dir: &Path) -> Result<MappingSet, MappingError> {
        let entries = std::fs::read_dir(dir.join("profiles"))
            .map_err(|source| MappingError::Read { file: "profiles/".into(), source })?;
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".toml"))
            .map(|n| format!("profiles/{n}"))
            .collect();
        names.sort();
        MappingSet::from_sources(names, |name| {
            std::fs::read_to_string(dir.join(name)).map_err(|source| MappingError::Read { file: name.into(), source })
        })
    }

    fn from_sources(
        profile_files: Vec<String>,
        read: impl Fn(&str) -> Result<String, MappingError>,
    ) -> Result<MappingSet, MappingError> {
        let mut profiles = BTreeMap::new();
        for file in &profile_files {
            let maps = Mappings::from_sources(file, &read)?;
            let name = maps.profile.name.clone();
            if profiles.insert(name.clone(), std::sync::Arc::new(maps)).is_some() {
                return Err(invalid(file, format!("a second profile named {name:?}")));
            }
        }
        if !profiles.contains_key(GENERIC) {
            return Err(invalid("profiles/", "there must be a `generic` profile (the fallback)"));
        }
        let set = MappingSet { profiles };
        for (name, maps) in &set.profiles {
            for other in set.profiles.values().filter(|o| o.profile.name != *name) {
                if let Some(imp) = maps.profile.implementations.iter().find(|i| other.profile.serves(i)) {
                    return Err(invalid(
                        &format!("profiles/{name}.toml"),
                        format!("implementation {imp:?} is also claimed by profile {:?}", other.profile.name),
                    ));
                }
            }
        }
        Ok(set)
    }

    /// A profile by name (`generic` for a name that is not one).
    pub fn get(&self, name: &str) -> &std::sync::Arc<Mappings> {
        self.profiles.get(name).unwrap_or_else(|| &self.profiles[GENERIC])
    }

    pub fn generic(&self) -> &std::sync::Arc<Mappings> {
        &self.profiles[GENERIC]
    }

    pub fn contains(&self, name: &str) -> bool {
        self.profiles.contains_key(name)
    }

    /// The profile an implementation name selects (`generic` when none claims it).
    pub fn for_implementation(&self, implementation: &str) -> &str {
        self.profiles
            .values()
            .find(|m| m.profile.serves(implementation))
            .map(|m| m.profile.name.as_str())
            .unwrap_or(GENERIC)
    }

    /// The profile for a backend: the one its implementation name selects, else `v11` for an
    /// implementation that speaks OneBot v11 (behind a v11 link), else `generic`.
    pub fn for_backend(&self, implementation: &str, onebot_version: &str) -> &str {
        match self.for_implementation(implementation) {
            GENERIC if onebot_version.trim_start_matches('v') == "11" && self.contains(V11) => V11,
            name => name,
        }
    }

    /// Every profile, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &std::sync::Arc<Mappings>)> {
        self.profiles.iter()
    }
}

impl Mappings {
    /// The generic profile's tables, compiled into the binary.
    pub fn embedded() -> Result<Mappings, MappingError> {
        Ok(Mappings::clone(MappingSet::embedded()?.generic()))
    }

    /// The base files overlaid with one profile file.
    fn from_sources(
        profile_file: &str,
        read: &impl Fn(&str) -> Result<String, MappingError>,
    ) -> Result<Mappings, MappingError> {
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
        let overlay: ProfileFile = parse(profile_file, &read)?;
        let mut maps = Mappings::index(segments, events, actions, retcodes, overlay.profile);
        for (name, row) in &maps.events {
            check_event_row("events.toml", name, row)?;
        }
        let file = profile_file;
        for (name, row) in overlay.actions {
            maps.actions.insert(name, row);
        }
        for (name, reason) in &overlay.unsupported {
            // A handler that calls no backend action of its own answers anywhere.
            if maps.actions.get(name).is_some_and(|r| r.handler.is_some() && r.v12.is_none()) {
                return Err(invalid(file, format!("[unsupported] {name}: the bridge answers it itself")));
            }
            maps.actions.remove(name);
            if reason.trim().is_empty() {
                return Err(invalid(file, format!("[unsupported] {name} needs a reason")));
            }
        }
        maps.unsupported = overlay.unsupported;
        for (kind, rows) in [("message", overlay.events.message), ("notice", overlay.events.notice)] {
            for (detail, row) in rows {
                let name = format!("{kind}.{detail}");
                check_event_row(file, &name, &row)?;
                maps.events.insert(name, row);
            }
        }
        for (v11, theirs) in overlay.segments {
            if !maps.extension_segments.contains(&v11) {
                return Err(invalid(file, format!("[segments] {v11} is not an extension segment type")));
            }
            let (name, fields) = match theirs {
                SegmentName::Name(name) => (name, BTreeMap::new()),
                SegmentName::Row { kind, fields } => (kind, fields),
            };
            if name.is_empty() {
                return Err(invalid(file, format!("[segments] {v11} maps to an empty type")));
            }
            if !fields.is_empty() {
                let back = fields
                    .iter()
                    .map(|(ours, spec)| (spec.name.clone(), FieldSpec { name: ours.clone(), kind: spec.kind }))
                    .collect();
                maps.segment_fields_in.insert(v11.clone(), back);
                maps.segment_fields.insert(v11.clone(), fields);
            }
            maps.segment_names.insert(v11, name);
        }
        for (detail, row) in &overlay.requests {
            if row.flag.is_empty() || row.answer.is_empty() {
                return Err(invalid(file, format!("[requests.{detail}] needs `flag` fields and an `answer` action")));
            }
            if row.v11 != "friend" && row.v11 != "group" {
                return Err(invalid(file, format!("[requests.{detail}] v11 must be `friend` or `group`")));
            }
        }
        maps.requests = overlay.requests;
        maps.get_message = overlay.get_message;
        maps.pass_unknown_actions = overlay.pass_unknown_actions;
        maps.validate(file)?;
        Ok(maps)
    }

    /// This backend's name for a v11 extension segment type (`face` → `qq.face`, Walle-Q `face`).
    pub fn segment_out_name(&self, v11: &str) -> String {
        match self.segment_names.get(v11) {
            Some(name) => name.clone(),
            None => self.profile.prefixed(v11),
        }
    }

    /// The v11 type of a backend segment type the base tables do not name.
    pub fn segment_in_name<'a>(&'a self, v12: &'a str) -> &'a str {
        match self.segment_names.iter().find(|(_, theirs)| theirs.as_str() == v12) {
            Some((v11, _)) => v11,
            None => self.profile.strip(v12),
        }
    }

    fn index(
        segments: SegmentsFile,
        events: EventsFile,
        actions: BTreeMap<String, ActionRow>,
        retcodes: RetcodesFile,
        profile: Profile,
    ) -> Mappings {
        let mut segments_out = Table::default();
        let mut segments_in = Table::default();
        for row in segments.standard {
            let back = row
                .fields
                .iter()
                .map(|(v11, spec)| (spec.name.clone(), FieldSpec { name: v11.clone(), kind: spec.kind }))
                .collect();
            let v12_name = |v11: &str| row.fields.get(v11).map(|spec| spec.name.clone()).unwrap_or_default();
            let required = row.required.iter().map(|v11| (v11.clone(), v12_name(v11))).collect();
            let defaults =
                row.defaults.iter().map(|(v11, value)| (v11.clone(), v12_name(v11), value.clone())).collect();
            let incoming = SegmentMap { target: row.v11.clone(), fields: back, required: vec![], defaults: vec![] };
            segments_in.insert(row.v12.clone(), incoming);
            segments_out.insert(row.v11, SegmentMap { target: row.v12, fields: row.fields, required, defaults });
        }
        for row in segments.incoming {
            let incoming = SegmentMap { target: row.v11, fields: row.fields, required: vec![], defaults: vec![] };
            segments_in.insert(row.v12, incoming);
        }
        let mut event_rows = Table::default();
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
            unsupported: BTreeMap::new(),
            segment_names: BTreeMap::new(),
            segment_fields: BTreeMap::new(),
            segment_fields_in: BTreeMap::new(),
            requests: BTreeMap::new(),
            get_message: None,
            pass_unknown_actions: false,
        }
    }

    fn validate(&self, file: &str) -> Result<(), MappingError> {
        let prefix_ok = self.profile.prefix.bytes().all(|b| b == b'_' || b.is_ascii_lowercase());
        if !prefix_ok || (self.profile.name == GENERIC && self.profile.prefix.is_empty()) {
            return Err(invalid(file, format!("prefix {:?} is not [_a-z]+", self.profile.prefix)));
        }
        let name_ok = !self.profile.name.is_empty()
            && self.profile.name.bytes().all(|b| b == b'-' || b.is_ascii_lowercase() || b.is_ascii_digit());
        if !name_ok || format!("profiles/{}.toml", self.profile.name) != file {
            return Err(invalid(file, format!("name {:?} must be the file's name, [-a-z0-9]+", self.profile.name)));
        }
        for (name, row) in &self.actions {
            match (row.handler, &row.v12) {
                (Some(Handler::AnswerRequest | Handler::GetForwardMsg), _) => {}
                (Some(Handler::MessageHistory), None) => {
                    return Err(invalid("actions.toml", format!("[{name}] message_history needs a v12 action")))
                }
                (Some(Handler::MessageHistory), Some(_)) => {}
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
            if row.target.is_some() && !matches!(row.handler, Some(Handler::SendMessage | Handler::UploadFile)) {
                return Err(invalid("actions.toml", format!("[{name}]: only a sending handler has a `target`")));
            }
            if let Some(path) = row.response.ids.iter().find(|p| p.split('.').any(str::is_empty)) {
                return Err(invalid("actions.toml", format!("[{name}] response.ids: {path:?} has an empty step")));
            }
        }
        // The generic tables are the ones a v11 backend's edge reads backwards.
        let mut reversed: BTreeMap<&str, &str> = BTreeMap::new();
        for (name, row) in self.actions.iter().filter(|_| self.profile.name == GENERIC) {
            // `<prefix>.<name>` stands for the v11 action `name` itself.
            let plain = row.handler.is_none() && row.reverse;
            let Some(v12) = row.v12.as_deref().filter(|v| plain && self.profile.strip_own(v).is_none()) else {
                continue;
            };
            if let Some(other) = reversed.insert(v12, name) {
                return Err(invalid(
                    "actions.toml",
                    format!(
                        "[{other}] and [{name}] both stand for `{v12}` on a v11 backend; mark one `reverse = false`"
                    ),
                ));
            }
        }
        for required in ["message.private", "message.group", "message.channel"] {
            if !self.events.contains_key(required) {
                return Err(invalid("events.toml", format!("missing [{required}]")));
            }
        }

        for (v11, map) in &self.segments_out {
            let required = map.required.iter().map(|(key, v12)| (key, v12));
            let defaults = map.defaults.iter().map(|(key, v12, _)| (key, v12));
            if let Some((key, _)) = required.chain(defaults).find(|(_, v12)| v12.is_empty()) {
                return Err(invalid("segments.toml", format!("[{v11}] names `{key}`, which is not among its fields")));
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
        let disk = MappingSet::from_dir(&dir).unwrap();
        let embedded = MappingSet::embedded().unwrap();
        let names = |set: &MappingSet| set.iter().map(|(n, m)| (n.clone(), m.actions.len())).collect::<Vec<_>>();
        assert_eq!(names(&disk), names(&embedded));
        assert!(embedded.iter().count() >= 5, "every profile file is embedded");
    }

    #[test]
    fn profiles_are_chosen_by_implementation_name() {
        let set = MappingSet::embedded().unwrap();
        assert_eq!(set.for_implementation("walle-q"), "walle-q");
        assert_eq!(set.for_implementation("Walle-Q.v2"), "walle-q");
        assert_eq!(set.for_implementation("walle-qq"), GENERIC);
        assert_eq!(set.for_implementation("ComWechat"), "comwechat");
        assert_eq!(set.for_implementation("onedisc"), "onedisc");
        assert_eq!(set.for_implementation("onebots"), "onebots");
        assert_eq!(set.for_implementation("something-new"), GENERIC);
        assert_eq!(set.for_implementation(""), GENERIC);
        assert_eq!(set.get("no-such").profile.name, GENERIC);
    }

    #[test]
    fn bad_tables_are_refused_with_the_file_named() {
        let dir = std::env::temp_dir().join(format!("ob-mappings-{}", std::process::id()));
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings");
        std::fs::create_dir_all(dir.join("profiles")).unwrap();
        for (name, _) in FILES.iter().chain(PROFILE_FILES) {
            std::fs::copy(src.join(name), dir.join(name)).unwrap();
        }
        std::fs::write(dir.join("actions.toml"), "[x]\nv12 = \"y\"\nparams = { a = \"b:weird\" }\n").unwrap();
        let err = MappingSet::from_dir(&dir).unwrap_err().to_string();
        assert!(err.contains("actions.toml") && err.contains("weird"), "{err}");
        std::fs::write(dir.join("actions.toml"), "[x]\nhandler = \"send_message\"\nbogus = 1\n").unwrap();
        let err = MappingSet::from_dir(&dir).unwrap_err().to_string();
        assert!(err.contains("bogus"), "{err}");
        std::fs::write(dir.join("actions.toml"), "[x]\n").unwrap();
        assert!(MappingSet::from_dir(&dir).unwrap_err().to_string().contains("needs a handler"));
        std::fs::write(dir.join("actions.toml"), "[x]\nv12 = \"y\"\nresponse.ids = [\"a..b\"]\n").unwrap();
        assert!(MappingSet::from_dir(&dir).unwrap_err().to_string().contains("empty step"));
        std::fs::write(dir.join("actions.toml"), "[x]\nv12 = \"y\"\ntarget = \"group\"\n").unwrap();
        assert!(MappingSet::from_dir(&dir).unwrap_err().to_string().contains("`target`"));
        std::fs::write(dir.join("actions.toml"), "[x]\nhandler = \"send_message\"\ntarget = \"room\"\n").unwrap();
        assert!(MappingSet::from_dir(&dir).unwrap_err().to_string().contains("room"));
        std::fs::copy(src.join("actions.toml"), dir.join("actions.toml")).unwrap();
        // Required event fields: every message row needs the v11 message's own; a notice row
        // only fields it maps.
        let events = std::fs::read_to_string(src.join("events.toml")).unwrap();
        let private = "required = [\"message_id\", \"user_id\", \"message\"]";
        assert!(events.contains(private));
        std::fs::write(dir.join("events.toml"), events.replacen(private, "required = [\"user_id\"]", 1)).unwrap();
        let err = MappingSet::from_dir(&dir).unwrap_err().to_string();
        assert!(err.contains("events.toml") && err.contains("message_id"), "{err}");
        let notice = "required = [\"user_id\"]";
        std::fs::write(dir.join("events.toml"), events.replacen(notice, "required = [\"nobody\"]", 1)).unwrap();
        let err = MappingSet::from_dir(&dir).unwrap_err().to_string();
        assert!(err.contains("events.toml") && err.contains("nobody"), "{err}");
        std::fs::copy(src.join("events.toml"), dir.join("events.toml")).unwrap();
        // A segment's required keys and defaults name keys among its fields.
        let segments = std::fs::read_to_string(src.join("segments.toml")).unwrap();
        for (row, changed) in [("required = [\"qq\"]", "required = [\"who\"]"), ("title = \"\", ", "name = \"\", ")] {
            assert!(segments.contains(row), "{row}");
            std::fs::write(dir.join("segments.toml"), segments.replacen(row, changed, 1)).unwrap();
            let err = MappingSet::from_dir(&dir).unwrap_err().to_string();
            let key = if changed.starts_with("required") { "who" } else { "name" };
            assert!(err.contains("segments.toml") && err.contains(&format!("`{key}`")), "{err}");
        }
        std::fs::copy(src.join("segments.toml"), dir.join("segments.toml")).unwrap();
        // Two plain rows standing for one v12 action: a v11 backend's edge could not tell which
        // v11 action to call.
        let actions = std::fs::read_to_string(src.join("actions.toml")).unwrap();
        assert!(actions.contains("reverse = false\n"));
        std::fs::write(dir.join("actions.toml"), actions.replace("reverse = false\n", "")).unwrap();
        let err = MappingSet::from_dir(&dir).unwrap_err().to_string();
        assert!(err.contains("get_self_info") && err.contains("reverse = false"), "{err}");
        std::fs::copy(src.join("actions.toml"), dir.join("actions.toml")).unwrap();
        // A profile file: its name must be the file's, its implementations its own.
        std::fs::write(dir.join("profiles/mine.toml"), "name = \"other\"\nprefix = \"x\"\n").unwrap();
        let err = MappingSet::from_dir(&dir).unwrap_err().to_string();
        assert!(err.contains("profiles/mine.toml") && err.contains("name"), "{err}");
        std::fs::write(
            dir.join("profiles/mine.toml"),
            "name = \"mine\"\nprefix = \"x\"\nimplementations = [\"walle-q\"]\n",
        )
        .unwrap();
        let err = MappingSet::from_dir(&dir).unwrap_err().to_string();
        assert!(err.contains("walle-q") && err.contains("also claimed"), "{err}");
        // Adding a backend is adding a file.
        std::fs::write(
            dir.join("profiles/mine.toml"),
            "name = \"mine\"\nprefix = \"mine\"\nimplementations = [\"mine-impl\"]\n",
        )
        .unwrap();
        let set = MappingSet::from_dir(&dir).unwrap();
        assert_eq!(set.for_implementation("mine-impl"), "mine");
        assert_eq!(set.get("mine").segment_out_name("face"), "mine.face");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
