//! The bridge's operational metrics, served as Prometheus text by the admin listener
//! ([`crate::admin`]).
//!
//! One [`Metrics`] per bridge, owned by the hub (no global registry: two bridges in one process,
//! as in tests, count apart). Label values are bounded: `self_id` by the accounts the bridge
//! knows, `link` by the configured backends, `endpoint` by the configured v11 endpoints, `action`
//! by the names the mapping tables know (any other is `other`), `outcome` by `ok`, `async` and
//! one `failed_<class>` per retcode class (the retcode's first digit and its length, e.g.
//! `failed_1xx` for 100, `failed_1xxxx` for 10002).

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::sync::RwLockUnpoisoned;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Why an event did not reach a bot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// A connection read too slowly and lost the oldest events of its queue.
    SlowBot,
    /// No connection took it while it was kept (kept too long, or too many kept).
    Unclaimed,
    /// It could not be translated to v11.
    Untranslatable,
    /// The id store stayed unavailable for as long as an event may wait for it.
    StoreUnavailable,
}

impl DropReason {
    fn label(self) -> &'static str {
        match self {
            DropReason::SlowBot => "slow_bot",
            DropReason::Unclaimed => "unclaimed",
            DropReason::Untranslatable => "untranslatable",
            DropReason::StoreUnavailable => "store_unavailable",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AccountLabel {
    self_id: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DropLabels {
    self_id: String,
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    action: String,
    outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabel {
    action: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LinkLabel {
    link: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabel {
    endpoint: String,
}

type LatencyFamily = Family<ActionLabel, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 1 ms … ~16 s: a cached answer to an upload that ran into the action timeout.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(0.001, 2.0, 15))
}

/// Counters of one account's events, labelled once with its v11 `self_id`.
#[derive(Debug, Clone, Default)]
pub struct AccountMetrics {
    received: Counter,
    delivered: Counter,
    slow_bot: Counter,
    unclaimed: Counter,
    untranslatable: Counter,
    store_unavailable: Counter,
    calls_given_up: Counter,
    slow_bot_wait: SecondsCounter,
}

/// A counter of seconds.
type SecondsCounter = Counter<f64, AtomicU64>;

impl AccountMetrics {
    /// An event for this account came from the backend.
    pub fn received(&self) {
        self.received.inc();
    }

    /// An event was handed to the account's connections (or kept for the next one).
    pub fn delivered(&self) {
        self.delivered.inc();
    }

    pub fn dropped(&self, n: u64, reason: DropReason) {
        let counter = match reason {
            DropReason::SlowBot => &self.slow_bot,
            DropReason::Unclaimed => &self.unclaimed,
            DropReason::Untranslatable => &self.untranslatable,
            DropReason::StoreUnavailable => &self.store_unavailable,
        };
        counter.inc_by(n);
    }

    /// A backend call made while translating one of the account's events stopped waiting: the
    /// link's event queue was full, so its answer could be behind the events that filled it.
    pub fn call_given_up(&self) {
        self.calls_given_up.inc();
    }

    /// The account's events waited this long for a connection a whole queue behind to make room
    /// (`--slow-bot-wait`), the link held back meanwhile.
    pub fn waited_for_slow_bot(&self, took: Duration) {
        self.slow_bot_wait.inc_by(took.as_secs_f64());
    }

    /// Events received, delivered and dropped (for any reason) so far.
    pub fn counts(&self) -> (u64, u64, u64) {
        let dropped =
            self.slow_bot.get() + self.unclaimed.get() + self.untranslatable.get() + self.store_unavailable.get();
        (self.received.get(), self.delivered.get(), dropped)
    }
}

/// One configured backend link's state: `up` counts its connected links (0 or 1, except a
/// reverse-WebSocket listener several implementations dial), `reconnects` every connection after
/// the first.
#[derive(Debug, Clone, Default)]
pub struct LinkMetrics {
    up: Gauge,
    reconnects: Counter,
    ever_up: Arc<AtomicBool>,
}

impl LinkMetrics {
    /// Called once per transition to up.
    pub fn went_up(&self) {
        self.up.inc();
        if self.ever_up.swap(true, Ordering::AcqRel) {
            self.reconnects.inc();
        }
    }

    /// Called once per transition to down.
    pub fn went_down(&self) {
        self.up.dec();
    }

    pub fn is_up(&self) -> bool {
        self.up.get() > 0
    }

    pub fn reconnects(&self) -> u64 {
        self.reconnects.get()
    }
}

/// One open v11 connection, counted in its endpoint's gauge until dropped.
#[derive(Debug)]
pub struct OpenConnection(Gauge);

impl OpenConnection {
    pub fn new(gauge: Gauge) -> OpenConnection {
        gauge.inc();
        OpenConnection(gauge)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// What `/ready` says about one configured link.
#[derive(Debug, Clone)]
pub struct LinkState {
    pub link: String,
    pub kind: &'static str,
    pub metrics: LinkMetrics,
}

/// The bridge's registry and the families in it.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    events_received: Family<AccountLabel, Counter>,
    events_delivered: Family<AccountLabel, Counter>,
    events_dropped: Family<DropLabels, Counter>,
    event_calls_given_up: Family<AccountLabel, Counter>,
    slow_bot_wait: Family<AccountLabel, SecondsCounter>,
    actions: Family<ActionLabels, Counter>,
    action_seconds: LatencyFamily,
    link_up: Family<LinkLabel, Gauge>,
    link_reconnects: Family<LinkLabel, Counter>,
    v11_connections: Family<EndpointLabel, Gauge>,
    store_commit_seconds: Histogram,
    links: RwLock<Vec<LinkState>>,
    known_actions: BTreeSet<String>,
    /// The series a known action's success lands in, by its name: found again without building
    /// and hashing (SipHash) two label sets, once the action has succeeded once. Known names
    /// only, so it holds at most one entry each.
    succeeded: RwLock<HashMap<Box<str>, (Histogram, Counter), foldhash::fast::RandomState>>,
    /// Every answered action, and those that failed (for the inspector's status).
    actions_answered: AtomicU64,
    actions_failed: AtomicU64,
}

impl Metrics {
    /// A registry whose `action` label keeps these names (others are `other`).
    pub fn new(known_actions: BTreeSet<String>) -> Metrics {
        let mut registry = Registry::with_prefix("onebot_bridge");
        let events_received = Family::<AccountLabel, Counter>::default();
        let events_delivered = Family::<AccountLabel, Counter>::default();
        let events_dropped = Family::<DropLabels, Counter>::default();
        let event_calls_given_up = Family::<AccountLabel, Counter>::default();
        let slow_bot_wait = Family::<AccountLabel, SecondsCounter>::default();
        let actions = Family::<ActionLabels, Counter>::default();
        let action_seconds: LatencyFamily = Family::new_with_constructor(latency_histogram);
        let link_up = Family::<LinkLabel, Gauge>::default();
        let link_reconnects = Family::<LinkLabel, Counter>::default();
        let v11_connections = Family::<EndpointLabel, Gauge>::default();
        registry.register("events_received", "Events from the backend for a bot account", events_received.clone());
        registry.register(
            "events_delivered",
            "Events handed to a bot account's v11 connections (or kept for the next one)",
            events_delivered.clone(),
        );
        registry.register("events_dropped", "Events that never reached a bot, by reason", events_dropped.clone());
        registry.register(
            "event_calls_given_up",
            "Backend calls of event translations (a picture's URL) not waited for: the link's event queue was full",
            event_calls_given_up.clone(),
        );
        registry.register(
            "slow_bot_wait_seconds",
            "Time the account's events waited for a bot a whole queue behind to make room, the link held back",
            slow_bot_wait.clone(),
        );
        registry.register("actions", "v11 actions answered, by name and outcome", actions.clone());
        registry.register("action_duration_seconds", "Time to answer a v11 action", action_seconds.clone());
        registry.register("backend_link_up", "Connected backend links (1 up, 0 down)", link_up.clone());
        registry.register(
            "backend_link_reconnects",
            "Backend link connections after the first",
            link_reconnects.clone(),
        );
        registry.register("v11_connections", "Open v11 bot connections per endpoint", v11_connections.clone());
        // 0.1 ms … ~0.8 s: a batch of id writes fsynced to disk.
        let store_commit_seconds =
            Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(0.0001, 2.0, 14));
        registry.register(
            "id_store_commit_seconds",
            "Time the disk id store took to make one batch of writes durable (its journal sync)",
            store_commit_seconds.clone(),
        );
        Metrics {
            registry,
            events_received,
            events_delivered,
            events_dropped,
            event_calls_given_up,
            slow_bot_wait,
            actions,
            action_seconds,
            link_up,
            link_reconnects,
            v11_connections,
            store_commit_seconds,
            links: RwLock::default(),
            known_actions,
            succeeded: RwLock::default(),
            actions_answered: AtomicU64::new(0),
            actions_failed: AtomicU64::new(0),
        }
    }

    /// The counters of one account (created at zero, so a scrape shows the account at once).
    pub fn account(&self, self_id: i64) -> AccountMetrics {
        let account = AccountLabel { self_id: self_id.to_string() };
        let drop = |reason: DropReason| {
            self.events_dropped
                .get_or_create_owned(&DropLabels { self_id: account.self_id.clone(), reason: reason.label() })
        };
        AccountMetrics {
            received: self.events_received.get_or_create_owned(&account),
            delivered: self.events_delivered.get_or_create_owned(&account),
            slow_bot: drop(DropReason::SlowBot),
            unclaimed: drop(DropReason::Unclaimed),
            untranslatable: drop(DropReason::Untranslatable),
            store_unavailable: drop(DropReason::StoreUnavailable),
            calls_given_up: self.event_calls_given_up.get_or_create_owned(&account),
            slow_bot_wait: self.slow_bot_wait.get_or_create_owned(&account),
        }
    }

    /// Forgets an account's series (it left the hub's registry).
    pub fn forget_account(&self, self_id: i64) {
        let account = AccountLabel { self_id: self_id.to_string() };
        self.events_received.remove(&account);
        self.events_delivered.remove(&account);
        self.event_calls_given_up.remove(&account);
        self.slow_bot_wait.remove(&account);
        for reason in
            [DropReason::SlowBot, DropReason::Unclaimed, DropReason::Untranslatable, DropReason::StoreUnavailable]
        {
            self.events_dropped.remove(&DropLabels { self_id: account.self_id.clone(), reason: reason.label() });
        }
    }

    /// The state of configured link `link` (its index in the configuration), registered for
    /// `/ready` and `/metrics` as down.
    pub fn link(&self, link: usize, kind: &'static str) -> LinkMetrics {
        let label = LinkLabel { link: link.to_string() };
        let metrics = LinkMetrics {
            up: self.link_up.get_or_create_owned(&label),
            reconnects: self.link_reconnects.get_or_create_owned(&label),
            ever_up: Arc::default(),
        };
        let mut links = self.links.write_unpoisoned();
        links.push(LinkState { link: label.link, kind, metrics: metrics.clone() });
        metrics
    }

    /// Every configured link.
    pub fn links(&self) -> Vec<LinkState> {
        self.links.read_unpoisoned().clone()
    }

    /// The histogram of the disk id store's commit times (it stays empty with the memory store).
    pub fn store_commits(&self) -> Histogram {
        self.store_commit_seconds.clone()
    }

    /// The open-connection gauge of one v11 endpoint (e.g. `ws 127.0.0.1:6700`).
    pub fn v11_endpoint(&self, endpoint: &str) -> Gauge {
        self.v11_connections.get_or_create_owned(&EndpointLabel { endpoint: endpoint.to_owned() })
    }

    /// One answered action.
    pub fn action(&self, action: &str, retcode: i64, status: &str, took: Duration) {
        let name = action.strip_suffix("_async").unwrap_or(action);
        self.actions_answered.fetch_add(1, Ordering::Relaxed);
        if status == "ok" {
            if let Some((seconds, count)) = self.succeeded.read_unpoisoned().get(name) {
                seconds.observe(took.as_secs_f64());
                count.inc();
                return;
            }
        }
        let known = self.known_actions.contains(name);
        let action = if known { name.to_owned() } else { "other".to_owned() };
        let outcome = match (status, retcode) {
            ("ok", _) => "ok".to_owned(),
            ("async", _) => "async".to_owned(),
            (_, code) => {
                self.actions_failed.fetch_add(1, Ordering::Relaxed);
                failure_class(code)
            }
        };
        let seconds = self.action_seconds.get_or_create(&ActionLabel { action: action.clone() }).clone();
        let count = self.actions.get_or_create(&ActionLabels { action, outcome }).clone();
        seconds.observe(took.as_secs_f64());
        count.inc();
        if known && status == "ok" {
            self.succeeded.write_unpoisoned().insert(name.into(), (seconds, count));
        }
    }

    /// Actions answered so far, and how many of them failed.
    pub fn action_totals(&self) -> (u64, u64) {
        (self.actions_answered.load(Ordering::Relaxed), self.actions_failed.load(Ordering::Relaxed))
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry);
        text
    }
}

/// The content type of [`Metrics::encode`].
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// `failed_` and the retcode's class: its first digit, then an `x` for every other digit.
fn failure_class(retcode: i64) -> String {
    let digits = retcode.unsigned_abs().to_string();
    let mut class = String::from("failed_");
    class.push_str(&digits[..1]);
    class.extend(std::iter::repeat_n('x', digits.len() - 1));
    class
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retcodes_fall_into_few_classes() {
        assert_eq!(failure_class(100), "failed_1xx");
        assert_eq!(failure_class(10002), "failed_1xxxx");
        assert_eq!(failure_class(35001), "failed_3xxxx");
        assert_eq!(failure_class(0), "failed_0");
        assert_eq!(failure_class(-1), "failed_1");
    }

    #[test]
    fn unknown_action_names_are_other_and_counts_show_in_the_text() {
        let m = Metrics::new(["send_msg".to_owned()].into());
        m.action("send_msg", 0, "ok", Duration::from_millis(3));
        // Counted in the same series the second time, when the first success is remembered.
        m.action("send_msg", 0, "ok", Duration::from_millis(2));
        m.action("send_msg_async", 0, "async", Duration::from_millis(1));
        m.action("made_up_action_1", 1404, "failed", Duration::from_millis(1));
        m.action("made_up_action_2", 1404, "failed", Duration::from_millis(1));
        let a = m.account(42);
        a.received();
        a.dropped(3, DropReason::SlowBot);
        let text = m.encode();
        assert!(text.contains(r#"onebot_bridge_actions_total{action="send_msg",outcome="ok"} 2"#), "{text}");
        assert!(text.contains(r#"onebot_bridge_action_duration_seconds_count{action="send_msg"} 3"#), "{text}");
        assert_eq!(m.succeeded.read_unpoisoned().len(), 1, "known names that succeeded only");
        assert!(text.contains(r#"onebot_bridge_actions_total{action="send_msg",outcome="async"} 1"#), "{text}");
        assert!(text.contains(r#"onebot_bridge_actions_total{action="other",outcome="failed_1xxx"} 2"#), "{text}");
        assert!(!text.contains("made_up"), "{text}");
        assert!(text.contains(r#"onebot_bridge_events_dropped_total{self_id="42",reason="slow_bot"} 3"#), "{text}");
        m.forget_account(42);
        assert!(!m.encode().contains(r#"self_id="42""#));
    }

    #[test]
    fn a_link_counts_reconnects_after_its_first_connection() {
        let m = Metrics::new(BTreeSet::new());
        let link = m.link(0, "ws");
        assert!(!link.is_up());
        link.went_up();
        assert!(link.is_up());
        link.went_down();
        link.went_up();
        let text = m.encode();
        assert!(text.contains(r#"onebot_bridge_backend_link_up{link="0"} 1"#), "{text}");
        assert!(text.contains(r#"onebot_bridge_backend_link_reconnects_total{link="0"} 1"#), "{text}");
    }
}
