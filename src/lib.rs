//! The `mall` binary's library: command line, configuration and wiring.
//!
//! It sits at the top of the flow: it opens the event log (`mall-events`) and, as later issues
//! arrive, hosts the actors (`mall-actors`), the projections (`mall-projections`) and the HTTP API.
//!
//! Modules:
//! - [`cli`]: the clap definitions, error printing and exit codes;
//! - [`store`]: choosing and opening an event store from flags, environment and defaults;
//! - [`commands`]: one module per subcommand;
//! - [`model`]: who writes copy (the offline generator or a model server) and its check;
//! - [`serve`]: `mall serve`, the HTTP API with the actors beside it;
//! - [`readside`]: the projections a server follows, and their in-server rebuilds.

pub mod cli;
pub mod cluster;
pub mod commands;
pub mod config;
pub mod model;
pub mod readside;
pub mod serve;
pub mod store;
