//! Integration tests: one binary, so the crate links once.

mod cel;
mod cli;
mod controller;
mod crds;
mod domain;
mod examples;
mod fixtures;
mod properties;
mod store;
