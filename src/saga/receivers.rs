//! What the chain said of receiving addresses: whether each exists (energy cannot be
//! delegated to one that does not), asked as seldom as that allows.

use crate::chain::{Chain, ChainError};
use flashrent_events::TronAddress;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Receivers known to be activated, and known not to be, at most (then the set starts over).
const MAX_KNOWN_RECEIVERS: usize = 100_000;

pub(super) struct Receivers {
    /// How long an answer that a receiver does not exist is believed.
    inactive_ttl: Duration,
    /// Receivers the chain said exist. A TRON account is never deleted once activated, so
    /// an address is asked about once, not at every order (a public node rate-limits).
    activated: Mutex<HashSet<TronAddress>>,
    /// Receivers the chain said do not exist, and when it said so: believed for
    /// `inactive_ttl`, so a stream of orders to one unactivated address (each refunded in
    /// full) costs the node one question, not one per order.
    inactive: Mutex<HashMap<TronAddress, Instant>>,
    /// One question at a time per receiver: orders to the same new address that come
    /// together wait for the first one's answer rather than each asking.
    asking: Mutex<HashMap<TronAddress, Arc<tokio::sync::Mutex<()>>>>,
}

impl Receivers {
    pub(super) fn new(inactive_ttl: Duration) -> Receivers {
        Receivers {
            inactive_ttl,
            activated: Mutex::new(HashSet::new()),
            inactive: Mutex::new(HashMap::new()),
            asking: Mutex::new(HashMap::new()),
        }
    }

    /// Whether the chain has the receiving account: asked once per address that it has, and
    /// once per `inactive_ttl` for one that it has not; orders to one address that come
    /// together share one question.
    pub(super) async fn activated(
        &self,
        chain: &dyn Chain,
        address: &TronAddress,
    ) -> Result<bool, ChainError> {
        if let Some(known) = self.known(address) {
            return Ok(known);
        }
        let turn = {
            let mut asking = self.asking.lock().expect("saga lock");
            asking.entry(*address).or_default().clone()
        };
        let answer = {
            let _turn = turn.lock().await;
            match self.known(address) {
                Some(known) => Ok(known),
                None => self.ask(chain, address).await,
            }
        };
        let mut asking = self.asking.lock().expect("saga lock");
        // Only the map's and this one's: nobody else waits on this address.
        if Arc::strong_count(&turn) == 2 {
            asking.remove(address);
        }
        answer
    }

    /// What the chain said of the address, while that is still believed.
    fn known(&self, address: &TronAddress) -> Option<bool> {
        if self.activated.lock().expect("saga lock").contains(address) {
            return Some(true);
        }
        let inactive = self.inactive.lock().expect("saga lock");
        inactive
            .get(address)
            .is_some_and(|at| at.elapsed() < self.inactive_ttl)
            .then_some(false)
    }

    async fn ask(&self, chain: &dyn Chain, address: &TronAddress) -> Result<bool, ChainError> {
        let activated = chain.is_activated(address).await?;
        if activated {
            self.inactive.lock().expect("saga lock").remove(address);
            let mut known = self.activated.lock().expect("saga lock");
            if known.len() >= MAX_KNOWN_RECEIVERS {
                known.clear();
            }
            known.insert(*address);
        } else if !self.inactive_ttl.is_zero() {
            let ttl = self.inactive_ttl;
            let mut inactive = self.inactive.lock().expect("saga lock");
            if inactive.len() >= MAX_KNOWN_RECEIVERS {
                inactive.retain(|_, at| at.elapsed() < ttl);
                if inactive.len() >= MAX_KNOWN_RECEIVERS {
                    inactive.clear();
                }
            }
            inactive.insert(*address, Instant::now());
        }
        Ok(activated)
    }
}
