//! The pure core: for each aggregate a `decide(state, command) -> events` and an
//! `evolve(state, event) -> state`. Nothing here reads a clock, a disk or a network:
//! "now", prices and chain results arrive as command fields.

pub mod account;
pub mod command;
pub mod error;
pub mod keys;
pub mod order;
pub mod partition;
pub mod pool;
pub mod pricing;

pub use command::{Command, Decision, Reply, Touches};
pub use error::DomainError;
pub use partition::{user_of, PartitionState};

#[cfg(test)]
mod tests;
