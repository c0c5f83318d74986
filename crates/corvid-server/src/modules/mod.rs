//! The modules, one per XEP. Adding a XEP adds a file here and one line in `all`.

pub mod disco;
pub mod ping;
pub mod register;
pub mod time;
pub mod version;

use std::sync::Arc;

use crate::config::Config;
use crate::module::Module;

fn all() -> Vec<Arc<dyn Module>> {
    vec![
        Arc::new(disco::Disco),
        Arc::new(ping::Ping),
        Arc::new(version::Version),
        Arc::new(time::EntityTime),
        Arc::new(register::Register),
    ]
}

/// Names of every module, for config validation and docs.
pub fn names() -> Vec<&'static str> {
    all().iter().map(|m| m.name()).collect()
}

/// The modules the config leaves enabled.
pub fn enabled(config: &Config) -> Vec<Arc<dyn Module>> {
    all().into_iter().filter(|m| !config.modules.disabled.iter().any(|d| d == m.name())).collect()
}
