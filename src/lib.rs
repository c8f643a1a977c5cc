//! parcel-risk: risk scoring of EU H7 e-commerce customs declarations.
//!
//! # Layout
//! Dependencies point inward: domain ← features ← model ← scoring ← {grpc, cli}.
//!
//! - [`domain`]: checked declarations, inspection results, codes, money, the
//!   HS nomenclature, the EUR rate table and the duty/VAT regime. Pure.
//! - [`features`]: reference values, the description classifier, party
//!   history, the split window; signals and model rows.
//! - [`model`]: linfa classifiers, training, the artifact, ranking metrics.
//! - [`scoring`]: assessments, reason codes, priorities, channels, plans.
//! - [`evaluate`]: the model against baselines; inspection simulation.
//! - [`grpc`]: the tonic service, health, reflection, graceful shutdown.
//! - [`pb`]: generated protobuf/gRPC types; only the edge modules use them.
//!   [`json_number`]: how their JSON code reads numbers (see `build.rs`).
//! - [`wire`]: `pb` ⇄ `domain` conversions with field-path validation.
//! - [`io`]: JSON Lines (proto3 JSON mapping), CSV and Parquet data files,
//!   plain or gzip/zstd, streaming.
//! - [`security`]: TLS, client identities (certificates, tokens), roles, quotas.
//! - [`store`]: SQLite (WAL) store of routed declarations and inspection
//!   results, for the learning loop.
//! - [`batch`]: rescoring files on every core in bounded memory, in order.
//! - [`generate`]: synthetic Liège traffic with ground truth.
//! - [`metrics_endpoint`]: Prometheus `/metrics`, plaintext or TLS.
//! - [`cli`]: the `parcel-risk` subcommands; [`telemetry`]: tracing set-up.

pub mod batch;
pub mod cli;
pub mod domain;
pub mod evaluate;
pub mod features;
pub mod generate;
pub mod grpc;
pub mod io;
pub mod json_number;
pub mod metrics_endpoint;
pub mod model;
pub mod pb;
pub mod scoring;
pub mod security;
pub mod store;
pub mod telemetry;
pub mod wire;
