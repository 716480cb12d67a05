//! Toward bots: the bridge is a go-cqhttp-compatible OneBot v11 implementation.
//!
//! [`session`] is the WebSocket loop every v11 connection runs; [`ws_server`] serves go-cqhttp's forward WebSocket (`/`, `/api`, `/event`).

pub mod event_filter;
pub mod http_post;
pub mod http_server;
pub mod rate_limit;
pub mod session;
pub mod ws_reverse;
pub mod ws_server;
