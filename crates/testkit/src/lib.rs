//! Test support for zaibei's end-to-end tests.
//!
//! [`postgres::fresh_database`] gives each test an empty PostgreSQL database on the server
//! `scripts/pg-test-server` started.
//!
//! [`FaultProxy`] sits between the `zaibei` binary and an S3 server (Garage in the tests,
//! started by `scripts/s3-test-server`). It forwards HTTP/1.1 traffic byte for byte and,
//! according to a [`FaultPlan`], injects the failures a backup tool must survive — connection
//! resets, stalls, `503 Slow Down` answers and truncated response bodies — and enforces an
//! append-only storage policy (no deletes, no overwrites), as an object-lock or
//! write-only-credentials setup would. [`FaultCounts`] tells how many faults actually fired.
//!
//! ```no_run
//! # async fn example() -> std::io::Result<()> {
//! use std::time::Duration;
//! use zaibei_testkit::{FaultPlan, FaultProxy, S3Credentials};
//!
//! let garage = std::net::SocketAddr::from(([127, 0, 0, 1], 3900));
//! let plan = FaultPlan {
//!     reset: 0.02,
//!     unavailable: 0.05,
//!     stall: 0.01,
//!     stall_for: Duration::from_secs(2),
//!     seed: 1,
//!     deny_delete: true,
//!     deny_overwrite: true,
//!     ..FaultPlan::default()
//! };
//! let proxy = FaultProxy::start_with_credentials(garage, plan, S3Credentials::from_env()).await?;
//! // … run zaibei with `http://{proxy.addr()}` as its S3 endpoint …
//! proxy.set_plan(FaultPlan::default()); // verify without faults
//! println!("{}", proxy.counts());
//! proxy.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod error;
mod http;
mod plan;
pub mod postgres;
mod proxy;
mod s3;
mod target;

pub use plan::{FaultCounts, FaultPlan};
pub use postgres::fresh_database;
pub use proxy::FaultProxy;
pub use s3::S3Credentials;
pub use target::S3Target;
