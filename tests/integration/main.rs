//! Integration tests: one binary, so the crate links once.

mod cel;
mod cli;
mod cluster;
mod controller;
mod crds;
mod domain;
mod examples;
mod fixtures;
mod properties;
mod proxy;
mod store;
