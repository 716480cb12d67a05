//! The playground's world: one bot account, its friends and groups, the chats between them, the
//! files sent in them and the friend requests waiting for an answer — plain data, no I/O, no
//! clock (callers pass the time), so every rule here is unit-tested.
//!
//! Everything grows within a bound, documented at its constant: history per chat, file bytes,
//! users added at run time, pending requests and uploads, notices. Ids are strings, as v12 has
//! them: numeric user and group ids, and message, file and event ids from one counter, so no two
//! are ever equal within a run.
//!
//! The world speaks v12 outwards: [`World::message_event`] and friends build the events the
//! implementation sends the bridge; the page's view of a message is [`Message::page_json`].

use std::collections::{BTreeMap, HashMap, VecDeque};

use bytes::Bytes;
use serde_json::{json, Map, Value};

pub const BOT_ID: &str = "10000";
pub const BOT_NAME: &str = "Playground Bot";
pub const PLATFORM: &str = "qq";

/// Messages kept per chat; older ones are forgotten (the page no longer shows them and
/// `delete_message` no longer finds them).
pub const HISTORY_PER_CHAT: usize = 200;
/// Largest file kept, uploaded by the bot or sent by a person.
pub const MAX_FILE_BYTES: usize = 10 << 20;
/// Bytes of all kept files together; the oldest files are evicted first to make room.
pub const FILE_BUDGET_BYTES: usize = 64 << 20;
/// Files kept at most (URL files weigh no bytes but still take a slot); the oldest go first.
pub const MAX_FILES: usize = 1024;
/// Fragmented uploads in progress at once (each at most [`MAX_FILE_BYTES`]); a new one beyond
/// this drops the oldest.
pub const MAX_FRAGMENTED: usize = 4;
/// Users known besides the starting ones (friend requests and member joins add them).
pub const MAX_EXTRA_USERS: usize = 64;
/// Friend requests waiting for the bot's answer; the oldest is forgotten beyond this.
pub const MAX_PENDING_REQUESTS: usize = 32;
/// Notices kept for the page's snapshot.
pub const MAX_NOTICES: usize = 100;
/// Longest text a person may type into one message (characters).
pub const MAX_TEXT_CHARS: usize = 4000;
/// Longest user or group name.
pub const MAX_NAME_CHARS: usize = 60;

/// A chat: a group, or the private chat between the bot and one user.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Chat {
    Group(String),
    Private(String),
}

impl Chat {
    /// `group:20001` or `private:10001`.
    pub fn parse(key: &str) -> Option<Chat> {
        let (kind, id) = key.split_once(':')?;
        if !is_numeric_id(id) {
            return None;
        }
        match kind {
            "group" => Some(Chat::Group(id.to_owned())),
            "private" => Some(Chat::Private(id.to_owned())),
            _ => None,
        }
    }

    pub fn key(&self) -> String {
        match self {
            Chat::Group(id) => format!("group:{id}"),
            Chat::Private(id) => format!("private:{id}"),
        }
    }
}

/// A numeric id of 1 to 18 digits, as QQ numbers are.
pub fn is_numeric_id(id: &str) -> bool {
    (1..=18).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_digit())
}

/// Why something could not be done; each maps to a v12 retcode and an HTTP status.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WorldError {
    /// A parameter is missing, of the wrong type or names nothing usable.
    #[error("{0}")]
    BadParam(String),
    /// A segment lacks a field it needs.
    #[error("{0}")]
    BadSegment(String),
    /// The request is well-formed but names a user, group, message or file that is not there.
    #[error("{0}")]
    NotFound(String),
    /// The request is well-formed but the world's rules refuse it.
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    TooLarge(String),
}

impl WorldError {
    /// The v12 retcode (`reference/onebot-v12.md` §1.4: 35xxx are logic errors).
    pub fn retcode(&self) -> i64 {
        match self {
            WorldError::BadParam(_) => 10003,
            WorldError::BadSegment(_) => 10006,
            WorldError::NotFound(_) => 35001,
            WorldError::Refused(_) => 35002,
            WorldError::TooLarge(_) => 35003,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub id: String,
    pub name: String,
    pub friend: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub id: String,
    pub name: String,
    /// Member ids, the bot among them, in joining order.
    pub members: Vec<String>,
}

/// The message a reply quotes, as it was when the reply was sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Quote {
    pub message_id: String,
    pub user_id: String,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub id: String,
    pub chat: Chat,
    pub sender: String,
    pub time: f64,
    /// v12 segments, as the bridge would see them.
    pub segments: Vec<Value>,
    /// The plain-text rendering (`alt_message`).
    pub alt: String,
    pub quote: Option<Quote>,
}

impl Message {
    /// What the page gets: the segments, and a quote to show above a reply.
    pub fn page_json(&self) -> Value {
        let quote =
            self.quote.as_ref().map(|q| json!({"message_id": q.message_id, "user_id": q.user_id, "text": q.text}));
        json!({
            "id": self.id,
            "chat": self.chat.key(),
            "sender": self.sender,
            "time": self.time,
            "segments": self.segments,
            "alt": self.alt,
            "quote": quote,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum FileBody {
    Bytes(Bytes),
    /// A file the bot named by URL: the playground keeps the URL, not the bytes.
    Url(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct StoredFile {
    pub id: String,
    pub name: String,
    /// What the file is served as: a picture type recognised from its first bytes, else
    /// `application/octet-stream` (never a type a browser would run, such as HTML or SVG).
    pub mime: &'static str,
    pub body: FileBody,
}

impl StoredFile {
    fn weight(&self) -> usize {
        match &self.body {
            FileBody::Bytes(b) => b.len(),
            FileBody::Url(_) => 0,
        }
    }
}

/// An `upload_file_fragmented` in progress.
#[derive(Debug)]
struct Fragmented {
    name: String,
    data: Vec<u8>,
}

/// A friend request waiting for the bot's answer.
#[derive(Debug, Clone)]
struct Pending {
    flag: String,
    user_id: String,
}

/// The picture type of `bytes`, from their magic numbers.
pub fn sniff_mime(bytes: &[u8]) -> &'static str {
    match bytes {
        [0x89, b'P', b'N', b'G', ..] => "image/png",
        [0xFF, 0xD8, 0xFF, ..] => "image/jpeg",
        [b'G', b'I', b'F', b'8', ..] => "image/gif",
        [b'R', b'I', b'F', b'F', _, _, _, _, b'W', b'E', b'B', b'P', ..] => "image/webp",
        [b'B', b'M', ..] => "image/bmp",
        _ => "application/octet-stream",
    }
}

/// `s` cut to at most `max` characters.
fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_owned(),
    }
}

/// An id parameter: a string of digits, or an integer (v11 habits survive in some callers).
pub fn id_of(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) => Some(s.trim().to_owned()),
        Value::Number(n) => n.as_u64().map(|n| n.to_string()),
        _ => None,
    }
}

/// The world: who is there, what they said, and the files they sent.
#[derive(Debug)]
pub struct World {
    users: BTreeMap<String, User>,
    extra_users: usize,
    groups: BTreeMap<String, Group>,
    chats: BTreeMap<Chat, VecDeque<Message>>,
    files: HashMap<String, StoredFile>,
    /// File ids, oldest first.
    file_order: VecDeque<String>,
    file_bytes: usize,
    fragmented: VecDeque<(String, Fragmented)>,
    pending: VecDeque<Pending>,
    notices: VecDeque<Value>,
    counter: u64,
}

impl Default for World {
    fn default() -> Self {
        World::new()
    }
}

impl World {
    /// The starting world: Alice, Bob and Carol are the bot's friends; group 20001
    /// "Playground" has them all, group 20002 "Bot lab" only Alice.
    pub fn new() -> World {
        let mut world = World {
            users: BTreeMap::new(),
            extra_users: 0,
            groups: BTreeMap::new(),
            chats: BTreeMap::new(),
            files: HashMap::new(),
            file_order: VecDeque::new(),
            file_bytes: 0,
            fragmented: VecDeque::new(),
            pending: VecDeque::new(),
            notices: VecDeque::new(),
            counter: 0,
        };
        for (id, name) in [("10001", "Alice"), ("10002", "Bob"), ("10003", "Carol")] {
            world.users.insert(id.into(), User { id: id.into(), name: name.into(), friend: true });
            world.chats.insert(Chat::Private(id.into()), VecDeque::new());
        }
        for (id, name, members) in
            [("20001", "Playground", &["10001", "10002", "10003"][..]), ("20002", "Bot lab", &["10001"][..])]
        {
            let mut all = vec![BOT_ID.to_owned()];
            all.extend(members.iter().map(|m| m.to_string()));
            world.groups.insert(id.into(), Group { id: id.into(), name: name.into(), members: all });
            world.chats.insert(Chat::Group(id.into()), VecDeque::new());
        }
        world
    }

    fn next_id(&mut self, prefix: &str) -> String {
        self.counter += 1;
        format!("{prefix}{}", self.counter)
    }

    /// The `self` of every non-meta event and of the bot's status.
    pub fn self_json() -> Value {
        json!({"platform": PLATFORM, "user_id": BOT_ID})
    }

    pub fn user(&self, id: &str) -> Option<&User> {
        self.users.get(id)
    }

    pub fn users(&self) -> impl Iterator<Item = &User> {
        self.users.values()
    }

    pub fn group(&self, id: &str) -> Option<&Group> {
        self.groups.get(id)
    }

    pub fn groups(&self) -> impl Iterator<Item = &Group> {
        self.groups.values()
    }

    /// A name for any id: the bot's, a user's, else the id itself.
    pub fn name_of(&self, id: &str) -> String {
        if id == BOT_ID {
            return BOT_NAME.to_owned();
        }
        self.users.get(id).map(|u| u.name.clone()).unwrap_or_else(|| id.to_owned())
    }

    /// The messages a chat still holds, oldest first.
    pub fn history(&self, chat: &Chat) -> Option<&VecDeque<Message>> {
        self.chats.get(chat)
    }

    /// Whether `user` may speak in `chat` (the bot always may in a chat that exists).
    fn may_speak(&self, chat: &Chat, user: &str) -> Result<(), WorldError> {
        match chat {
            Chat::Group(g) => {
                let group = self.groups.get(g).ok_or_else(|| WorldError::NotFound(format!("there is no group {g}")))?;
                if !group.members.iter().any(|m| m == user) {
                    return Err(WorldError::Refused(format!("{} is not a member of group {g}", self.name_of(user))));
                }
            }
            Chat::Private(u) => {
                if !self.chats.contains_key(chat) {
                    return Err(WorldError::NotFound(format!("user {u} is not a friend of the bot")));
                }
                if user != BOT_ID && user != u {
                    return Err(WorldError::Refused(format!("the private chat with {u} is between {u} and the bot")));
                }
            }
        }
        Ok(())
    }

    /// Posts a message: checks the sender and every segment (filling a reply's `user_id`), keeps
    /// it in the chat's history and returns it.
    pub fn post(&mut self, chat: Chat, sender: &str, segments: Vec<Value>, now: f64) -> Result<Message, WorldError> {
        self.may_speak(&chat, sender)?;
        if segments.is_empty() {
            return Err(WorldError::BadParam("the message is empty".into()));
        }
        let mut checked = Vec::with_capacity(segments.len());
        let mut alt = String::new();
        let mut quote = None;
        for (i, seg) in segments.into_iter().enumerate() {
            let Value::Object(seg) = seg else {
                return Err(WorldError::BadSegment(format!("segment {i} is not an object")));
            };
            let Some(kind) = seg.get("type").and_then(Value::as_str).map(str::to_owned) else {
                return Err(WorldError::BadSegment(format!("segment {i} has no `type`")));
            };
            let data = match seg.get("data") {
                Some(Value::Object(d)) => d.clone(),
                None | Some(Value::Null) => Map::new(),
                Some(_) => {
                    return Err(WorldError::BadSegment(format!("segment {i} ({kind}): `data` is not an object")))
                }
            };
            let need_str = |field: &str| -> Result<String, WorldError> {
                data.get(field)
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .ok_or_else(|| WorldError::BadSegment(format!("segment {i} ({kind}) needs `{field}` as a string")))
            };
            let mut data = data.clone();
            match kind.as_str() {
                "text" => alt.push_str(&need_str("text")?),
                "mention" => {
                    let user = id_of(data.get("user_id"))
                        .ok_or_else(|| WorldError::BadSegment(format!("segment {i} (mention) needs `user_id`")))?;
                    alt.push('@');
                    alt.push_str(&self.name_of(&user));
                    data.insert("user_id".into(), user.into());
                }
                "mention_all" => alt.push_str("@all"),
                "reply" => {
                    let id = id_of(data.get("message_id"))
                        .ok_or_else(|| WorldError::BadSegment(format!("segment {i} (reply) needs `message_id`")))?;
                    let quoted = self.chats.get(&chat).and_then(|h| h.iter().find(|m| m.id == id));
                    let user_id = match (quoted, id_of(data.get("user_id"))) {
                        (Some(m), _) => m.sender.clone(),
                        (None, Some(u)) => u,
                        (None, None) => String::new(),
                    };
                    quote = Some(Quote {
                        message_id: id.clone(),
                        user_id: user_id.clone(),
                        text: quoted.map(|m| clip(&m.alt, 80)).unwrap_or_else(|| "(a message no longer here)".into()),
                    });
                    data.insert("message_id".into(), id.into());
                    data.insert("user_id".into(), user_id.into());
                }
                "image" | "voice" | "audio" | "video" | "file" => {
                    let id = need_str("file_id")?;
                    if !self.files.contains_key(&id) {
                        return Err(WorldError::BadParam(format!(
                            "segment {i} ({kind}): file_id {id:?} is not a file this implementation has (upload it first)"
                        )));
                    }
                    alt.push_str(&format!("[{kind}]"));
                }
                other => alt.push_str(&format!("[{other}]")),
            }
            checked.push(json!({"type": kind, "data": Value::Object(data)}));
        }
        let message = Message {
            id: self.next_id("m"),
            chat: chat.clone(),
            sender: sender.to_owned(),
            time: now,
            segments: checked,
            alt,
            quote,
        };
        let history = self.chats.entry(chat).or_default();
        if history.len() >= HISTORY_PER_CHAT {
            history.pop_front();
        }
        history.push_back(message.clone());
        Ok(message)
    }

    /// A person's message from the page: reply, mention of the bot, text and picture, in that
    /// order, as a real client builds them.
    pub fn user_send(&mut self, send: UserSend, now: f64) -> Result<Message, WorldError> {
        if send.user_id == BOT_ID {
            return Err(WorldError::Refused("the bot speaks for itself; pick a user".into()));
        }
        if send.text.chars().count() > MAX_TEXT_CHARS {
            return Err(WorldError::TooLarge(format!("the text is longer than {MAX_TEXT_CHARS} characters")));
        }
        self.may_speak(&send.chat, &send.user_id)?;
        let mut segments = Vec::new();
        if let Some(reply) = &send.reply_to {
            let quoted = self
                .chats
                .get(&send.chat)
                .and_then(|h| h.iter().find(|m| &m.id == reply))
                .ok_or_else(|| WorldError::NotFound(format!("message {reply} is not in {}", send.chat.key())))?;
            segments.push(json!({"type": "reply", "data": {"message_id": reply, "user_id": quoted.sender}}));
        }
        if send.mention_bot {
            segments.push(json!({"type": "mention", "data": {"user_id": BOT_ID}}));
        }
        if !send.text.is_empty() {
            let text = if send.mention_bot { format!(" {}", send.text) } else { send.text.clone() };
            segments.push(json!({"type": "text", "data": {"text": text}}));
        }
        if let Some((name, bytes)) = send.image {
            if sniff_mime(&bytes) == "application/octet-stream" {
                return Err(WorldError::BadParam(format!("{name} is not a PNG, JPEG, GIF, WebP or BMP picture")));
            }
            let id = self.store_bytes(&name, bytes)?;
            segments.push(json!({"type": "image", "data": {"file_id": id}}));
        }
        if segments.iter().all(|s| s["type"] == "reply") {
            return Err(WorldError::BadParam("nothing to send: type a text, mention the bot or pick a picture".into()));
        }
        self.post(send.chat, &send.user_id, segments, now)
    }

    /// Removes a message. A person recalls only messages of users (the page plays them); the bot
    /// recalls its own anywhere and, as the groups' admin, anyone's in a group.
    pub fn recall(&mut self, message_id: &str, by: &str) -> Result<Message, WorldError> {
        let (chat, at) = self
            .chats
            .iter()
            .find_map(|(c, h)| h.iter().position(|m| m.id == message_id).map(|at| (c.clone(), at)))
            .ok_or_else(|| WorldError::NotFound(format!("there is no message {message_id} (or it was forgotten)")))?;
        let history = self.chats.get_mut(&chat).ok_or_else(|| WorldError::NotFound(chat.key()))?;
        let sender = history[at].sender.clone();
        let allowed = if by == BOT_ID { sender == BOT_ID || matches!(chat, Chat::Group(_)) } else { sender != BOT_ID };
        if !allowed {
            return Err(WorldError::Refused(format!(
                "{} cannot recall a message of {}",
                self.name_of(by),
                self.name_of(&sender)
            )));
        }
        let history = self.chats.get_mut(&chat).ok_or_else(|| WorldError::NotFound(chat.key()))?;
        history.remove(at).ok_or_else(|| WorldError::NotFound(message_id.to_owned()))
    }

    /// Keeps a file's bytes; evicts the oldest files to stay within the budget.
    pub fn store_bytes(&mut self, name: &str, bytes: Bytes) -> Result<String, WorldError> {
        if bytes.len() > MAX_FILE_BYTES {
            return Err(WorldError::TooLarge(format!(
                "{name} is {} bytes; the playground keeps files of at most {MAX_FILE_BYTES} bytes",
                bytes.len()
            )));
        }
        let mime = sniff_mime(&bytes);
        Ok(self.keep_file(name, mime, FileBody::Bytes(bytes)))
    }

    /// Keeps a URL the bot named (the playground does not fetch it).
    pub fn store_url(&mut self, name: &str, url: &str) -> Result<String, WorldError> {
        if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() > 4096 {
            return Err(WorldError::BadParam("`url` must be an http(s) URL of at most 4096 bytes".into()));
        }
        Ok(self.keep_file(name, "application/octet-stream", FileBody::Url(url.to_owned())))
    }

    fn keep_file(&mut self, name: &str, mime: &'static str, body: FileBody) -> String {
        let id = self.next_id("f");
        let file = StoredFile { id: id.clone(), name: clip(name, 200), mime, body };
        let weight = file.weight();
        while (self.file_bytes + weight > FILE_BUDGET_BYTES || self.files.len() >= MAX_FILES)
            && self.evict_oldest_file()
        {}
        self.file_bytes += weight;
        self.files.insert(id.clone(), file);
        self.file_order.push_back(id.clone());
        id
    }

    fn evict_oldest_file(&mut self) -> bool {
        let Some(id) = self.file_order.pop_front() else { return false };
        if let Some(old) = self.files.remove(&id) {
            self.file_bytes -= old.weight();
        }
        true
    }

    pub fn file(&self, id: &str) -> Option<&StoredFile> {
        self.files.get(id)
    }

    /// Bytes all kept files hold.
    pub fn file_bytes(&self) -> usize {
        self.file_bytes
    }

    /// `upload_file_fragmented` stage `prepare`: the id the transfers name.
    pub fn fragment_prepare(&mut self, name: &str, total: u64) -> Result<String, WorldError> {
        if total > MAX_FILE_BYTES as u64 {
            return Err(WorldError::TooLarge(format!(
                "{name} is {total} bytes; the playground keeps files of at most {MAX_FILE_BYTES} bytes"
            )));
        }
        if self.fragmented.len() >= MAX_FRAGMENTED {
            self.fragmented.pop_front();
        }
        let id = self.next_id("u");
        self.fragmented.push_back((id.clone(), Fragmented { name: name.to_owned(), data: vec![0; total as usize] }));
        Ok(id)
    }

    /// `upload_file_fragmented` stage `transfer`: one piece at its offset.
    pub fn fragment_transfer(&mut self, id: &str, offset: u64, piece: &[u8]) -> Result<(), WorldError> {
        let upload = self.fragmented_mut(id)?;
        let end = offset.checked_add(piece.len() as u64).filter(|end| *end <= upload.data.len() as u64);
        let Some(end) = end else {
            return Err(WorldError::BadParam(format!(
                "a piece of {} bytes at offset {offset} does not fit the {} bytes announced",
                piece.len(),
                upload.data.len()
            )));
        };
        upload.data[offset as usize..end as usize].copy_from_slice(piece);
        Ok(())
    }

    /// `upload_file_fragmented` stage `finish`: the file, if its sha256 matches (when given).
    pub fn fragment_finish(&mut self, id: &str, sha256: Option<&str>) -> Result<String, WorldError> {
        self.fragmented_mut(id)?;
        let at =
            self.fragmented.iter().position(|(i, _)| i == id).ok_or_else(|| WorldError::NotFound(id.to_owned()))?;
        let Some((_, upload)) = self.fragmented.remove(at) else { return Err(WorldError::NotFound(id.to_owned())) };
        if let Some(want) = sha256.filter(|s| !s.is_empty()) {
            let got = hex(&sha2_digest(&upload.data));
            if !want.eq_ignore_ascii_case(&got) {
                return Err(WorldError::BadParam(format!("the file's sha256 is {got}, not {want}")));
            }
        }
        self.store_bytes(&upload.name, Bytes::from(upload.data))
    }

    fn fragmented_mut(&mut self, id: &str) -> Result<&mut Fragmented, WorldError> {
        self.fragmented
            .iter_mut()
            .find(|(i, _)| i == id)
            .map(|(_, f)| f)
            .ok_or_else(|| WorldError::NotFound(format!("no fragmented upload {id} is in progress")))
    }

    fn add_user(&mut self, id: &str, name: &str, friend: bool) -> Result<(), WorldError> {
        if !is_numeric_id(id) {
            return Err(WorldError::BadParam(format!("user_id {id:?} is not a numeric id")));
        }
        if id == BOT_ID || self.groups.contains_key(id) {
            return Err(WorldError::Refused(format!("{id} is taken")));
        }
        if self.users.contains_key(id) {
            return Ok(());
        }
        if self.extra_users >= MAX_EXTRA_USERS {
            return Err(WorldError::Refused(format!("the playground holds at most {MAX_EXTRA_USERS} new users")));
        }
        let name = name.trim();
        let name = if name.is_empty() { format!("User {id}") } else { clip(name, MAX_NAME_CHARS) };
        self.extra_users += 1;
        self.users.insert(id.to_owned(), User { id: id.to_owned(), name, friend });
        Ok(())
    }

    /// A new user asks to be the bot's friend: the v12 request event (`qq.friend`, which the
    /// bridge's generic profile makes a v11 `request_type: friend` with this `flag`).
    pub fn friend_request(&mut self, user_id: &str, name: &str, comment: &str, now: f64) -> Result<Value, WorldError> {
        if self.users.get(user_id).is_some_and(|u| u.friend) {
            return Err(WorldError::Refused(format!("{} is already the bot's friend", self.name_of(user_id))));
        }
        self.add_user(user_id, name, false)?;
        let flag = self.next_id("friend-");
        if self.pending.len() >= MAX_PENDING_REQUESTS {
            self.pending.pop_front();
        }
        self.pending.push_back(Pending { flag: flag.clone(), user_id: user_id.to_owned() });
        let mut ev = self.event_head("request", "qq.friend", "", now);
        ev.insert("user_id".into(), user_id.into());
        ev.insert("user_name".into(), self.name_of(user_id).into());
        ev.insert("comment".into(), clip(comment, 200).into());
        ev.insert("flag".into(), flag.into());
        Ok(Value::Object(ev))
    }

    /// The bot answers a friend request: the user, and whether they are a friend now (then a
    /// private chat exists with them).
    pub fn answer_friend_request(&mut self, flag: &str, approve: bool) -> Result<User, WorldError> {
        let at =
            self.pending.iter().position(|p| p.flag == flag).ok_or_else(|| {
                WorldError::NotFound(format!("no friend request has flag {flag:?} (or it was answered)"))
            })?;
        let Some(pending) = self.pending.remove(at) else { return Err(WorldError::NotFound(flag.to_owned())) };
        let user = self
            .users
            .get_mut(&pending.user_id)
            .ok_or_else(|| WorldError::NotFound(format!("user {} is gone", pending.user_id)))?;
        if approve {
            user.friend = true;
            let user = user.clone();
            self.chats.entry(Chat::Private(user.id.clone())).or_default();
            return Ok(user);
        }
        Ok(user.clone())
    }

    /// A user joins a group: the v12 `notice.group_member_increase`. An unknown id becomes a new
    /// user named `name` (or `User <id>`).
    pub fn member_join(&mut self, group_id: &str, user_id: &str, name: &str, now: f64) -> Result<Value, WorldError> {
        if !self.groups.contains_key(group_id) {
            return Err(WorldError::NotFound(format!("there is no group {group_id}")));
        }
        self.add_user(user_id, name, false)?;
        let group = self.groups.get_mut(group_id).ok_or_else(|| WorldError::NotFound(group_id.to_owned()))?;
        if group.members.iter().any(|m| m == user_id) {
            return Err(WorldError::Refused(format!("{user_id} is already a member of {}", group.name)));
        }
        group.members.push(user_id.to_owned());
        let mut ev = self.event_head("notice", "group_member_increase", "join", now);
        ev.insert("group_id".into(), group_id.into());
        ev.insert("user_id".into(), user_id.into());
        ev.insert("operator_id".into(), user_id.into());
        Ok(Value::Object(ev))
    }

    /// Renames a group (the bot's `set_group_name`).
    pub fn rename_group(&mut self, group_id: &str, name: &str) -> Result<(), WorldError> {
        let name = name.trim();
        if name.is_empty() {
            return Err(WorldError::BadParam("`group_name` is empty".into()));
        }
        let group = self
            .groups
            .get_mut(group_id)
            .ok_or_else(|| WorldError::NotFound(format!("there is no group {group_id}")))?;
        group.name = clip(name, MAX_NAME_CHARS);
        Ok(())
    }

    /// The base fields of a non-meta v12 event, with a fresh id.
    fn event_head(&mut self, kind: &str, detail: &str, sub: &str, now: f64) -> Map<String, Value> {
        let mut ev = Map::new();
        ev.insert("id".into(), self.next_id("e").into());
        ev.insert("time".into(), now.into());
        ev.insert("type".into(), kind.into());
        ev.insert("detail_type".into(), detail.into());
        ev.insert("sub_type".into(), sub.into());
        ev.insert("self".into(), World::self_json());
        ev
    }

    /// The v12 message event for a user's message.
    pub fn message_event(&mut self, m: &Message) -> Value {
        let detail = match &m.chat {
            Chat::Group(_) => "group",
            Chat::Private(_) => "private",
        };
        let mut ev = self.event_head("message", detail, "", m.time);
        ev.insert("message_id".into(), m.id.clone().into());
        ev.insert("message".into(), Value::Array(m.segments.clone()));
        ev.insert("alt_message".into(), m.alt.clone().into());
        ev.insert("user_id".into(), m.sender.clone().into());
        if let Chat::Group(g) = &m.chat {
            ev.insert("group_id".into(), g.clone().into());
        }
        ev.insert("user_name".into(), self.name_of(&m.sender).into());
        Value::Object(ev)
    }

    /// The v12 notice for a recalled message.
    pub fn recall_event(&mut self, m: &Message, by: &str, now: f64) -> Value {
        match &m.chat {
            Chat::Group(g) => {
                let sub = if by == m.sender { "recall" } else { "delete" };
                let mut ev = self.event_head("notice", "group_message_delete", sub, now);
                ev.insert("group_id".into(), g.clone().into());
                ev.insert("message_id".into(), m.id.clone().into());
                ev.insert("user_id".into(), m.sender.clone().into());
                ev.insert("operator_id".into(), by.into());
                Value::Object(ev)
            }
            Chat::Private(_) => {
                let mut ev = self.event_head("notice", "private_message_delete", "", now);
                ev.insert("message_id".into(), m.id.clone().into());
                ev.insert("user_id".into(), m.sender.clone().into());
                Value::Object(ev)
            }
        }
    }

    /// The v12 `friend_increase` notice.
    pub fn friend_increase_event(&mut self, user_id: &str, now: f64) -> Value {
        let mut ev = self.event_head("notice", "friend_increase", "", now);
        ev.insert("user_id".into(), user_id.into());
        Value::Object(ev)
    }

    /// A line for the page ("Playground Bot accepted Dave's friend request"), kept for snapshots.
    pub fn notice(&mut self, chat: Option<&Chat>, text: &str, now: f64) -> Value {
        let notice = json!({"id": self.next_id("n"), "chat": chat.map(Chat::key), "text": text, "time": now});
        if self.notices.len() >= MAX_NOTICES {
            self.notices.pop_front();
        }
        self.notices.push_back(notice.clone());
        notice
    }

    /// Everything the page needs to draw itself.
    pub fn snapshot(&self) -> Value {
        let users: Vec<Value> =
            self.users.values().map(|u| json!({"id": u.id, "name": u.name, "friend": u.friend})).collect();
        let groups: Vec<Value> =
            self.groups.values().map(|g| json!({"id": g.id, "name": g.name, "members": g.members})).collect();
        let chats: Map<String, Value> = self
            .chats
            .iter()
            .map(|(c, h)| (c.key(), Value::Array(h.iter().map(Message::page_json).collect())))
            .collect();
        json!({
            "type": "snapshot",
            "bot": {"id": BOT_ID, "name": BOT_NAME},
            "users": users,
            "groups": groups,
            "chats": chats,
            "notices": self.notices,
        })
    }
}

/// A person's message, as the page sends it.
#[derive(Debug, Clone)]
pub struct UserSend {
    pub chat: Chat,
    pub user_id: String,
    pub text: String,
    pub mention_bot: bool,
    pub reply_to: Option<String>,
    /// The picture's name and bytes.
    pub image: Option<(String, Bytes)>,
}

fn sha2_digest(data: &[u8]) -> Vec<u8> {
    use sha2::Digest as _;
    sha2::Sha256::digest(data).to_vec()
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG: &[u8] = &[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0];

    fn say(w: &mut World, chat: &str, user: &str, text: &str) -> Message {
        let send = UserSend {
            chat: Chat::parse(chat).unwrap(),
            user_id: user.into(),
            text: text.into(),
            mention_bot: false,
            reply_to: None,
            image: None,
        };
        w.user_send(send, 1.5).unwrap()
    }

    #[test]
    fn chat_keys_round_trip_and_refuse_junk() {
        assert_eq!(Chat::parse("group:20001"), Some(Chat::Group("20001".into())));
        assert_eq!(Chat::parse("private:10001").unwrap().key(), "private:10001");
        for bad in ["group:", "group:abc", "channel:1", "20001", "private:1:2"] {
            assert_eq!(Chat::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn message_ids_are_unique_across_chats() {
        let mut w = World::new();
        let mut seen = std::collections::HashSet::new();
        for i in 0..50 {
            let chat = if i % 2 == 0 { "group:20001" } else { "private:10002" };
            let user = if i % 2 == 0 { "10001" } else { "10002" };
            assert!(seen.insert(say(&mut w, chat, user, "hi").id));
        }
    }

    #[test]
    fn history_keeps_the_last_messages_only() {
        let mut w = World::new();
        let first = say(&mut w, "group:20001", "10001", "first");
        for i in 0..HISTORY_PER_CHAT {
            say(&mut w, "group:20001", "10002", &i.to_string());
        }
        let history = w.history(&Chat::Group("20001".into())).unwrap();
        assert_eq!(history.len(), HISTORY_PER_CHAT);
        assert!(history.iter().all(|m| m.id != first.id));
        assert!(matches!(w.recall(&first.id, "10001"), Err(WorldError::NotFound(_))));
    }

    #[test]
    fn users_speak_only_where_they_belong() {
        let mut w = World::new();
        let send = |chat: &str, user: &str| UserSend {
            chat: Chat::parse(chat).unwrap(),
            user_id: user.into(),
            text: "x".into(),
            mention_bot: false,
            reply_to: None,
            image: None,
        };
        assert!(matches!(w.user_send(send("group:20002", "10002"), 0.0), Err(WorldError::Refused(_))));
        assert!(matches!(w.user_send(send("private:10001", "10002"), 0.0), Err(WorldError::Refused(_))));
        assert!(matches!(w.user_send(send("group:29999", "10001"), 0.0), Err(WorldError::NotFound(_))));
        assert!(matches!(w.user_send(send("group:20001", BOT_ID), 0.0), Err(WorldError::Refused(_))));
    }

    #[test]
    fn a_message_event_has_the_v12_shape() {
        let mut w = World::new();
        let target = say(&mut w, "group:20001", "10002", "earlier");
        let send = UserSend {
            chat: Chat::Group("20001".into()),
            user_id: "10001".into(),
            text: "hello".into(),
            mention_bot: true,
            reply_to: Some(target.id.clone()),
            image: Some(("cat.png".into(), Bytes::from_static(PNG))),
        };
        let m = w.user_send(send, 2.5).unwrap();
        let ev = w.message_event(&m);
        assert_eq!(ev["type"], "message");
        assert_eq!(ev["detail_type"], "group");
        assert_eq!(ev["sub_type"], "");
        assert_eq!(ev["self"], json!({"platform": "qq", "user_id": "10000"}));
        assert_eq!(ev["group_id"], "20001");
        assert_eq!(ev["user_id"], "10001");
        assert_eq!(ev["message_id"], m.id.as_str());
        assert_eq!(ev["time"], 2.5);
        assert!(ev["id"].as_str().is_some_and(|i| !i.is_empty()));
        let segs = ev["message"].as_array().unwrap();
        assert_eq!(segs[0], json!({"type": "reply", "data": {"message_id": target.id, "user_id": "10002"}}));
        assert_eq!(segs[1], json!({"type": "mention", "data": {"user_id": "10000"}}));
        assert_eq!(segs[2], json!({"type": "text", "data": {"text": " hello"}}));
        assert_eq!(segs[3]["type"], "image");
        let file_id = segs[3]["data"]["file_id"].as_str().unwrap();
        assert_eq!(w.file(file_id).unwrap().mime, "image/png");
        assert_eq!(ev["alt_message"], "@Playground Bot hello[image]");
        assert_eq!(m.quote.as_ref().unwrap().text, "earlier");
    }

    #[test]
    fn a_picture_must_be_a_picture() {
        let mut w = World::new();
        let send = UserSend {
            chat: Chat::Group("20001".into()),
            user_id: "10001".into(),
            text: String::new(),
            mention_bot: false,
            reply_to: None,
            image: Some(("page.html".into(), Bytes::from_static(b"<html><script>"))),
        };
        assert!(matches!(w.user_send(send, 0.0), Err(WorldError::BadParam(_))));
    }

    #[test]
    fn recall_rules_and_events() {
        let mut w = World::new();
        let m = say(&mut w, "group:20001", "10001", "oops");
        let bot = w
            .post(Chat::Private("10001".into()), BOT_ID, vec![json!({"type": "text", "data": {"text": "hi"}})], 1.0)
            .unwrap();
        // A person cannot recall the bot's message; the bot cannot recall a user's private one.
        assert!(matches!(w.recall(&bot.id, "10001"), Err(WorldError::Refused(_))));
        let p = say(&mut w, "private:10001", "10001", "psst");
        assert!(matches!(w.recall(&p.id, BOT_ID), Err(WorldError::Refused(_))));
        let gone = w.recall(&m.id, "10001").unwrap();
        let ev = w.recall_event(&gone, "10001", 3.0);
        assert_eq!(ev["detail_type"], "group_message_delete");
        assert_eq!(ev["sub_type"], "recall");
        assert_eq!(ev["group_id"], "20001");
        assert_eq!(ev["message_id"], m.id.as_str());
        assert_eq!(ev["operator_id"], "10001");
        assert!(w.history(&Chat::Group("20001".into())).unwrap().is_empty());
        w.recall(&bot.id, BOT_ID).unwrap();
        let ev = w.recall_event(&p, "10001", 3.0);
        assert_eq!(ev["detail_type"], "private_message_delete");
        assert_eq!(ev["user_id"], "10001");
    }

    #[test]
    fn files_stay_within_their_budget_oldest_evicted_first() {
        let mut w = World::new();
        let big = |n: u8| {
            let mut v = vec![n; MAX_FILE_BYTES];
            v[..4].copy_from_slice(&[0x89, b'P', b'N', b'G']);
            Bytes::from(v)
        };
        let ids: Vec<String> = (0..8).map(|n| w.store_bytes("x.png", big(n)).unwrap()).collect();
        assert!(w.file_bytes() <= FILE_BUDGET_BYTES);
        assert!(w.file(&ids[0]).is_none() && w.file(&ids[1]).is_none());
        assert!(w.file(&ids[7]).is_some() && w.file(&ids[2]).is_some());
        assert_eq!(w.file_bytes(), 6 * MAX_FILE_BYTES);
        let too_big = Bytes::from(vec![0; MAX_FILE_BYTES + 1]);
        assert!(matches!(w.store_bytes("y", too_big), Err(WorldError::TooLarge(_))));
        let url = w.store_url("z.jpg", "https://example.com/z.jpg").unwrap();
        assert_eq!(w.file(&url).unwrap().body, FileBody::Url("https://example.com/z.jpg".into()));
        assert!(w.store_url("z", "file:///etc/passwd").is_err());
    }

    #[test]
    fn fragmented_upload_assembles_and_checks_the_hash() {
        let mut w = World::new();
        let id = w.fragment_prepare("a.gif", 6).unwrap();
        w.fragment_transfer(&id, 3, b"def").unwrap();
        w.fragment_transfer(&id, 0, b"GIF").unwrap();
        assert!(w.fragment_transfer(&id, 4, b"xyz").is_err());
        let wrong = w.fragment_prepare("b", 1).unwrap();
        assert!(w.fragment_finish(&wrong, Some("00")).is_err());
        let sha = hex(&sha2_digest(b"GIFdef"));
        let file = w.fragment_finish(&id, Some(&sha)).unwrap();
        assert_eq!(w.file(&file).unwrap().body, FileBody::Bytes(Bytes::from_static(b"GIFdef")));
        assert!(w.fragment_finish(&id, None).is_err(), "finished once");
        assert!(w.fragment_prepare("huge", MAX_FILE_BYTES as u64 + 1).is_err());
    }

    #[test]
    fn friend_request_then_answer() {
        let mut w = World::new();
        let ev = w.friend_request("10009", "Dave", "hi!", 4.0).unwrap();
        assert_eq!((ev["type"].as_str(), ev["detail_type"].as_str()), (Some("request"), Some("qq.friend")));
        assert_eq!(ev["user_id"], "10009");
        assert_eq!(ev["comment"], "hi!");
        let flag = ev["flag"].as_str().unwrap().to_owned();
        assert!(w.history(&Chat::Private("10009".into())).is_none());
        let dave = w.answer_friend_request(&flag, true).unwrap();
        assert!(dave.friend && dave.name == "Dave");
        assert!(w.history(&Chat::Private("10009".into())).is_some());
        assert!(w.answer_friend_request(&flag, true).is_err(), "answered once");
        assert!(w.friend_request("10009", "Dave", "", 5.0).is_err(), "already a friend");
        assert!(w.friend_request("20001", "Group", "", 5.0).is_err());
    }

    #[test]
    fn member_join_adds_the_member_once() {
        let mut w = World::new();
        let ev = w.member_join("20002", "10003", "", 6.0).unwrap();
        assert_eq!(ev["detail_type"], "group_member_increase");
        assert_eq!(ev["sub_type"], "join");
        assert_eq!((ev["group_id"].as_str(), ev["user_id"].as_str()), (Some("20002"), Some("10003")));
        assert!(w.group("20002").unwrap().members.contains(&"10003".to_owned()));
        assert!(w.member_join("20002", "10003", "", 6.0).is_err());
        w.member_join("20001", "10042", "Erin", 6.0).unwrap();
        assert_eq!(w.user("10042").unwrap().name, "Erin");
    }

    #[test]
    fn snapshot_lists_everything_the_page_draws() {
        let mut w = World::new();
        say(&mut w, "group:20001", "10001", "hi");
        w.notice(None, "hello", 1.0);
        let s = w.snapshot();
        assert_eq!(s["type"], "snapshot");
        assert_eq!(s["bot"]["id"], "10000");
        assert_eq!(s["users"].as_array().unwrap().len(), 3);
        assert_eq!(s["groups"][0]["members"], json!(["10000", "10001", "10002", "10003"]));
        assert_eq!(s["chats"]["group:20001"][0]["alt"], "hi");
        assert!(s["chats"]["private:10003"].as_array().unwrap().is_empty());
        assert_eq!(s["notices"][0]["text"], "hello");
    }
}
