//! Compiles `proto/` into Rust with tonic/prost, and the control-plane API's serde
//! implementations in the proto3 JSON mapping with pbjson (field names as in the proto, every
//! field present). protoc comes from the `protoc-bin-vendored` crate, so the build never
//! depends on whatever protoc the host happens to have.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?);
    let protos = [
        "proto/noid/v1/vm.proto",
        "proto/noid/v1/exec.proto",
        "proto/noid/v1/checkpoint.proto",
        "proto/noid/v1/files.proto",
        "proto/noid/v1/image.proto",
        "proto/noid/v1/service.proto",
    ];
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    // The descriptors of the public API alone: server reflection advertises exactly these,
    // never the internal agent service.
    let descriptors = out_dir.join("noid_descriptor.bin");
    tonic_build::configure()
        .file_descriptor_set_path(&descriptors)
        // Timestamps are pbjson's, which carry the proto3 JSON mapping (RFC 3339 strings).
        .compile_well_known_types(true)
        .extern_path(".google.protobuf", "::pbjson_types")
        .build_server(true)
        .build_client(true)
        .compile_protos(&protos, &["proto"])?;
    tonic_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_protos(&["proto/noid/agent/v1/agent.proto"], &["proto"])?;
    pbjson_build::Builder::new()
        .register_descriptors(&std::fs::read(&descriptors)?)?
        .preserve_proto_field_names()
        .emit_fields()
        .build(&[".noid.v1"])?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
