//! The v11 side: the bridge is a go-cqhttp-compatible OneBot v11 implementation toward bots.
//!
//! [`ws_server`] serves go-cqhttp's forward WebSocket (`/`, `/api`, `/event`).

pub mod ws_server;
