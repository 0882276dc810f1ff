//! tests/concurrency.rs with the event log on Kafka (see `kafka_brokers` in tests/common).
#[path = "../concurrency.rs"]
mod suite;
