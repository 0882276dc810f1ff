//! tests/api.rs with the event log on Kafka (see `kafka_brokers` in tests/common).
#[path = "../api.rs"]
mod suite;
