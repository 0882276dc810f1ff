//! The vocabulary of flashrent's event log: the value types every event is made of
//! (each constructed only through its parser), the events themselves, the envelope
//! that carries them, their JSON encoding with upcasting of old schema versions,
//! and the [`EventLog`] trait that both log backends implement.

pub mod address;
pub mod callback;
pub mod codec;
pub mod envelope;
pub mod error;
pub mod event;
pub mod fence;
pub mod ids;
pub mod log;
pub mod rental;
pub mod sun;
pub mod tx;

pub use address::TronAddress;
pub use callback::{forbidden_address, ip_literal_host, redact_url, CallbackUrl, CallbackUrlError};
pub use codec::{decode_record, encode_record, DecodeError};
pub use envelope::{AggregateKind, CommandRecord, Envelope};
pub use error::ErrorChain;
pub use event::{
    Event, FailureReason, KeyScope, KeyUse, LegChange, OrderKind, OrderStatus, API_KEYS_KEY,
    WALLET_POOL_KEY,
};
pub use fence::{Admission, EpochFence};
pub use ids::{ApiKeyId, OrderId, UserId};
pub use log::{
    partition_for_key, AppendFuture, ErrorSource, EventLog, LogError, Offset, OwnedPartitions,
    PartitionId, RecordMeta, StoredRecord,
};
pub use rental::{EnergyAmount, RentalDuration};
pub use sun::{Sun, SunDelta};
pub use tx::{Leg, TxId, TxIdError, TxProgress};
