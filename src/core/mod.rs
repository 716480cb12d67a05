//! The translation core: v12 values to v11 values and back.
//!
//! It is async, by choice. A multi-step action (upload a picture, then send the message that
//! names it; ask for a received picture's URL while its event translates) calls the backend
//! through a [`V12Caller`] and awaits the answer where the next step needs it; returning a plan
//! of calls instead would have the runtime resume the translation after each answer, with its
//! state carried across, for every such action and event. It also keeps state: ids go through
//! an [`ids::IdStore`], and media keeps remembered uploads and URLs for a while.
//!
//! What it does not do: open a socket, read a file, sleep or spawn. The backend, the id store
//! and local files are behind traits the runtime implements (`V12Caller`, `IdStore`,
//! `media::LocalFiles`), so the whole core runs in unit tests and benchmarks with in-memory
//! stand-ins and a blocking executor. The one runtime type it names is tungstenite's
//! `Utf8Bytes`, the text frame an event is serialised into once for every bot.

pub mod action;
pub mod answers;
pub mod cq;
pub mod event;
pub mod files;
pub mod filter;
pub mod forward;
pub mod ids;
pub mod mapping;
pub mod matrix;
pub mod media;
pub mod message;
pub mod quick;
pub mod record;
pub mod requests;
pub mod scan;
pub mod segment;
pub mod v11;
pub mod v12;
pub mod write_json;

use std::future::Future;
use std::sync::Arc;

pub use ids::{IdMapper, IdStore, MemoryIdStore};
pub use mapping::{MappingSet, Mappings};

/// One bot account as both sides name it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Account {
    /// v12 `self`.
    pub self_id: v12::SelfId,
    /// The v11 `self_id` (X-Self-ID) bots see.
    pub v11_id: i64,
}

/// What the bridge knows about the backend, for answers it gives itself.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BackendInfo {
    pub implementation: String,
    pub version: String,
    pub onebot_version: String,
    /// The profile in use (`mappings/profiles/<profile>.toml`); empty means `generic`.
    pub profile: String,
    /// What the backend's `get_supported_actions` listed, when it answered.
    pub supported: Option<Arc<std::collections::BTreeSet<String>>>,
    /// How local files reach this backend when its link says (else the bridge's upload mode):
    /// a NapCat in a container needs the bytes, one beside the bridge can read its disk.
    pub upload: Option<media::UploadMode>,
}

/// Where a link learned something about its implementation, least trusted first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InfoSource {
    /// Request headers (`X-Impl`, `X-OneBot-Version`) of a webhook post or a WebSocket
    /// handshake: they fill what nothing better said, never replace it.
    Headers,
    /// The implementation's own word: a `get_version` answer or a `meta.connect` event's
    /// `version`. What it says replaces what was known.
    Version,
}

/// What one source says about the implementation; an empty field says nothing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImplementationClaim {
    pub implementation: String,
    pub version: String,
    pub onebot_version: String,
}

impl ImplementationClaim {
    /// From a v12 version object (`impl`, `version`, `onebot_version`): a `get_version` answer
    /// or a `meta.connect` event's `version`. Numbers are read as their text.
    pub fn from_version(version: Option<&serde_json::Value>) -> ImplementationClaim {
        let text = |k: &str| version.and_then(|v| v.get(k)).and_then(v12::id_string).unwrap_or_default();
        ImplementationClaim {
            implementation: text("impl"),
            version: text("version"),
            onebot_version: text("onebot_version"),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.implementation.is_empty() && self.version.is_empty() && self.onebot_version.is_empty()
    }
}

impl BackendInfo {
    /// What is known once `claim` from `source` is taken in; the profile and the supported
    /// actions are kept (the hub picks the profile again from the implementation).
    pub fn learn(&self, claim: ImplementationClaim, source: InfoSource) -> BackendInfo {
        let take = |known: &String, said: String| match source {
            _ if said.is_empty() => known.clone(),
            InfoSource::Headers if !known.is_empty() => known.clone(),
            _ => said,
        };
        BackendInfo {
            implementation: take(&self.implementation, claim.implementation),
            version: take(&self.version, claim.version),
            onebot_version: take(&self.onebot_version, claim.onebot_version),
            profile: self.profile.clone(),
            supported: self.supported.clone(),
            upload: self.upload,
        }
    }
}

/// Translation switches that are not tables.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Whether quick-operation `at_sender` applies when the bot does not say (go-cqhttp: false).
    pub at_sender_default: bool,
    /// Uploads, received-media URLs and their bounds.
    pub media: media::MediaOptions,
    /// The bot's own messages become `message_sent` events (go-cqhttp's report-self-message);
    /// without it they are not reported.
    pub report_self_message: bool,
    /// go-cqhttp's `message.remove-reply-at`: drop the mention QQ adds after a reply.
    pub remove_reply_at: bool,
    /// go-cqhttp's `message.extra-reply-data`: a reply also carries the quoted message's data.
    pub extra_reply_data: bool,
}

/// Why a call to the backend produced no answer.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum CallError {
    #[error("the backend did not answer within {0} ms")]
    Timeout(u64),
    #[error("no backend connection for this account: {0}")]
    Unavailable(String),
    #[error("the backend link failed: {0}")]
    Link(String),
}

/// Sends one v12 action for one account and waits (with a timeout) for its response.
pub trait V12Caller: Sync {
    fn call(&self, request: v12::Request) -> impl Future<Output = Result<v12::Response, CallError>> + Send;

    /// Sends `request` with `message` (v12 segments) as its `message` param. A caller that
    /// writes the request's JSON itself may write the segments as they are; by default they are
    /// put into the params as a value.
    fn call_with_message(
        &self,
        mut request: v12::Request,
        message: Vec<message::Segment>,
    ) -> impl Future<Output = Result<v12::Response, CallError>> + Send {
        request.params.insert("message".into(), message::Segment::list_into_value(message));
        self.call(request)
    }
}

/// The core: tables, ids and options. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Translator<S> {
    /// Every profile's tables; a call uses the one its backend link selected.
    pub maps: Arc<MappingSet>,
    pub ids: IdMapper<S>,
    pub options: Options,
    pub media: media::Media,
}

impl<S: IdStore> Translator<S> {
    pub fn new(maps: Arc<MappingSet>, store: S, options: Options) -> Self {
        let media = media::Media::new(options.media.clone(), None);
        Translator { maps, ids: IdMapper::new(store), options, media }
    }

    /// Lets bots name local files (read through `files`, which enforces the allowed directories).
    pub fn with_local_files(mut self, files: Box<dyn media::LocalFiles>) -> Self {
        self.media.set_local_files(files);
        self
    }

    /// Shares remembered uploads and URLs with other bridges through `cache` (replicas on one
    /// store), behind this bridge's own memory.
    pub fn with_shared_media_cache(mut self, cache: Arc<dyn media::SharedMediaCache>) -> Self {
        self.media.set_shared_cache(cache);
        self
    }

    /// The context of one call or event for an account on a backend: its profile's tables.
    pub fn context<'a>(
        &'a self,
        account: &'a Account,
        backend: &'a BackendInfo,
        post_format: v11::PostFormat,
    ) -> action::ActionContext<'a> {
        action::ActionContext { account, backend, post_format, maps: self.maps.get(&backend.profile) }
    }

    /// The account as v11 sees it.
    pub async fn account(&self, self_id: &v12::SelfId) -> Result<Account, ids::IdError> {
        Ok(Account { self_id: self_id.clone(), v11_id: self.ids.to_v11(&self_id.user_id).await? })
    }
}

/// Test stand-ins shared by the core's unit tests.
#[cfg(test)]
pub(crate) mod testing {
    use std::sync::{Arc, Mutex};

    use serde_json::Value;

    use super::*;

    pub fn translator() -> Translator<MemoryIdStore> {
        Translator::new(Arc::new(MappingSet::embedded().unwrap()), MemoryIdStore::default(), Options::default())
    }

    pub fn account(t: &Translator<MemoryIdStore>) -> Account {
        futures::executor::block_on(t.account(&v12::SelfId { platform: "qq".into(), user_id: "10001".into() })).unwrap()
    }

    /// Records every request and answers with the data it was given (or `null`; a
    /// `send_message` given none gets a fresh `message_id`, which v12 requires of its answer).
    #[derive(Default)]
    pub struct Recorder {
        pub requests: Mutex<Vec<v12::Request>>,
        pub data: Mutex<Value>,
    }

    impl V12Caller for Recorder {
        async fn call(&self, request: v12::Request) -> Result<v12::Response, CallError> {
            let mut requests = self.requests.lock().unwrap();
            let data = match self.data.lock().unwrap().clone() {
                Value::Null if request.action == "send_message" => {
                    serde_json::json!({"message_id": format!("sent-{}", requests.len()), "time": 1700000000})
                }
                data => data,
            };
            requests.push(request);
            Ok(v12::Response::ok(data))
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn claim(implementation: &str, version: &str, onebot_version: &str) -> ImplementationClaim {
        ImplementationClaim {
            implementation: implementation.into(),
            version: version.into(),
            onebot_version: onebot_version.into(),
        }
    }

    fn info(implementation: &str, version: &str, onebot_version: &str) -> BackendInfo {
        BackendInfo {
            implementation: implementation.into(),
            version: version.into(),
            onebot_version: onebot_version.into(),
            ..Default::default()
        }
    }

    #[test]
    fn the_implementations_own_word_replaces_what_headers_said_and_an_empty_field_says_nothing() {
        let from_headers = BackendInfo::default().learn(claim("walle-q", "", "12"), InfoSource::Headers);
        assert_eq!(from_headers, info("walle-q", "", "12"));
        let connected = from_headers.learn(claim("Walle-Q", "0.3.1", ""), InfoSource::Version);
        assert_eq!(connected, info("Walle-Q", "0.3.1", "12"));
        // Headers of a later request fill nothing that is known.
        let again = connected.learn(claim("other", "9", "11"), InfoSource::Headers);
        assert_eq!(again, connected);
        // ... but what is still unknown they fill.
        assert_eq!(info("x", "", "").learn(claim("y", "", "12"), InfoSource::Headers), info("x", "", "12"));
    }

    #[test]
    fn learning_keeps_the_profile_and_the_supported_actions() {
        let known = BackendInfo {
            profile: "walle-q".into(),
            supported: Some(Arc::new(["send_message".to_owned()].into())),
            ..info("walle-q", "1", "12")
        };
        let learnt = known.learn(claim("", "2", ""), InfoSource::Version);
        assert_eq!((learnt.profile.as_str(), learnt.version.as_str()), ("walle-q", "2"));
        assert_eq!(learnt.supported, known.supported);
    }

    #[test]
    fn a_version_object_is_read_leniently() {
        let version = json!({"impl": "go-libonebot", "version": 12, "onebot_version": "12", "extra": true});
        assert_eq!(ImplementationClaim::from_version(Some(&version)), claim("go-libonebot", "12", "12"));
        assert!(ImplementationClaim::from_version(None).is_empty());
        assert!(ImplementationClaim::from_version(Some(&json!("no object"))).is_empty());
    }
}
