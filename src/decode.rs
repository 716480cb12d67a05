//! Decoding what peers send, within bounds on what decoding may cost.
//!
//! Every JSON or MessagePack document that comes over a wire (bot frames and bodies, backend
//! frames, answers and webhook bodies, quick-operation replies) is decoded here or through
//! [`crate::backends::v12::codec`], which uses the same two steps:
//!
//! 1. **Pre-scan** ([`crate::core::scan`]): the values and the nesting depth are counted without
//!    building anything; a document over [`ScanLimits::PEER`] is refused. This is what makes a
//!    16 MiB `[0,0,…]` cost one pass over its bytes instead of ~700 MiB of tree. A backend's
//!    small text frame (an event) is decoded first and counted after instead, within a budget
//!    for the most its bytes can hold ([`admit_unscanned`], [`measured`]).
//! 2. **Parse budget**: the document's estimated cost ([`cost`]: its bytes plus
//!    [`VALUE_COST`] per value) is taken from a process-wide [`ParseBudget`] while it is decoded,
//!    so many connections cannot decode large documents all at once. Bots and the backend each
//!    have their own ([`Side`]): bots sending costly documents cannot keep the backend's answers
//!    from being read. A document waits for budget at most [`BUDGET_WAIT`], then is refused; one
//!    that costs more than the whole budget is refused at once. A bot's request keeps its budget
//!    until it is answered ([`json`] hands the budget back to the caller), so the bots' budget
//!    bounds the requests alive at once, not only those being decoded.
//!
//! A refusal is a [`DecodeError`] for which [`DecodeError::is_refusal`] holds; each transport
//! answers it as it answers malformed input (v11: a failed answer with a `wording`; HTTP 413;
//! a `warn!` for frames nobody answers). `docs/limits.md` states the resulting memory ceiling.

use std::sync::LazyLock;
use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit};

use crate::core::scan::{self, Refused, ScanLimits, Shape};

/// Estimated bytes one decoded value holds: a `serde_json::Value` is 80 bytes with
/// `preserve_order`, an object member adds its key, hash and index (~40 bytes, counted as a value
/// of its own), and a growing array may hold up to twice what it uses. Strings are covered by the
/// document's bytes.
pub const VALUE_COST: usize = 128;
/// MessagePack is read into `rmpv`'s tree first, which lives beside the JSON tree it becomes.
pub const MSGPACK_VALUE_COST: usize = VALUE_COST + 2 * std::mem::size_of::<rmpv::Value>();
/// Each side's parse budget, bytes.
pub const PARSE_BUDGET: usize = 256 << 20;
/// Longest a document waits for parse budget before it is refused.
pub const BUDGET_WAIT: Duration = Duration::from_secs(10);

/// Estimated bytes decoding a document holds at its peak. MessagePack holds its bytes three
/// times over: the frame, `rmpv`'s copies of strings and `bin`, and their JSON strings (base64
/// for `bin`, a third larger).
pub fn cost(bytes: usize, shape: Shape, msgpack: bool) -> usize {
    if msgpack {
        bytes.saturating_mul(3).saturating_add(shape.values.saturating_mul(MSGPACK_VALUE_COST))
    } else {
        bytes.saturating_add(shape.values.saturating_mul(VALUE_COST))
    }
}

/// Who sent a document: each side decodes within its own budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// v11 bots: requests, HTTP bodies, quick-operation replies.
    Bots,
    /// The v12 implementation: events, answers, webhook bodies.
    Backend,
}

/// Parse budget held; it goes back when this drops.
pub type Budget = SemaphorePermit<'static>;

/// The permits (KiB, at least one) a document costing `cost` bytes holds.
fn permits_for(cost: usize) -> usize {
    cost.div_ceil(1024).max(1)
}

/// Why the budget did not admit a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Busy {
    #[error("decoding it would hold ~{cost_kib} KiB, more than the bridge's whole parse budget of {budget_kib} KiB")]
    TooCostly { cost_kib: u64, budget_kib: u64 },
    #[error("the bridge was busy decoding other large documents for {} s", .0.as_secs())]
    Timeout(Duration),
}

/// Bytes that documents being decoded may hold at once, shared by every connection.
#[derive(Debug)]
pub struct ParseBudget {
    /// One permit per KiB.
    kib: Semaphore,
    total_kib: u32,
    wait: Duration,
}

impl ParseBudget {
    pub fn new(bytes: usize, wait: Duration) -> Self {
        let total_kib = u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX).min(Semaphore::MAX_PERMITS as u32);
        ParseBudget { kib: Semaphore::new(total_kib as usize), total_kib, wait }
    }

    /// The budget every connection of one side shares: [`PARSE_BUDGET`], [`BUDGET_WAIT`].
    pub fn of(side: Side) -> &'static ParseBudget {
        static BOTS: LazyLock<ParseBudget> = LazyLock::new(|| ParseBudget::new(PARSE_BUDGET, BUDGET_WAIT));
        static BACKEND: LazyLock<ParseBudget> = LazyLock::new(|| ParseBudget::new(PARSE_BUDGET, BUDGET_WAIT));
        match side {
            Side::Bots => &BOTS,
            Side::Backend => &BACKEND,
        }
    }

    /// Takes `cost` bytes of budget until the permit drops, waiting for it at most the budget's
    /// wait. Waiters are served in order, so a large document is not starved by small ones.
    pub async fn admit(&self, cost: usize) -> Result<SemaphorePermit<'_>, Busy> {
        let kib = permits_for(cost);
        if kib > self.total_kib as usize {
            return Err(Busy::TooCostly { cost_kib: kib as u64, budget_kib: self.total_kib as u64 });
        }
        // Budget free now is taken as the waiting path's first poll would take it (permits given
        // back go to the waiters first, so this cannot overtake one), without the timer and the
        // clock read that path costs: every frame and request comes here.
        if let Ok(permit) = self.kib.try_acquire_many(kib as u32) {
            return Ok(permit);
        }
        match tokio::time::timeout(self.wait, self.kib.acquire_many(kib as u32)).await {
            Ok(Ok(permit)) => Ok(permit),
            // The semaphore is never closed; a timeout is the only way to be refused.
            Ok(Err(_)) | Err(_) => Err(Busy::Timeout(self.wait)),
        }
    }

    /// Budget free now, bytes.
    pub fn available(&self) -> usize {
        self.kib.available_permits() * 1024
    }
}

/// Why a peer's document was not decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Over the pre-scan's limits: refused unread.
    #[error(transparent)]
    Refused(#[from] Refused),
    /// Within them, but the parse budget did not admit it.
    #[error(transparent)]
    Busy(#[from] Busy),
    #[error("invalid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("invalid MessagePack: {0}")]
    MsgPack(String),
}

impl DecodeError {
    /// Whether the document was refused for what it would cost (not for being malformed).
    pub fn is_refusal(&self) -> bool {
        matches!(self, DecodeError::Refused(_) | DecodeError::Busy(_))
    }
}

/// Scans a document and waits for its side's parse budget, which the caller holds while the
/// document is decoded (or, for a bot's request, until it is answered).
pub async fn admit(bytes: &[u8], msgpack: bool, side: Side) -> Result<Budget, DecodeError> {
    let shape =
        if msgpack { scan::scan_msgpack(bytes, ScanLimits::PEER)? } else { scan::scan_json(bytes, ScanLimits::PEER)? };
    Ok(ParseBudget::of(side).admit(cost(bytes.len(), shape, msgpack)).await?)
}

/// Backend text frames up to this size are decoded before they are measured
/// ([`admit_unscanned`], [`measured`]); larger ones are scanned first.
pub const MEASURED_AFTER: usize = 16 << 10;

/// Waits for a JSON document's budget without scanning it first, at the most its bytes can
/// cost: no byte starts two values, so it holds at most as many values as bytes. For a small
/// document (at most [`MEASURED_AFTER`] bytes, which is far below [`ScanLimits::PEER`]'s values)
/// decoding it is cheaper than scanning it first, and [`measured`] then gives back what it does
/// not hold.
pub async fn admit_unscanned(bytes: usize, side: Side) -> Result<Budget, DecodeError> {
    let most = Shape { values: bytes, depth: 0 };
    Ok(ParseBudget::of(side).admit(cost(bytes, most, false)).await?)
}

/// What a document admitted by [`admit_unscanned`] turned out to hold, once decoded: refused
/// over [`ScanLimits::PEER`] as the pre-scan would have refused it (only its depth can be over:
/// serde_json stops at 128 levels while decoding, the limit is 64), else the budget it holds
/// beyond its cost goes back.
pub fn measured(budget: &mut Budget, bytes: usize, shape: Shape) -> Result<(), DecodeError> {
    ScanLimits::PEER.check(shape)?;
    let keep = permits_for(cost(bytes, shape, false));
    if let Some(extra) = budget.num_permits().checked_sub(keep).filter(|&extra| extra > 0) {
        drop(budget.split(extra));
    }
    Ok(())
}

/// A JSON document from a bot: pre-scanned, decoded within the bots' parse budget, with the
/// budget it holds (drop that once the document is done with). Read as a [`serde_json::Value`], or straight
/// into what reads itself from JSON (an action request: [`crate::core::v11::Request`]).
pub async fn json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<(T, Budget), DecodeError> {
    let budget = admit(bytes, false, Side::Bots).await?;
    Ok((serde_json::from_slice(bytes)?, budget))
}

/// [`json`] for text already checked to be UTF-8 (a WebSocket text frame): its strings are not
/// checked again as they are read.
pub async fn json_text<T: serde::de::DeserializeOwned>(text: &str) -> Result<(T, Budget), DecodeError> {
    let budget = admit(text.as_bytes(), false, Side::Bots).await?;
    Ok((serde_json::from_str(text)?, budget))
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_budget_admits_what_fits_and_waits_a_bounded_time_for_the_rest() {
        let budget = ParseBudget::new(100 << 10, Duration::from_millis(50));
        assert_eq!(
            budget.admit(101 << 10).await.unwrap_err(),
            Busy::TooCostly { cost_kib: 101, budget_kib: 100 },
            "more than the whole budget: refused at once"
        );
        let held = budget.admit(60 << 10).await.unwrap();
        assert_eq!(budget.available(), 40 << 10);
        assert_eq!(budget.admit(50 << 10).await.unwrap_err(), Busy::Timeout(Duration::from_millis(50)));
        let small = budget.admit(1).await.unwrap();
        drop((held, small));
        assert_eq!(budget.available(), 100 << 10, "permits go back when dropped");
        assert!(budget.admit(100 << 10).await.is_ok());
    }

    /// A document that waits is admitted when budget comes back, and one that comes after it
    /// waits behind it even when it would fit in what is free.
    #[tokio::test(start_paused = true)]
    async fn a_waiting_document_is_admitted_when_budget_comes_back_and_not_overtaken() {
        let budget = std::sync::Arc::new(ParseBudget::new(10 << 10, Duration::from_secs(30)));
        let held = budget.admit(8 << 10).await.unwrap();
        let large = {
            let budget = budget.clone();
            tokio::spawn(async move { budget.admit(5 << 10).await.map(|permit| permit.num_permits()) })
        };
        tokio::task::yield_now().await;
        assert!(!large.is_finished(), "5 KiB do not fit beside the 8 held");
        // 2 KiB are free by count, but they are the waiting document's: a small one waits behind it.
        let small = {
            let budget = budget.clone();
            tokio::spawn(async move { budget.admit(1 << 10).await.map(|permit| permit.num_permits()) })
        };
        tokio::task::yield_now().await;
        assert!(!small.is_finished(), "the small document went ahead of the large one");
        drop(held);
        assert_eq!(large.await.unwrap(), Ok(5));
        assert_eq!(small.await.unwrap(), Ok(1));
    }

    #[tokio::test]
    async fn cheap_values_in_bulk_are_refused_and_real_documents_pass() {
        let zeros = format!("[{}0]", "0,".repeat(ScanLimits::PEER.max_values));
        let refused = json::<Value>(zeros.as_bytes()).await.unwrap_err();
        assert!(refused.is_refusal(), "{refused}");
        assert!(refused.to_string().contains("more than 524288 values"), "{refused}");
        assert!(!json::<Value>(b"{nope").await.unwrap_err().is_refusal());

        // A get_group_member_list answer for a 5 000-member group, 20 fields per member.
        let member: serde_json::Map<String, Value> =
            (0..20).map(|i| (format!("field_{i}"), Value::from(format!("value {i}")))).collect();
        let answer = serde_json::json!({"status": "ok", "retcode": 0, "data": vec![member; 5000], "message": ""});
        let bytes = serde_json::to_vec(&answer).unwrap();
        assert_eq!(json::<Value>(&bytes).await.unwrap().0, answer);
        let shape = scan::scan_json(&bytes, ScanLimits::PEER).unwrap();
        assert!(cost(bytes.len(), shape, true) < PARSE_BUDGET / 4, "fits with room, even as MessagePack");
    }

    #[test]
    fn the_largest_admitted_document_fits_the_budget() {
        let worst = Shape { values: ScanLimits::PEER.max_values, depth: 1 };
        let max_message = crate::config::Limits::default().max_message;
        assert!(cost(max_message, worst, false) <= PARSE_BUDGET);
        assert!(cost(max_message, worst, true) <= PARSE_BUDGET);
        // The largest max-message a configuration may set: JSON with every value still fits.
        assert!(cost(crate::config::MAX_MAX_MESSAGE as usize, worst, false) <= PARSE_BUDGET);
    }
}
