//! The `broker` command's subcommands, one file each (`main.rs` parses and dispatches): the
//! server, the operator's tools, virtual cards and the card helper (plays browser and/or helper
//! over HTTP).

pub mod card;
pub mod certs;
pub mod helper;
pub mod keys;
pub mod policy;
pub mod serve;

use crate::config::Config;
use std::path::Path;

/// The configuration: the file given, else ./broker.toml if present, else the embedded default;
/// then `BROKER_*` overrides from the environment.
pub fn load_config(path: Option<&Path>) -> anyhow::Result<Config> {
    let default = Path::new("broker.toml");
    let path = path.or(default.exists().then_some(default));
    Ok(Config::load(path, |k| std::env::var(k).ok())?)
}
