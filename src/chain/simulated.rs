//! An in-process stand-in for TRON with the behaviour the saga must cope with: a
//! confirmation delay, transactions that fail on chain, and transactions that expire
//! unseen if they are never broadcast.

use super::{Chain, ChainError, Delegation, SignedTransaction, TxStatus};
use chrono::{DateTime, Utc};
use flashrent_events::TronAddress;
use rand::Rng;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct SimulatedChainConfig {
    pub confirmation_delay: Duration,
    /// Probability in [0, 1] that a broadcast transaction fails on chain.
    pub failure_rate: f64,
    pub expiration: Duration,
}

impl Default for SimulatedChainConfig {
    fn default() -> Self {
        SimulatedChainConfig {
            confirmation_delay: Duration::from_millis(300),
            failure_rate: 0.0,
            expiration: Duration::from_secs(60),
        }
    }
}

struct Landed {
    at: DateTime<Utc>,
    failed: bool,
    block: u64,
}

pub struct SimulatedChain {
    config: SimulatedChainConfig,
    txs: Mutex<HashMap<String, Landed>>,
    next_block: Mutex<u64>,
}

impl SimulatedChain {
    pub fn new(config: SimulatedChainConfig) -> SimulatedChain {
        SimulatedChain {
            config,
            txs: Mutex::new(HashMap::new()),
            next_block: Mutex::new(1),
        }
    }

    fn sign(&self, kind: &str, d: &Delegation) -> SignedTransaction {
        let nonce: u64 = rand::thread_rng().gen();
        let body = format!(
            "{kind}|{}|{}|{}|{}|{nonce}",
            d.from, d.to, d.energy, d.lock_seconds
        );
        SignedTransaction {
            tx_id: hex::encode(Sha256::digest(body.as_bytes())),
            signed_tx: hex::encode(body.as_bytes()),
            expires_at: Utc::now()
                + chrono::Duration::from_std(self.config.expiration).unwrap_or_default(),
        }
    }
}

#[async_trait::async_trait]
impl Chain for SimulatedChain {
    async fn is_activated(&self, _address: &TronAddress) -> Result<bool, ChainError> {
        Ok(true)
    }

    async fn sign_delegation(&self, d: &Delegation) -> Result<SignedTransaction, ChainError> {
        Ok(self.sign("delegate", d))
    }

    async fn sign_reclaim(&self, d: &Delegation) -> Result<SignedTransaction, ChainError> {
        Ok(self.sign("undelegate", d))
    }

    async fn broadcast(&self, tx: &SignedTransaction) -> Result<(), ChainError> {
        if Utc::now() > tx.expires_at {
            return Err(ChainError::Stale("TRANSACTION_EXPIRATION_ERROR".into()));
        }
        let mut txs = self.txs.lock().expect("sim chain lock");
        if !txs.contains_key(&tx.tx_id) {
            let failed = rand::thread_rng().gen_bool(self.config.failure_rate.clamp(0.0, 1.0));
            let at = Utc::now()
                + chrono::Duration::from_std(self.config.confirmation_delay).unwrap_or_default();
            let mut next = self.next_block.lock().expect("sim chain lock");
            *next += 1;
            txs.insert(
                tx.tx_id.clone(),
                Landed {
                    at,
                    failed,
                    block: *next,
                },
            );
        }
        Ok(())
    }

    async fn status(&self, tx_id: &str) -> Result<TxStatus, ChainError> {
        let txs = self.txs.lock().expect("sim chain lock");
        Ok(match txs.get(tx_id) {
            None => TxStatus::Unknown,
            Some(l) if Utc::now() < l.at => TxStatus::Pending,
            Some(l) if l.failed => TxStatus::Failed {
                reason: "CONTRACT_EXE_ERROR (simulated)".into(),
            },
            Some(l) => TxStatus::Confirmed { block: l.block },
        })
    }

    fn expected_confirmation(&self) -> Duration {
        self.config.confirmation_delay
    }
}
