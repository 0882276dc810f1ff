//! Several `serve` instances on one Kafka topic. A consumer group decides which instance
//! writes which partition (`membership`): each instance claims the partitions it is given
//! (the claim fences out any earlier writer, see `flashrent_events::fence`), and partitions
//! move to the live instances when one leaves or dies. A command for a partition written
//! elsewhere is sent to its writer as data (`remote`).

pub mod membership;
pub mod remote;
