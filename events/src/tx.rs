//! An order's chain transactions: their ids, the two legs an order has (the delegation, then
//! the reclaim that takes it back), and one leg's signed transaction before it settles.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A TRON transaction id: the SHA-256 of its raw bytes, written as 64 lowercase hex digits
/// (as java-tron writes it, and as every event and read model holds it).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TxId([u8; 32]);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a transaction id is 64 lowercase hex digits")]
pub struct TxIdError;

impl TxId {
    /// Exactly 64 digits of `0-9a-f`: one text per id, so an id read back writes the same.
    pub fn parse(text: &str) -> Result<TxId, TxIdError> {
        let bytes = text.as_bytes();
        if bytes.len() != 64 {
            return Err(TxIdError);
        }
        let digit = |b: u8| match b {
            b'0'..=b'9' => Ok(b - b'0'),
            b'a'..=b'f' => Ok(b - b'a' + 10),
            _ => Err(TxIdError),
        };
        let mut id = [0u8; 32];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            id[i] = digit(pair[0])? << 4 | digit(pair[1])?;
        }
        Ok(TxId(id))
    }

    /// The id of a transaction whose raw bytes hash to `hash`.
    pub fn from_bytes(hash: [u8; 32]) -> TxId {
        TxId(hash)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The id's text, written at once (read models and events write ids often).
    fn hex(&self) -> [u8; 64] {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 64];
        for (i, b) in self.0.iter().enumerate() {
            out[2 * i] = DIGITS[usize::from(b >> 4)];
            out[2 * i + 1] = DIGITS[usize::from(b & 0xf)];
        }
        out
    }
}

impl fmt::Display for TxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex = self.hex();
        f.write_str(std::str::from_utf8(&hex).expect("hex digits are ASCII"))
    }
}

impl fmt::Debug for TxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TxId({self})")
    }
}

impl Serialize for TxId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let hex = self.hex();
        s.serialize_str(std::str::from_utf8(&hex).expect("hex digits are ASCII"))
    }
}

impl<'de> Deserialize<'de> for TxId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        TxId::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// The two transactions of a rental: energy delegated to the renter, then taken back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Leg {
    Delegation,
    Reclaim,
}

impl Leg {
    /// What the leg is called in logs and refusals.
    pub fn noun(self) -> &'static str {
        match self {
            Leg::Delegation => "delegation",
            Leg::Reclaim => "reclaim",
        }
    }
}

/// A leg's transaction, signed and recorded, until it settles: its id, its bytes as hex (kept
/// so a restart can send them again: the same bytes are the same transaction), and when it
/// stops being valid (grace included).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxProgress {
    pub tx_id: TxId,
    pub signed_tx: String,
    pub expires_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4c5a7e2a0c8f1b6f9d3e2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d";

    #[test]
    fn a_transaction_id_reads_back_as_the_same_text() {
        let id = TxId::parse(ID).unwrap();
        assert_eq!(id.to_string(), ID);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{ID}\""));
        assert_eq!(serde_json::from_str::<TxId>(&json).unwrap(), id);
    }

    #[test]
    fn a_transaction_id_is_64_lowercase_hex_digits_and_nothing_else() {
        for bad in [
            "",
            &ID[1..],
            &format!("{ID}0"),
            &ID.to_uppercase(),
            &format!("{}g", &ID[1..]),
            &format!(" {}", &ID[1..]),
            "é".repeat(32).as_str(),
        ] {
            assert_eq!(TxId::parse(bad), Err(TxIdError), "{bad:?}");
            assert!(serde_json::from_str::<TxId>(&format!("\"{bad}\"")).is_err());
        }
        assert!(serde_json::from_str::<TxId>("42").is_err());
    }

    #[test]
    fn an_id_made_from_a_hash_writes_its_bytes_in_order() {
        let mut hash = [0u8; 32];
        hash[0] = 0xab;
        hash[31] = 0x01;
        let text = TxId::from_bytes(hash).to_string();
        assert!(text.starts_with("ab00"));
        assert!(text.ends_with("0001"));
        assert_eq!(TxId::parse(&text).unwrap().as_bytes(), &hash);
    }

    proptest::proptest! {
        #[test]
        fn every_hash_round_trips_through_its_text(hash in proptest::array::uniform32(proptest::num::u8::ANY)) {
            let id = TxId::from_bytes(hash);
            proptest::prop_assert_eq!(TxId::parse(&id.to_string()), Ok(id));
        }
    }
}
