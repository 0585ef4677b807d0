//! One module per subcommand.

pub mod audit;
pub mod debug;
pub mod events;
pub mod import;
