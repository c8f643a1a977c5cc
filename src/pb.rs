//! Generated wire types (prost + tonic + pbjson). Nothing else lives here.
//!
//! Only the edge modules (`wire`, `io`, `grpc`, `cli`) use these types; the
//! rest of the crate works on the checked types of [`crate::domain`].

#![allow(clippy::all, clippy::pedantic, missing_docs)]

tonic::include_proto!("parcelrisk.v1");
include!(concat!(env!("OUT_DIR"), "/parcelrisk.v1.serde.rs"));

/// Encoded `FileDescriptorSet` of the contract, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("parcelrisk_descriptor");
