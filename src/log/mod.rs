//! Backends of the event log. Both implement [`flashrent_events::EventLog`].

pub mod embedded;
pub mod kafka;

pub use embedded::EmbeddedLog;
pub use kafka::{KafkaLog, KafkaSettings};
