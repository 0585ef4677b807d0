//! One module per subcommand.

pub mod debug;
pub mod events;
pub mod import;
