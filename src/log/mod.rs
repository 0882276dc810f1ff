//! Backends of the event log. Both implement [`flashrent_events::EventLog`].

pub mod embedded;

pub use embedded::EmbeddedLog;
