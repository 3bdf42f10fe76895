//! Real `cdc` processes for the end-to-end tests.

use std::process::Child;

/// Server processes, SIGKILLed on drop so a failing test leaves nothing behind.
pub struct Servers(pub Vec<Child>);

impl Drop for Servers {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
        }
        for c in &mut self.0 {
            let _ = c.wait();
        }
    }
}

/// A loopback port nobody listens on right now (the OS picks it; the tiny race is acceptable
/// in tests, and a collision fails loudly at bind).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}
