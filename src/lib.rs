//! suborg: organizations and sub-organizations, declared as Kubernetes objects and synced into
//! a store.
//!
//! - [`api`]: the custom resources (types, schema, CEL rules).
//! - [`domain`]: the rules, as pure functions.
//! - [`manifest`]: reading manifests and applying the schema and the rules offline.
//! - [`rows`]: the accepted objects as the rows the store should hold.
//! - [`store`]: the backing store, SQLite or PostgreSQL.
//! - [`controller`]: `suborg run`, the controller.
//! - [`cli`]: the `suborg` command line.

pub mod api;
pub mod cli;
pub mod controller;
pub mod domain;
pub mod manifest;
pub mod rows;
pub mod store;
