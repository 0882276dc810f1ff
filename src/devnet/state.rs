//! The devnet's chain state: accounts, Stake 2.0 energy delegations, a pending pool and
//! blocks. The rules follow java-tron as docs/tron-protocol.md describes them (§3.5–§3.11, §6),
//! reduced to what an energy rental needs. With a store, the transactions live on disk
//! (`known`) and the rest, which stays small, is saved beside them after each block.

use super::known::{Info, Known, KnownTxs, TxId};
use crate::chain::tron::keys::recover_signer;
use crate::chain::tron::proto::{self, RawTransaction, ResourceContract};
use flashrent_store::AtomicTree;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use sled::IVec;
use std::collections::HashMap;

pub type Addr = [u8; 21];

/// The most a lock may last, in blocks (one year; proposal #78's ceiling).
const MAX_LOCK_PERIOD: i64 = 10_512_000;
const DEFAULT_LOCK_PERIOD: i64 = 86_400;
const DAY_MS: i64 = 86_400_000;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Faults {
    /// The next `count` broadcasts answer `code` (e.g. SERVER_BUSY, TAPOS_ERROR, SIGERROR).
    pub refuse: Option<Refuse>,
    /// Every `/wallet` call waits this long before answering (a node that times out).
    pub delay_ms: u64,
    /// The next N broadcasts answer success and are forgotten.
    pub drop_broadcasts: u32,
    /// The next N transactions that make it into a block fail there.
    pub fail_on_chain: u32,
    /// Probability in [0, 1] that a transaction fails in its block.
    pub fail_rate: f64,
    /// Builders return a transaction for a different balance (a lying node).
    pub tamper_build: bool,
    /// Every `/wallet` call answers HTTP 503.
    pub down: bool,
    /// `/wallet/getblock` answers HTTP 404, as java-tron before 4.5.2 does.
    pub no_getblock: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Refuse {
    pub code: String,
    #[serde(default = "one")]
    pub count: u32,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Default, Clone, Copy, Serialize, Deserialize)]
pub struct Account {
    pub balance: i64,
    /// Own ENERGY stake (FreezeBalanceV2) not delegated.
    pub energy_stake: i64,
    pub delegated_out: i64,
    pub acquired: i64,
    pub create_time: i64,
}

#[derive(Debug, Default, Clone, Copy, Serialize, Deserialize)]
pub struct Record {
    pub unlocked: i64,
    pub locked: i64,
    pub expire_ms: i64,
}

struct Pending {
    id: [u8; 32],
    tx: RawTransaction,
}

pub struct ChainState {
    pub accounts: HashMap<Addr, Account>,
    pub records: HashMap<(Addr, Addr), Record>,
    pending: Vec<Pending>,
    known: KnownTxs,
    /// Block ids and timestamps; the index is the block number.
    blocks: Vec<([u8; 32], i64)>,
    /// How many blocks the store holds already.
    blocks_saved: usize,
    /// The transactions of each block not yet in the store (of every block, without a
    /// store); a block without any has no entry. Stored blocks keep theirs in their value.
    block_txs: HashMap<u64, Vec<TxId>>,
    pub faults: Faults,
    pub total_energy_limit: u64,
    pub total_energy_weight: u64,
    /// Totals set by an operator, taking effect with the next block, as a change of the
    /// chain's totals does (stake moving, a proposal).
    pub next_totals: Option<(u64, u64)>,
    pub tx_expiration_ms: i64,
    pub delegations_applied: u64,
    pub undelegations_applied: u64,
    /// Something worth saving changed since the last snapshot.
    pub dirty: bool,
}

/// What is saved under [`STATE`]: the state but its transactions and blocks, which are
/// saved one key each. Earlier versions wrote all of it, those included, to one JSON file
/// after every block; such a file is read once and moved into the store.
#[derive(Serialize, Deserialize)]
struct Snapshot {
    accounts: Vec<(String, Account)>,
    records: Vec<(String, String, Record)>,
    #[serde(default)]
    known: Vec<(String, String, String, Option<Info>)>,
    pending: Vec<String>,
    #[serde(default)]
    blocks: Vec<(String, i64)>,
    total_energy_limit: u64,
    total_energy_weight: u64,
    delegations_applied: u64,
    undelegations_applied: u64,
}

const STATE: &[u8] = b"state";
/// Key prefix of a block: then its number, big-endian.
const BLOCK: u8 = b'b';

fn block_key(number: u64) -> [u8; 9] {
    let mut k = [BLOCK; 9];
    k[1..].copy_from_slice(&number.to_be_bytes());
    k
}

/// A stored block: its id, its timestamp (8 bytes, big-endian), then the ids of its
/// transactions.
fn block_value(id: &[u8; 32], ts: i64, txs: &[TxId]) -> Vec<u8> {
    let mut v = Vec::with_capacity(40 + 32 * txs.len());
    v.extend_from_slice(id);
    v.extend_from_slice(&ts.to_be_bytes());
    txs.iter().for_each(|t| v.extend_from_slice(t));
    v
}

/// The parts of a [`block_value`], if it is one.
fn block_parts(v: &[u8]) -> Option<([u8; 32], i64, Vec<TxId>)> {
    if v.len() < 40 || !(v.len() - 40).is_multiple_of(32) {
        return None;
    }
    let txs = v[40..]
        .chunks_exact(32)
        .map(|c| c.try_into().expect("32 bytes"))
        .collect();
    let id = v[..32].try_into().expect("32 bytes");
    Some((
        id,
        i64::from_be_bytes(v[32..40].try_into().expect("8 bytes")),
        txs,
    ))
}

fn unhex<const N: usize>(s: &str) -> anyhow::Result<[u8; N]> {
    hex::decode(s)?
        .try_into()
        .map_err(|_| anyhow::anyhow!("bad length in devnet snapshot"))
}

/// A broadcast the node refuses: its `code`, message and the transaction id if it decoded.
pub struct Rejected {
    pub code: String,
    pub message: String,
    pub id: Option<[u8; 32]>,
}

/// An error a builder endpoint answers as `{"Error": …}`.
pub struct BuildError(pub String);

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl ChainState {
    pub fn new(limit: u64, weight: u64, tx_expiration_ms: i64) -> ChainState {
        let mut s = ChainState {
            accounts: HashMap::new(),
            records: HashMap::new(),
            pending: Vec::new(),
            known: KnownTxs::in_memory(),
            blocks: Vec::new(),
            blocks_saved: 0,
            block_txs: HashMap::new(),
            faults: Faults::default(),
            total_energy_limit: limit,
            total_energy_weight: weight,
            next_totals: None,
            tx_expiration_ms,
            delegations_applied: 0,
            undelegations_applied: 0,
            dirty: false,
        };
        s.push_block(now_ms(), &[]);
        s
    }

    /// Keeps this state in `tree` from now on (all of it at the next [`ChainState::save`]).
    pub fn keep_in(&mut self, tree: AtomicTree) {
        self.known.keep_in(tree);
        self.blocks_saved = 0;
        self.dirty = true;
    }

    /// The state saved in `tree`, if any was.
    pub fn open(tree: AtomicTree, tx_expiration_ms: i64) -> anyhow::Result<Option<ChainState>> {
        let Some(state) = tree.data().get(STATE)? else {
            return Ok(None);
        };
        let mut snap: Snapshot = serde_json::from_slice(&state)?;
        for entry in tree.data().scan_prefix([BLOCK]) {
            let (_, v) = entry?;
            let (id, ts, _) = block_parts(&v)
                .ok_or_else(|| anyhow::anyhow!("a devnet block of {} bytes", v.len()))?;
            snap.blocks.push((hex::encode(id), ts));
        }
        let mut s = ChainState::restore(snap, KnownTxs::on_disk(tree), tx_expiration_ms)?;
        s.blocks_saved = s.blocks.len();
        Ok(Some(s))
    }

    /// A state from the JSON file earlier versions wrote.
    pub fn import_json(text: &str, tx_expiration_ms: i64) -> anyhow::Result<ChainState> {
        let snap: Snapshot = serde_json::from_str(text)?;
        ChainState::restore(snap, KnownTxs::in_memory(), tx_expiration_ms)
    }

    fn restore(
        snap: Snapshot,
        known: KnownTxs,
        tx_expiration_ms: i64,
    ) -> anyhow::Result<ChainState> {
        let mut s = ChainState::new(
            snap.total_energy_limit,
            snap.total_energy_weight,
            tx_expiration_ms,
        );
        s.known = known;
        s.blocks.clear();
        for (id, ts) in snap.blocks {
            s.blocks.push((unhex(&id)?, ts));
        }
        anyhow::ensure!(!s.blocks.is_empty(), "a devnet state without blocks");
        for (a, acc) in snap.accounts {
            s.accounts.insert(unhex(&a)?, acc);
        }
        for (f, t, r) in snap.records {
            s.records.insert((unhex(&f)?, unhex(&t)?), r);
        }
        for (id, raw, sig, info) in snap.known {
            s.known.insert(
                unhex(&id)?,
                Known {
                    raw: hex::decode(raw)?,
                    signature: hex::decode(sig)?,
                    info,
                },
            );
        }
        for id in snap.pending {
            let id = unhex(&id)?;
            if let Some(k) = s.known.get(&id) {
                let tx = RawTransaction::decode(&k.raw)?;
                s.pending.push(Pending { id, tx });
            }
        }
        s.delegations_applied = snap.delegations_applied;
        s.undelegations_applied = snap.undelegations_applied;
        Ok(s)
    }

    /// Writes what changed since the last save, atomically (the transactions changed, the
    /// new blocks, and the small rest), and syncs it. Nothing without a store or a change.
    pub fn save(&mut self) -> sled::Result<()> {
        let Some(tree) = self.known.store().cloned() else {
            return Ok(());
        };
        if !std::mem::take(&mut self.dirty) && self.blocks_saved == self.blocks.len() {
            return Ok(());
        }
        let mut writes = Vec::new();
        self.known.drain_into(&mut writes);
        for (number, (id, ts)) in self.blocks.iter().enumerate().skip(self.blocks_saved) {
            let txs = self.block_txs.remove(&(number as u64)).unwrap_or_default();
            writes.push((
                IVec::from(&block_key(number as u64)[..]),
                Some(IVec::from(block_value(id, *ts, &txs))),
            ));
        }
        let snap = Snapshot {
            accounts: self
                .accounts
                .iter()
                .map(|(a, acc)| (hex::encode(a), *acc))
                .collect(),
            records: self
                .records
                .iter()
                .map(|((f, t), r)| (hex::encode(f), hex::encode(t), *r))
                .collect(),
            known: Vec::new(),
            pending: self.pending.iter().map(|p| hex::encode(p.id)).collect(),
            blocks: Vec::new(),
            total_energy_limit: self.total_energy_limit,
            total_energy_weight: self.total_energy_weight,
            delegations_applied: self.delegations_applied,
            undelegations_applied: self.undelegations_applied,
        };
        writes.push((
            IVec::from(STATE),
            Some(IVec::from(
                serde_json::to_vec(&snap).expect("a snapshot serializes"),
            )),
        ));
        // Atomic without a sled batch, which would hold up every sled read in the process
        // (the in-process devnet shares it with the read models); synced.
        tree.write(writes.iter().map(|(k, v)| (k, v)))?;
        self.blocks_saved = self.blocks.len();
        Ok(())
    }

    fn push_block(&mut self, ts: i64, ids: &[[u8; 32]]) -> u64 {
        let number = self.blocks.len() as u64;
        let mut h = Sha256::new();
        if let Some((prev, _)) = self.blocks.last() {
            h.update(prev);
        }
        h.update(ts.to_be_bytes());
        for id in ids {
            h.update(id);
        }
        let mut id: [u8; 32] = h.finalize().into();
        id[..8].copy_from_slice(&number.to_be_bytes());
        self.blocks.push((id, ts));
        number
    }

    pub fn head(&self) -> (u64, [u8; 32], i64) {
        let (id, ts) = *self.blocks.last().expect("genesis exists");
        (self.blocks.len() as u64 - 1, id, ts)
    }

    pub fn create_account(&mut self, a: Addr, balance: i64, energy_stake: i64) {
        let acc = self.accounts.entry(a).or_insert(Account {
            create_time: now_ms(),
            ..Default::default()
        });
        acc.balance += balance;
        acc.energy_stake += energy_stake;
        self.dirty = true;
    }

    /// The actuator checks of Delegate/UnDelegateResource against the current state.
    fn validate(&self, c: &ResourceContract, now: i64) -> Result<(), String> {
        let hexa = |a: &[u8]| hex::encode(a);
        let owner = self
            .accounts
            .get(&addr(&c.owner)?)
            .ok_or_else(|| format!("Account[{}] not exists", hexa(&c.owner)))?;
        if c.resource != proto::ENERGY {
            return Err("this devnet delegates ENERGY only".into());
        }
        let receiver = addr(&c.receiver).map_err(|_| "Invalid receiverAddress".to_owned())?;
        match c.contract_type {
            proto::DELEGATE_RESOURCE => {
                if !self.accounts.contains_key(&receiver) {
                    return Err(format!("Account[{}] not exists", hexa(&c.receiver)));
                }
                if c.receiver == c.owner {
                    return Err("receiverAddress must not be the same as ownerAddress".into());
                }
                if c.balance < 1_000_000 {
                    return Err("delegateBalance must be greater than or equal to 1 TRX".into());
                }
                if c.balance > owner.energy_stake {
                    return Err(
                        "delegateBalance must be less than or equal to available FreezeEnergyV2 balance"
                            .into(),
                    );
                }
                if c.lock {
                    if c.lock_period < 0 || c.lock_period > MAX_LOCK_PERIOD {
                        return Err(format!("The lock period of delegate resource cannot be less than 0 and cannot exceed {MAX_LOCK_PERIOD}!"));
                    }
                    let period = if c.lock_period == 0 {
                        DEFAULT_LOCK_PERIOD
                    } else {
                        c.lock_period
                    };
                    if let Some(r) = self.records.get(&(addr(&c.owner)?, receiver)) {
                        let remaining = r.expire_ms - now;
                        if r.locked > 0 && remaining > 0 && period * 3000 < remaining {
                            return Err(format!("The lock period for ENERGY this time cannot be less than the remaining time[{remaining}ms] of the last lock period for ENERGY!"));
                        }
                    }
                }
                Ok(())
            }
            proto::UNDELEGATE_RESOURCE => {
                if c.balance <= 0 {
                    return Err("unDelegateBalance must be more than 0 TRX".into());
                }
                let r = self
                    .records
                    .get(&(addr(&c.owner)?, receiver))
                    .ok_or("delegated Resource does not exist")?;
                let unlocked = r.unlocked + if r.expire_ms < now { r.locked } else { 0 };
                if c.balance > unlocked {
                    return Err(format!(
                        "insufficient delegateFrozenBalance(Energy), request={}, unlock_balance={unlocked}",
                        c.balance
                    ));
                }
                Ok(())
            }
            _ => Err("unsupported contract".into()),
        }
    }

    /// `/wallet/delegateresource` and `/wallet/undelegateresource`: the unsigned transaction.
    pub fn build(&self, mut c: ResourceContract) -> Result<Value, BuildError> {
        let now = now_ms();
        self.validate(&c, now).map_err(|m| {
            BuildError(format!(
                "class org.tron.core.exception.ContractValidateException : {m}"
            ))
        })?;
        if self.faults.tamper_build {
            c.balance += 1_000_000;
        }
        let (number, id, _) = self.head();
        let raw = RawTransaction {
            ref_block_bytes: number.to_be_bytes()[6..8].to_vec(),
            ref_block_hash: id[8..16].to_vec(),
            expiration: now + self.tx_expiration_ms,
            timestamp: now,
            data: vec![],
            permission_id: 0,
            contract: c,
        };
        let bytes = raw.encode();
        Ok(json!({
            "visible": false,
            "txID": hex::encode(proto::tx_id(&bytes)),
            "raw_data": raw_json(&raw),
            "raw_data_hex": hex::encode(&bytes),
        }))
    }

    /// `/wallet/broadcasthex`: `Ok(accepted)` or `Err((code, message))`.
    pub fn broadcast(&mut self, signed: &[u8]) -> Result<[u8; 32], Rejected> {
        let err = |c: &str, message: String, id| {
            Err(Rejected {
                code: c.to_owned(),
                message,
                id,
            })
        };
        let Ok((raw_bytes, sigs)) = proto::decode_signed(signed) else {
            return err("OTHER_ERROR", "Error: not a transaction".into(), None);
        };
        let id = proto::tx_id(&raw_bytes);
        if let Some(r) = self.faults.refuse.as_mut() {
            if r.count > 0 {
                r.count -= 1;
                let code = r.code.clone();
                return err(&code, format!("{code} (devnet fault)"), Some(id));
            }
        }
        let tx = match RawTransaction::decode(&raw_bytes) {
            Ok(t) => t,
            Err(e) => {
                return err(
                    "CONTRACT_VALIDATE_ERROR",
                    format!("Contract validate error : {e}"),
                    Some(id),
                )
            }
        };
        // java-tron's order (Wallet.broadcastTransaction checks the expiration, then
        // Manager.processTransaction TAPOS, then duplicates): a transaction that landed is
        // answered "expired", not "duplicate", once it has expired. Its transaction-id cache
        // that would answer "duplicate" first is off by default (`trxCacheEnable`).
        let now = now_ms();
        if tx.expiration <= now || tx.expiration > now + DAY_MS {
            return err(
                "TRANSACTION_EXPIRATION_ERROR",
                "Transaction expired".into(),
                Some(id),
            );
        }
        let tapos_ok = self
            .blocks
            .iter()
            .rev()
            .take(65_536)
            .enumerate()
            .any(|(back, (bid, _))| {
                let number = self.blocks.len() - 1 - back;
                (number as u64).to_be_bytes()[6..8] == tx.ref_block_bytes[..]
                    && bid[8..16] == tx.ref_block_hash[..]
            });
        if !tapos_ok {
            return err("TAPOS_ERROR", "Tapos check error.".into(), Some(id));
        }
        if self.known.contains(&id) {
            return err("DUP_TRANSACTION_ERROR", "Dup transaction.".into(), Some(id));
        }
        let [sig] = &sigs[..] else {
            return err(
                "SIGERROR",
                "Validate signature error: one signature expected".into(),
                Some(id),
            );
        };
        match recover_signer(&id, sig) {
            Ok(signer) if signer.as_bytes()[..] == tx.contract.owner[..] => {}
            Ok(signer) => {
                return err(
                    "SIGERROR",
                    format!("Validate signature error: {} is signed by {} but it is not contained of permission.", hex::encode(id), signer.to_hex()),
                    Some(id),
                )
            }
            Err(e) => return err("SIGERROR", format!("Validate signature error: {e}"), Some(id)),
        }
        if let Err(m) = self.validate(&tx.contract, now) {
            return err(
                "CONTRACT_VALIDATE_ERROR",
                format!("Contract validate error : {m}"),
                Some(id),
            );
        }
        if self.faults.drop_broadcasts > 0 {
            self.faults.drop_broadcasts -= 1;
            tracing::info!(tx_id = %hex::encode(id), "devnet fault: broadcast dropped");
            return Ok(id);
        }
        self.known.insert(
            id,
            Known {
                raw: raw_bytes,
                signature: sig.clone(),
                info: None,
            },
        );
        self.pending.push(Pending { id, tx });
        self.dirty = true;
        Ok(id)
    }

    /// Makes a block of the pending transactions that are still valid.
    pub fn produce_block(&mut self) {
        let ts = now_ms().max(self.head().2 + 1);
        if let Some((limit, weight)) = self.next_totals.take() {
            self.total_energy_limit = limit;
            self.total_energy_weight = weight;
            self.dirty = true;
        }
        let pending = std::mem::take(&mut self.pending);
        let mut included = Vec::new();
        let mut outcomes = Vec::new();
        for p in pending {
            if p.tx.expiration <= ts || self.validate(&p.tx.contract, ts).is_err() {
                // Dropped from the pool like java-tron drops it: the id is unknown again.
                self.known.remove(&p.id);
                continue;
            }
            let fail = if self.faults.fail_on_chain > 0 {
                self.faults.fail_on_chain -= 1;
                true
            } else {
                rand::random::<f64>() < self.faults.fail_rate
            };
            if fail {
                outcomes.push((p.id, Some("devnet fault: failed on chain".to_owned())));
            } else {
                self.apply(&p.tx.contract, ts);
                outcomes.push((p.id, None));
            }
            included.push(p.id);
        }
        self.dirty |= !included.is_empty();
        let number = self.push_block(ts, &included);
        if !included.is_empty() {
            self.block_txs.insert(number, included);
        }
        for (id, failed) in outcomes {
            self.known.set_info(
                &id,
                Info {
                    block: number,
                    ts,
                    failed,
                },
            );
        }
    }

    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    fn apply(&mut self, c: &ResourceContract, ts: i64) {
        let (Ok(owner), Ok(receiver)) = (addr(&c.owner), addr(&c.receiver)) else {
            return;
        };
        let r = self.records.entry((owner, receiver)).or_default();
        if r.locked > 0 && r.expire_ms < ts {
            r.unlocked += r.locked;
            r.locked = 0;
        }
        let b = c.balance;
        if c.contract_type == proto::DELEGATE_RESOURCE {
            if c.lock {
                let period = if c.lock_period == 0 {
                    DEFAULT_LOCK_PERIOD
                } else {
                    c.lock_period
                };
                r.locked += b;
                r.expire_ms = ts + period * 3000;
            } else {
                r.unlocked += b;
            }
            let o = self.accounts.entry(owner).or_default();
            o.energy_stake -= b;
            o.delegated_out += b;
            self.accounts.entry(receiver).or_default().acquired += b;
            self.delegations_applied += 1;
        } else {
            r.unlocked -= b;
            if r.unlocked == 0 && r.locked == 0 {
                self.records.remove(&(owner, receiver));
            }
            let o = self.accounts.entry(owner).or_default();
            o.energy_stake += b;
            o.delegated_out -= b;
            self.accounts.entry(receiver).or_default().acquired -= b;
            self.undelegations_applied += 1;
        }
    }

    pub fn account_json(&self, a: &Addr) -> Value {
        let Some(acc) = self.accounts.get(a) else {
            return json!({});
        };
        json!({
            "address": hex::encode(a),
            "balance": acc.balance,
            "create_time": acc.create_time,
            "frozenV2": [{}, {"type": "ENERGY", "amount": acc.energy_stake}, {"type": "TRON_POWER"}],
            "account_resource": {"delegated_frozenV2_balance_for_energy": acc.delegated_out},
            "acquired_delegated_frozenV2_balance_for_energy": acc.acquired,
        })
    }

    pub fn resource_json(&self, a: &Addr) -> Value {
        let acc = self.accounts.get(a).copied().unwrap_or_default();
        let energy = |sun: i64| {
            (sun.max(0) as u128 * u128::from(self.total_energy_limit)
                / (u128::from(self.total_energy_weight.max(1)) * 1_000_000)) as u64
        };
        json!({
            "EnergyLimit": energy(acc.energy_stake + acc.acquired),
            "TotalEnergyLimit": self.total_energy_limit,
            "TotalEnergyWeight": self.total_energy_weight,
        })
    }

    pub fn max_delegatable_json(&self, a: &Addr) -> Value {
        match self.accounts.get(a) {
            Some(acc) if acc.energy_stake >= 1_000_000 => json!({"max_size": acc.energy_stake}),
            _ => json!({}),
        }
    }

    pub fn info_json(&self, id: &[u8; 32]) -> Value {
        let Some(info) = self.known.get(id).and_then(|k| k.info) else {
            return json!({});
        };
        let mut v = json!({
            "id": hex::encode(id), "blockNumber": info.block, "blockTimeStamp": info.ts,
            "contractResult": [""], "receipt": {"net_usage": 283},
        });
        if let Some(m) = info.failed {
            v["result"] = json!("FAILED");
            v["resMessage"] = json!(hex::encode(m));
        }
        v
    }

    /// `gettransactioninfobyblocknum`: the infos of a block's transactions, in block order.
    pub fn block_infos_json(&self, number: u64) -> Value {
        let ids: Vec<TxId> = match self.block_txs.get(&number) {
            Some(ids) => ids.clone(),
            None if number < self.blocks_saved as u64 => self
                .known
                .store()
                .and_then(|tree| tree.data().get(block_key(number)).ok().flatten())
                .and_then(|v| block_parts(&v))
                .map(|(_, _, txs)| txs)
                .unwrap_or_default(),
            None => Vec::new(),
        };
        Value::Array(ids.iter().map(|id| self.info_json(id)).collect())
    }

    pub fn transaction_json(&self, id: &[u8; 32]) -> Value {
        let Some(k) = self.known.get(id) else {
            return json!({});
        };
        let mut v = json!({
            "visible": false, "txID": hex::encode(id), "raw_data_hex": hex::encode(&k.raw),
            "signature": [hex::encode(&k.signature)],
        });
        if let Ok(raw) = RawTransaction::decode(&k.raw) {
            v["raw_data"] = raw_json(&raw);
        }
        if let Some(info) = &k.info {
            let ret = if info.failed.is_some() {
                "REVERT"
            } else {
                "SUCCESS"
            };
            v["ret"] = json!([{"contractRet": ret}]);
        }
        v
    }

    pub fn now_block_json(&self) -> Value {
        let (number, _, _) = self.head();
        self.block_json(number).expect("the head exists")
    }

    /// A block's header as java-tron shows it; the devnet's blocks list no transactions.
    pub fn block_json(&self, number: u64) -> Option<Value> {
        let (id, ts) = self.blocks.get(usize::try_from(number).ok()?)?;
        Some(json!({
            "blockID": hex::encode(id),
            "block_header": {"raw_data": {"number": number, "timestamp": ts}},
        }))
    }

    /// The number of the block with this id.
    pub fn block_number_of(&self, id: &[u8]) -> Option<u64> {
        self.blocks
            .iter()
            .position(|(b, _)| b.as_slice() == id)
            .map(|n| n as u64)
    }

    pub fn summary_json(&self) -> Value {
        let (number, _, _) = self.head();
        let records: Vec<Value> = self
            .records
            .iter()
            .map(|((f, t), r)| {
                json!({"from": hex::encode(f), "to": hex::encode(t), "unlocked": r.unlocked,
                       "locked": r.locked, "expire_time_for_energy": r.expire_ms})
            })
            .collect();
        let accounts: Vec<Value> = self.accounts.keys().map(|a| self.account_json(a)).collect();
        json!({
            "head": number,
            "pending": self.pending.len(),
            "delegations_applied": self.delegations_applied,
            "undelegations_applied": self.undelegations_applied,
            "delegated_resources": records,
            "accounts": accounts,
        })
    }
}

pub fn addr(b: &[u8]) -> Result<Addr, String> {
    b.try_into()
        .ok()
        .filter(|a: &Addr| a[0] == 0x41)
        .ok_or_else(|| "Invalid address".to_owned())
}

fn raw_json(raw: &RawTransaction) -> Value {
    let c = &raw.contract;
    let (name, mut value) = match c.contract_type {
        proto::DELEGATE_RESOURCE => (
            "DelegateResourceContract",
            json!({"owner_address": hex::encode(&c.owner), "receiver_address": hex::encode(&c.receiver), "balance": c.balance, "resource": "ENERGY"}),
        ),
        _ => (
            "UnDelegateResourceContract",
            json!({"owner_address": hex::encode(&c.owner), "receiver_address": hex::encode(&c.receiver), "balance": c.balance, "resource": "ENERGY"}),
        ),
    };
    if c.lock {
        value["lock"] = json!(true);
    }
    if c.lock_period != 0 {
        value["lock_period"] = json!(c.lock_period);
    }
    json!({
        "contract": [{"parameter": {"value": value, "type_url": proto::type_url(c.contract_type)}, "type": name}],
        "ref_block_bytes": hex::encode(&raw.ref_block_bytes),
        "ref_block_hash": hex::encode(&raw.ref_block_hash),
        "expiration": raw.expiration,
        "timestamp": raw.timestamp,
    })
}
