//! Loopback ports for child processes (the bridge, relays, servers) that must be told which one
//! to listen on. Shared by the tests and the benches.

/// A loopback port free now, for a child process that must be told which one to listen on.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    // Below the range the kernel takes the local ports of outgoing connections from
    // (`ip_local_port_range`, 32768 and up by default): a port found free here is not taken by
    // another test's connection before the bridge binds it, as one the kernel chose could be.
    const FIRST: u32 = 20_000;
    const COUNT: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    // Each test binary starts at a place of its own; within one, each port is handed out once.
    let _ = NEXT.compare_exchange(u32::MAX, std::process::id() % COUNT, Ordering::Relaxed, Ordering::Relaxed);
    for _ in 0..COUNT {
        let port = (FIRST + NEXT.fetch_add(1, Ordering::Relaxed) % COUNT) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port on loopback from {FIRST} to {}", FIRST + COUNT - 1)
}
