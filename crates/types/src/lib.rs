//! Types of zaibei that cross process boundaries: the closed set of privileges and the roles
//! that hold them, the requests and answers of the server's JSON API, and job records that
//! agents and the server exchange. No I/O happens here.

pub mod api;
pub mod jobs;
pub mod privilege;

pub use privilege::{Privilege, Role, Scope};
