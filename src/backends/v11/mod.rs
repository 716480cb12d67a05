//! OneBot v11 backend links: the bridge as a v11 *application* toward NapCat, LLBot and
//! Lagrange.OneBot, converting at the link's edge ([`edge`]) so that the core sees a v12 backend.
//!
//! The transports are the shared ones ([`crate::backends::socket`] dials the implementation's
//! forward WebSocket); a link speaks v11 when its [`crate::backends::link::Wire`] says so.

pub mod edge;
