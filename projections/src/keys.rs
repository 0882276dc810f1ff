//! Key layout of the read-model tree. Numbers are zero-padded so keys sort numerically.

use flashrent_events::{OrderId, PartitionId, TronAddress, UserId};

pub fn checkpoint(projector: &str, partition: PartitionId) -> Vec<u8> {
    format!("c/{projector}/{partition:08}").into_bytes()
}
/// The partition's writer epoch as the projector last saw it (absent while it is 0).
pub fn fence(projector: &str, partition: PartitionId) -> Vec<u8> {
    format!("c/{projector}/{partition:08}/epoch").into_bytes()
}
/// Where the partition's current writer takes commands (from its claim).
pub fn owner(partition: PartitionId) -> Vec<u8> {
    format!("c/owner/{partition:08}").into_bytes()
}
pub fn order(id: &OrderId) -> Vec<u8> {
    format!("o/{id}").into_bytes()
}
pub fn user_order(user: UserId, id: &OrderId) -> Vec<u8> {
    format!("uo/{:020}/{id}", user.get()).into_bytes()
}
pub fn user_orders_prefix(user: UserId) -> Vec<u8> {
    format!("uo/{:020}/", user.get()).into_bytes()
}
pub fn balance(user: UserId) -> Vec<u8> {
    format!("b/{:020}", user.get()).into_bytes()
}
pub fn ledger(user: UserId, seq: u64) -> Vec<u8> {
    format!("l/{:020}/{seq:012}", user.get()).into_bytes()
}
pub fn ledger_prefix(user: UserId) -> Vec<u8> {
    format!("l/{:020}/", user.get()).into_bytes()
}
pub fn wallets(user: UserId) -> Vec<u8> {
    format!("w/{:020}", user.get()).into_bytes()
}
pub fn pool_wallet(address: &TronAddress) -> Vec<u8> {
    format!("p/{address}").into_bytes()
}
pub const POOL_PREFIX: &[u8] = b"p/";
/// Orders the saga still has work on (not refunded, rental not ended).
pub fn active(id: &OrderId) -> Vec<u8> {
    format!("a/{id}").into_bytes()
}
pub const ACTIVE_PREFIX: &[u8] = b"a/";
/// Count of orders per status, for metrics.
pub fn status_count(status: &str) -> Vec<u8> {
    format!("s/{status}").into_bytes()
}
/// Completed rentals by end time, so the rental-end timer is a range scan of what is due.
pub fn rental_end(ends_at: chrono::DateTime<chrono::Utc>, id: &OrderId) -> Vec<u8> {
    format!("e/{:020}/{id}", ends_at.timestamp_millis().max(0)).into_bytes()
}
pub const RENTAL_END_PREFIX: &[u8] = b"e/";
