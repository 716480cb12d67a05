//! OneBot v12 backend links: the bridge is a OneBot v12 *application* toward the implementation.
//!
//! [`crate::backends::socket`] dials the implementation's forward WebSocket, [`ws_server`]
//! accepts its reverse WebSocket, [`http_client`] POSTs actions to its HTTP server and takes events from a webhook
//! receiver or `get_latest_events`; [`codec`] reads and writes JSON and MessagePack. Every link
//! hands out a [`LinkHandle`](crate::backends::link::LinkHandle) for action calls and reports what
//! it receives through [`Reports`](crate::backends::Reports).

pub mod codec;
pub mod http_client;
pub mod ws_server;
