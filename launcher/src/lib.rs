//! The `hearth` launcher as a library, so tests can start the same server in-process.

pub mod assets;
pub mod bench;
pub mod bench_agents;
pub mod chromium;
pub mod llm;
pub mod server;
