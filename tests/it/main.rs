//! Integration tests, compiled as one binary (every extra test binary would link DataFusion again).

mod auth;
mod clients;
mod common;
mod compare;
mod connections;
mod crash;
mod determinism;
mod e2e;
mod fencing;
mod ha;
mod http;
mod lake;
mod layering;
mod limits;
mod maintenance;
mod operations;
mod peer_trust;
mod pg_e2e;
mod pgwire;
mod quarantine;
mod reports;
mod status_page;
mod support;
mod tls;
