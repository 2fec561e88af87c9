//! The behaviour tests' support: Octane's test kit, and the loop workflows
//! several tests share.

pub(crate) use octane_testkit::*;

#[allow(dead_code)]
pub(crate) mod loops;
