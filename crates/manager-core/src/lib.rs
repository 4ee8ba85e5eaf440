//! PiCloud's control plane: script storage, the admin API and (soon)
//! invocation records. This is the only crate that writes to the database.
//!
//! Invariants:
//! - Nothing is stored that has not compiled in the executor first.
//! - Every successful write is pushed to the orchestrator's catalog through
//!   [`shared::CatalogUpdates`] before the response goes out, so a client that
//!   saw `201` can invoke the script at once.
//! - A failed request changes nothing: validation happens before the write,
//!   and each write is one transaction.

pub mod api;
pub mod records;
pub mod store;
