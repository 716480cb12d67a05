//! The compatibility matrix: what each backend profile does with every go-cqhttp action, message
//! segment, event and request, read off the tables in `mappings/`.
//!
//! [`render`] turns a [`MappingSet`] into the Markdown of `docs/compatibility.md`; the test
//! `tests/matrix.rs` keeps that file equal to it (`UPDATE_MATRIX=1 cargo test --test matrix`
//! rewrites it). [`action_support`] is the answer for one action on one profile, as the bridge
//! gives it at run time ([`Translator::handle_action`](super::Translator::handle_action)).
//! Everything here is pure: no I/O, and the output depends only on the tables (every map is
//! walked in sorted order).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write as _};

use super::mapping::{EventRow, Handler, MappingSet, Mappings};

/// Every action go-cqhttp (v1.0.0 … v1.2.0) routes in its v11 mode: the standard v11 actions it
/// implements, its extensions and its guild actions. Not here, because go-cqhttp answers them
/// 404: `send_like`, `get_cookies`, `get_csrf_token`, `get_credentials`, `get_record`,
/// `set_restart`, `clean_cache` (the matrix still shows any of them the tables give a row, such
/// as `get_record`, which the bridge answers).
pub const GO_CQHTTP_ACTIONS: &[&str] = &[
    // Standard v11 actions.
    "send_private_msg",
    "send_group_msg",
    "send_msg",
    "delete_msg",
    "get_msg",
    "get_forward_msg",
    "set_group_kick",
    "set_group_ban",
    "set_group_anonymous_ban",
    "set_group_whole_ban",
    "set_group_admin",
    "set_group_anonymous",
    "set_group_card",
    "set_group_name",
    "set_group_leave",
    "set_group_special_title",
    "set_friend_add_request",
    "set_group_add_request",
    "get_login_info",
    "get_stranger_info",
    "get_friend_list",
    "get_group_info",
    "get_group_list",
    "get_group_member_info",
    "get_group_member_list",
    "get_group_honor_info",
    "get_image",
    "can_send_image",
    "can_send_record",
    "get_status",
    "get_version_info",
    ".handle_quick_operation",
    // go-cqhttp extensions.
    "send_group_forward_msg",
    "send_private_forward_msg",
    "send_forward_msg",
    "get_group_msg_history",
    "mark_msg_as_read",
    "upload_group_file",
    "upload_private_file",
    "get_group_file_system_info",
    "get_group_root_files",
    "get_group_files_by_folder",
    "get_group_file_url",
    "create_group_file_folder",
    "delete_group_folder",
    "delete_group_file",
    "set_essence_msg",
    "delete_essence_msg",
    "get_essence_msg_list",
    "_send_group_notice",
    "_get_group_notice",
    "_del_group_notice",
    "set_group_portrait",
    "get_group_system_msg",
    "get_group_at_all_remain",
    "send_group_sign",
    "get_online_clients",
    "ocr_image",
    ".ocr_image",
    "check_url_safely",
    "delete_friend",
    "get_unidirectional_friend_list",
    "delete_unidirectional_friend",
    "set_qq_profile",
    "_get_model_show",
    "_set_model_show",
    "download_file",
    "reload_event_filter",
    "qidian_get_account_info",
    ".get_word_slices",
    "get_supported_actions",
    "get_updates",
    // Guild (QQ 频道) actions.
    "get_guild_service_profile",
    "get_guild_list",
    "get_guild_meta_by_guest",
    "get_guild_channel_list",
    "get_guild_member_list",
    "get_guild_member_profile",
    "get_guild_roles",
    "create_guild_role",
    "delete_guild_role",
    "set_guild_member_role",
    "update_guild_role",
    "get_topic_channel_feeds",
    "send_guild_channel_msg",
    "get_guild_msg",
];

/// The standard OneBot v12 actions (meta, message, user, group, guild/channel and file
/// interfaces). Any other v12 action, and any name with a `.`, is an extension.
pub const V12_STANDARD_ACTIONS: &[&str] = &[
    "get_latest_events",
    "get_supported_actions",
    "get_status",
    "get_version",
    "send_message",
    "delete_message",
    "get_self_info",
    "get_user_info",
    "get_friend_list",
    "get_group_info",
    "get_group_list",
    "get_group_member_info",
    "get_group_member_list",
    "set_group_name",
    "leave_group",
    "get_guild_info",
    "get_guild_list",
    "set_guild_name",
    "get_guild_member_info",
    "get_guild_member_list",
    "leave_guild",
    "get_channel_info",
    "get_channel_list",
    "set_channel_name",
    "get_channel_member_info",
    "get_channel_member_list",
    "leave_channel",
    "upload_file",
    "upload_file_fragmented",
    "get_file",
    "get_file_fragmented",
];

/// How a profile answers one v11 action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Support {
    /// Renamed to this standard v12 action.
    Standard(String),
    /// Renamed to this backend extension action.
    Extension(String),
    /// Answered or handled by the bridge's own code (the handler's name, e.g. `send_message`).
    Bridge(String),
    /// Refused without a call, for this reason (the profile's `[unsupported]`).
    Unsupported(String),
    /// No row, and the profile passes unknown actions through: the backend gets it as sent.
    PassedThrough,
    /// No row: the bridge answers it as an unknown action.
    Missing,
}

impl Support {
    /// Whether a bot calling the action gets it done (as far as the tables go).
    pub fn is_supported(&self) -> bool {
        matches!(self, Support::Standard(_) | Support::Extension(_) | Support::Bridge(_) | Support::PassedThrough)
    }
}

/// The matrix cell: `send_message`, `ext kick_group_member`, `bridge`, `✗ <short reason>`, `—`.
impl fmt::Display for Support {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Support::Standard(action) => write!(f, "{}", code(action)),
            Support::Extension(action) => write!(f, "ext {}", code(action)),
            Support::Bridge(_) => f.write_str("bridge"),
            Support::Unsupported(reason) => write!(f, "✗ {}", escape(&short_reason(reason))),
            Support::PassedThrough => f.write_str("as sent"),
            Support::Missing => f.write_str("—"),
        }
    }
}

/// Whether a v12 action is a standard one (and not an extension).
pub fn is_standard_v12(action: &str) -> bool {
    !action.contains('.') && V12_STANDARD_ACTIONS.contains(&action)
}

/// How `maps` answers the v11 action `name` (an `_async` suffix is dropped first, as the bridge
/// does).
pub fn action_support(maps: &Mappings, name: &str) -> Support {
    let name = name.strip_suffix("_async").unwrap_or(name);
    match maps.actions.get(name) {
        Some(row) => match (row.handler, &row.v12) {
            // The handler only reshapes the answer of the row's own call.
            (Some(Handler::GetForwardMsg) | None, Some(v12)) if is_standard_v12(v12) => Support::Standard(v12.clone()),
            (Some(Handler::GetForwardMsg) | None, Some(v12)) => Support::Extension(v12.clone()),
            (Some(handler), _) => Support::Bridge(handler_name(handler)),
            (None, None) => Support::Missing,
        },
        None => match maps.unsupported.get(name) {
            Some(reason) => Support::Unsupported(reason.clone()),
            None if maps.pass_unknown_actions => Support::PassedThrough,
            None => Support::Missing,
        },
    }
}

/// A handler's name as `actions.toml` spells it (`SendMessage` → `send_message`).
fn handler_name(handler: Handler) -> String {
    let mut out = String::new();
    for (i, c) in format!("{handler:?}").chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// The first clause of a reason, at most about 60 characters.
fn short_reason(reason: &str) -> String {
    const MAX: usize = 60;
    let first = reason.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("");
    let end = [". ", "; ", " — ", " ("].iter().filter_map(|sep| first.find(sep)).min().unwrap_or(first.len());
    let clause = first[..end].trim().trim_end_matches('.');
    if clause.chars().count() <= MAX {
        return clause.to_owned();
    }
    let cut: String = clause.chars().take(MAX).collect();
    let cut = match cut.rfind(' ') {
        Some(i) if i > MAX / 2 => &cut[..i],
        _ => cut.as_str(),
    };
    format!("{}…", cut.trim_end_matches([',', ' ']))
}

/// Text safe inside a Markdown table cell.
fn escape(text: &str) -> String {
    text.replace('\n', " ").replace('|', "\\|")
}

/// A name in code style, safe inside a table cell (`""` for the empty name).
fn code(name: &str) -> String {
    if name.is_empty() {
        "`\"\"`".to_owned()
    } else {
        format!("`{}`", escape(name))
    }
}

fn table(out: &mut String, header: &[String], rows: &[Vec<String>]) {
    let _ = writeln!(out, "| {} |", header.join(" | "));
    let _ = writeln!(out, "|{}", "---|".repeat(header.len()));
    for row in rows {
        let _ = writeln!(out, "| {} |", row.join(" | "));
    }
    out.push('\n');
}

/// The v11 type an event row gives, with its sub type mapping.
fn event_cell(row: &EventRow) -> String {
    let mut cell = code(&row.v11);
    let from: BTreeSet<&String> = row.sub_type.keys().chain(row.self_sub_type.keys()).collect();
    let subs: Vec<String> = from
        .into_iter()
        .map(|from| {
            let to = row.sub_type.get(from).map_or_else(|| code(from), |to| code(to));
            match row.self_sub_type.get(from) {
                Some(own) => format!("{}→{to}, bot itself: {}", code(from), code(own)),
                None => format!("{}→{to}", code(from)),
            }
        })
        .collect();
    if !subs.is_empty() {
        let _ = write!(cell, " ({})", subs.join("; "));
    }
    cell
}

/// The Markdown of `docs/compatibility.md`.
pub fn render(set: &MappingSet) -> String {
    let profiles: Vec<(&String, &Mappings)> = set.iter().map(|(name, maps)| (name, maps.as_ref())).collect();
    let mut out = String::new();
    out.push_str("# Compatibility matrix\n\n");
    out.push_str(
        "> Generated from `mappings/` by `UPDATE_MATRIX=1 cargo test --test matrix`. Do not edit by hand: change \
         the tables and regenerate.\n\n",
    );
    out.push_str(
        "What the bridge does with each go-cqhttp action, message segment, event and request, for every backend \
         profile (`mappings/profiles/*.toml`). A backend selects its profile by the implementation name it \
         reports; any other backend gets `generic`, or `v11` behind a link that speaks OneBot v11 (NapCat and \
         the like, `protocol = \"v11\"`).\n\n",
    );

    render_profiles(&mut out, &profiles);
    render_actions(&mut out, &profiles);
    render_segments(&mut out, &profiles);
    render_events(&mut out, set, &profiles);
    render_requests(&mut out, &profiles);
    out
}

fn profile_header(first: &str, profiles: &[(&String, &Mappings)]) -> Vec<String> {
    std::iter::once(first.to_owned()).chain(profiles.iter().map(|(name, _)| code(name))).collect()
}

fn render_profiles(out: &mut String, profiles: &[(&String, &Mappings)]) {
    out.push_str("## Profiles\n\n");
    let header = ["profile", "prefix", "implementations", "go-cqhttp actions done", "description"];
    let rows: Vec<Vec<String>> = profiles
        .iter()
        .map(|(name, maps)| {
            let p = &maps.profile;
            let prefix = if p.prefix.is_empty() { "(none)".to_owned() } else { code(&format!("{}.", p.prefix)) };
            let imps = if p.implementations.is_empty() && p.name == super::mapping::V11 {
                "(any other v11 one)".to_owned()
            } else if p.implementations.is_empty() {
                "(any other)".to_owned()
            } else {
                p.implementations.iter().map(|i| code(i)).collect::<Vec<_>>().join(", ")
            };
            let done = GO_CQHTTP_ACTIONS.iter().filter(|a| action_support(maps, a).is_supported()).count();
            let done = format!("{done} / {}", GO_CQHTTP_ACTIONS.len());
            vec![code(name), prefix, imps, done, escape(&p.description)]
        })
        .collect();
    table(out, &header.map(str::to_owned), &rows);
}

fn render_actions(out: &mut String, profiles: &[(&String, &Mappings)]) {
    out.push_str("## Actions\n\n");
    out.push_str(
        "One row per v11 action: every action go-cqhttp routes, and every action a table names. Cells: \
         `name` — renamed to that standard v12 action; ext `name` — that backend extension action; bridge — \
         answered or handled by the bridge's own code (which may call the backend); ✗ — refused by this \
         profile, with the reason; as sent — no row, passed to a v11 backend as the bot sent it; — — no row \
         (answered as go-cqhttp answers an unknown action, `404 API_NOT_FOUND`). An `_async` \
         suffix runs the action without it.\n\n",
    );
    let mut names: BTreeSet<&str> = GO_CQHTTP_ACTIONS.iter().copied().collect();
    for (_, maps) in profiles {
        names.extend(maps.actions.keys().map(String::as_str));
        names.extend(maps.unsupported.keys().map(String::as_str));
    }
    let mut header = profile_header("v11 action", profiles);
    header.insert(1, "go-cqhttp".to_owned());
    let rows: Vec<Vec<String>> = names
        .iter()
        .map(|name| {
            let gocq = if GO_CQHTTP_ACTIONS.contains(name) { "✓" } else { "no" };
            let mut row = vec![code(name), gocq.to_owned()];
            row.extend(profiles.iter().map(|(_, maps)| action_support(maps, name).to_string()));
            row
        })
        .collect();
    table(out, &header, &rows);
}

fn render_segments(out: &mut String, profiles: &[(&String, &Mappings)]) {
    out.push_str("## Message segments\n\n");
    out.push_str(
        "Each v11 segment type and the backend segment type it is sent as (and read back from). Standard types \
         map to v12's own; the others are the profile's extension types, their data carried over.\n\n",
    );
    let mut kinds: BTreeMap<&str, &str> = BTreeMap::new();
    let mut incoming: BTreeSet<(&str, &str)> = BTreeSet::new();
    for (_, maps) in profiles {
        for v11 in maps.segments_out.keys() {
            kinds.insert(v11, "standard");
        }
        for v11 in &maps.extension_segments {
            kinds.entry(v11).or_insert("extension");
        }
        for (v12, map) in &maps.segments_in {
            kinds.entry(&map.target).or_insert("incoming only");
            if maps.segments_out.get(&map.target).is_none_or(|out| out.target != *v12) {
                incoming.insert((v12, &map.target));
            }
        }
    }
    let mut header = profile_header("v11 segment", profiles);
    header.insert(1, "kind".to_owned());
    let rows: Vec<Vec<String>> = kinds
        .iter()
        .map(|(v11, kind)| {
            let mut row = vec![code(v11), (*kind).to_owned()];
            row.extend(profiles.iter().map(|(_, maps)| match maps.segments_out.get(*v11) {
                Some(map) => code(&map.target),
                None if maps.extension_segments.iter().any(|e| e == v11) => code(&maps.segment_out_name(v11)),
                None => "—".to_owned(),
            }));
            row
        })
        .collect();
    table(out, &header, &rows);
    if !incoming.is_empty() {
        let list: Vec<String> = incoming.iter().map(|(v12, v11)| format!("{} → {}", code(v12), code(v11))).collect();
        let _ = writeln!(out, "Also read from the backend: {}.\n", list.join(", "));
    }
    out.push_str(
        "A backend segment type no row names arrives with the profile's prefix removed (`qq.face` → `face`).\n\n",
    );
}

fn render_events(out: &mut String, set: &MappingSet, profiles: &[(&String, &Mappings)]) {
    out.push_str("## Events\n\n");
    out.push_str(
        "Each backend event a profile maps (`type.detail_type`) and the v11 `message_type` / `notice_type` it \
         becomes, with its sub types (backend → v11). — : this profile has no row for it.\n\n",
    );
    let mut keys: BTreeSet<&str> = BTreeSet::new();
    for (_, maps) in profiles {
        keys.extend(maps.events.keys().map(String::as_str));
    }
    let header = profile_header("backend event", profiles);
    let rows: Vec<Vec<String>> = keys
        .iter()
        .map(|key| {
            let mut row = vec![code(key)];
            row.extend(profiles.iter().map(|(_, maps)| maps.events.get(*key).map_or("—".to_owned(), event_cell)));
            row
        })
        .collect();
    table(out, &header, &rows);
    let generic = &set.generic().generic_events;
    let ids: Vec<String> = generic.id_fields.iter().map(|f| code(f)).collect();
    let messages: Vec<String> = generic.message_fields.iter().map(|f| code(f)).collect();
    let _ = writeln!(
        out,
        "Unmapped backend events pass through with the prefix removed: their `detail_type` and `sub_type` become \
         the v11 type and sub type without the profile's prefix (`qq.poke` → `poke`), field names lose the prefix \
         too, and the fields {} are converted as ids, {} as message ids.\n",
        ids.join(", "),
        messages.join(", ")
    );
}

fn render_requests(out: &mut String, profiles: &[(&String, &Mappings)]) {
    out.push_str("## Requests\n\n");
    out.push_str(
        "Backend request events each profile turns into v11 requests. Their `flag` carries the listed fields, \
         and `set_friend_add_request` / `set_group_add_request` with that flag call the answering action.\n\n",
    );
    for (name, maps) in profiles {
        let _ = writeln!(out, "### {}\n", code(name));
        if maps.requests.is_empty() {
            out.push_str("No request events mapped: they pass through like other unmapped events.\n\n");
        } else {
            let header = ["backend detail_type", "v11 request / sub_type", "flag carries", "answered by"];
            let rows: Vec<Vec<String>> = maps
                .requests
                .iter()
                .map(|(detail, row)| {
                    let v11 = match &row.sub_type {
                        Some(sub) => format!("{} / {}", code(&row.v11), code(sub)),
                        None => code(&row.v11),
                    };
                    let flag = row.flag.iter().map(|f| code(f)).collect::<Vec<_>>().join(", ");
                    vec![code(detail), v11, flag, code(&row.answer)]
                })
                .collect();
            table(out, &header.map(str::to_owned), &rows);
        }
        let others: Vec<String> = ["set_friend_add_request", "set_group_add_request"]
            .iter()
            .map(|action| {
                let v12 = maps.actions.get(*action).and_then(|r| r.v12.as_deref());
                let to = match (v12, maps.unsupported.get(*action)) {
                    (Some(v12), _) => code(v12),
                    (None, Some(reason)) => format!("refused ({})", escape(&short_reason(reason))),
                    (None, None) => "refused".to_owned(),
                };
                format!("{} → {to}", code(action))
            })
            .collect();
        let _ = writeln!(out, "Any other flag (the backend's own): {}.\n", others.join(", "));
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn embedded() -> MappingSet {
        MappingSet::embedded().unwrap()
    }

    /// A row of the actions table, by action name.
    fn action_row<'a>(doc: &'a str, name: &str) -> Option<&'a str> {
        let actions = doc.split("## Actions").nth(1)?.split("\n## ").next()?;
        actions.lines().find(|l| l.starts_with(&format!("| `{name}` |")))
    }

    #[test]
    fn render_is_deterministic() {
        let a = render(&embedded());
        let b = render(&embedded());
        assert_eq!(a, b);
        assert_eq!(render(&embedded()), a, "the same set renders the same text");
        assert!(a.contains("UPDATE_MATRIX=1 cargo test --test matrix"));
    }

    #[test]
    fn every_go_cqhttp_action_is_a_row() {
        let doc = render(&embedded());
        let profiles = embedded().iter().count();
        for name in GO_CQHTTP_ACTIONS {
            let row = action_row(&doc, name).unwrap_or_else(|| panic!("no row for {name}"));
            assert_eq!(row.matches(" | ").count(), profiles + 1, "{row}");
            assert!(row.contains("| ✓ |"), "{row}");
        }
        let unique: BTreeSet<_> = GO_CQHTTP_ACTIONS.iter().collect();
        assert_eq!(unique.len(), GO_CQHTTP_ACTIONS.len(), "no name twice");
    }

    #[test]
    fn cells_name_what_happens() {
        assert_eq!(Support::Missing.to_string(), "—");
        assert_eq!(Support::PassedThrough.to_string(), "as sent");
        assert_eq!(Support::Standard("send_message".into()).to_string(), "`send_message`");
        assert_eq!(Support::Extension("kick_group_member".into()).to_string(), "ext `kick_group_member`");
        assert_eq!(Support::Bridge("get_file".into()).to_string(), "bridge");
        assert_eq!(Support::Unsupported("WeChat has no bans. Really.".into()).to_string(), "✗ WeChat has no bans");
        let long = Support::Unsupported("a | b ".repeat(30)).to_string();
        assert!(long.ends_with('…') && long.contains("\\|") && long.chars().count() < 80, "{long}");

        let set = embedded();
        let generic = set.generic();
        assert_eq!(action_support(generic, "no_such_action"), Support::Missing);
        assert_eq!(action_support(generic, "send_group_msg"), Support::Bridge("send_message".into()));
        assert_eq!(action_support(generic, "send_group_msg_async"), Support::Bridge("send_message".into()));
        assert_eq!(action_support(generic, ".handle_quick_operation"), Support::Bridge("quick_operation".into()));
        assert_eq!(action_support(generic, "get_stranger_info"), Support::Standard("get_user_info".into()));
        assert!(matches!(action_support(generic, "set_group_kick"), Support::Extension(_)));
        assert!(is_standard_v12("leave_group") && !is_standard_v12("qq.leave_group") && !is_standard_v12("kick"));
    }

    #[test]
    fn a_missing_action_renders_as_a_dash() {
        // A set whose only action is `get_status`: every other go-cqhttp action is Missing.
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings");
        let dir = std::env::temp_dir().join(format!("ob-matrix-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("profiles")).unwrap();
        for name in ["segments.toml", "events.toml", "retcodes.toml"] {
            std::fs::copy(src.join(name), dir.join(name)).unwrap();
        }
        std::fs::write(dir.join("actions.toml"), "[get_status]\nhandler = \"get_status\"\n").unwrap();
        std::fs::write(
            dir.join("profiles/generic.toml"),
            "name = \"generic\"\nprefix = \"qq\"\n[unsupported]\nget_group_honor_info = \"No honors here.\"\n",
        )
        .unwrap();
        let set = MappingSet::from_dir(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        let doc = render(&set.unwrap());
        assert_eq!(action_row(&doc, "send_private_msg"), Some("| `send_private_msg` | ✓ | — |"));
        assert_eq!(action_row(&doc, "get_status"), Some("| `get_status` | ✓ | bridge |"));
        assert_eq!(action_row(&doc, "get_group_honor_info"), Some("| `get_group_honor_info` | ✓ | ✗ No honors here |"));
        assert!(doc.contains("| `generic` | `qq.` | (any other) | 1 / "), "{doc}");
    }
}
