//! parcel-risk: risk scoring of EU H7 e-commerce customs declarations.
//!
//! # Layout
//! - [`domain`]: checked declarations, inspection results, codes, money, the
//!   HS nomenclature and the EUR rate table. Pure.
//! - [`pb`]: generated protobuf/gRPC types; only the edge modules use them.
//! - [`wire`]: `pb` ⇄ `domain` conversions with field-path validation.
//! - [`io`]: JSON Lines (proto3 JSON mapping) and CSV data files, streaming.
//! - [`generate`]: synthetic Liège traffic with ground truth.
//! - [`cli`]: the `parcel-risk` subcommands.

pub mod cli;
pub mod domain;
pub mod evaluate;
pub mod features;
pub mod generate;
pub mod grpc;
pub mod io;
pub mod model;
pub mod pb;
pub mod scoring;
pub mod telemetry;
pub mod wire;
