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

/// A loopback port nobody listens on right now, below the kernel's ephemeral range: a port
/// the OS hands out for port 0 can be taken meanwhile as the source port of an outgoing
/// connection (50 captures dialling etcd made that happen), one below the range cannot. The
/// tiny race with another listener remains; a collision fails loudly at bind.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32_768);
    let (first, span) = (10_000u32, low.saturating_sub(10_000).max(1));
    // Spread test processes (which run one after another, or in parallel worktrees) apart.
    let base = std::process::id().wrapping_mul(7_919);
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = first + base.wrapping_add(n) % span;
        let Ok(port) = u16::try_from(port) else {
            continue;
        };
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port below {low}")
}
