//! The zaibei agent: the daemon on a protected host. It registers once with a one-time token,
//! then connects out to the server (no port is opened on the host), claims its jobs, runs each
//! backup with the `zaibei` binary against the server's repository API — data is encrypted on
//! this host before it leaves — and reports progress and the result.

pub mod client;
pub mod credentials;
pub mod runner;

pub use client::{AgentClient, ClientError};
pub use credentials::Credentials;
pub use runner::{RunOptions, run_loop, run_once};
