//! Backend links: the bridge as a client of the OneBot implementation that holds the accounts.
//!
//! [`link`] is what every link shares (the [`link::LinkHandle`] actions go through, recent event
//! ids, the give-up signal); [`writer`] is a socket link's writing half, shared by its callers; [`intake`] admits, translates and delivers a socket link's events in
//! order; [`v12`] holds the OneBot v12 transports. A link reports what it receives through the
//! [`Reports`] trait, never to the hub by name: the hub implements it, and a test can put
//! anything else in its place.

pub mod intake;
pub mod link;
pub mod socket;
pub mod v11;
pub mod v12;
pub mod writer;

use std::collections::BTreeSet;
use std::future::Future;

use serde_json::Value;

use crate::core::{v12 as proto, ImplementationClaim, InfoSource};
use link::{GiveUp, LinkHandle, LinkId};

/// Where backend links report: events (in three steps, so a link can translate several at once
/// and still deliver in order), accounts, what the implementation is, and the link's comings and
/// goings.
pub trait Reports: Send + Sync + 'static {
    /// An event past the in-order first step, waiting to be translated.
    type Admitted: Send + 'static;
    /// A translated event, waiting to be delivered in order.
    type Translated: Send + 'static;

    /// The in-order first step for one event: `None` when it stops here (a meta event, or an
    /// event without an account).
    fn admit(&self, link: &LinkHandle, ev: proto::Event) -> impl Future<Output = Option<Self::Admitted>> + Send;

    /// Translates an admitted event; backend calls it makes stop waiting when `give_up` fires.
    fn translate(&self, admitted: Self::Admitted, give_up: GiveUp) -> impl Future<Output = Self::Translated> + Send;

    /// Hands a translated event on (called in the order the events were admitted, once its
    /// [`ticket`](Self::ticket) is on disk and its [`room`](Self::room) made).
    fn deliver(&self, done: Self::Translated);

    /// What a translated event waits for, once its ids are on disk, before it is delivered: a
    /// connection a whole queue behind making room, within the patience it is given
    /// (`--slow-bot-wait`, [`crate::fanout::PATIENCE`] by default). None: it may go now.
    fn room(&self, _done: &Self::Translated) -> Option<crate::fanout::Room> {
        None
    }

    /// What a translated event waits for before it may be delivered: the disk store's journal
    /// entry that holds the last of its ids (0: nothing).
    fn ticket(&self, _done: &Self::Translated) -> u64 {
        0
    }

    /// How far the journal is on disk now: events whose ticket is at most this may go.
    fn on_disk_to(&self) -> u64 {
        u64::MAX
    }

    /// Waits until the journal is on disk up to `ticket`; an error when it never will be (the
    /// store stopped: it says why).
    fn wait_on_disk(&self, _ticket: u64) -> impl Future<Output = Result<(), String>> + Send {
        std::future::ready(Ok(()))
    }

    /// A translated event whose ids never reached the disk: it is dropped, and counted.
    fn undeliverable(&self, _done: Self::Translated, _why: &str) {}

    /// One event taken through all three steps before this returns (a path that takes one event
    /// at a time, such as a webhook request).
    fn event(&self, link: &LinkHandle, ev: proto::Event) -> impl Future<Output = ()> + Send {
        async move {
            if let Some(admitted) = self.admit(link, ev).await {
                let done = self.translate(admitted, GiveUp::never()).await;
                match self.wait_on_disk(self.ticket(&done)).await {
                    Ok(()) => {
                        if let Some(room) = self.room(&done) {
                            room.await;
                        }
                        self.deliver(done)
                    }
                    Err(why) => self.undeliverable(done, &why),
                }
            }
        }
    }

    /// A `get_status` answer (or a `status_update`'s `status`): the accounts the link serves.
    fn status(&self, link: &LinkHandle, status: &Value) -> impl Future<Output = ()> + Send;

    /// Takes in what `source` says about the link's implementation.
    fn learn(&self, link: LinkId, claim: ImplementationClaim, source: InfoSource);

    /// The actions the link's implementation says it has.
    fn supported_actions(&self, link: LinkId, actions: BTreeSet<String>);

    /// What is known of the link's implementation already.
    fn knows(&self, link: LinkId) -> Known;

    /// Gives the link's backend this profile, whatever it calls itself.
    fn force_profile(&self, link: LinkId, profile: String);

    /// Uploads local files to the link's backend this way (its link's `upload`).
    fn upload_mode(&self, link: LinkId, mode: crate::core::media::UploadMode);

    /// A fresh id for a link made at run time (one per accepted connection).
    fn new_link_id(&self) -> LinkId;

    /// The link went down: its accounts are offline until it (or another link) brings them back.
    fn link_down(&self, link: LinkId);

    /// A link made at run time is gone for good.
    fn forget_link(&self, link: LinkId);
}

/// What a link asks about its implementation before asking the implementation itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Known {
    /// Its name.
    pub implementation: bool,
    /// Its version.
    pub version: bool,
    /// The list of actions it has.
    pub supported_actions: bool,
}
