//! Wire compatibility of the re-typed subset.
//!
//! Every expected byte string below is derived by hand from the protobuf encoding rules, not
//! produced by this code:
//! - a field starts with its tag, the varint of `field_number << 3 | wire_type`; wire type 0 is
//!   a varint, 2 is length-delimited (bytes, strings, messages, packed repeated scalars);
//! - a varint is little-endian groups of 7 bits, every byte but the last with 0x80 set;
//! - `int64` is NOT zigzagged: a negative value is its 64-bit two's complement, 10 bytes;
//! - proto3 omits fields holding their default (0, empty, false, enum 0);
//! - prost writes fields in tag order (a oneof at its smallest tag); a parser must accept any
//!   order, unknown fields, and packed or unpacked repeated scalars.
//!
//! The method paths are checked against live generated servers on 127.0.0.1.

use prost::Message;

use crate::{cdcpb, errorpb, kvrpcpb, metapb, pdpb, tikvpb};

/// Lower-case hex with a space between bytes, the notation of the derivations.
fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Parses the derivations' notation back into bytes.
fn unhex(text: &str) -> Vec<u8> {
    text.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap_or_else(|e| panic!("bad hex {b:?}: {e}")))
        .collect()
}

fn header(cluster_id: u64) -> Option<pdpb::RequestHeader> {
    Some(pdpb::RequestHeader {
        cluster_id,
        sender_id: 0,
    })
}

#[test]
fn request_header_is_two_varints() {
    // cluster_id = 1: tag 1<<3|0 = 08; 0x12345678 in 7-bit groups from the low end:
    //   0x78 -> f8, 0x2c -> ac, 0x51 -> d1, 0x11 -> 91, 0x01 -> 01      => 08 f8 ac d1 91 01
    // sender_id = 2: tag 2<<3|0 = 10; 300 = 0b10_0101100 -> ac 02       => 10 ac 02
    let msg = pdpb::RequestHeader {
        cluster_id: 0x1234_5678,
        sender_id: 300,
    };
    assert_eq!(hex(&msg.encode_to_vec()), "08 f8 ac d1 91 01 10 ac 02");
    // A default header encodes to nothing (proto3 omits zeros).
    assert_eq!(
        pdpb::RequestHeader::default().encode_to_vec(),
        Vec::<u8>::new()
    );
}

#[test]
fn tso_request_encodes_header_count_and_dc_location() {
    // header = 1 (message): tag 1<<3|2 = 0a, len 2, body {cluster_id=1: 08 01}  => 0a 02 08 01
    // count = 2 (uint32 3): tag 2<<3|0 = 10                                     => 10 03
    // dc_location = 3 (string "global", 6 bytes): tag 3<<3|2 = 1a               => 1a 06 67 6c 6f 62 61 6c
    let msg = pdpb::TsoRequest {
        header: header(1),
        count: 3,
        dc_location: "global".into(),
    };
    assert_eq!(
        hex(&msg.encode_to_vec()),
        "0a 02 08 01 10 03 1a 06 67 6c 6f 62 61 6c"
    );
}

#[test]
fn tso_response_timestamp_is_int64_physical_and_logical() {
    // header = 1: 0a 02 08 01 (cluster_id 1); count = 2: 10 03.
    // timestamp = 3 (message): tag 1a, then its body:
    //   physical = 1 (int64 1_600_000_000_000 = 0x174_876e_8000, 41 bits); 7-bit groups from
    //   the low end: 0000000, 0000000, 0111010 (3a), 0111011 (3b), 1001000 (48), 101110 (2e)
    //   => 08 80 80 ba bb c8 2e (7 bytes)
    //   logical = 2 (int64 5) => 10 05 (2 bytes)
    //   body length 9 => 1a 09 ...
    let bytes = "0a 02 08 01 10 03 1a 09 08 80 80 ba bb c8 2e 10 05";
    let msg = pdpb::TsoResponse {
        header: Some(pdpb::ResponseHeader {
            cluster_id: 1,
            error: None,
        }),
        count: 3,
        timestamp: Some(pdpb::Timestamp {
            physical: 1_600_000_000_000,
            logical: 5,
            suffix_bits: 0,
        }),
    };
    assert_eq!(hex(&msg.encode_to_vec()), bytes);
    assert_eq!(
        pdpb::TsoResponse::decode(unhex(bytes).as_slice()).expect("decode"),
        msg
    );
}

#[test]
fn update_service_gc_safe_point_negative_ttl_is_ten_byte_varint() {
    // header = 1: 0a 02 08 01.
    // service_id = 2 (bytes "ticdc"): tag 2<<3|2 = 12, len 5          => 12 05 74 69 63 64 63
    // TTL = 3 (int64 -1, no zigzag): two's complement 0xffff_ffff_ffff_ffff is 64 one-bits:
    //   nine full groups ff and a last group of one bit, 01           => 18 ff*9 01
    // safe_point = 4 (uint64 42): tag 4<<3|0 = 20                     => 20 2a
    let bytes = "0a 02 08 01 12 05 74 69 63 64 63 18 ff ff ff ff ff ff ff ff ff 01 20 2a";
    let msg = pdpb::UpdateServiceGcSafePointRequest {
        header: header(1),
        service_id: b"ticdc".to_vec(),
        ttl: -1,
        safe_point: 42,
    };
    assert_eq!(hex(&msg.encode_to_vec()), bytes);
    let back =
        pdpb::UpdateServiceGcSafePointRequest::decode(unhex(bytes).as_slice()).expect("decode");
    assert_eq!(back.ttl, -1);
    assert_eq!(back, msg);
}

#[test]
fn store_with_labels_version_and_high_field_numbers() {
    // id = 1: 08 01.
    // address = 2 ("127.0.0.1:20160", 15 = 0x0f bytes): 12 0f 31 32 37 2e 30 2e 30 2e 31 3a 32 30 31 36 30
    // state = 3 (Offline = 1): tag 3<<3|0 = 18                  => 18 01
    // labels = 4 (message): tag 4<<3|2 = 22; body key=1 "zone" (0a 04 7a 6f 6e 65),
    //   value=2 "z1" (12 02 7a 31), 10 bytes                    => 22 0a 0a 04 7a 6f 6e 65 12 02 7a 31
    // version = 5 ("5.1.0"): tag 5<<3|2 = 2a                    => 2a 05 35 2e 31 2e 30
    // last_heartbeat = 11 (int64 300): tag 11<<3|0 = 88 = 0x58  => 58 ac 02
    // physically_destroyed = 12 (true): tag 12<<3|0 = 96 = 0x60 => 60 01
    let bytes = "08 01 \
                 12 0f 31 32 37 2e 30 2e 30 2e 31 3a 32 30 31 36 30 \
                 18 01 \
                 22 0a 0a 04 7a 6f 6e 65 12 02 7a 31 \
                 2a 05 35 2e 31 2e 30 \
                 58 ac 02 \
                 60 01";
    let msg = metapb::Store {
        id: 1,
        address: "127.0.0.1:20160".into(),
        state: metapb::StoreState::Offline as i32,
        labels: vec![metapb::StoreLabel {
            key: "zone".into(),
            value: "z1".into(),
        }],
        version: "5.1.0".into(),
        last_heartbeat: 300,
        physically_destroyed: true,
        ..Default::default()
    };
    assert_eq!(hex(&msg.encode_to_vec()), hex(&unhex(bytes)));
    assert_eq!(
        metapb::Store::decode(unhex(bytes).as_slice()).expect("decode"),
        msg
    );
}

#[test]
fn change_data_request_with_register_oneof() {
    // header = 1: body cluster_id=1 (08 01), ticdc_version=2 "5.1.0" (12 05 35 2e 31 2e 30),
    //   9 bytes                                                 => 0a 09 08 01 12 05 35 2e 31 2e 30
    // region_id = 2 (2)                                         => 10 02
    // region_epoch = 3: body conf_ver=1 (08 01), version=2 (10 03) => 1a 04 08 01 10 03
    // checkpoint_ts = 4 (7): tag 20                             => 20 07
    // start_key = 5 ("a"): tag 2a                               => 2a 01 61
    // end_key = 6 ("b"): tag 32                                 => 32 01 62
    // request_id = 7 (9): tag 38                                => 38 09
    // extra_op = 8 (ReadOldValue = 1): tag 40                   => 40 01
    // register = 9 (empty message; present, so written): tag 9<<3|2 = 0x4a, len 0 => 4a 00
    let bytes = "0a 09 08 01 12 05 35 2e 31 2e 30 10 02 1a 04 08 01 10 03 20 07 \
                 2a 01 61 32 01 62 38 09 40 01 4a 00";
    let msg = cdcpb::ChangeDataRequest {
        header: Some(cdcpb::Header {
            cluster_id: 1,
            ticdc_version: "5.1.0".into(),
        }),
        region_id: 2,
        region_epoch: Some(metapb::RegionEpoch {
            conf_ver: 1,
            version: 3,
        }),
        checkpoint_ts: 7,
        start_key: b"a".to_vec(),
        end_key: b"b".to_vec(),
        request_id: 9,
        extra_op: kvrpcpb::ExtraOp::ReadOldValue as i32,
        request: Some(cdcpb::change_data_request::Request::Register(
            cdcpb::change_data_request::Register {},
        )),
    };
    assert_eq!(hex(&msg.encode_to_vec()), hex(&unhex(bytes)));
    // Without the oneof, the request ends at extra_op (TiCDC v5 sends it that way).
    let plain = cdcpb::ChangeDataRequest {
        request: None,
        ..msg
    };
    assert!(hex(&plain.encode_to_vec()).ends_with("38 09 40 01"));
}

#[test]
fn event_row_with_enums_inside_entries() {
    // Row body: start_ts=1 (08 05), commit_ts=2 (10 06), type=3 COMMIT=2 (18 02),
    //   op_type=4 DELETE=2 (20 02), key=5 "k" (2a 01 6b), value=6 empty (omitted),
    //   old_value=7 "v" (tag 7<<3|2 = 3a: 3a 01 76): 14 = 0x0e bytes
    // Entries body: entries=1 => 0a 0e <row>: 16 = 0x10 bytes
    // Event: region_id=1 (08 02), index=2 (0, omitted), the oneof at its tag 3:
    //   entries=3 => 1a 10 <entries>, then request_id=7 (38 09)
    let bytes = "08 02 1a 10 0a 0e 08 05 10 06 18 02 20 02 2a 01 6b 3a 01 76 38 09";
    let row = cdcpb::event::Row {
        start_ts: 5,
        commit_ts: 6,
        r#type: cdcpb::event::LogType::Commit as i32,
        op_type: cdcpb::event::row::OpType::Delete as i32,
        key: b"k".to_vec(),
        value: Vec::new(),
        old_value: b"v".to_vec(),
    };
    let msg = cdcpb::Event {
        region_id: 2,
        index: 0,
        request_id: 9,
        event: Some(cdcpb::event::Event::Entries(cdcpb::event::Entries {
            entries: vec![row],
        })),
    };
    assert_eq!(hex(&msg.encode_to_vec()), bytes);
}

#[test]
fn event_decodes_out_of_order_with_unknown_fields_and_variants() {
    // Hand-written as a newer TiKV might send it:
    //   request_id=7 first (38 09), region_id=1 (08 02);
    //   an unknown field 99 (varint): tag 99<<3|0 = 792 = 0b110_0011000 -> 98 06, value 01;
    //   long_txn = 8 (a oneof variant this subset leaves out): 42 00;
    //   resolved_ts = 6 (another variant of the same oneof, u64 300): 30 ac 02.
    // The last oneof variant on the wire wins, so the event is resolved_ts 300.
    let bytes = unhex("38 09 08 02 98 06 01 42 00 30 ac 02");
    let ev = cdcpb::Event::decode(bytes.as_slice()).expect("decode");
    assert_eq!(ev.region_id, 2);
    assert_eq!(ev.request_id, 9);
    assert_eq!(ev.event, Some(cdcpb::event::Event::ResolvedTs(300)));
}

#[test]
fn error_event_carries_not_leader_with_hint() {
    // Event: region_id=1 (08 03); error = 5 (message): tag 5<<3|2 = 2a, body:
    //   cdcpb.Error not_leader=1 (message): 0a, body:
    //     errorpb.NotLeader region_id=1 (08 03), leader=2 (message, 12): body
    //       metapb.Peer id=1 (08 04), store_id=2 (10 05): 4 bytes => 12 04 08 04 10 05
    //     NotLeader body: 08 03 12 04 08 04 10 05 = 8 bytes => 0a 08 ...
    //   cdcpb.Error body: 10 bytes => 2a 0a ...
    let bytes = unhex("08 03 2a 0a 0a 08 08 03 12 04 08 04 10 05");
    let ev = cdcpb::Event::decode(bytes.as_slice()).expect("decode");
    let expected = cdcpb::Event {
        region_id: 3,
        event: Some(cdcpb::event::Event::Error(cdcpb::Error {
            not_leader: Some(errorpb::NotLeader {
                region_id: 3,
                leader: Some(metapb::Peer {
                    id: 4,
                    store_id: 5,
                    role: metapb::PeerRole::Voter as i32,
                }),
            }),
            ..Default::default()
        })),
        ..Default::default()
    };
    assert_eq!(ev, expected);
}

#[test]
fn batched_resolved_ts_regions_are_packed_and_unpacked_accepted() {
    // ResolvedTs: regions = 1 (repeated uint64, packed in proto3): 0a, len, varints
    //   1 (01), 2 (02), 300 (ac 02) = 4 bytes => 0a 04 01 02 ac 02; ts = 2 (7) => 10 07.
    //   Body 8 bytes. ChangeDataEvent: resolved_ts = 2 => 12 08 <body>.
    let packed = "12 08 0a 04 01 02 ac 02 10 07";
    let msg = cdcpb::ChangeDataEvent {
        events: Vec::new(),
        resolved_ts: Some(cdcpb::ResolvedTs {
            regions: vec![1, 2, 300],
            ts: 7,
        }),
    };
    assert_eq!(hex(&msg.encode_to_vec()), packed);
    // The same regions unpacked (one tag 08 per element), as a proto2 writer would send them:
    //   08 01 08 02 08 ac 02 10 07 = 9 bytes => 12 09 ...
    let unpacked = unhex("12 09 08 01 08 02 08 ac 02 10 07");
    assert_eq!(
        cdcpb::ChangeDataEvent::decode(unpacked.as_slice()).expect("decode"),
        msg
    );
}

#[test]
fn get_members_response_decodes_leader_client_urls() {
    // header = 1: body cluster_id = 1 (uint64 7): 08 07 => 0a 02 08 07.
    // leader = 3 (Member): tag 1a, body:
    //   name=1 "pd1" (0a 03 70 64 31), member_id=2 (10 0b),
    //   client_urls=4 "http://127.0.0.1:2379" (21 = 0x15 bytes): tag 4<<3|2 = 22 => 22 15 68 74 ...
    //   body = 5 + 2 + 2 + 21 = 30 = 0x1e bytes => 1a 1e ...
    // header.error = 2 would be an Error{type=1, message=2}; absent here.
    let bytes = unhex(
        "0a 02 08 07 1a 1e 0a 03 70 64 31 10 0b 22 15 \
         68 74 74 70 3a 2f 2f 31 32 37 2e 30 2e 30 2e 31 3a 32 33 37 39",
    );
    let resp = pdpb::GetMembersResponse::decode(bytes.as_slice()).expect("decode");
    assert_eq!(resp.header.map(|h| h.cluster_id), Some(7));
    let leader = resp.leader.expect("leader");
    assert_eq!(leader.name, "pd1");
    assert_eq!(leader.member_id, 11);
    assert_eq!(
        leader.client_urls,
        vec!["http://127.0.0.1:2379".to_string()]
    );
    assert!(resp.members.is_empty());
}

#[test]
fn response_header_error_type_and_message() {
    // ResponseHeader: cluster_id=1 (08 01); error = 2: tag 12, body:
    //   type=1 NOT_BOOTSTRAPPED = 2 (08 02), message=2 "no" (12 02 6e 6f): 6 bytes => 12 06 ...
    let bytes = "08 01 12 06 08 02 12 02 6e 6f";
    let msg = pdpb::ResponseHeader {
        cluster_id: 1,
        error: Some(pdpb::Error {
            r#type: pdpb::ErrorType::NotBootstrapped as i32,
            message: "no".into(),
        }),
    };
    assert_eq!(hex(&msg.encode_to_vec()), bytes);
}

#[test]
fn scan_regions_request_limit_is_int32_and_regions_response_both_forms() {
    // ScanRegionsRequest: header=1 (0a 02 08 01), start_key=2 "a" (12 01 61),
    //   limit=3 (int32 20 = 0x14): tag 18 => 18 14; end_key=4 "z" (22 01 7a).
    let req = pdpb::ScanRegionsRequest {
        header: header(1),
        start_key: b"a".to_vec(),
        limit: 20,
        end_key: b"z".to_vec(),
    };
    assert_eq!(
        hex(&req.encode_to_vec()),
        "0a 02 08 01 12 01 61 18 14 22 01 7a"
    );
    // ScanRegionsResponse, legacy fields: region_metas=2 (metapb.Region id=1 => 12 02 08 01),
    //   leaders=3 (metapb.Peer id=2 store_id=3 => 1a 04 08 02 10 03); new field regions=4
    //   (pdpb.Region{region=1: {id=1}, leader=2: {id=2}}: body 0a 02 08 01 12 02 08 02 => 22 08 ...)
    let bytes = unhex("12 02 08 01 1a 04 08 02 10 03 22 08 0a 02 08 01 12 02 08 02");
    let resp = pdpb::ScanRegionsResponse::decode(bytes.as_slice()).expect("decode");
    assert_eq!(resp.region_metas.len(), 1);
    assert_eq!(resp.region_metas[0].id, 1);
    assert_eq!(resp.leaders[0].store_id, 3);
    assert_eq!(resp.regions[0].leader.as_ref().map(|p| p.id), Some(2));
}

#[test]
fn kv_scan_lock_and_lock_info() {
    // ScanLockRequest: context=1 {region_id=1 (08 05)} => 0a 02 08 05; max_version=2 (10 64);
    //   start_key=3 "a" (1a 01 61); limit=4 (uint32 1024 = 0b1000_0000000 -> 80 08) => 20 80 08.
    let req = kvrpcpb::ScanLockRequest {
        context: Some(kvrpcpb::Context {
            region_id: 5,
            ..Default::default()
        }),
        max_version: 100,
        start_key: b"a".to_vec(),
        limit: 1024,
        end_key: Vec::new(),
    };
    assert_eq!(
        hex(&req.encode_to_vec()),
        "0a 02 08 05 10 64 1a 01 61 20 80 08"
    );
    // LockInfo: primary_lock=1 "p" (0a 01 70), lock_version=2 (10 0a), key=3 "k" (1a 01 6b),
    //   lock_ttl=4 (20 03), lock_type=6 Lock = 2 (30 02), use_async_commit=8 (40 01),
    //   secondaries=10 (repeated bytes, never packed): tag 10<<3|2 = 0x52 => 52 01 73
    let lock = kvrpcpb::LockInfo {
        primary_lock: b"p".to_vec(),
        lock_version: 10,
        key: b"k".to_vec(),
        lock_ttl: 3,
        lock_type: kvrpcpb::Op::Lock as i32,
        use_async_commit: true,
        secondaries: vec![b"s".to_vec()],
        ..Default::default()
    };
    assert_eq!(
        hex(&lock.encode_to_vec()),
        "0a 01 70 10 0a 1a 01 6b 20 03 30 02 40 01 52 01 73"
    );
}

#[test]
fn service_names_match_kvproto_packages() {
    use tonic::server::NamedService;
    assert_eq!(pdpb::pd_server::SERVICE_NAME, "pdpb.PD");
    assert_eq!(cdcpb::change_data_server::SERVICE_NAME, "cdcpb.ChangeData");
    assert_eq!(tikvpb::tikv_server::SERVICE_NAME, "tikvpb.Tikv");
    assert_eq!(
        <pdpb::pd_server::PdServer<paths::Fake> as NamedService>::NAME,
        "pdpb.PD"
    );
}

mod paths;
