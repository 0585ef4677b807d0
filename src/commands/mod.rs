//! One module per subcommand.

pub mod audit;
pub mod autonomous;
pub mod debug;
pub mod demo;
pub mod eval;
pub mod events;
pub mod import;
pub mod llm;
pub mod projections;
