//! tests/chain_saga.rs with the event log on Kafka (see `kafka_brokers` in tests/common).
#[path = "../chain_saga.rs"]
mod suite;
