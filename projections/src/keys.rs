//! Key layout of the read-model tree. Numbers are zero-padded so keys sort numerically.

use flashrent_events::{ApiKeyId, OrderId, PartitionId, TronAddress, UserId};

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
/// Orders the saga still has work on (not refunded, not yet completed), by the 16 ms their
/// UUID v7 was made in: the value is their ids (16 bytes each, ascending). One key per order
/// cost sled a tree page per ~8 pending orders, which it keeps track of in memory for good.
pub fn active_chunk(id: &OrderId) -> Vec<u8> {
    let b = id.as_uuid().as_bytes();
    let millis = u64::from_be_bytes([0, 0, b[0], b[1], b[2], b[3], b[4], b[5]]);
    format!("a/{:012x}", millis >> ACTIVE_CHUNK_SHIFT).into_bytes()
}
const ACTIVE_CHUNK_SHIFT: u32 = 4;
pub const ACTIVE_PREFIX: &[u8] = b"a/";
/// Count of orders per status, for metrics.
pub fn status_count(status: flashrent_events::OrderStatus) -> Vec<u8> {
    format!("s/{}", status.as_str()).into_bytes()
}
/// Completed rentals by end time, so the rental-end timer is a range scan of what is due.
pub fn rental_end(ends_at: chrono::DateTime<chrono::Utc>, id: &OrderId) -> Vec<u8> {
    format!("e/{:020}/{id}", ends_at.timestamp_millis().max(0)).into_bytes()
}
pub const RENTAL_END_PREFIX: &[u8] = b"e/";
/// An API key by its id.
pub fn api_key(id: &ApiKeyId) -> Vec<u8> {
    format!("k/{id}").into_bytes()
}
pub const API_KEY_PREFIX: &[u8] = b"k/";
/// An API key's id by the hex SHA-256 of the key: how a request's key is looked up.
pub fn api_key_hash(hash: &str) -> Vec<u8> {
    format!("kh/{hash}").into_bytes()
}
