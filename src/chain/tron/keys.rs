//! Supplier keys: secp256k1 private keys that never print, TRON address derivation
//! (Keccak-256 of the public key, docs/tron-protocol.md §1) and recoverable signatures over a
//! transaction id (§4).

use crate::config::{item_name, list_items, Origin};
use flashrent_events::TronAddress;
use k256::ecdsa::{RecoveryId, Signature, SigningKey, VerifyingKey};
use sha3::{Digest, Keccak256};
use std::fmt;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Deliberately says nothing of the text it was given.
    #[error("a private key is 64 hex characters of a valid secp256k1 scalar")]
    Malformed,
    /// Names the item by its position only: a typo next to a key must not print the key.
    #[error("{item} is not a private key: 64 hex characters (optionally 0x) of a valid secp256k1 scalar (the value is not shown)")]
    BadItem { item: String },
    #[error("signature does not recover to a public key")]
    BadSignature,
}

/// A private key. `Debug` and `Display` print nothing of it; it has no `Serialize`.
#[derive(Clone)]
pub struct SecretKey(SigningKey);

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(***)")
    }
}

impl fmt::Display for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl SecretKey {
    pub fn from_hex(text: &str) -> Result<SecretKey, KeyError> {
        let text = text.trim();
        let text = text.strip_prefix("0x").unwrap_or(text);
        let bytes = hex::decode(text).map_err(|_| KeyError::Malformed)?;
        if bytes.len() != 32 {
            return Err(KeyError::Malformed);
        }
        SigningKey::from_slice(&bytes)
            .map(SecretKey)
            .map_err(|_| KeyError::Malformed)
    }

    pub fn address(&self) -> TronAddress {
        address_of(self.0.verifying_key())
    }

    /// Signs a transaction id: 65 bytes `r || s || v` with v ∈ {0, 1}; RFC 6979, low S.
    pub fn sign_tx_id(&self, tx_id: &[u8; 32]) -> [u8; 65] {
        let (sig, recid) = self
            .0
            .sign_prehash_recoverable(tx_id)
            .expect("signing a 32-byte digest cannot fail");
        let mut out = [0u8; 65];
        out[..64].copy_from_slice(&sig.to_bytes());
        out[64] = recid.to_byte();
        out
    }
}

pub fn address_of(key: &VerifyingKey) -> TronAddress {
    let point = key.to_encoded_point(false);
    let hash = Keccak256::digest(&point.as_bytes()[1..]);
    let mut bytes = [0u8; 21];
    bytes[0] = TronAddress::PREFIX;
    bytes[1..].copy_from_slice(&hash[12..]);
    TronAddress::from_bytes(&bytes).expect("21 bytes with the 0x41 prefix")
}

/// The address whose key made `signature` over `tx_id` (v may be 0/1 or 27/28).
pub fn recover_signer(tx_id: &[u8; 32], signature: &[u8]) -> Result<TronAddress, KeyError> {
    if signature.len() != 65 {
        return Err(KeyError::BadSignature);
    }
    let sig = Signature::from_slice(&signature[..64]).map_err(|_| KeyError::BadSignature)?;
    let v = signature[64];
    let v = if v >= 27 { v - 27 } else { v };
    let recid = RecoveryId::from_byte(v).ok_or(KeyError::BadSignature)?;
    let key = VerifyingKey::recover_from_prehash(tx_id, &sig, recid)
        .map_err(|_| KeyError::BadSignature)?;
    Ok(address_of(&key))
}

/// Supplier keys from `FLASHRENT_SUPPLIER_KEYS` (separated by commas or whitespace) or the
/// file of `--supplier-keys-file` (one per line, blank lines and `#` comments skipped). The
/// text is always keys, never a path. A bad item is named by its position, never shown.
pub fn parse_keys(text: &str, origin: &Origin) -> Result<Vec<SecretKey>, KeyError> {
    list_items(text, origin)
        .into_iter()
        .map(|(position, item)| {
            SecretKey::from_hex(item).map_err(|_| KeyError::BadItem {
                item: item_name(origin, position),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vector_a_private_key_gives_the_published_address() {
        let k =
            SecretKey::from_hex("279ff36d9bf9f305af3280034bb4187c6dd299bac6b26a3c20b999c7c0d50e6e")
                .unwrap();
        assert_eq!(
            k.address().to_hex(),
            "4194a15629b2b2bbd3a5453e6d6696b2875278633b"
        );
        assert_eq!(
            k.address().to_base58(),
            "TPX6HK2NRN4XKRX1JAhbC827bm7gMmy5w1"
        );
    }

    #[test]
    fn vector_b_private_key_one() {
        let k = SecretKey::from_hex(&format!("{:064x}", 1)).unwrap();
        assert_eq!(
            k.address().to_base58(),
            "TMVQGm1qAQYVdetCeGRRkTWYYrLXuHK2HC"
        );
        assert_eq!(
            k.address().to_hex(),
            "417e5f4552091a69125d5dfcb7b8c2659029395bdf"
        );
    }

    #[test]
    fn vector_i_deterministic_low_s_signature_matches_byte_for_byte() {
        let k = SecretKey::from_hex(&format!("{:064x}", 1)).unwrap();
        let id: [u8; 32] =
            hex::decode("17821228a79904c23bd35e566f320c2d43e6940c0d44bc8d70f257f3485459bb")
                .unwrap()
                .try_into()
                .unwrap();
        let sig = k.sign_tx_id(&id);
        assert_eq!(hex::encode(sig), "3a0737c9c598a0f590ebe748f9d7a9c5f6d0c2d3e8064c91841b093bf583b95b4255e2e4430f8bbca4760a4044b778575884380fd4ab62a0f67b36474487584f01");
        assert_eq!(recover_signer(&id, &sig).unwrap(), k.address());
    }

    #[test]
    fn vectors_d_and_f_signatures_recover_their_owners() {
        for (id, sig, owner) in [
            ("17821228a79904c23bd35e566f320c2d43e6940c0d44bc8d70f257f3485459bb", "c4cfe5c76bf89fe004ff59de1a33934a9419301e21fbe1f00ee5b5faf17189797a7292e872a693e7bff145e76c43ea6f26c425be70d0e0d0440331390d0d65a401", "TQHAvs2ZFTbsd93ycTfw1Wuf1e4WsPZWCp"),
            ("363ac0b82b6ad3e0d3cad90f7d72b3eceafe36585432a3e013389db36152b6ed", "1f57fd78456136faadc5091b47f5fd27a8e1181621e49129df6a4062499429fb48ee72e5f9a9ff5bfb7f2575f01f4076f7d4b89ca382d36af46a6fa4bc749f4301", "TJAVcszse667FmSNCwU2fm6DmfM5D4AyDh"),
            ("feb334794cf361fd351728026ccf7319e6ae90eba622b9eb53c626cdcae4965c", "85a41a4e44780ffbe0841a44fd71cf621f129d98e84984cfca68e03364f781aa7f9d44177af0b40d82da052feec9f47a399ed6e51be66c5db07cb13477dcde8c01", "TJAVcszse667FmSNCwU2fm6DmfM5D4AyDh"),
        ] {
            let id: [u8; 32] = hex::decode(id).unwrap().try_into().unwrap();
            let signer = recover_signer(&id, &hex::decode(sig).unwrap()).unwrap();
            assert_eq!(signer.to_base58(), owner);
        }
    }

    #[test]
    fn a_secret_key_prints_nothing() {
        let k =
            SecretKey::from_hex("279ff36d9bf9f305af3280034bb4187c6dd299bac6b26a3c20b999c7c0d50e6e")
                .unwrap();
        assert_eq!(format!("{k:?} {k}"), "SecretKey(***) ***");
        let err = SecretKey::from_hex("279ff36d9bf9f305zz")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("279ff"));
    }

    #[test]
    fn keys_load_from_a_variable_with_any_separators_or_a_file() {
        let one = format!("{:064x}", 1);
        let two = format!("0x{:064x}", 2);
        let env = Origin::Env("FLASHRENT_SUPPLIER_KEYS");
        for text in [
            format!("{one},{two}"),
            format!("{one},{two},"),
            format!("{one}\n{two}\n"),
            format!(" {one} , \n\n{two}"),
        ] {
            assert_eq!(parse_keys(&text, &env).unwrap().len(), 2, "{text:?}");
        }
        let file = Origin::File("/keys".into());
        let text = format!("# suppliers\n{one}\n\n{two}\n");
        assert_eq!(parse_keys(&text, &file).unwrap().len(), 2);
    }

    #[test]
    fn a_bad_key_item_is_named_by_position_and_no_key_is_shown() {
        let one = format!("{:064x}", 1);
        let env = Origin::Env("FLASHRENT_SUPPLIER_KEYS");
        for (text, item) in [
            (format!("{one},\"{one}\""), "item 2"),
            (format!("\"{one}\""), "item 1"),
            (format!("{one};{one}"), "item 1"),
            (format!("{one},{}", &one[..63]), "item 2"),
            (format!("{one},{}", "f".repeat(64)), "item 2"),
        ] {
            let err = parse_keys(&text, &env).unwrap_err().to_string();
            assert!(err.contains(item), "{err}");
            assert!(!err.contains(&one[50..]), "{err}");
        }
        let file = Origin::File("/keys".into());
        let err = parse_keys(&format!("# a\n{one}\n\nzz\n"), &file)
            .unwrap_err()
            .to_string();
        assert!(err.contains("/keys: line 4"), "{err}");
    }
}
