//! Proto code generation only: prost messages, tonic client and server, the
//! proto3 JSON mapping (pbjson) and the descriptor set for reflection.
//! protoc comes from the `protoc-bin-vendored` crate, so no system package is needed.

use std::{env, path::PathBuf};

const PROTOS: &[&str] = &[
    "proto/parcelrisk/v1/declaration.proto",
    "proto/parcelrisk/v1/assessment.proto",
    "proto/parcelrisk/v1/inspection.proto",
    "proto/parcelrisk/v1/risk_service.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // tonic-prost-build emits no rerun-if-changed of its own.
    println!("cargo:rerun-if-changed=proto");
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    let descriptor_path = out_dir.join("parcelrisk_descriptor.bin");

    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    // Well-known types come from pbjson-types, which carries their JSON mapping
    // (Timestamp as RFC 3339).
    config
        .compile_well_known_types()
        .extern_path(".google.protobuf", "::pbjson_types");
    tonic_prost_build::configure()
        .file_descriptor_set_path(&descriptor_path)
        .compile_with_config(config, PROTOS, &["proto"])?;

    let descriptors = std::fs::read(&descriptor_path)?;
    pbjson_build::Builder::new()
        .register_descriptors(&descriptors)?
        .build(&[".parcelrisk"])?;
    read_numbers_directly(&out_dir.join("parcelrisk.v1.serde.rs"))?;
    Ok(())
}

/// Points the generated JSON code at `crate::json_number` for numeric
/// fields: pbjson's reader tries the string form first and builds a serde
/// error for every field given as a JSON number (see src/json_number.rs).
fn read_numbers_directly(serde_rs: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    const PBJSON: &str = "::pbjson::private::NumberDeserialize";
    const OURS: &str = "crate::json_number::NumberDeserialize";
    let code = std::fs::read_to_string(serde_rs)?;
    if !code.contains(PBJSON) {
        // A pbjson release that names it otherwise: fail loudly rather than
        // silently keep the slow path.
        return Err(format!("{} no longer uses {PBJSON}", serde_rs.display()).into());
    }
    std::fs::write(serde_rs, code.replace(PBJSON, OURS))?;
    Ok(())
}
