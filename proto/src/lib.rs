//! The PD/TiKV protocol subset rcdc speaks, as prost messages with tonic client and server
//! stubs.
//!
//! The `.proto` files under `proto/proto/` are re-typed from the field list in
//! `shared/design/tikv-pd-protocol.md` §1 (kvproto at 65f54a20), not copied from kvproto. Wire
//! compatibility rests only on the package, service, method and message names and on the field
//! numbers and types; `wire_tests` checks encodings byte for byte against hand-derived bytes and
//! the gRPC method paths against a live server.
//!
//! | module | what |
//! |---|---|
//! | [`pdpb`] | PD: members, TSO stream, stores, regions, GC safe points (`pd_client`, `pd_server`) |
//! | [`metapb`] | regions, peers, stores |
//! | [`errorpb`] | region errors |
//! | [`cdcpb`] | TiKV's change feed, `ChangeData.EventFeed` (`change_data_client`, `change_data_server`) |
//! | [`kvrpcpb`] | snapshot reads and lock resolution messages |
//! | [`tikvpb`] | the unary `Tikv` calls rcdc makes (`tikv_client`, `tikv_server`) |
//!
//! Messages rcdc does not need, and fields the facts leave out, are omitted: prost skips unknown
//! fields and oneof variants when decoding, so a full TiKV or PD can still talk to this subset.
//! A client that receives large messages (a change-feed event can carry a 128 MiB value) must
//! raise tonic's 4 MiB `max_decoding_message_size` itself.

// Generated code: its docs are the .proto comments and its shapes are prost's, so the
// workspace's doc and clippy rules do not apply to it.
/// PD's gRPC service (`pdpb.PD`) and its messages.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod pdpb {
    tonic::include_proto!("pdpb");
}

/// Cluster metadata: regions, peers, stores.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod metapb {
    tonic::include_proto!("metapb");
}

/// Region errors attached to TiKV responses and change-feed events.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod errorpb {
    tonic::include_proto!("errorpb");
}

/// TiKV's change-data service (`cdcpb.ChangeData`) and its messages.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod cdcpb {
    tonic::include_proto!("cdcpb");
}

/// TiKV's transactional KV messages used for snapshot reads and lock resolution.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod kvrpcpb {
    tonic::include_proto!("kvrpcpb");
}

/// A partial `tikvpb.Tikv` service: the unary calls rcdc makes.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod tikvpb {
    tonic::include_proto!("tikvpb");
}

#[cfg(test)]
mod wire_tests;
