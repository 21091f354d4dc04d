//! Integration tests: one binary, so the crate links once.

mod argocd;
mod cel;
mod chart;
mod cli;
mod cluster;
mod controller;
mod crds;
mod domain;
mod examples;
mod fixtures;
mod groups;
mod projects;
mod properties;
mod proxy;
mod store;
