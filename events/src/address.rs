//! TRON addresses: 21 bytes starting with 0x41, written as Base58Check (`T…`, 34 characters).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TronAddress([u8; 21]);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("not valid Base58Check (bad character or checksum)")]
    BadEncoding,
    #[error("an address is 21 bytes")]
    BadLength,
    #[error("a TRON address starts with byte 0x41")]
    BadPrefix,
}

impl TronAddress {
    pub const PREFIX: u8 = 0x41;

    pub fn parse(text: &str) -> Result<TronAddress, AddressError> {
        let bytes = bs58::decode(text.trim())
            .with_check(None)
            .into_vec()
            .map_err(|_| AddressError::BadEncoding)?;
        Self::from_bytes(&bytes)
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<TronAddress, AddressError> {
        let arr: [u8; 21] = bytes.try_into().map_err(|_| AddressError::BadLength)?;
        if arr[0] != Self::PREFIX {
            return Err(AddressError::BadPrefix);
        }
        Ok(TronAddress(arr))
    }

    /// The hex form java-tron uses when `visible` is false: `41…`, 42 characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn as_bytes(&self) -> &[u8; 21] {
        &self.0
    }

    pub fn to_base58(&self) -> String {
        bs58::encode(self.0).with_check().into_string()
    }
}

impl fmt::Display for TronAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base58())
    }
}

impl fmt::Debug for TronAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TronAddress({self})")
    }
}

impl Serialize for TronAddress {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_base58())
    }
}

impl<'de> Deserialize<'de> for TronAddress {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        TronAddress::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_vectors_decode_to_their_hex() {
        // tron-protocol.md §8 vectors A and C.
        let a = TronAddress::parse("TPX6HK2NRN4XKRX1JAhbC827bm7gMmy5w1").unwrap();
        assert_eq!(a.to_hex(), "4194a15629b2b2bbd3a5453e6d6696b2875278633b");
        let zero = TronAddress::parse("T9yD14Nj9j7xAB4dbGeiX9h8unkKHxuWwb").unwrap();
        assert_eq!(zero.to_hex(), "410000000000000000000000000000000000000000");
        assert_eq!(zero.to_base58(), "T9yD14Nj9j7xAB4dbGeiX9h8unkKHxuWwb");
    }

    #[test]
    fn the_seeds_renter_address_is_valid_but_its_example_supplier_is_not() {
        let renter = TronAddress::parse("TQ5kjKLLm9X4L2D1JgogNis6V1YoAm6sv2").unwrap();
        assert_eq!(
            renter.to_hex(),
            "419acebe100b1bddc86152d74aa53897b3b3319c16"
        );
        // The seed's sample `selected_wallet` has checksum c63a1f73 where 7d1def94 is due.
        assert_eq!(
            TronAddress::parse("TVj7RNVHNv1ym6JxWePCHnKgdvnGqr4f2S"),
            Err(AddressError::BadEncoding)
        );
    }

    #[test]
    fn a_changed_character_fails_the_checksum() {
        assert_eq!(
            TronAddress::parse("TQ5kjKLLm9X4L2D1JgogNis6V1YoAm6sv3"),
            Err(AddressError::BadEncoding)
        );
        assert_eq!(TronAddress::parse("0OIl"), Err(AddressError::BadEncoding));
    }

    #[test]
    fn a_bitcoin_address_has_the_wrong_prefix() {
        assert_eq!(
            TronAddress::parse("1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2"),
            Err(AddressError::BadPrefix)
        );
    }
}
