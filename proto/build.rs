//! Compiles the hand-typed PD/TiKV subset under `proto/` into prost messages and tonic client
//! and server stubs (the PD client uses the clients, the PD stand-in and tests the servers).
//! Needs `protoc` on PATH (Debian `protobuf-compiler`; `scripts/ensure-deps.sh`).

const PROTOS: [&str; 6] = [
    "proto/metapb.proto",
    "proto/errorpb.proto",
    "proto/kvrpcpb.proto",
    "proto/tikvpb.proto",
    "proto/cdcpb.proto",
    "proto/pdpb.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Proto maps become BTreeMap: the workspace bans HashMap (sorted, replayable output).
        .btree_map(".")
        .compile_protos(&PROTOS, &["proto"])?;
    Ok(())
}
