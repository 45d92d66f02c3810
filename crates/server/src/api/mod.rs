//! The JSON API under `/api/v1/`, one module per resource.

pub mod admin;
pub mod agents;
pub mod audit;
pub mod ctx;
pub mod meta;
pub mod policies;
pub mod repos;
pub mod session;

use crate::routes::Route;

/// Every route of the server.
pub fn routes() -> Vec<Route> {
    let mut all = Vec::new();
    all.extend(meta::routes());
    all.extend(session::routes());
    all.extend(admin::routes());
    all.extend(audit::routes());
    all.extend(repos::routes());
    all.extend(agents::routes());
    all.extend(policies::routes());
    all
}
