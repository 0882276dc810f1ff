//! TRON: the java-tron HTTP client (`client`), the transaction's protobuf (`proto`) and the
//! supplier keys (`keys`). docs/tron-protocol.md is the reference for every fact used here.

pub mod client;
pub mod keys;
pub mod proto;

pub use client::{ClientError, EnergyTotals, TronClient, TronConfig};
pub use keys::{parse_keys, recover_signer, KeyError, SecretKey};
