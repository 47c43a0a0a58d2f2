//! Connections held per source address, each address capped, so one address cannot take every
//! connection slot of a listener. The federation port and the ingress both count with it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Connections held per source address, each capped.
pub struct SourceCounts {
    max: usize,
    held: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection counted against its source until dropped.
pub struct SourceSlot {
    counts: Arc<SourceCounts>,
    ip: IpAddr,
}

impl SourceCounts {
    pub fn new(max: usize) -> Self {
        SourceCounts {
            max,
            held: Mutex::new(HashMap::new()),
        }
    }

    /// One more connection from `ip`, unless it holds its share already.
    pub fn take(self: &Arc<Self>, ip: IpAddr) -> Option<SourceSlot> {
        let ip = ip.to_canonical();
        let mut held = self.held.lock().expect("source counts lock");
        let count = held.entry(ip).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(SourceSlot {
            counts: self.clone(),
            ip,
        })
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut held = self.counts.held.lock().expect("source counts lock");
        if let Some(count) = held.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.ip);
            }
        }
    }
}
