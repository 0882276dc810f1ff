//! Backends of the event log. Both implement [`flashrent_events::EventLog`].

pub mod embedded;
#[cfg(test)]
pub mod held_back;
pub mod kafka;

pub use embedded::EmbeddedLog;
pub use kafka::{KafkaLog, KafkaSettings};
