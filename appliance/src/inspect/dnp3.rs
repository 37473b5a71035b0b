//! DNP3 for passive inspection (IEEE 1815-2012), over the shared `wire::dnp3` decoders: per
//! direction, each link frame is checked leniently (CRC faults become bad-CRC observations, not
//! refusals), its user data is unpacked, transport segments are reassembled into application
//! fragments, and each fragment's header (control, function code, IIN on responses) and object
//! headers are turned into a [`Dnp3Fragment`], paired with its request for latency.
//!
//! What it does not do: decode object values, or send anything (link confirmations included).
//! Guarantees: never panics; a fragment being reassembled is bounded by [`MAX_FRAGMENT`] and its
//! buffer exists only once a direction carries DNP3 user data.

use std::time::Duration;

use super::event::{Direction, Dnp3Fragment, Endpoints, Malformed, ObjectHeader, Protocol};
use crate::wire::dnp3::{app, link, transport};

/// The largest application fragment reassembled (the standard's default is 2048; 4096 leaves
/// room for outstations configured larger).
pub const MAX_FRAGMENT: usize = 4096;

/// The DNP3 link-layer CRC of `bytes` (CRC-16/DNP, sent little-endian).
pub fn crc(bytes: &[u8]) -> u16 {
    crate::wire::dnp3::crc(bytes)
}

/// Whether `bytes` start with a DNP3 link header whose CRC is right (used to detect DNP3 by
/// content, on any port).
pub fn dnp3_start_plausible(bytes: &[u8]) -> bool {
    match bytes.first_chunk::<10>() {
        Some(&[0x05, 0x64, len, a, b, c, d, e, c0, c1]) => {
            len >= 5
                && crate::wire::dnp3::crc_matches(
                    &[0x05, 0x64, len, a, b, c, d, e],
                    u16::from_le_bytes([c0, c1]),
                )
        }
        _ => false,
    }
}

/// What one link frame came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dnp3Outcome {
    /// Nothing to report yet (link-layer only frame, or a transport segment of a fragment not
    /// yet complete).
    Nothing,
    /// A whole application fragment, and the text of a malformed-object observation if its
    /// object headers did not decode.
    Fragment(Box<Dnp3Fragment>, Option<String>),
    /// A frame or fragment that does not decode.
    Malformed(Malformed),
}

/// The request a response may answer (per flow), for latency.
#[derive(Debug, Default, Clone, Copy)]
pub struct Dnp3Pending {
    last: Option<(u8, Duration)>,
}

/// One direction of a DNP3 conversation: its transport reassembly (made on first use).
#[derive(Debug, Default)]
pub struct Dnp3Direction {
    reassembler: Option<Box<transport::Reassembler<MAX_FRAGMENT>>>,
}

fn malformed(detail: String, bad_crc: bool) -> Dnp3Outcome {
    Dnp3Outcome::Malformed(Malformed {
        protocol: Protocol::Dnp3,
        detail,
        bad_crc,
    })
}

impl Dnp3Direction {
    /// Feed one link frame of this direction.
    pub fn link_frame(
        &mut self,
        at: &Endpoints,
        pending: &mut Dnp3Pending,
        frame: &[u8],
    ) -> Dnp3Outcome {
        let (view, crcs) = match link::Frame::new_lenient(frame) {
            Ok(v) => v,
            Err(e) => return malformed(format!("link frame: {e}"), false),
        };
        if crcs.header_bad {
            return malformed("link header CRC does not match".into(), true);
        }
        if let Some(block) = crcs.first_bad_block {
            return malformed(
                format!(
                    "link data block {block} CRC does not match ({} bad blocks)",
                    crcs.bad_blocks
                ),
                true,
            );
        }
        // Only primary frames with user data carry transport segments; the rest are link-layer
        // housekeeping (reset, status, acks).
        if view.user_data_len() == 0 {
            return Dnp3Outcome::Nothing;
        }
        if !view.control().carries_user_data() {
            let control = view.control();
            return malformed(
                format!(
                    "link function {} ({}) carries {} bytes of user data, which it must not",
                    control.function().0,
                    control.function_name(),
                    view.user_data_len()
                ),
                false,
            );
        }
        let mut user = [0u8; link::MAX_USER_DATA];
        let Ok(user) = view.payload(&mut user) else {
            return Dnp3Outcome::Nothing;
        };
        let Ok(segment) = transport::Segment::parse(user) else {
            return Dnp3Outcome::Nothing;
        };
        let reassembler = self.reassembler.get_or_insert_with(Default::default);
        let (link_src, link_dst) = (view.source(), view.destination());
        match reassembler.push(segment) {
            Ok(transport::Reassembly::Complete(fragment)) => {
                application(at, pending, link_src, link_dst, fragment)
            }
            Ok(_) => Dnp3Outcome::Nothing,
            Err(transport::TransportError::TooLong { capacity }) => malformed(
                format!("application fragment exceeds {capacity} bytes"),
                false,
            ),
            // A middle segment without its start (capture began mid-fragment, or a segment was
            // lost): nothing to decode.
            Err(_) => Dnp3Outcome::Nothing,
        }
    }
}

/// The name of an application function code.
pub fn function_name(code: u8) -> Option<&'static str> {
    Some(match code {
        0x00 => "confirm",
        0x01 => "read",
        0x02 => "write",
        0x03 => "select",
        0x04 => "operate",
        0x05 => "direct_operate",
        0x06 => "direct_operate_nr",
        0x07 => "immediate_freeze",
        0x08 => "immediate_freeze_nr",
        0x09 => "freeze_clear",
        0x0A => "freeze_clear_nr",
        0x0B => "freeze_at_time",
        0x0C => "freeze_at_time_nr",
        0x0D => "cold_restart",
        0x0E => "warm_restart",
        0x0F => "initialize_data",
        0x10 => "initialize_appl",
        0x11 => "start_appl",
        0x12 => "stop_appl",
        0x13 => "save_config",
        0x14 => "enable_unsolicited",
        0x15 => "disable_unsolicited",
        0x16 => "assign_class",
        0x17 => "delay_measure",
        0x18 => "record_current_time",
        0x19 => "open_file",
        0x1A => "close_file",
        0x1B => "delete_file",
        0x1C => "get_file_info",
        0x1D => "authenticate_file",
        0x1E => "abort_file",
        0x1F => "activate_config",
        0x20 => "authenticate_req",
        0x21 => "authenticate_err",
        0x81 => "response",
        0x82 => "unsolicited_response",
        0x83 => "authenticate_resp",
        _ => return None,
    })
}

fn application(
    at: &Endpoints,
    pending: &mut Dnp3Pending,
    link_src: u16,
    link_dst: u16,
    fragment: &[u8],
) -> Dnp3Outcome {
    let parsed = match app::Fragment::parse(fragment) {
        Ok(p) => p,
        Err(e) => return malformed(format!("application fragment: {e}"), false),
    };
    let function = parsed.function.0;
    let response = parsed.function.is_response();
    let sequence = parsed.control.seq();
    let mut f = Dnp3Fragment {
        direction: if response {
            Direction::Response
        } else {
            Direction::Request
        },
        link_src,
        link_dst,
        function_code: function,
        function: function_name(function),
        sequence,
        unsolicited: function == 0x82,
        iin: parsed.iin.map(|i| i.0),
        objects: heapless::Vec::new(),
        latency: None,
        anomalies: heapless::Vec::new(),
    };
    match f.direction {
        Direction::Request => pending.last = Some((sequence, at.ts)),
        Direction::Response if function == 0x81 => {
            if let Some((seq, ts)) = pending.last {
                if seq == sequence {
                    f.latency = Some(at.ts.saturating_sub(ts));
                    pending.last = None;
                }
            }
        }
        Direction::Response => {}
    }
    if function_name(function).is_none() {
        let _ = f.anomalies.push("unassigned_function");
    }
    let mut problem = None;
    for header in parsed.object_headers() {
        match header {
            Ok(h) => {
                let _ = f.objects.push(ObjectHeader {
                    group: h.group,
                    variation: h.variation,
                    qualifier: h.qualifier.0,
                    count: match h.range {
                        app::Range::All => None,
                        r => Some(u32::try_from(r.count()).unwrap_or(u32::MAX)),
                    },
                });
            }
            // Data of a size this decoder does not know ends the walk, not the fragment.
            Err(app::AppError::UnknownObjectSize { .. }) => break,
            Err(e) => {
                let _ = f.anomalies.push("malformed_objects");
                problem = Some(format!("function {function}: objects: {e}"));
            }
        }
    }
    Dnp3Outcome::Fragment(Box::new(f), problem)
}
