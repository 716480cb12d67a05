//! The allocator: mimalloc, asked for plain blocks where the alignment allows ([`Allocator`]),
//! and the one setting the bridge makes its own, how soon it gives freed memory back to the
//! system ([`tune`]).
//!
//! mimalloc keeps memory that has become free for its `purge_delay` before it returns it to the
//! system (1 s by default), in case it is wanted again. The disk store frees a few MiB at a time
//! (the entries redb has taken, a batch of digests, a filter built again) every fraction of a
//! second when ids come faster than redb takes them, and for a second each of those stayed in
//! RSS beside what was allocated meanwhile: a million events from a new user each (random message
//! ids, the load bench's `LOAD_IDS=random`) peaked at 58.5–66.7 MiB with the default, 55.9–57.6
//! MiB at 100 ms, with no difference in CPU per event measured at full speed
//! (docs/limits.md#memory).
//!
//! The option is set through mimalloc's own API, as its documentation describes; the operator's
//! `MIMALLOC_PURGE_DELAY`, when set, still wins.

use std::os::raw::c_long;

use libmimalloc_sys::mi_option_t;

/// `mi_option_purge_delay` in `mimalloc.h` (the 16th option of `mi_option_e`, in mimalloc 2 and
/// 3 alike; the `libmimalloc-sys` crate names the options on either side of it, 14 and 16, but
/// not this one).
const PURGE_DELAY: mi_option_t = 15;

/// How long freed memory stays with the allocator, in milliseconds.
pub const PURGE_DELAY_MS: c_long = 100;

/// Sets the purge delay to [`PURGE_DELAY_MS`] unless `MIMALLOC_PURGE_DELAY` set it. Call it
/// first thing in `main`; it changes nothing but how soon memory is returned.
#[allow(unsafe_code)]
pub fn tune() {
    // SAFETY: `mi_option_set_default` takes two integers and touches only mimalloc's own table of
    // options (it keeps a value the environment gave); it may be called at any time, from any
    // thread.
    unsafe { libmimalloc_sys::mi_option_set_default(PURGE_DELAY, PURGE_DELAY_MS) };
}

/// Every block mimalloc hands out is aligned to a pointer's size at least.
const PLAIN_ALIGN: usize = std::mem::size_of::<usize>();

/// mimalloc as the global allocator, asked for plain blocks where the alignment asked for is one
/// every block has: the `mimalloc` crate asks for an aligned block every time, and mimalloc
/// serves an aligned request of over 1 KiB whose size class is not a power of two by its
/// generic over-allocating path (about 180 instructions where a plain one takes about 30: a
/// fifth of the event path's allocations, callgrind).
pub struct Allocator;

// SAFETY: each call goes to mimalloc's own function for it; a plain block is asked for only
// where the layout's alignment is one every mimalloc block has ([`PLAIN_ALIGN`]), and every
// block, plain or aligned, is freed and resized by the same mimalloc (`mi_free` and
// `mi_realloc` take either; a block resized keeps the alignment its layout asked for).
#[allow(unsafe_code)]
unsafe impl std::alloc::GlobalAlloc for Allocator {
    #[inline]
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        if layout.align() <= PLAIN_ALIGN {
            // SAFETY: see the impl.
            unsafe { libmimalloc_sys::mi_malloc(layout.size()).cast() }
        } else {
            // SAFETY: the caller's contract, passed on.
            unsafe { mimalloc::MiMalloc.alloc(layout) }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        if layout.align() <= PLAIN_ALIGN {
            // SAFETY: see the impl.
            unsafe { libmimalloc_sys::mi_zalloc(layout.size()).cast() }
        } else {
            // SAFETY: the caller's contract, passed on.
            unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: the caller's contract, passed on; mimalloc frees any block of its own.
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        if layout.align() <= PLAIN_ALIGN {
            // SAFETY: see the impl; `ptr` is a block of this allocator's.
            unsafe { libmimalloc_sys::mi_realloc(ptr.cast(), new_size).cast() }
        } else {
            // SAFETY: the caller's contract, passed on.
            unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The purge delay in effect, in milliseconds.
    #[allow(unsafe_code)]
    fn purge_delay_ms() -> c_long {
        // SAFETY: as in [`tune`]: a read of mimalloc's table of options.
        unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) }
    }

    /// Every block has the alignment its layout asks for, plain or not, and keeps its bytes and
    /// its alignment when resized; a zeroed one is zeroed.
    #[test]
    #[allow(unsafe_code)]
    fn blocks_have_their_alignment_and_keep_their_bytes() {
        use std::alloc::{GlobalAlloc, Layout};
        let sizes = [1usize, 7, 8, 9, 16, 24, 40, 100, 1_000, 1_025, 1_500, 4_096, 70_000];
        for align in [1usize, 2, 4, 8, 16, 32, 64, 4_096] {
            for &size in &sizes {
                let layout = Layout::from_size_align(size, align).unwrap();
                // SAFETY: a layout of non-zero size; each block is freed once, with its layout.
                unsafe {
                    let p = Allocator.alloc(layout);
                    assert!(!p.is_null() && p as usize % align == 0, "{size} bytes at {align}: {p:?}");
                    std::ptr::write_bytes(p, 0xa5, size);
                    let grown = Allocator.realloc(p, layout, size * 3);
                    assert!(!grown.is_null() && grown as usize % align == 0, "{size} → {} at {align}", size * 3);
                    assert!((0..size).all(|i| *grown.add(i) == 0xa5), "{size} bytes at {align} kept");
                    Allocator.dealloc(grown, Layout::from_size_align(size * 3, align).unwrap());
                    let z = Allocator.alloc_zeroed(layout);
                    assert!(!z.is_null() && z as usize % align == 0);
                    assert!((0..size).all(|i| *z.add(i) == 0), "{size} bytes at {align} zeroed");
                    Allocator.dealloc(z, layout);
                }
            }
        }
    }

    /// The option set is mimalloc's purge delay: before it is set, it reads mimalloc's default
    /// for that option (1 000 ms in mimalloc 3, 10 in 2), which neither option beside it has
    /// (`eager_commit_delay` 1, `use_numa_nodes` 0); the environment's value wins.
    #[test]
    fn the_purge_delay_is_shortened_unless_the_environment_sets_it() {
        match std::env::var("MIMALLOC_PURGE_DELAY") {
            Err(_) => {
                assert!([1000, 10].contains(&purge_delay_ms()), "option {PURGE_DELAY} reads {}", purge_delay_ms());
                tune();
                assert_eq!(purge_delay_ms(), PURGE_DELAY_MS);
            }
            Ok(given) => {
                tune();
                assert_eq!(purge_delay_ms().to_string(), given.trim());
            }
        }
    }
}
