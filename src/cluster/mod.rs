//! Several `serve` instances on one Kafka topic. A consumer group decides which instance
//! writes which partition (`membership`): each instance claims the partitions it is given
//! (the claim fences out any earlier writer, see `flashrent_events::fence`), and partitions
//! move to the live instances when one leaves or dies. A command for a partition written
//! elsewhere is forwarded over HTTP: client requests by `http::forward`, the saga's pool
//! commands by `remote_pool`.

pub mod membership;
pub mod remote_pool;
