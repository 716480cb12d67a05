//! The translation core: pure functions from v12 values to v11 values and back.
//!
//! Nothing here opens a socket, sleeps or spawns. Ids go through an [`ids::IdStore`]; multi-step
//! actions talk to the backend through a [`V12Caller`] that the runtime implements over whichever
//! link carries the bot account. Both are traits, so the whole core runs in unit tests and
//! benchmarks with in-memory stand-ins.

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
pub mod requests;
pub mod scan;
pub mod segment;
pub mod v11;
pub mod v12;

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
        self.media = media::Media::new(self.options.media.clone(), Some(files));
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
