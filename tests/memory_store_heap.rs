//! The in-memory id store (`--ephemeral`) holds what its byte bound says, measured where it
//! lives: a counting allocator adds up every byte this test process holds on the heap while the
//! store learns message after message. Once the bound is reached the heap goes flat, and what the
//! store holds is near its own estimate (its tables' spare capacity is the difference).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::executor::block_on;
use onebot_bridge::core::ids::{IdMapper, MessageKey, MessageRecord, StoredMessage};
use onebot_bridge::core::message::Segment;
use onebot_bridge::core::MemoryIdStore;

/// The system allocator, counting the bytes held.
struct Counting;

static HELD: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed on to the system allocator unchanged; only a counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        HELD.fetch_add(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        HELD.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        HELD.fetch_add(new_size, Ordering::Relaxed);
        HELD.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn held() -> usize {
    HELD.load(Ordering::Relaxed)
}

/// A received group message as the event path records it (texts of varying length).
fn received(i: u64) -> MessageRecord {
    MessageRecord {
        key: MessageKey { self_id: "10001".into(), message_id: format!("a1b2c3d4-{i:012x}").into() },
        detail_type: "group".into(),
        group_id: Some("30003".into()),
        user_id: Some(format!("{}", 20000 + i % 5000).into()),
        content: Some(StoredMessage {
            time: 1_700_000_000 + i as i64,
            segments: vec![
                Segment::text(format!("message {i}: {}", "lorem ipsum ".repeat((i % 20) as usize))),
                Segment::new("at").with("qq", "10001"),
            ],
            sender_id: 20000 + (i % 5000) as i64,
            sender_name: "someone".into(),
        }),
    }
}

#[test]
fn the_heap_goes_flat_at_the_byte_bound_and_matches_the_estimate() {
    const BOUND: usize = 4 << 20;
    let before = held();
    let ids = IdMapper::new(MemoryIdStore::new(1_000_000, BOUND));
    let first = block_on(ids.message_to_v11(&received(0))).unwrap();
    let mut i = 1;
    // Fill to the bound (the tables then stop growing), and a little past it.
    while ids.store().message_bytes() < BOUND - BOUND / 50 {
        block_on(ids.message_to_v11(&received(i))).unwrap();
        i += 1;
    }
    for _ in 0..i / 2 {
        block_on(ids.message_to_v11(&received(i))).unwrap();
        i += 1;
    }
    let kept = ids.store().message_count();
    // Five times as many messages again: the store forgets as fast as it learns. Its hash tables
    // may double once more meanwhile (forgotten entries leave tombstones that a table clears by
    // growing when it is more than half full), then stay.
    for _ in 0..kept * 5 {
        block_on(ids.message_to_v11(&received(i))).unwrap();
        i += 1;
    }
    let full = held() - before;
    for _ in 0..kept * 5 {
        block_on(ids.message_to_v11(&received(i))).unwrap();
        i += 1;
    }
    let after = held() - before;
    let estimate = ids.store().message_bytes();
    println!(
        "{i} messages through a {} KiB store: {kept} kept, estimate {} KiB; heap {} KiB, then {} KiB",
        BOUND >> 10,
        estimate >> 10,
        full >> 10,
        after >> 10
    );
    assert!(estimate <= BOUND);
    // Spare table capacity (they grow by doubling) is the difference: at most half again.
    assert!(after < BOUND + BOUND / 2, "the store holds {after} bytes for a bound of {BOUND}");
    assert!(after > estimate * 9 / 10, "the estimate ({estimate}) overstates the heap ({after})");
    assert!(after <= full + BOUND / 50, "the heap grew from {full} to {after} bytes at the bound");
    // The newest message is whole; one from the first round is gone.
    let newest = block_on(ids.message_to_v11(&received(i - 1))).unwrap();
    assert_eq!(block_on(ids.message_to_v12(newest as i64)).unwrap(), received(i - 1));
    assert!(block_on(ids.message_to_v12(first as i64)).is_err());
}
