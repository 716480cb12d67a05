//! The allocator's one setting the bridge makes its own: how soon mimalloc gives freed memory
//! back to the system.
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The purge delay in effect, in milliseconds.
    #[allow(unsafe_code)]
    fn purge_delay_ms() -> c_long {
        // SAFETY: as in [`tune`]: a read of mimalloc's table of options.
        unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) }
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
