//! The `hearth` launcher as a library, so tests can start the same server in-process.

pub mod assets;
pub mod bench;
pub mod bench_agents;
pub mod bench_load;
pub mod chromium;
pub mod completer;
pub mod engines;
pub mod llm;
pub mod openai;
pub mod page;
pub mod server;
#[cfg(feature = "servo")]
pub mod servo;
#[cfg(feature = "servo")]
pub mod window;
