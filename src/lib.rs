//! flashrent: an event-sourced order engine for renting TRON energy.
//!
//! A request enters at `http/`, becomes a command decided in `engine/` against the pure
//! `domain/`, and leaves as events appended to the log (`log/`). Projectors
//! (`flashrent-projections`) turn the log into sled read models that `http/` reads, and the
//! `saga/` reacts to events by driving each order through the pool and the `chain/`.

pub mod audit;
pub mod chain;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod consistency;
pub mod devnet;
pub mod domain;
pub mod engine;
pub mod http;
pub mod log;
pub mod metrics;
pub mod notify;
pub mod priority;
pub mod read_side;
pub mod saga;
pub mod settings;
pub mod shutdown;
pub mod startup;
pub mod store;
