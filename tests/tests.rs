//! One integration test binary (faster to link): modules by surface.

// Tests pick out one variant at a time; a new variant needs no decision here.
#![allow(clippy::wildcard_enum_match_arm)]

mod common;
mod data_files;
mod generator;
mod grpc;
mod learning;
mod metrics;
mod model;
mod rescore;
mod security;
mod shared_state;
mod validation;
