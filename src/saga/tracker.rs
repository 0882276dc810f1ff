//! The transactions the saga has sent and waits on: sending them (again), the block scan that
//! finds how they settled, asking the chain about one directly, and the chain's proof that
//! one can never land.

use crate::chain::{Chain, ChainError, SignedTransaction, TxStatus};
use crate::domain::order::NeverLands;
use chrono::Utc;
use flashrent_events::{OrderId, TxId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// An unseen transaction is sent again at most this often (a restart sends it at once).
const REBROADCAST_EVERY: Duration = Duration::from_secs(5);
/// While the block scanner keeps up, a transaction is also asked about on its own this often:
/// the scanner cannot see one that never lands (to send it again, or find it expired), nor
/// one that landed before the saga started watching it. As often as a rebroadcast is due.
pub(super) const ASK_DIRECTLY_EVERY: Duration = REBROADCAST_EVERY;
/// A transaction is watched from before its first broadcast, without the direct ask after it,
/// on a chain whose blocks come at least this far apart: no block can hold it by the time
/// the ask would reach the node. (A devnet making a block per broadcast is asked at once.)
const WATCH_AHEAD_FROM_BLOCKS_OF: Duration = Duration::from_secs(1);
/// The scanner counts as keeping up while it reached the chain's head this recently.
const SCAN_STALE_AFTER: Duration = Duration::from_secs(10);
/// Blocks scanned per round at most, so a long way behind is caught up in steps.
const BLOCKS_PER_SCAN: u64 = 100;
/// How often watches nobody renews (their order went to another instance) are let go.
const PRUNE_WATCHES_EVERY: Duration = Duration::from_secs(60);

pub(super) struct TxTracker {
    chain: Arc<dyn Chain>,
    poll_interval: Duration,
    /// Broadcast transactions the saga waits on, and where the block scanner stands. The
    /// scanner reads each new block's outcomes once and wakes the orders whose transactions
    /// it finds, so waiting costs one request per block rather than one per order and poll.
    watched: Mutex<Watches>,
    /// When the block scanner last reached the chain's head.
    scanned_at: Mutex<Option<Instant>>,
    /// When this process last sent each transaction, so an unseen one is sent again now and
    /// then rather than at every poll (a public node rate-limits).
    sent: Mutex<HashMap<TxId, Instant>>,
    /// Transactions a node refused (by id, with its answer), kept until the chain proves
    /// them dead: then the order fails (a delegation) or waits (a reclaim) instead of
    /// signing anew. A refusal from one node does not prove another never took it.
    refused: Mutex<HashMap<TxId, String>>,
}

#[derive(Default)]
struct Watches {
    by_tx: HashMap<TxId, Watch>,
    /// The next block the scanner reads, once it has found the head. Kept under the same lock
    /// as the watches: a transaction first sent after it was watched while this was set can
    /// only land in a block the scanner has yet to read.
    scan_next: Option<u64>,
}

struct Watch {
    order: OrderId,
    /// When the chain was last asked about this transaction alone.
    asked: Option<Instant>,
    /// What the block scanner found, not yet taken by the order.
    outcome: Option<TxStatus>,
}

/// What to go on for a watched transaction.
enum Watching {
    Found(TxStatus),
    AskNow,
    Wait,
}

/// How a broadcast transaction settled on chain.
pub(super) enum Outcome {
    Confirmed(u64),
    Failed(String),
    /// Never seen and past its expiry: it cannot land any more.
    Expired(NeverLands),
    /// As `Expired`, after a node refused it (with the node's answer).
    Refused(NeverLands, String),
}

/// What came of sending a transaction the saga waits on.
pub(super) enum Sent {
    /// Out, or known to the node already, or answered stale or refused while the chain
    /// cannot yet prove it dead: waited on either way. `watched_ahead`: watched before it
    /// went out (see [`TxTracker::watch_ahead`]), so the order waits for the scanner.
    Out { watched_ahead: bool },
    /// The chain proves it can never land; with the node's answer when it refused it.
    Dead {
        proof: NeverLands,
        refused: Option<String>,
    },
}

impl TxTracker {
    pub(super) fn new(chain: Arc<dyn Chain>, poll_interval: Duration) -> TxTracker {
        TxTracker {
            chain,
            poll_interval,
            watched: Mutex::new(Watches::default()),
            scanned_at: Mutex::new(None),
            sent: Mutex::new(HashMap::new()),
            refused: Mutex::new(HashMap::new()),
        }
    }

    /// How a broadcast transaction stands; `None` while it is pending. The block scanner's
    /// finding first; otherwise the chain is asked, when that is due. A transaction the chain
    /// has never seen goes out again (the same bytes, so harmless) until it expires.
    pub(super) async fn settled(
        &self,
        order: OrderId,
        tx: &SignedTransaction,
    ) -> Result<Option<Outcome>, ChainError> {
        let status = match self.watch(order, &tx.tx_id) {
            Watching::Found(status) => status,
            Watching::Wait => return Ok(None),
            Watching::AskNow => self.chain.status(&tx.tx_id).await?,
        };
        let outcome = self.outcome(tx, status).await?;
        if outcome.is_some() {
            self.unwatch(&tx.tx_id);
            self.take_refusal(&tx.tx_id);
        }
        Ok(outcome)
    }

    fn unwatch(&self, tx_id: &TxId) {
        self.watched.lock().expect("saga lock").by_tx.remove(tx_id);
    }

    /// Sends a transaction the saga waits on. A node's answer that it is stale or refused
    /// counts as sent unless the chain proves it dead ([`TxTracker::never_lands`]): that node
    /// may lag or sit on a fork while another holds the transaction, and java-tron checks the
    /// expiration before duplicates, so one that landed is called expired when sent again
    /// after its expiry (after a restart, say). Errors only for trouble reaching the chain.
    pub(super) async fn broadcast(
        &self,
        order: OrderId,
        tx: &SignedTransaction,
    ) -> Result<Sent, ChainError> {
        let ahead = self.watch_ahead(order, &tx.tx_id);
        let sent = match self.send(tx).await {
            Ok(true) => Ok(Sent::Out {
                watched_ahead: ahead,
            }),
            Ok(false) => match self.never_lands(tx).await {
                Ok(Some(proof)) => Ok(Sent::Dead {
                    proof,
                    refused: self.take_refusal(&tx.tx_id),
                }),
                // Perhaps in an earlier block than the scanner will read: asked about at once.
                Ok(None) => Ok(Sent::Out {
                    watched_ahead: false,
                }),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        if ahead
            && !matches!(
                sent,
                Ok(Sent::Out {
                    watched_ahead: true
                })
            )
        {
            // Asked about directly at the next look, as before any watch.
            self.unwatch(&tx.tx_id);
        }
        sent
    }

    /// Sends the same signed bytes (harmless: the same transaction). `true` when the node took
    /// it or knew it already; `false` when it called it stale or refused it, which is logged
    /// and a refusal remembered, nothing more (see [`TxTracker::broadcast`]). An error when no
    /// node could be asked.
    async fn send(&self, tx: &SignedTransaction) -> Result<bool, ChainError> {
        let taken = match self.chain.broadcast(tx).await {
            Ok(()) => true,
            Err(ChainError::Stale(why)) => {
                tracing::info!(tx_id = %tx.tx_id, why, "the node calls the transaction stale; waiting until the chain proves it can never land");
                false
            }
            Err(ChainError::Refused(why)) => {
                tracing::warn!(tx_id = %tx.tx_id, why, "the node refused the transaction; waiting until the chain proves it can never land");
                let mut refused = self.refused.lock().expect("saga lock");
                if refused.len() >= 10_000 {
                    // Forgotten, an order signs anew once its transaction is proven dead, and
                    // that one is refused (or not) in its turn.
                    refused.clear();
                }
                refused.insert(tx.tx_id, why);
                false
            }
            Err(e) => return Err(e),
        };
        self.note_sent(&tx.tx_id);
        Ok(taken)
    }

    /// The node's answer to a transaction it refused, if one did; forgotten from now on.
    fn take_refusal(&self, tx_id: &TxId) -> Option<String> {
        self.refused.lock().expect("saga lock").remove(tx_id)
    }

    /// Watches a transaction about to go out for the first time, as if just asked about,
    /// when the scanner keeps up and knows its next block: the transaction can then only land
    /// in a block the scanner has yet to read, and asking the node right after sending would
    /// learn nothing (a block every 3 s). One node request per delegation and per reclaim.
    /// Not for a transaction already watched (sent again: it may have landed unseen, and the
    /// direct ask is what finds it), nor on a chain with blocks coming faster than a request.
    fn watch_ahead(&self, order: OrderId, tx_id: &TxId) -> bool {
        if self.chain.expected_confirmation() < WATCH_AHEAD_FROM_BLOCKS_OF || !self.keeps_up() {
            return false;
        }
        let mut watched = self.watched.lock().expect("saga lock");
        if watched.scan_next.is_none() || watched.by_tx.contains_key(tx_id) {
            return false;
        }
        watched.by_tx.insert(
            *tx_id,
            Watch {
                order,
                asked: Some(Instant::now()),
                outcome: None,
            },
        );
        true
    }

    /// Watches the transaction for the order (from now on the scanner reports it), and says
    /// whether the scanner found it, or the chain is to be asked now.
    fn watch(&self, order: OrderId, tx_id: &TxId) -> Watching {
        let scanning = self.keeps_up();
        let mut watched = self.watched.lock().expect("saga lock");
        let w = watched.by_tx.entry(*tx_id).or_insert(Watch {
            order,
            asked: None,
            outcome: None,
        });
        if let Some(found) = w.outcome.take() {
            return Watching::Found(found);
        }
        if scanning && w.asked.is_some_and(|at| at.elapsed() < ASK_DIRECTLY_EVERY) {
            return Watching::Wait;
        }
        w.asked = Some(Instant::now());
        Watching::AskNow
    }

    /// Whether the block scanner reached the chain's head lately.
    pub(super) fn keeps_up(&self) -> bool {
        self.scanned_at
            .lock()
            .expect("saga lock")
            .is_some_and(|at| at.elapsed() < SCAN_STALE_AFTER)
    }

    /// Reads every new block's outcomes once and wakes the orders waiting on them, while any
    /// order waits. It starts at the head: what settled before, the first direct ask of each
    /// order finds. A chain that cannot list a block's outcomes leaves every order asking on
    /// its own, as before.
    pub(super) async fn scan_blocks(
        &self,
        mut shutdown: watch::Receiver<bool>,
        wake: impl Fn(OrderId),
    ) {
        let mut pruned = Instant::now();
        let mut failing = false;
        loop {
            let idle = {
                let mut watched = self.watched.lock().expect("saga lock");
                let idle = watched.by_tx.is_empty();
                if idle {
                    // Nothing waits on the chain: no requests to the node. The next scan
                    // starts at the head again; until then, a transaction watched is asked
                    // about first.
                    watched.scan_next = None;
                }
                idle
            };
            if idle {
                *self.scanned_at.lock().expect("saga lock") = Some(Instant::now());
            } else {
                match self.scan_to_head(&wake).await {
                    Ok(at_head) => {
                        failing = false;
                        if at_head {
                            *self.scanned_at.lock().expect("saga lock") = Some(Instant::now());
                        }
                    }
                    Err(e) => {
                        // Said once per outage, not at every poll.
                        if !failing {
                            tracing::warn!(error = %e, "saga cannot read new blocks; asking about each transaction instead");
                        }
                        failing = true;
                    }
                }
            }
            if pruned.elapsed() > PRUNE_WATCHES_EVERY {
                let mut watched = self.watched.lock().expect("saga lock");
                watched
                    .by_tx
                    .retain(|_, w| w.asked.is_none_or(|at| at.elapsed() < PRUNE_WATCHES_EVERY));
                pruned = Instant::now();
            }
            let wait = self.poll_interval.max(Duration::from_millis(10));
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// Scans from its next block (or the head) towards the head; `true` once it got there.
    async fn scan_to_head(&self, wake: &impl Fn(OrderId)) -> Result<bool, ChainError> {
        let head = self.chain.head_block().await?.number;
        let next = self.watched.lock().expect("saga lock").scan_next;
        let from = next.unwrap_or(head);
        let to = head.min(from.saturating_add(BLOCKS_PER_SCAN - 1));
        for number in from..=to {
            let outcomes = self.chain.block_outcomes(number).await?;
            let found: Vec<OrderId> = {
                let mut watched = self.watched.lock().expect("saga lock");
                let found = outcomes
                    .into_iter()
                    .filter_map(|(tx_id, status)| {
                        let w = watched.by_tx.get_mut(&tx_id)?;
                        w.outcome = Some(status);
                        Some(w.order)
                    })
                    .collect();
                watched.scan_next = Some(number + 1);
                found
            };
            found.into_iter().for_each(wake);
        }
        Ok(to == head)
    }

    /// What a transaction's status means for the order.
    async fn outcome(
        &self,
        tx: &SignedTransaction,
        status: TxStatus,
    ) -> Result<Option<Outcome>, ChainError> {
        Ok(match status {
            TxStatus::Confirmed { block } => Some(Outcome::Confirmed(block)),
            TxStatus::Failed { reason } => Some(Outcome::Failed(reason)),
            TxStatus::Unknown => match self.never_lands(tx).await? {
                Some(proof) => Some(match self.take_refusal(&tx.tx_id) {
                    Some(why) => Outcome::Refused(proof, why),
                    None => Outcome::Expired(proof),
                }),
                None => {
                    self.rebroadcast(tx).await;
                    None
                }
            },
            TxStatus::Pending => None,
        })
    }

    /// The chain's proof that the transaction can never land, if it has one: the head
    /// block's time is past its expiry (which has the grace in it), and the node has no
    /// trace of it. A block past the expiry can no longer include it, whatever any node
    /// answered to a broadcast; a slow or stalled chain (or a fast local clock) just keeps
    /// the order waiting. The head is read first, then the transaction: any block that could
    /// hold it is then at or below a head the node had already, so the node would know it.
    /// The order's writer checks the head's time against the expiry it recorded.
    async fn never_lands(&self, tx: &SignedTransaction) -> Result<Option<NeverLands>, ChainError> {
        if Utc::now() <= tx.expires_at {
            return Ok(None);
        }
        let head_time = self.chain.head_block().await?.time;
        if head_time <= tx.expires_at || !self.unseen(&tx.tx_id).await? {
            return Ok(None);
        }
        Ok(Some(NeverLands::PastExpiry { head_time }))
    }

    /// Sends an unseen transaction again, at most every [`REBROADCAST_EVERY`] (harmless: the
    /// same bytes, the same id), in case the node lost it. Whatever the answer, the order
    /// keeps waiting until the chain settles it or proves it dead.
    async fn rebroadcast(&self, tx: &SignedTransaction) {
        if self.sent_lately(&tx.tx_id) {
            return;
        }
        if let Err(e) = self.send(tx).await {
            tracing::debug!(tx_id = %tx.tx_id, error = %e, "rebroadcast failed");
        }
    }

    /// Whether the chain has no trace of the transaction.
    async fn unseen(&self, tx_id: &TxId) -> Result<bool, ChainError> {
        Ok(matches!(self.chain.status(tx_id).await?, TxStatus::Unknown))
    }

    /// Whether this process sent the transaction within the last [`REBROADCAST_EVERY`].
    pub(super) fn sent_lately(&self, tx_id: &TxId) -> bool {
        self.sent
            .lock()
            .expect("saga lock")
            .get(tx_id)
            .is_some_and(|at| at.elapsed() < REBROADCAST_EVERY)
    }

    fn note_sent(&self, tx_id: &TxId) {
        let mut sent = self.sent.lock().expect("saga lock");
        if sent.len() > 10_000 {
            // An entry only matters while it can still hold back a rebroadcast.
            sent.retain(|_, at| at.elapsed() < REBROADCAST_EVERY);
        }
        sent.insert(*tx_id, Instant::now());
    }
}
