//! onebot-bridge: OneBot v11 bots (go-cqhttp era) on a OneBot v12 implementation.
//!
//! The crate is a library with a thin binary. [`core`] is the pure translation; the transports
//! live in [`v11`] (toward bots) and [`v12`] (toward the backend), and decode what peers send
//! within the bounds of [`decode`]; [`hub`] joins them per bot account; [`media`] holds local
//! files and served URLs; [`metrics`] counts what goes through and [`admin`] serves it (with
//! health and readiness) to operators; [`run`] starts everything a [`config::Config`] describes
//! and stops on a shutdown future.
#![forbid(unsafe_code)]

pub mod admin;
pub mod bridge;
pub mod cli;
pub mod config;
pub mod core;
pub mod decode;
pub mod hub;
pub mod media;
pub mod metrics;
pub mod net;
pub mod store;
pub mod tls;
pub mod v11;
pub mod v12;

pub use bridge::{run, Bridge};
