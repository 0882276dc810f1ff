//! TRON addresses: 21 bytes starting with 0x41, written as Base58Check (`T…`, 34 characters).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// Kept with its Base58Check text: addresses are written out (events, views, API bodies)
/// far more often than they are parsed, and encoding costs two SHA-256 rounds each time.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TronAddress {
    bytes: [u8; 21],
    text: [u8; TronAddress::TEXT_LEN],
}

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
    /// Every 21-byte value starting with 0x41, with its 4-byte checksum, is 34 Base58 digits.
    const TEXT_LEN: usize = 34;

    pub fn parse(text: &str) -> Result<TronAddress, AddressError> {
        let text = text.trim();
        let bytes = bs58::decode(text)
            .with_check(None)
            .into_vec()
            .map_err(|_| AddressError::BadEncoding)?;
        let bytes = Self::checked(&bytes)?;
        // Base58 has one spelling per byte string, so the text that decoded is the text.
        match text.as_bytes().try_into() {
            Ok(text) => Ok(TronAddress { bytes, text }),
            Err(_) => Self::from_bytes(&bytes),
        }
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<TronAddress, AddressError> {
        let bytes = Self::checked(bytes)?;
        let mut text = [0u8; Self::TEXT_LEN];
        let written = bs58::encode(bytes)
            .with_check()
            .onto(&mut text[..])
            .map_err(|_| AddressError::BadLength)?;
        debug_assert_eq!(written, Self::TEXT_LEN);
        Ok(TronAddress { bytes, text })
    }

    fn checked(bytes: &[u8]) -> Result<[u8; 21], AddressError> {
        let bytes: [u8; 21] = bytes.try_into().map_err(|_| AddressError::BadLength)?;
        if bytes[0] != Self::PREFIX {
            return Err(AddressError::BadPrefix);
        }
        Ok(bytes)
    }

    /// The hex form java-tron uses when `visible` is false: `41…`, 42 characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 21] {
        &self.bytes
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.text).expect("Base58 digits are ASCII")
    }

    pub fn to_base58(&self) -> String {
        self.as_str().to_owned()
    }
}

impl fmt::Display for TronAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for TronAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TronAddress({self})")
    }
}

impl Serialize for TronAddress {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
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
        // docs/tron-protocol.md §8 vectors A and C.
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
        // The product document's (docs/product.md) sample `selected_wallet` has checksum c63a1f73 where 7d1def94 is due.
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

    proptest::proptest! {
        #[test]
        fn any_address_reads_back_from_its_text(body: [u8; 20]) {
            let mut bytes = [TronAddress::PREFIX; 21];
            bytes[1..].copy_from_slice(&body);
            let a = TronAddress::from_bytes(&bytes).unwrap();
            proptest::prop_assert_eq!(a.as_str(), bs58::encode(bytes).with_check().into_string());
            proptest::prop_assert_eq!(TronAddress::parse(a.as_str()), Ok(a));
        }

        #[test]
        fn any_text_is_an_address_or_refused_without_panicking(text in "\\PC{0,40}") {
            if let Ok(a) = TronAddress::parse(&text) {
                proptest::prop_assert_eq!(TronAddress::parse(a.as_str()), Ok(a));
            }
        }

        #[test]
        fn any_bytes_are_an_address_or_refused_without_panicking(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..30)) {
            let _ = TronAddress::from_bytes(&bytes);
        }
    }

    #[test]
    fn a_bitcoin_address_has_the_wrong_prefix() {
        assert_eq!(
            TronAddress::parse("1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2"),
            Err(AddressError::BadPrefix)
        );
    }
}
