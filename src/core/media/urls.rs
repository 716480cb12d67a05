//! Incoming media: the URL a bot fetches a received file at, the backend's (asked once per
//! file, remembered) or the bridge's own.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use super::{file_key, CacheKind, IncomingMode, Media, UrlFlight, MEDIA_TYPES};
use crate::core::action::{ActionContext, ActionError};
use crate::core::ids::IdStore;
use crate::core::message::Segment;
use crate::core::{Translator, V12Caller};
use crate::sync::LockUnpoisoned;

/// How long the bridge stops asking a backend for URLs after it said it cannot give any
/// (`10002` unsupported action, `10004` unsupported type).
const NO_URLS_FOR: Duration = Duration::from_secs(600);

/// Takes a finished (or abandoned) flight out of the map: later arrivals find the URL in the
/// cache, or ask again. Those already waiting on it still see its outcome, or call themselves if
/// the caller was dropped before it had one.
struct LeaveFlight<'a> {
    media: &'a Media,
    key: &'a str,
    flight: &'a Arc<UrlFlight>,
}

impl Drop for LeaveFlight<'_> {
    fn drop(&mut self) {
        let mut flights = self.media.lock_flights();
        if flights.get(self.key).is_some_and(|f| Arc::ptr_eq(f, self.flight)) {
            flights.remove(self.key);
        }
    }
}

impl<S: IdStore> Translator<S> {
    /// Adds a `url` to every received media segment that has a `file` (a backend file_id) and no
    /// `url` yet, as the incoming mode says. A segment that gets no URL keeps its `file`.
    pub async fn media_urls<C: V12Caller>(&self, ctx: ActionContext<'_>, caller: &C, segments: &mut [Segment]) {
        for seg in segments.iter_mut().filter(|s| MEDIA_TYPES.contains(&s.kind.as_str())) {
            if seg.data.get("url").is_some_and(|u| !u.is_null()) {
                continue;
            }
            let Some(file_id) = seg.str_of("file").filter(|f| !f.is_empty()) else { continue };
            if let Some(url) = self.file_url(ctx, caller, &file_id).await {
                seg.data.insert("url", url.into());
            }
        }
    }

    /// A URL a bot can fetch a backend file at, as the incoming mode says, with the fallback.
    pub async fn file_url<C: V12Caller>(&self, ctx: ActionContext<'_>, caller: &C, file_id: &str) -> Option<String> {
        let served = || self.media.serve_url(ctx.account.v11_id, file_id);
        match self.media.options.incoming {
            IncomingMode::Serve => match served() {
                Some(url) => Some(url),
                None => self.backend_url(ctx, caller, file_id).await,
            },
            IncomingMode::Resolve => match self.backend_url(ctx, caller, file_id).await {
                Some(url) => Some(url),
                None => served(),
            },
        }
    }

    /// The backend's URL for a file (`get_file` type `url`), remembered for a while; one call
    /// at a time per file.
    async fn backend_url<C: V12Caller>(&self, ctx: ActionContext<'_>, caller: &C, file_id: &str) -> Option<String> {
        let me = &ctx.account.self_id.user_id;
        if self.media.no_urls.lock_unpoisoned().get(me, NO_URLS_FOR).is_some() {
            return None;
        }
        let key = file_key(ctx, file_id);
        if let Some(url) = self.media.remembered_here(CacheKind::Url, &key) {
            return Some(url).filter(|u| !u.is_empty());
        }
        // Boxed: the way to an answer not remembered here is rare and its future large, and every
        // event's translation would otherwise be as large as it is.
        Box::pin(self.fetch_backend_url(ctx, caller, file_id, key)).await
    }

    /// [`Self::backend_url`] for a file whose URL is not remembered here.
    async fn fetch_backend_url<C: V12Caller>(
        &self,
        ctx: ActionContext<'_>,
        caller: &C,
        file_id: &str,
        key: String,
    ) -> Option<String> {
        let flight = self.media.lock_flights().entry(key.clone()).or_default().clone();
        let _leave = LeaveFlight { media: &self.media, key: &key, flight: &flight };
        let mut outcome = flight.lock().await;
        if let Some(known) = outcome.as_ref() {
            // Another translation asked while this one waited.
            return known.clone();
        }
        // Another replica may have asked already (once per burst here: inside the flight).
        let url = match self.media.remembered_shared(CacheKind::Url, &key).await {
            Some(url) => Some(url).filter(|u| !u.is_empty()),
            None => self.ask_backend_url(ctx, caller, file_id, &key).await,
        };
        *outcome = Some(url.clone());
        url
    }

    async fn ask_backend_url<C: V12Caller>(
        &self,
        ctx: ActionContext<'_>,
        caller: &C,
        file_id: &str,
        key: &str,
    ) -> Option<String> {
        let me = &ctx.account.self_id.user_id;
        let mut p = Map::new();
        p.insert("file_id".into(), file_id.into());
        p.insert("type".into(), "url".into());
        match self.call(ctx, caller, "get_file", p).await {
            Ok(data) => {
                let url = data.get("url").and_then(Value::as_str).filter(|u| !u.is_empty())?.to_owned();
                self.media.remember(CacheKind::Url, key.to_owned(), url.clone()).await;
                Some(url)
            }
            Err(ActionError::Backend { retcode: 10002 | 10004, .. }) => {
                tracing::info!(account = %me, "the backend gives no file URLs; using the bridge's own for a while");
                self.media.no_urls.lock_unpoisoned().insert(me.clone(), ());
                None
            }
            Err(error) => {
                tracing::debug!(%error, file_id, "the backend gives no URL for this file");
                if matches!(error, ActionError::Backend { .. }) {
                    self.media.remember(CacheKind::Url, key.to_owned(), String::new()).await;
                }
                None
            }
        }
    }
}
