//! JSON encoding of log records, and upcasting of events written by older schema versions.
//!
//! Every event is written at its type's current version. Decoding reads each event's
//! `type` and `schema_version` first; an old version goes through [`upcast`] step by step
//! until it has the current shape, so the log never needs rewriting. An event of a type
//! retired from [`crate::Event`] ([`RETIRED`]) decodes to no event: the record keeps its
//! other events, each with the sequence it was recorded with.

use crate::{CommandRecord, Envelope, Sun};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("record is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error(
        "event {event_type} has schema version {version}, newer than this build knows ({known})"
    )]
    FromTheFuture {
        event_type: String,
        version: u16,
        known: u16,
    },
    #[error("an event envelope is not a JSON object")]
    NotAnEnvelope,
    #[error("cannot upcast {event_type} v{version}: {why}")]
    Upcast {
        event_type: String,
        version: u16,
        why: String,
    },
}

/// Current schema version of each event type. Bump it when a payload changes shape, and
/// add the step from the previous version to [`upcast`].
pub fn current_version(event_type: &str) -> u16 {
    match event_type {
        // v1 carried the client's `cost_trx` text and no `price` in SUN, and had no `kind`.
        "OrderPlaced" => 2,
        _ => 1,
    }
}

/// Event types earlier versions wrote and nothing reads any more: each broadcast of a
/// delegation or a reclaim was recorded, though a broadcast decides nothing (the same signed
/// bytes may be sent any number of times). Dropped on decode.
pub const RETIRED: [&str; 2] = ["DelegationBroadcast", "ReclaimBroadcast"];

/// A record as the log stores it: JSON, each event at its type's current schema version.
/// What it encodes, [`decode_record`] reads back as it was:
///
/// ```
/// use chrono::{TimeZone, Utc};
/// use flashrent_events::*;
///
/// let user = UserId::parse("123").unwrap();
/// let event = Event::BalanceCredited {
///     user_id: user,
///     amount: Sun::parse_trx("25.5").unwrap(),
///     reference: "deposit-42".into(),
///     balance_after: Sun::parse_trx("25.5").unwrap(),
/// };
/// let record = CommandRecord {
///     command_id: uuid::Uuid::from_u128(1),
///     key: user.to_string(),
///     writer_epoch: 0,
///     events: vec![Envelope {
///         event_id: uuid::Uuid::from_u128(2),
///         aggregate: AggregateKind::UserAccount,
///         aggregate_id: user.to_string(),
///         sequence: 1,
///         occurred_at: Utc.timestamp_opt(1_700_000_000, 0).unwrap(),
///         schema_version: event.schema_version(),
///         correlation_id: uuid::Uuid::from_u128(3),
///         causation_id: uuid::Uuid::from_u128(1),
///         event,
///     }],
///     owner: None,
/// };
/// let bytes = encode_record(&record);
/// assert_eq!(decode_record(&bytes).unwrap(), record);
/// ```
pub fn encode_record(record: &CommandRecord) -> Vec<u8> {
    serde_json::to_vec(record).expect("events serialize to JSON infallibly")
}

#[derive(Deserialize)]
struct WireRecord<'a> {
    command_id: uuid::Uuid,
    key: String,
    #[serde(default)]
    writer_epoch: u64,
    #[serde(borrow)]
    events: Vec<&'a RawValue>,
    #[serde(default)]
    owner: Option<String>,
}

#[derive(Deserialize)]
struct WireHead<'a> {
    #[serde(rename = "type")]
    event_type: &'a str,
    schema_version: u16,
}

pub fn decode_record(bytes: &[u8]) -> Result<CommandRecord, DecodeError> {
    let wire: WireRecord = serde_json::from_slice(bytes)?;
    let mut events = Vec::with_capacity(wire.events.len());
    for raw in wire.events {
        let head: WireHead = serde_json::from_str(raw.get())?;
        if RETIRED.contains(&head.event_type) {
            continue;
        }
        let known = current_version(head.event_type);
        let envelope: Envelope = if head.schema_version == known {
            serde_json::from_str(raw.get())?
        } else if head.schema_version > known {
            return Err(DecodeError::FromTheFuture {
                event_type: head.event_type.to_owned(),
                version: head.schema_version,
                known,
            });
        } else {
            let mut value: Value = serde_json::from_str(raw.get())?;
            // The head also reads from a JSON array (serde takes a struct from a sequence),
            // so an envelope that is not an object gets this far.
            let Some(obj) = value.as_object_mut() else {
                return Err(DecodeError::NotAnEnvelope);
            };
            let event_type = head.event_type.to_owned();
            let mut version = head.schema_version;
            let mut payload = match obj.remove("payload") {
                Some(Value::Object(p)) => p,
                _ => Map::new(),
            };
            while version < known {
                upcast(&event_type, version, &mut payload).map_err(|why| DecodeError::Upcast {
                    event_type: event_type.clone(),
                    version,
                    why,
                })?;
                version += 1;
            }
            obj.insert("payload".into(), Value::Object(payload));
            obj.insert("schema_version".into(), Value::from(known));
            serde_json::from_value(value)?
        };
        events.push(envelope);
    }
    Ok(CommandRecord {
        command_id: wire.command_id,
        key: wire.key,
        writer_epoch: wire.writer_epoch,
        events,
        owner: wire.owner,
    })
}

/// Rewrites a payload of `version` into the shape of `version + 1`.
fn upcast(event_type: &str, version: u16, payload: &mut Map<String, Value>) -> Result<(), String> {
    match (event_type, version) {
        ("OrderPlaced", 1) => {
            let cost = match payload.remove("cost_trx") {
                Some(Value::String(s)) => s,
                other => return Err(format!("cost_trx should be decimal text, found {other:?}")),
            };
            let price = Sun::parse_trx(&cost).map_err(|e| e.to_string())?;
            payload.insert("price".into(), Value::from(price.as_sun()));
            payload
                .entry("kind")
                .or_insert_with(|| Value::from("rental"));
            Ok(())
        }
        _ => Err("no upcaster for this version".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Event, OrderKind};

    #[test]
    fn an_order_placed_v1_record_decodes_into_the_current_shape() {
        let v1 = r#"{"command_id":"0190a1b2-0000-7000-8000-000000000001","key":"123","events":[{
            "event_id":"0190a1b2-0000-7000-8000-000000000002","aggregate":"order",
            "aggregate_id":"550e8400-e29b-41d4-a716-446655440000","sequence":1,
            "occurred_at":"2023-08-23T14:00:00Z","schema_version":1,
            "correlation_id":"0190a1b2-0000-7000-8000-000000000003",
            "causation_id":"0190a1b2-0000-7000-8000-000000000001",
            "type":"OrderPlaced","payload":{"order_id":"550e8400-e29b-41d4-a716-446655440000",
            "user_id":"123","energy":65000,"duration":"1h",
            "receive_address":"TQ5kjKLLm9X4L2D1JgogNis6V1YoAm6sv2","cost_trx":"5.85",
            "estimated_completion":"2023-08-23T14:05:00Z"}}]}"#;
        let record = decode_record(v1.as_bytes()).unwrap();
        let env = &record.events[0];
        assert_eq!(env.schema_version, 2);
        match &env.event {
            Event::OrderPlaced { price, kind, .. } => {
                assert_eq!(price.as_sun(), 5_850_000);
                assert_eq!(*kind, OrderKind::Rental);
            }
            other => panic!("unexpected {other:?}"),
        }
        // Re-encoding writes the current version, which decodes without upcasting.
        let again = decode_record(&encode_record(&record)).unwrap();
        assert_eq!(again, record);
    }

    /// A record of an earlier version: a delegation signed, then its broadcast recorded.
    const WITH_BROADCAST: &str = r#"{"command_id":"0190a1b2-0000-7000-8000-000000000001","key":"123","events":[
        {"event_id":"0190a1b2-0000-7000-8000-000000000002","aggregate":"order",
        "aggregate_id":"550e8400-e29b-41d4-a716-446655440000","sequence":3,
        "occurred_at":"2023-08-23T14:00:00Z","schema_version":1,
        "correlation_id":"0190a1b2-0000-7000-8000-000000000003",
        "causation_id":"0190a1b2-0000-7000-8000-000000000001","type":"DelegationSigned",
        "payload":{"order_id":"550e8400-e29b-41d4-a716-446655440000",
        "tx_id":"4c5a7e2a0c8f1b6f9d3e2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d",
        "signed_tx":"0a02","expires_at":"2023-08-23T14:01:00Z"}},
        {"event_id":"0190a1b2-0000-7000-8000-000000000004","aggregate":"order",
        "aggregate_id":"550e8400-e29b-41d4-a716-446655440000","sequence":4,
        "occurred_at":"2023-08-23T14:00:00Z","schema_version":1,
        "correlation_id":"0190a1b2-0000-7000-8000-000000000003",
        "causation_id":"0190a1b2-0000-7000-8000-000000000001","type":"DelegationBroadcast",
        "payload":{"order_id":"550e8400-e29b-41d4-a716-446655440000",
        "tx_id":"4c5a7e2a0c8f1b6f9d3e2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d"}},
        {"event_id":"0190a1b2-0000-7000-8000-000000000005","aggregate":"order",
        "aggregate_id":"550e8400-e29b-41d4-a716-446655440000","sequence":5,
        "occurred_at":"2023-08-23T14:00:03Z","schema_version":1,
        "correlation_id":"0190a1b2-0000-7000-8000-000000000003",
        "causation_id":"0190a1b2-0000-7000-8000-000000000006","type":"ReclaimBroadcast",
        "payload":{"order_id":"550e8400-e29b-41d4-a716-446655440000",
        "tx_id":"5c5a7e2a0c8f1b6f9d3e2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d"}}]}"#;

    #[test]
    fn retired_broadcast_events_decode_to_no_event_and_the_rest_keep_their_sequences() {
        let record = decode_record(WITH_BROADCAST.as_bytes()).unwrap();
        assert_eq!(record.events.len(), 1);
        let env = &record.events[0];
        assert_eq!(env.sequence, 3);
        match &env.event {
            Event::DelegationSigned { tx_id, .. } => assert_eq!(
                tx_id.to_string(),
                "4c5a7e2a0c8f1b6f9d3e2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d"
            ),
            other => panic!("unexpected {other:?}"),
        }
        // Written again, the record holds what was kept, as it was.
        let again = decode_record(&encode_record(&record)).unwrap();
        assert_eq!(again, record);
    }

    #[test]
    fn a_record_of_retired_events_alone_decodes_with_no_events() {
        let only: serde_json::Value = serde_json::from_str(WITH_BROADCAST).unwrap();
        let mut only = only;
        let events = only["events"].as_array_mut().unwrap();
        events.remove(0);
        let record = decode_record(only.to_string().as_bytes()).unwrap();
        assert!(record.events.is_empty());
        assert_eq!(record.key, "123");
        assert!(!record.is_claim());
    }

    #[test]
    fn a_signed_delegation_is_written_as_before() {
        let record = decode_record(WITH_BROADCAST.as_bytes()).unwrap();
        let written: serde_json::Value = serde_json::from_slice(&encode_record(&record)).unwrap();
        let payload = &written["events"][0]["payload"];
        assert_eq!(
            payload,
            &serde_json::json!({
                "order_id": "550e8400-e29b-41d4-a716-446655440000",
                "tx_id": "4c5a7e2a0c8f1b6f9d3e2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d",
                "signed_tx": "0a02",
                "expires_at": "2023-08-23T14:01:00Z",
            })
        );
        assert_eq!(written["events"][0]["type"], "DelegationSigned");
    }

    #[test]
    fn an_envelope_written_as_an_array_is_an_error_not_a_panic() {
        let rec = r#"{"command_id":"0190a1b2-0000-7000-8000-000000000001","key":"k",
            "events":[["OrderPlaced", 1]]}"#;
        assert!(matches!(
            decode_record(rec.as_bytes()),
            Err(DecodeError::NotAnEnvelope)
        ));
    }

    /// Records as the log holds them, with any of their bytes changed, or cut short.
    fn damaged(record: &'static str) -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        let len = record.len();
        (
            proptest::collection::vec((0..len, any::<u8>()), 0..4),
            0..=len,
        )
            .prop_map(move |(changes, cut)| {
                let mut bytes = record.as_bytes().to_vec();
                for (at, b) in changes {
                    bytes[at] = b;
                }
                bytes.truncate(cut);
                bytes
            })
    }

    const V1_RECORD: &str = r#"{"command_id":"0190a1b2-0000-7000-8000-000000000001","key":"123","events":[{"event_id":"0190a1b2-0000-7000-8000-000000000002","aggregate":"order","aggregate_id":"550e8400-e29b-41d4-a716-446655440000","sequence":1,"occurred_at":"2023-08-23T14:00:00Z","schema_version":1,"correlation_id":"0190a1b2-0000-7000-8000-000000000003","causation_id":"0190a1b2-0000-7000-8000-000000000001","type":"OrderPlaced","payload":{"order_id":"550e8400-e29b-41d4-a716-446655440000","user_id":"123","energy":65000,"duration":"1h","receive_address":"TQ5kjKLLm9X4L2D1JgogNis6V1YoAm6sv2","cost_trx":"5.85","estimated_completion":"2023-08-23T14:05:00Z"}}]}"#;

    proptest::proptest! {
        #[test]
        fn any_bytes_decode_or_are_refused_without_panicking(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let _ = decode_record(&bytes);
        }

        #[test]
        fn a_damaged_record_decodes_or_is_refused_without_panicking(bytes in damaged(V1_RECORD)) {
            if let Ok(record) = decode_record(&bytes) {
                // Whatever decodes re-encodes into a record that decodes to the same thing.
                proptest::prop_assert_eq!(decode_record(&encode_record(&record)).ok(), Some(record));
            }
        }
    }

    #[test]
    fn a_version_from_the_future_is_an_error_not_a_guess() {
        let rec = r#"{"command_id":"0190a1b2-0000-7000-8000-000000000001","key":"k","events":[{
            "event_id":"0190a1b2-0000-7000-8000-000000000002","aggregate":"user_account",
            "aggregate_id":"1","sequence":1,"occurred_at":"2023-08-23T14:00:00Z","schema_version":9,
            "correlation_id":"0190a1b2-0000-7000-8000-000000000003",
            "causation_id":"0190a1b2-0000-7000-8000-000000000001",
            "type":"WalletAdded","payload":{}}]}"#;
        assert!(matches!(
            decode_record(rec.as_bytes()),
            Err(DecodeError::FromTheFuture { .. })
        ));
    }
}
