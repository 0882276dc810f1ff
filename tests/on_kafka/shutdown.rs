//! tests/shutdown.rs with the event log on Kafka (see `kafka_brokers` in tests/common).
#[path = "../shutdown.rs"]
mod suite;
