//! tests/crash.rs with the event log on Kafka (see `kafka_brokers` in tests/common).
#[path = "../crash.rs"]
mod suite;
