//! What the subcommands other than `serve` do, as library functions `main` calls.

pub mod rebuild;
