//! The few protobuf messages of a TRON transaction, encoded and decoded by hand
//! (docs/tron-protocol.md §4.1). The encoder is canonical — fields in number order, proto3
//! defaults omitted — so bytes rebuilt from an intent can be compared with a node's bytes.

use sha2::{Digest, Sha256};

pub const DELEGATE_RESOURCE: u64 = 57;
pub const UNDELEGATE_RESOURCE: u64 = 58;
pub const TRANSFER: u64 = 1;
pub const ENERGY: u64 = 1;

pub fn type_url(contract_type: u64) -> Option<&'static str> {
    match contract_type {
        TRANSFER => Some("type.googleapis.com/protocol.TransferContract"),
        DELEGATE_RESOURCE => Some("type.googleapis.com/protocol.DelegateResourceContract"),
        UNDELEGATE_RESOURCE => Some("type.googleapis.com/protocol.UnDelegateResourceContract"),
        _ => None,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("truncated protobuf")]
    Truncated,
    #[error("unsupported wire type {0}")]
    WireType(u8),
    #[error("unexpected field {0}")]
    UnexpectedField(u64),
    #[error("{0}")]
    Invalid(&'static str),
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_key(out: &mut Vec<u8>, field: u64, wire: u64) {
    put_varint(out, (field << 3) | wire);
}

fn put_uint(out: &mut Vec<u8>, field: u64, v: u64) {
    if v != 0 {
        put_key(out, field, 0);
        put_varint(out, v);
    }
}

fn put_bytes(out: &mut Vec<u8>, field: u64, b: &[u8]) {
    if !b.is_empty() {
        put_key(out, field, 2);
        put_varint(out, b.len() as u64);
        out.extend_from_slice(b);
    }
}

/// One field as read from the wire.
#[derive(Debug, Clone, Copy)]
enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

fn get_varint(b: &[u8], pos: &mut usize) -> Result<u64, DecodeError> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*pos).ok_or(DecodeError::Truncated)?;
        *pos += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Ok(v);
        }
    }
    Err(DecodeError::Invalid("varint too long"))
}

fn fields(b: &[u8]) -> Result<Vec<(u64, Value<'_>)>, DecodeError> {
    let mut pos = 0;
    let mut out = Vec::new();
    while pos < b.len() {
        let key = get_varint(b, &mut pos)?;
        let (field, wire) = (key >> 3, (key & 7) as u8);
        let value = match wire {
            0 => Value::Varint(get_varint(b, &mut pos)?),
            2 => {
                let len = get_varint(b, &mut pos)? as usize;
                let end = pos.checked_add(len).ok_or(DecodeError::Truncated)?;
                let v = b.get(pos..end).ok_or(DecodeError::Truncated)?;
                pos = end;
                Value::Bytes(v)
            }
            w => return Err(DecodeError::WireType(w)),
        };
        out.push((field, value));
    }
    Ok(out)
}

fn varint(v: Value<'_>) -> Result<u64, DecodeError> {
    match v {
        Value::Varint(v) => Ok(v),
        Value::Bytes(_) => Err(DecodeError::Invalid("expected a varint")),
    }
}

fn bytes(v: Value<'_>) -> Result<&[u8], DecodeError> {
    match v {
        Value::Bytes(b) => Ok(b),
        Value::Varint(_) => Err(DecodeError::Invalid("expected bytes")),
    }
}

/// `DelegateResourceContract` (57) or `UnDelegateResourceContract` (58, no lock fields);
/// `TransferContract` (1) maps owner/to/amount onto owner/receiver/balance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceContract {
    pub contract_type: u64,
    pub owner: Vec<u8>,
    pub receiver: Vec<u8>,
    pub resource: u64,
    pub balance: i64,
    pub lock: bool,
    pub lock_period: i64,
}

impl ResourceContract {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_bytes(&mut out, 1, &self.owner);
        if self.contract_type == TRANSFER {
            put_bytes(&mut out, 2, &self.receiver);
            put_uint(&mut out, 3, self.balance as u64);
            return out;
        }
        put_uint(&mut out, 2, self.resource);
        put_uint(&mut out, 3, self.balance as u64);
        put_bytes(&mut out, 4, &self.receiver);
        if self.contract_type == DELEGATE_RESOURCE {
            put_uint(&mut out, 5, u64::from(self.lock));
            put_uint(&mut out, 6, self.lock_period as u64);
        }
        out
    }

    pub fn decode(contract_type: u64, b: &[u8]) -> Result<ResourceContract, DecodeError> {
        let mut c = ResourceContract {
            contract_type,
            owner: vec![],
            receiver: vec![],
            resource: 0,
            balance: 0,
            lock: false,
            lock_period: 0,
        };
        for (f, v) in fields(b)? {
            match (contract_type, f) {
                (_, 1) => c.owner = bytes(v)?.to_vec(),
                (TRANSFER, 2) => c.receiver = bytes(v)?.to_vec(),
                (TRANSFER, 3) => c.balance = varint(v)? as i64,
                (TRANSFER, _) => return Err(DecodeError::UnexpectedField(f)),
                (_, 2) => c.resource = varint(v)?,
                (_, 3) => c.balance = varint(v)? as i64,
                (_, 4) => c.receiver = bytes(v)?.to_vec(),
                (DELEGATE_RESOURCE, 5) => c.lock = varint(v)? != 0,
                (DELEGATE_RESOURCE, 6) => c.lock_period = varint(v)? as i64,
                _ => return Err(DecodeError::UnexpectedField(f)),
            }
        }
        Ok(c)
    }
}

/// `Transaction.raw` with its one contract. Unused fields (auths, scripts, fee_limit…) are
/// refused by the decoder rather than skipped: we never sign what we do not understand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawTransaction {
    pub ref_block_bytes: Vec<u8>,
    pub ref_block_hash: Vec<u8>,
    pub expiration: i64,
    pub timestamp: i64,
    /// Memo; always empty in what we build.
    pub data: Vec<u8>,
    pub permission_id: u64,
    pub contract: ResourceContract,
}

impl RawTransaction {
    pub fn encode(&self) -> Vec<u8> {
        let mut any = Vec::new();
        put_bytes(
            &mut any,
            1,
            type_url(self.contract.contract_type)
                .unwrap_or_default()
                .as_bytes(),
        );
        put_bytes(&mut any, 2, &self.contract.encode());
        let mut contract = Vec::new();
        put_uint(&mut contract, 1, self.contract.contract_type);
        put_bytes(&mut contract, 2, &any);
        put_uint(&mut contract, 5, self.permission_id);

        let mut out = Vec::new();
        put_bytes(&mut out, 1, &self.ref_block_bytes);
        put_bytes(&mut out, 4, &self.ref_block_hash);
        put_uint(&mut out, 8, self.expiration as u64);
        put_bytes(&mut out, 10, &self.data);
        put_bytes(&mut out, 11, &contract);
        put_uint(&mut out, 14, self.timestamp as u64);
        out
    }

    pub fn decode(b: &[u8]) -> Result<RawTransaction, DecodeError> {
        let (mut rbb, mut rbh, mut exp, mut ts, mut data) = (vec![], vec![], 0, 0, vec![]);
        let mut contracts = Vec::new();
        for (f, v) in fields(b)? {
            match f {
                1 => rbb = bytes(v)?.to_vec(),
                4 => rbh = bytes(v)?.to_vec(),
                8 => exp = varint(v)? as i64,
                10 => data = bytes(v)?.to_vec(),
                11 => contracts.push(bytes(v)?),
                14 => ts = varint(v)? as i64,
                _ => return Err(DecodeError::UnexpectedField(f)),
            }
        }
        let [contract] = contracts[..] else {
            return Err(DecodeError::Invalid("contract size should be exactly 1"));
        };
        let (mut ctype, mut any, mut permission_id) = (0, None, 0);
        for (f, v) in fields(contract)? {
            match f {
                1 => ctype = varint(v)?,
                2 => any = Some(bytes(v)?),
                5 => permission_id = varint(v)?,
                _ => return Err(DecodeError::UnexpectedField(f)),
            }
        }
        let any = any.ok_or(DecodeError::Invalid("contract without parameter"))?;
        let (mut url, mut value) = (&[][..], &[][..]);
        for (f, v) in fields(any)? {
            match f {
                1 => url = bytes(v)?,
                2 => value = bytes(v)?,
                _ => return Err(DecodeError::UnexpectedField(f)),
            }
        }
        let expected = type_url(ctype).ok_or(DecodeError::Invalid("unsupported contract type"))?;
        if url != expected.as_bytes() {
            return Err(DecodeError::Invalid(
                "type_url does not match the contract type",
            ));
        }
        Ok(RawTransaction {
            ref_block_bytes: rbb,
            ref_block_hash: rbh,
            expiration: exp,
            timestamp: ts,
            data,
            permission_id,
            contract: ResourceContract::decode(ctype, value)?,
        })
    }
}

/// The transaction id: SHA-256 of the raw bytes.
pub fn tx_id(raw: &[u8]) -> [u8; 32] {
    Sha256::digest(raw).into()
}

/// A signed `Transaction` (raw_data = 1, signature = 2), the body of `/wallet/broadcasthex`.
pub fn encode_signed(raw: &[u8], signatures: &[[u8; 65]]) -> Vec<u8> {
    let mut out = Vec::new();
    put_key(&mut out, 1, 2);
    put_varint(&mut out, raw.len() as u64);
    out.extend_from_slice(raw);
    for s in signatures {
        put_bytes(&mut out, 2, s);
    }
    out
}

/// Splits a signed `Transaction` into its raw bytes and signatures (`ret` is ignored).
pub fn decode_signed(b: &[u8]) -> Result<(Vec<u8>, Vec<Vec<u8>>), DecodeError> {
    let (mut raw, mut sigs) = (None, Vec::new());
    for (f, v) in fields(b)? {
        match f {
            1 => raw = Some(bytes(v)?.to_vec()),
            2 => sigs.push(bytes(v)?.to_vec()),
            5 => {}
            _ => return Err(DecodeError::UnexpectedField(f)),
        }
    }
    Ok((raw.ok_or(DecodeError::Invalid("no raw_data"))?, sigs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    const F_RAW: &str = "0a020000220819b59068c6058ff440daf691b4d1305a720839126e0a35747970652e676f6f676c65617069732e636f6d2f70726f746f636f6c2e44656c65676174655265736f75726365436f6e747261637412350a154159e3741a68ec3e1ebba80ad809d5ccd31674236e1880ade2042215419a9afe56e155ef0ff3f680d00ecf19deff60bdca280170d0c8eba9d130";
    const G_RAW: &str = "0a020000220819b59068c6058ff4408b9aa3b4d1305a71083a126d0a37747970652e676f6f676c65617069732e636f6d2f70726f746f636f6c2e556e44656c65676174655265736f75726365436f6e747261637412320a154159e3741a68ec3e1ebba80ad809d5ccd31674236e18c0843d2215419a9afe56e155ef0ff3f680d00ecf19deff60bdca7088ecfca9d130";
    const J_RAW: &str = "0a024f1622084f8a4770d0ae6bef40d8cad28791345a78083912740a35747970652e676f6f676c65617069732e636f6d2f70726f746f636f6c2e44656c65676174655265736f75726365436f6e7472616374123b0a1541c8599111f29c1e1e061265b4af93ea1f274ad78a100118c096b102221541b6e708a39781c96bd399c7657780ff9fe9f052a828013080e10170dc80cf879134";

    #[test]
    fn vector_e_offline_transfer_encodes_to_the_published_tx_id() {
        let raw = RawTransaction {
            ref_block_bytes: h("6431"),
            ref_block_hash: h("212a13dbe72ac5c0"),
            expiration: 1751466492131,
            timestamp: 1751466432131,
            data: vec![],
            permission_id: 0,
            contract: ResourceContract {
                contract_type: TRANSFER,
                owner: h("4194a15629b2b2bbd3a5453e6d6696b2875278633b"),
                receiver: h("413c9b65b212316904572826240224750eccce29a2"),
                resource: 0,
                balance: 1,
                lock: false,
                lock_period: 0,
            },
        };
        let bytes = raw.encode();
        assert_eq!(
            hex::encode(tx_id(&bytes)),
            "c93cdd6b4d9f5b3c617060ea0a9c7b6080d9855f599cc987f69105a5e3e9c9b4"
        );
        assert_eq!(RawTransaction::decode(&bytes).unwrap(), raw);
    }

    #[test]
    fn vectors_f_g_j_decode_and_reencode_byte_for_byte() {
        for (raw, id, ctype, balance, resource, lock, period) in [
            (
                F_RAW,
                "363ac0b82b6ad3e0d3cad90f7d72b3eceafe36585432a3e013389db36152b6ed",
                57,
                10_000_000,
                0,
                true,
                0,
            ),
            (
                G_RAW,
                "feb334794cf361fd351728026ccf7319e6ae90eba622b9eb53c626cdcae4965c",
                58,
                1_000_000,
                0,
                false,
                0,
            ),
            (
                J_RAW,
                "beb147f9e5d599be38715bc855f16ece543542ac3a13e5ef5a9ffe1c45d1103e",
                57,
                5_000_000,
                1,
                true,
                28_800,
            ),
        ] {
            let bytes = h(raw);
            assert_eq!(hex::encode(tx_id(&bytes)), id);
            let tx = RawTransaction::decode(&bytes).unwrap();
            assert_eq!(tx.contract.contract_type, ctype);
            assert_eq!(tx.contract.balance, balance);
            assert_eq!(tx.contract.resource, resource);
            assert_eq!(tx.contract.lock, lock);
            assert_eq!(tx.contract.lock_period, period);
            assert_eq!(hex::encode(tx.encode()), raw);
        }
    }

    #[test]
    fn vector_h_signed_transaction_is_raw_plus_signature() {
        let sig: [u8; 65] = h("1f57fd78456136faadc5091b47f5fd27a8e1181621e49129df6a4062499429fb48ee72e5f9a9ff5bfb7f2575f01f4076f7d4b89ca382d36af46a6fa4bc749f4301").try_into().unwrap();
        let signed = encode_signed(&h(F_RAW), &[sig]);
        assert_eq!(signed.len(), 214);
        assert_eq!(hex::encode(&signed), "0a90010a020000220819b59068c6058ff440daf691b4d1305a720839126e0a35747970652e676f6f676c65617069732e636f6d2f70726f746f636f6c2e44656c65676174655265736f75726365436f6e747261637412350a154159e3741a68ec3e1ebba80ad809d5ccd31674236e1880ade2042215419a9afe56e155ef0ff3f680d00ecf19deff60bdca280170d0c8eba9d13012411f57fd78456136faadc5091b47f5fd27a8e1181621e49129df6a4062499429fb48ee72e5f9a9ff5bfb7f2575f01f4076f7d4b89ca382d36af46a6fa4bc749f4301");
        let (raw, sigs) = decode_signed(&signed).unwrap();
        assert_eq!(raw, h(F_RAW));
        assert_eq!(sigs, vec![sig.to_vec()]);
    }

    #[test]
    fn unknown_fields_are_refused() {
        let mut bytes = h(J_RAW);
        bytes.extend_from_slice(&[0x90, 0x01, 0x05]); // fee_limit = 5
        assert!(RawTransaction::decode(&bytes).is_err());
    }

    /// A published transaction with a few of its bytes changed, or cut short.
    fn damaged() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        let len = h(F_RAW).len();
        (
            proptest::collection::vec((0..len, any::<u8>()), 0..4),
            0..=len,
        )
            .prop_map(|(changes, cut)| {
                let mut bytes = h(F_RAW);
                for (at, b) in changes {
                    bytes[at] = b;
                }
                bytes.truncate(cut);
                bytes
            })
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_decode_or_are_refused_without_panicking(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = RawTransaction::decode(&bytes);
            let _ = decode_signed(&bytes);
            for ctype in [TRANSFER, DELEGATE_RESOURCE, UNDELEGATE_RESOURCE] {
                let _ = ResourceContract::decode(ctype, &bytes);
            }
        }

        #[test]
        fn a_damaged_transaction_decodes_or_is_refused_without_panicking(bytes in damaged()) {
            if let Ok(tx) = RawTransaction::decode(&bytes) {
                // What decodes encodes into bytes that decode to the same transaction.
                proptest::prop_assert_eq!(RawTransaction::decode(&tx.encode()).ok(), Some(tx));
            }
            let _ = decode_signed(&bytes);
        }
    }
}
