//! DNP3 for passive inspection (IEEE 1815-2012): per direction, link frames are checked (start
//! bytes, length, header and block CRCs), their user data is unpacked, transport segments are
//! reassembled into application fragments (FIR/FIN/sequence, section 8), and each fragment's
//! application header (control, function code, IIN for responses, section 4.2.2) and first object
//! headers (section 4.2.2.7) are decoded into a [`Dnp3Fragment`].
//!
//! What it does not do: decode object values, or send anything (link confirmations included).
//! Guarantees: never panics; a fragment being reassembled is bounded by [`MAX_FRAGMENT`];
//! a link frame is at most 292 bytes and is unpacked into a fixed-size buffer.

use std::time::Duration;

use super::event::{Direction, Dnp3Fragment, Endpoints, Malformed, ObjectHeader, Protocol};

/// The largest application fragment reassembled (the standard's default is 2048; 4096 leaves
/// room for outstations configured larger).
pub const MAX_FRAGMENT: usize = 4096;

const CRC: crc::Crc<u16> = crc::Crc::<u16>::new(&crc::CRC_16_DNP);

/// The DNP3 link-layer CRC of `bytes` (CRC-16/DNP, sent little-endian).
pub fn crc(bytes: &[u8]) -> u16 {
    CRC.checksum(bytes)
}

fn crc_ok(data: &[u8], stored: &[u8]) -> bool {
    if cfg!(feature = "fuzzing") {
        return true;
    }
    match stored {
        [lo, hi] => crc(data) == u16::from_le_bytes([*lo, *hi]),
        _ => false,
    }
}

/// Whether `bytes` start with a DNP3 link header whose CRC is right (used to detect DNP3 by
/// content, on any port).
pub fn dnp3_start_plausible(bytes: &[u8]) -> bool {
    match bytes.first_chunk::<10>() {
        Some(h) => h[0] == 0x05 && h[1] == 0x64 && h[2] >= 5 && crc_ok(&h[..8], &h[8..]),
        None => false,
    }
}

/// What one link frame came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dnp3Outcome {
    /// Nothing to report yet (link-layer only frame, or a transport segment of a fragment not
    /// yet complete).
    Nothing,
    /// A whole application fragment.
    Fragment(Dnp3Fragment),
    /// A frame or fragment that does not decode.
    Malformed(Malformed),
}

/// The request a response may answer (per flow), for latency.
#[derive(Debug, Default, Clone, Copy)]
pub struct Dnp3Pending {
    last: Option<(u8, Duration)>,
}

/// One direction of a DNP3 conversation: its transport reassembly.
#[derive(Debug, Default)]
pub struct Dnp3Direction {
    fragment: Vec<u8>,
    next_seq: Option<u8>,
}

fn malformed(detail: String, bad_crc: bool) -> Dnp3Outcome {
    Dnp3Outcome::Malformed(Malformed {
        protocol: Protocol::Dnp3,
        detail,
        bad_crc,
    })
}

/// Unpack a link frame's user data (CRCs removed) into `out`; returns the header fields.
fn unpack(frame: &[u8], out: &mut heapless::Vec<u8, 250>) -> Result<(u8, u16, u16), Dnp3Outcome> {
    let Some((header, body)) = frame.split_first_chunk::<10>() else {
        return Err(malformed(
            format!(
                "link frame of {} bytes is shorter than its header",
                frame.len()
            ),
            false,
        ));
    };
    let [s0, s1, len, control, d0, d1, a0, a1, c0, c1] = *header;
    if s0 != 0x05 || s1 != 0x64 || len < 5 {
        return Err(malformed(
            format!("link header start {s0:02x}{s1:02x} length {len}"),
            false,
        ));
    }
    if !crc_ok(&header[..8], &[c0, c1]) {
        return Err(malformed("link header CRC does not match".into(), true));
    }
    let user = usize::from(len) - 5;
    let mut remaining = user;
    let mut blocks = body;
    while remaining > 0 {
        let take = remaining.min(16);
        let (Some(data), Some(stored), Some(rest)) = (
            blocks.get(..take),
            blocks.get(take..take + 2),
            blocks.get(take + 2..),
        ) else {
            return Err(malformed(
                format!("link frame truncated: {user} user bytes declared"),
                false,
            ));
        };
        if !crc_ok(data, stored) {
            return Err(malformed("link data block CRC does not match".into(), true));
        }
        for b in data {
            let _ = out.push(*b);
        }
        remaining -= take;
        blocks = rest;
    }
    Ok((
        control,
        u16::from_le_bytes([d0, d1]),
        u16::from_le_bytes([a0, a1]),
    ))
}

impl Dnp3Direction {
    /// Feed one link frame of this direction.
    pub fn link_frame(
        &mut self,
        at: &Endpoints,
        pending: &mut Dnp3Pending,
        frame: &[u8],
    ) -> Dnp3Outcome {
        let mut user = heapless::Vec::<u8, 250>::new();
        let (control, link_dst, link_src) = match unpack(frame, &mut user) {
            Ok(v) => v,
            Err(outcome) => return outcome,
        };
        // Only primary frames with function 3 (confirmed) or 4 (unconfirmed user data) carry
        // transport segments; the rest are link-layer housekeeping.
        let primary = control & 0x40 != 0;
        let function = control & 0x0F;
        if !primary || !(function == 3 || function == 4) || user.is_empty() {
            return Dnp3Outcome::Nothing;
        }
        let Some((&transport, segment)) = user.split_first() else {
            return Dnp3Outcome::Nothing;
        };
        let fir = transport & 0x40 != 0;
        let fin = transport & 0x80 != 0;
        let seq = transport & 0x3F;
        if fir {
            self.fragment.clear();
        } else if self.next_seq != Some(seq) || self.fragment.is_empty() {
            // A middle segment without its start (or out of sequence): drop what was collected.
            self.fragment.clear();
            self.next_seq = None;
            return Dnp3Outcome::Nothing;
        }
        if self.fragment.len() + segment.len() > MAX_FRAGMENT {
            self.fragment.clear();
            self.next_seq = None;
            return malformed(
                format!("application fragment exceeds {MAX_FRAGMENT} bytes"),
                false,
            );
        }
        self.fragment.extend_from_slice(segment);
        self.next_seq = Some((seq + 1) & 0x3F);
        if !fin {
            return Dnp3Outcome::Nothing;
        }
        self.next_seq = None;
        let fragment = std::mem::take(&mut self.fragment);
        let outcome = application(at, pending, link_src, link_dst, &fragment);
        self.fragment = fragment;
        self.fragment.clear();
        outcome
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
    let [control, function, rest @ ..] = fragment else {
        return malformed(
            format!(
                "application fragment of {} bytes has no function code",
                fragment.len()
            ),
            false,
        );
    };
    let (control, function) = (*control, *function);
    let response = matches!(function, 0x81..=0x83);
    let sequence = control & 0x0F;
    let (iin, objects_bytes) = if response {
        match rest {
            [i1, i2, objects @ ..] => (Some(u16::from_be_bytes([*i1, *i2])), objects),
            _ => return malformed("response without internal indications".into(), false),
        }
    } else {
        (None, rest)
    };
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
        iin,
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
    if let Err(problem) = object_headers(objects_bytes, function, &mut f.objects) {
        let _ = f.anomalies.push("malformed_objects");
        let _ = problem;
    }
    Dnp3Outcome::Fragment(f)
}

/// The size in bytes of one object of `group`/`variation` in a request or response, when fixed
/// and known; `Some(0)` when the header carries no object data (class reads and the like).
fn object_size(group: u8, variation: u8, function: u8) -> Option<usize> {
    // READ requests name objects without data.
    if function == 0x01 || (0x07..=0x0C).contains(&function) && group != 50 {
        return Some(0);
    }
    Some(match (group, variation) {
        (60, _) => 0,
        (1, 2) | (10, 2) => 1,
        (2, 1) => 1,
        (2, 2) => 7,
        (2, 3) => 3,
        (12, 1) => 11,
        (20, 1) | (30, 1) | (21, 1) => 5,
        (20, 2) | (30, 2) | (21, 2) => 3,
        (20, 5) | (21, 9) => 4,
        (20, 6) | (21, 10) => 2,
        (30, 3) => 4,
        (30, 4) => 2,
        (30, 5) => 5,
        (30, 6) => 9,
        (32, 1) => 5,
        (32, 2) => 3,
        (40, 1) | (41, 1) => 5,
        (40, 2) | (41, 2) => 3,
        (41, 3) => 5,
        (41, 4) => 9,
        (50, 1) => 6,
        (50, 3) => 6,
        (51, 1) | (51, 2) => 6,
        (52, 1) | (52, 2) => 2,
        (80, 1) => 0,
        _ => return None,
    })
}

/// Decode object headers until the data of one cannot be skipped (size unknown) or the bytes end.
fn object_headers(
    mut bytes: &[u8],
    function: u8,
    out: &mut heapless::Vec<ObjectHeader, 8>,
) -> Result<(), &'static str> {
    while !out.is_full() {
        let [group, variation, qualifier, rest @ ..] = bytes else {
            return if bytes.is_empty() {
                Ok(())
            } else {
                Err("truncated object header")
            };
        };
        let (group, variation, qualifier) = (*group, *variation, *qualifier);
        let prefix = usize::from((qualifier >> 4) & 0x07);
        let (count, rest) = match qualifier & 0x0F {
            0x00 => match rest {
                [a, b, r @ ..] => (u32::from(b.wrapping_sub(*a)) + 1, r),
                _ => return Err("truncated range"),
            },
            0x01 => match rest {
                [a0, a1, b0, b1, r @ ..] => {
                    let a = u16::from_le_bytes([*a0, *a1]);
                    let b = u16::from_le_bytes([*b0, *b1]);
                    (u32::from(b.wrapping_sub(a)) + 1, r)
                }
                _ => return Err("truncated range"),
            },
            0x02 => match rest {
                [a0, a1, a2, a3, b0, b1, b2, b3, r @ ..] => {
                    let a = u32::from_le_bytes([*a0, *a1, *a2, *a3]);
                    let b = u32::from_le_bytes([*b0, *b1, *b2, *b3]);
                    (b.wrapping_sub(a).saturating_add(1), r)
                }
                _ => return Err("truncated range"),
            },
            0x06 => (0, rest),
            0x07 => match rest {
                [n, r @ ..] => (u32::from(*n), r),
                _ => return Err("truncated count"),
            },
            0x08 => match rest {
                [n0, n1, r @ ..] => (u32::from(u16::from_le_bytes([*n0, *n1])), r),
                _ => return Err("truncated count"),
            },
            0x09 => match rest {
                [a, b, c, d, r @ ..] => (u32::from_le_bytes([*a, *b, *c, *d]), r),
                _ => return Err("truncated count"),
            },
            0x0B => match rest {
                [n, r @ ..] => (u32::from(*n), r),
                _ => return Err("truncated count"),
            },
            _ => return Err("reserved qualifier"),
        };
        let _ = out.push(ObjectHeader {
            group,
            variation,
            qualifier,
            count: (qualifier & 0x0F != 0x06).then_some(count),
        });
        let index_size = match prefix {
            0 => 0,
            1 => 1,
            2 => 2,
            3 => 4,
            4 => 1,
            5 => 2,
            6 => 4,
            _ => return Err("reserved prefix"),
        };
        let Some(size) = object_size(group, variation, function) else {
            return Ok(());
        };
        if group == 80 || (group == 1 && variation == 1) || (group == 10 && variation == 1) {
            // Packed bits.
            let bytes_needed = (count as usize).div_ceil(8);
            bytes = rest.get(bytes_needed..).ok_or("truncated packed bits")?;
            continue;
        }
        let per = size + if prefix <= 3 { index_size } else { index_size };
        let total = per
            .checked_mul(count as usize)
            .ok_or("object count overflows")?;
        bytes = rest.get(total..).ok_or("objects truncated")?;
    }
    Ok(())
}
