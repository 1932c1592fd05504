//! Admission of connections that have not authenticated yet: from the TCP accept through
//! the HTTP request (or WebSocket upgrade) to a successful hello. Such connections are
//! capped overall and per source address, and counted for `/health`; each holds a
//! [`Ticket`] that gives its place back when dropped. Authenticated connections are not
//! counted here (they are the hub's).
//!
//! The per-address cap does not apply to loopback sources: a broker behind a local TLS
//! proxy sees every client as 127.0.0.1, and a local process can exhaust descriptors
//! anyway. The overall cap still does.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Full {
    #[error("too many connections are still authenticating ({0})")]
    Total(usize),
    #[error("too many connections from one address are still authenticating ({0})")]
    PerAddress(usize),
}

pub struct Gate {
    max_total: usize,
    max_per_ip: usize,
    counts: Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

impl Gate {
    pub fn new(max_total: usize, max_per_ip: usize) -> Arc<Gate> {
        Arc::new(Gate {
            max_total,
            max_per_ip,
            counts: Mutex::new(Counts::default()),
        })
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A place for one more unauthenticated connection from `ip`, or why there is none.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Ticket, Full> {
        // An IPv4 client of a dual-stack listener shows up as ::ffff:a.b.c.d.
        let ip = ip.to_canonical();
        let mut c = self.counts();
        if c.total >= self.max_total {
            return Err(Full::Total(self.max_total));
        }
        let capped = !ip.is_loopback();
        let here = c.per_ip.get(&ip).copied().unwrap_or(0);
        if capped && here >= self.max_per_ip {
            return Err(Full::PerAddress(self.max_per_ip));
        }
        c.total += 1;
        if capped {
            c.per_ip.insert(ip, here + 1);
        }
        Ok(Ticket {
            gate: self.clone(),
            ip: capped.then_some(ip),
        })
    }

    /// Connections admitted and not yet authenticated or gone.
    pub fn pending(&self) -> usize {
        self.counts().total
    }
}

/// One unauthenticated connection's place; dropping it frees the place.
pub struct Ticket {
    gate: Arc<Gate>,
    ip: Option<IpAddr>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut c = self.gate.counts();
        c.total = c.total.saturating_sub(1);
        if let Some(ip) = self.ip {
            if let Some(n) = c.per_ip.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    c.per_ip.remove(&ip);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_capped_overall_and_per_remote_address_and_given_back_on_drop() {
        let g = Gate::new(3, 2);
        let a: IpAddr = "203.0.113.7".parse().unwrap();
        let b: IpAddr = "198.51.100.1".parse().unwrap();
        let t1 = g.admit(a).unwrap();
        let _t2 = g.admit(a).unwrap();
        assert_eq!(g.admit(a).err(), Some(Full::PerAddress(2)));
        let _t3 = g.admit(b).unwrap();
        assert_eq!(g.admit(b).err(), Some(Full::Total(3)));
        assert_eq!(g.pending(), 3);
        drop(t1);
        assert_eq!(g.pending(), 2);
        let _t4 = g.admit(a).unwrap();
        assert_eq!(g.counts().per_ip.get(&a), Some(&2));
    }

    #[test]
    fn loopback_sources_skip_the_per_address_cap_but_not_the_total() {
        let g = Gate::new(4, 1);
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let held: Vec<Ticket> = (0..4).map(|_| g.admit(lo).unwrap()).collect();
        assert_eq!(g.admit(lo).err(), Some(Full::Total(4)));
        drop(held);
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        let two: Vec<Ticket> = (0..2).map(|_| g.admit(mapped).unwrap()).collect();
        assert_eq!(two.len(), 2, "a v4-mapped loopback address is loopback");
        drop(two);
        assert_eq!(g.pending(), 0);
        assert!(g.counts().per_ip.is_empty());
    }
}
