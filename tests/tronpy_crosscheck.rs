//! Cross-check with an independent implementation: keys, addresses, transaction ids and
//! signatures made by our code are verified by tronpy (PyPI). `.ci/run` installs tronpy;
//! elsewhere the test is skipped, loudly, when python3 or tronpy is missing.

use flashrent::chain::tron::proto::{self, RawTransaction, ResourceContract};
use flashrent::chain::tron::SecretKey;
use serde_json::json;
use std::process::Command;

const SCRIPT: &str = r#"
import hashlib, json, sys
from tronpy.keys import PrivateKey, Signature, to_base58check_address
cases = json.load(open(sys.argv[1]))
for c in cases:
    key = PrivateKey(bytes.fromhex(c["private_key"]))
    addr = key.public_key.to_base58check_address()
    assert addr == c["address"], (addr, c["address"])
    assert to_base58check_address(c["address_hex"]) == c["address"]
    raw = bytes.fromhex(c["raw_hex"])
    txid = hashlib.sha256(raw).digest()
    assert txid.hex() == c["tx_id"], "txid"
    sig = Signature(bytes.fromhex(c["signature"]))
    signer = sig.recover_public_key_from_msg_hash(txid).to_base58check_address()
    assert signer == c["address"], (signer, c["address"])
    # RFC 6979 and low S on both sides: the same bytes.
    assert key.sign_msg_hash(txid).hex() == c["signature"], "deterministic signature differs"
print("tronpy agrees on", len(cases), "cases")
"#;

fn python_with_tronpy() -> bool {
    Command::new("python3")
        .args(["-c", "import tronpy"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[test]
fn tronpy_agrees_with_our_addresses_tx_ids_and_signatures() {
    if !python_with_tronpy() {
        eprintln!(
            "SKIPPED tronpy_agrees_with_our_addresses_tx_ids_and_signatures: python3 with tronpy \
             is not available (pip install tronpy; .ci/run installs it)"
        );
        return;
    }
    let mut cases = Vec::new();
    for (i, hex_key) in [
        "279ff36d9bf9f305af3280034bb4187c6dd299bac6b26a3c20b999c7c0d50e6e".to_owned(),
        format!("{:064x}", 1),
        "0b4d7a2f1c9e8d6b5a4f3e2d1c0b9a8f7e6d5c4b3a29180716f5e4d3c2b1a091".to_owned(),
        "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364140".to_owned(),
    ]
    .iter()
    .enumerate()
    {
        let key = SecretKey::from_hex(hex_key).unwrap();
        let owner = key.address();
        let raw = RawTransaction {
            ref_block_bytes: vec![0x12, i as u8],
            ref_block_hash: vec![0xab; 8],
            expiration: 1_800_000_060_000 + i as i64,
            timestamp: 1_800_000_000_000,
            data: vec![],
            permission_id: 0,
            contract: ResourceContract {
                contract_type: if i % 2 == 0 {
                    proto::DELEGATE_RESOURCE
                } else {
                    proto::UNDELEGATE_RESOURCE
                },
                owner: owner.as_bytes().to_vec(),
                receiver: hex::decode("41b6e708a39781c96bd399c7657780ff9fe9f052a8").unwrap(),
                resource: proto::ENERGY,
                balance: 870_829_623 + i as i64,
                lock: i == 2,
                lock_period: if i == 2 { 1200 } else { 0 },
            },
        }
        .encode();
        let id = proto::tx_id(&raw);
        cases.push(json!({
            "private_key": hex_key,
            "address": owner.to_base58(),
            "address_hex": owner.to_hex(),
            "raw_hex": hex::encode(&raw),
            "tx_id": hex::encode(id),
            "signature": hex::encode(key.sign_tx_id(&id)),
        }));
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cases.json");
    std::fs::write(&path, serde_json::to_string(&cases).unwrap()).unwrap();
    let out = Command::new("python3")
        .args(["-c", SCRIPT])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tronpy disagrees:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{}", String::from_utf8_lossy(&out.stdout).trim());
}
