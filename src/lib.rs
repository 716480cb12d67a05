//! onebot-bridge: OneBot v11 bots (go-cqhttp era) on a OneBot v12 implementation.
//!
//! The crate is a library with a thin binary. [`core`] is the pure translation; the transports
//! live in [`bots`] (the go-cqhttp face toward bots) and [`backends`] (the links to the
//! implementation), and decode what peers send within the bounds of [`decode`]; [`hub`] joins
//! them per bot account; [`media`] holds local
//! files and served URLs; [`metrics`] counts what goes through and [`admin`] serves it (with
//! health and readiness) to operators; [`run`] starts everything a [`config::Config`] describes
//! and stops on a shutdown future.
// No `unsafe` but one system call no kept crate wraps (`store::disk`'s write-back of redb's
// file, `sync_file_range`) and one option set in the allocator (`allocator`), each allowed where
// it is made.
#![deny(unsafe_code)]

pub mod admin;
pub mod allocator;
pub mod backends;
pub mod bots;
pub mod bridge;
pub mod cli;
pub mod config;
pub mod core;
pub mod decode;
pub mod demo;
pub mod fanout;
pub mod hub;
pub mod inspector;
pub mod media;
pub mod metrics;
pub mod net;
pub mod store;
pub mod sync;
pub mod tls;

pub use bridge::{run, Bridge};
