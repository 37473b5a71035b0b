//! TCP stream reassembly for passive inspection: turns the segments of one direction of a TCP
//! connection, in whatever order and repetition the mirror port delivered them, into the
//! application frames they carry (Modbus TCP ADUs, DNP3 link frames), and keeps a bounded table
//! of flows.
//!
//! It handles out-of-order segments (held back, bounded), retransmissions and overlaps (the first
//! copy wins), several frames in one segment, one frame split across segments, and mid-stream
//! pickup: when the capture starts inside a connection, or after a gap, it resynchronizes on the
//! next plausible frame header (an MBAP header with protocol id 0 and a sane length, or a DNP3
//! `05 64` start with a sane length) and reports the bytes it skipped.
//!
//! What it does not do: decode frames (that is `wire`), or look at TCP state beyond SYN and
//! sequence numbers. Guarantees: never panics; per direction it buffers at most
//! [`MAX_PENDING_BYTES`] of out-of-order data plus one incomplete frame; the flow table holds at
//! most its capacity and evicts the least recently seen flows first, so memory stays bounded under
//! scans and floods. When the common case holds (segments in order, frames whole) frames are
//! handed out straight from the segment, without copying.

use std::hash::Hash;
use std::time::Duration;

use super::fasthash::FastMap;

/// Out-of-order bytes held back per direction before giving up on a gap.
pub const MAX_PENDING_BYTES: usize = 64 * 1024;
/// Out-of-order segments held back per direction before giving up on a gap.
pub const MAX_PENDING_SEGMENTS: usize = 64;
/// The largest Modbus TCP ADU: 7-byte MBAP header plus a 253-byte PDU.
pub const MODBUS_MAX_ADU: usize = 260;
/// A sequence number this far (in bytes, either way) from the one expected is not a
/// retransmission or a reordering but a different stream position (a capture that lost much, or
/// fuzzed traffic): the direction resynchronizes there.
pub const MAX_SEQ_JUMP: u32 = 1 << 20;
/// The largest DNP3 link frame: 10-byte header block plus 250 bytes of user data and 16 CRCs.
pub const DNP3_MAX_FRAME: usize = 292;

/// How a byte stream is cut into frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Modbus TCP: MBAP header, length at bytes 4-5 counting from the unit id.
    Modbus,
    /// DNP3 link frames: `05 64`, length byte, a CRC after the header and after each 16 bytes.
    Dnp3,
}

/// What framing says about the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// A frame of this many bytes starts here (it may not all be there yet).
    Frame(usize),
    /// Not enough bytes to tell.
    NeedMore,
    /// No frame can start here.
    Invalid,
}

impl Framing {
    /// Whether a frame plausibly starts at the beginning of `bytes`, and how long it is.
    pub fn cut(self, bytes: &[u8]) -> Cut {
        use crate::wire::{dnp3::link, modbus};
        match self {
            Framing::Modbus => match modbus::frame_len(bytes) {
                modbus::FrameStatus::Complete(len) => Cut::Frame(len),
                modbus::FrameStatus::NeedMore => Cut::NeedMore,
                modbus::FrameStatus::Invalid(_) => Cut::Invalid,
            },
            // The length is trusted before the header CRC is checked, so that a frame whose
            // header CRC fails is still cut out whole and reported as a bad CRC.
            Framing::Dnp3 => match bytes {
                [] | [0x05] | [0x05, 0x64] => Cut::NeedMore,
                [0x05, 0x64, len, ..] if *len >= link::MIN_LENGTH => {
                    Cut::Frame(link::frame_len_for(*len))
                }
                _ => Cut::Invalid,
            },
        }
    }

    /// The largest frame this framing produces.
    pub fn max_frame(self) -> usize {
        match self {
            Framing::Modbus => MODBUS_MAX_ADU,
            Framing::Dnp3 => DNP3_MAX_FRAME,
        }
    }

    /// Whether a resynchronizing scan may start a stream at the beginning of `bytes`: a stricter
    /// test than [`Framing::cut`], needing the function code (Modbus) to look sane too.
    pub fn plausible_start(self, bytes: &[u8]) -> bool {
        use crate::wire::modbus::{MbapHeader, MAX_MBAP_LENGTH, MIN_MBAP_LENGTH};
        match self {
            Framing::Modbus => match (bytes.first_chunk::<7>(), bytes.get(7)) {
                (Some(header), Some(&function)) => {
                    let header = MbapHeader::parse(header);
                    header.protocol_id == 0
                        && (MIN_MBAP_LENGTH..=MAX_MBAP_LENGTH).contains(&header.length)
                        && function != 0
                        && function != 0x80
                }
                _ => false,
            },
            Framing::Dnp3 => matches!(self.cut(bytes), Cut::Frame(_)),
        }
    }
}

/// What a direction's reassembler hands to its consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item<'a> {
    /// One whole frame, as framing cut it.
    Frame(&'a [u8]),
    /// Bytes skipped to find the first frame (mid-stream pickup, or after a gap).
    Skipped(usize),
    /// Bytes of an in-sync stream that are not a frame (skipped to resynchronize).
    Garbage(usize),
    /// Bytes the capture never showed (lost or never mirrored); the stream resynchronizes after.
    Gap(u32),
}

/// Counters of one direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamStats {
    /// Segments whose bytes were all seen before.
    pub retransmissions: u64,
    /// Segments that arrived ahead of a gap and were held back.
    pub out_of_order: u64,
    /// Gaps given up on.
    pub gaps: u64,
}

/// One direction of a TCP connection.
#[derive(Debug, Default)]
pub struct Stream {
    /// The next sequence number expected, once known.
    next_seq: Option<u32>,
    /// Contiguous bytes not yet cut into frames.
    buf: Vec<u8>,
    /// Whether `buf` starts at a frame boundary.
    synced: bool,
    /// Segments ahead of `next_seq`: (sequence number, bytes).
    pending: Vec<(u32, Vec<u8>)>,
    pending_bytes: usize,
    stats: StreamStats,
}

impl Stream {
    /// A direction nothing has been seen of.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counters so far.
    pub fn stats(&self) -> StreamStats {
        self.stats
    }

    /// Bytes held (incomplete frame plus out-of-order data).
    pub fn buffered(&self) -> usize {
        self.buf.len() + self.pending_bytes
    }

    /// Feed one segment of this direction. `syn` marks the segment that opens the direction.
    pub fn push(
        &mut self,
        seq: u32,
        syn: bool,
        payload: &[u8],
        framing: Framing,
        out: &mut impl FnMut(Item<'_>),
    ) {
        if syn {
            // A SYN starts the direction: everything after is in sync from byte one.
            if self.next_seq.is_none() || self.buf.is_empty() {
                self.next_seq = Some(seq.wrapping_add(1));
                self.synced = true;
                self.pending.clear();
                self.pending_bytes = 0;
            }
            return;
        }
        if payload.is_empty() {
            return;
        }
        let next = match self.next_seq {
            Some(next) => next,
            None => {
                // Mid-stream pickup: the first bytes seen may start anywhere inside a frame.
                self.next_seq = Some(seq);
                self.synced = false;
                seq
            }
        };
        let offset = seq.wrapping_sub(next) as i32;
        if offset.unsigned_abs() > MAX_SEQ_JUMP {
            // Not this stream position at all: drop what was pending and start over here.
            self.stats.gaps += 1;
            if !self.buf.is_empty() {
                out(Item::Skipped(self.buf.len()));
                self.buf.clear();
            }
            self.pending.clear();
            self.pending_bytes = 0;
            out(Item::Gap(offset.unsigned_abs()));
            self.next_seq = Some(seq);
            self.synced = false;
            self.accept(payload, framing, out);
            return;
        }
        if offset > 0 {
            self.hold(seq, payload, framing, out);
            return;
        }
        let seen = offset.unsigned_abs() as usize;
        let Some(fresh) = payload.get(seen..).filter(|f| !f.is_empty()) else {
            self.stats.retransmissions += 1;
            return;
        };
        self.accept(fresh, framing, out);
        self.drain_pending(framing, out);
    }

    fn accept(&mut self, fresh: &[u8], framing: Framing, out: &mut impl FnMut(Item<'_>)) {
        self.next_seq = self.next_seq.map(|n| n.wrapping_add(fresh.len() as u32));
        if self.buf.is_empty() && self.synced {
            // Fast path: frame straight from the segment, keep only an incomplete tail.
            let rest = cut_frames(fresh, framing, &mut self.synced, out);
            self.buf.extend_from_slice(rest);
        } else {
            self.buf.extend_from_slice(fresh);
            let mut buf = std::mem::take(&mut self.buf);
            let consumed = buf.len() - cut_frames(&buf, framing, &mut self.synced, out).len();
            buf.drain(..consumed);
            self.buf = buf;
        }
    }

    fn hold(&mut self, seq: u32, payload: &[u8], framing: Framing, out: &mut impl FnMut(Item<'_>)) {
        if self.pending.iter().any(|(s, _)| *s == seq) {
            self.stats.retransmissions += 1;
            return;
        }
        self.stats.out_of_order += 1;
        self.pending.push((seq, payload.to_vec()));
        self.pending_bytes += payload.len();
        while self.pending.len() > MAX_PENDING_SEGMENTS || self.pending_bytes > MAX_PENDING_BYTES {
            self.skip_gap(out);
            self.drain_pending(framing, out);
        }
    }

    /// Give up on the bytes before the earliest held segment: drop the incomplete frame, report
    /// the gap, and resynchronize at the earliest held segment.
    fn skip_gap(&mut self, out: &mut impl FnMut(Item<'_>)) {
        let Some(next) = self.next_seq else { return };
        let Some(earliest) = self.pending.iter().map(|(s, _)| s.wrapping_sub(next)).min() else {
            return;
        };
        self.stats.gaps += 1;
        if !self.buf.is_empty() {
            out(Item::Skipped(self.buf.len()));
            self.buf.clear();
        }
        out(Item::Gap(earliest));
        self.next_seq = Some(next.wrapping_add(earliest));
        self.synced = false;
    }

    fn drain_pending(&mut self, framing: Framing, out: &mut impl FnMut(Item<'_>)) {
        while let Some(next) = self.next_seq {
            let Some(i) = self
                .pending
                .iter()
                .position(|(s, _)| s.wrapping_sub(next) as i32 <= 0)
            else {
                return;
            };
            let (seq, bytes) = self.pending.swap_remove(i);
            self.pending_bytes -= bytes.len();
            let seen = next.wrapping_sub(seq) as usize;
            match bytes.get(seen..).filter(|f| !f.is_empty()) {
                Some(fresh) => self.accept(fresh, framing, out),
                None => self.stats.retransmissions += 1,
            }
        }
    }

    /// Flush at the end of a capture or connection: frames complete in held data are still cut;
    /// what cannot be framed is reported as gaps and skipped bytes.
    pub fn finish(&mut self, framing: Framing, out: &mut impl FnMut(Item<'_>)) {
        while !self.pending.is_empty() {
            self.skip_gap(out);
            self.drain_pending(framing, out);
        }
        if !self.buf.is_empty() {
            out(Item::Skipped(self.buf.len()));
            self.buf.clear();
        }
    }
}

/// Cut whole frames off the front of `bytes`; return the incomplete tail. When not in sync,
/// skip forward to the next plausible frame start first.
fn cut_frames<'a>(
    mut bytes: &'a [u8],
    framing: Framing,
    synced: &mut bool,
    out: &mut impl FnMut(Item<'_>),
) -> &'a [u8] {
    let mut lost_sync = false;
    let skipped = |n: usize, lost: bool| {
        if lost {
            Item::Garbage(n)
        } else {
            Item::Skipped(n)
        }
    };
    loop {
        if !*synced {
            match resync(bytes, framing) {
                Resync::At(skip) => {
                    if skip > 0 {
                        out(skipped(skip, lost_sync));
                    }
                    bytes = bytes.get(skip..).unwrap_or_default();
                    *synced = true;
                }
                Resync::Keep(skip) => {
                    if skip > 0 {
                        out(skipped(skip, lost_sync));
                    }
                    return bytes.get(skip..).unwrap_or_default();
                }
            }
        }
        match framing.cut(bytes) {
            Cut::Frame(len) => match (bytes.get(..len), bytes.get(len..)) {
                (Some(frame), Some(rest)) => {
                    out(Item::Frame(frame));
                    bytes = rest;
                }
                _ => return bytes,
            },
            Cut::NeedMore => return bytes,
            Cut::Invalid => {
                *synced = false;
                lost_sync = true;
            }
        }
    }
}

enum Resync {
    /// A plausible frame starts after skipping this many bytes.
    At(usize),
    /// None found yet: skip this many bytes and keep the rest (it may be a header's beginning).
    Keep(usize),
}

fn resync(bytes: &[u8], framing: Framing) -> Resync {
    // Modbus needs 8 bytes to judge a start, DNP3 3.
    let need = match framing {
        Framing::Modbus => 8,
        Framing::Dnp3 => 3,
    };
    let mut i = 0;
    while let Some(rest) = bytes.get(i..) {
        if rest.len() < need {
            return Resync::Keep(i);
        }
        if framing.plausible_start(rest) {
            return Resync::At(i);
        }
        i += 1;
    }
    Resync::Keep(bytes.len())
}

/// A table of flows keyed by `K`, each holding `V`, bounded by a capacity. When full, the least
/// recently seen eighth of the flows is evicted (after anything idle longer than the idle
/// timeout), so a scan or flood cannot grow it and the work per new flow stays small.
#[derive(Debug)]
pub struct FlowTable<K, V> {
    flows: FastMap<K, (Duration, V)>,
    capacity: usize,
    idle: Duration,
    evicted: u64,
}

impl<K: Hash + Eq + Clone, V> FlowTable<K, V> {
    /// A table of at most `capacity` flows (at least 8), evicting flows idle for `idle`.
    pub fn new(capacity: usize, idle: Duration) -> Self {
        Self {
            flows: FastMap::default(),
            capacity: capacity.max(8),
            idle,
            evicted: 0,
        }
    }

    /// The flow for `key`, made with `make` if absent, marked as seen at `now`. Evicted flows are
    /// handed to `on_evict` first.
    pub fn entry(
        &mut self,
        key: &K,
        now: Duration,
        make: impl FnOnce() -> V,
        on_evict: impl FnMut(K, V),
    ) -> &mut V {
        // One lookup while the table has room; a second only when it is full.
        if self.flows.len() >= self.capacity && !self.flows.contains_key(key) {
            self.evict(now, on_evict);
        }
        let slot = self
            .flows
            .entry(key.clone())
            .or_insert_with(|| (now, make()));
        slot.0 = slot.0.max(now);
        &mut slot.1
    }

    /// Remove one flow.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        self.flows.remove(key).map(|(_, v)| v)
    }

    /// How many flows are held.
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    /// Flows evicted so far.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Take every flow out (at the end of a capture).
    pub fn drain(&mut self) -> impl Iterator<Item = (K, V)> + '_ {
        self.flows.drain().map(|(k, (_, v))| (k, v))
    }

    fn evict(&mut self, now: Duration, mut on_evict: impl FnMut(K, V)) {
        let mut ages: Vec<(Duration, K)> = self
            .flows
            .iter()
            .map(|(k, (seen, _))| (*seen, k.clone()))
            .collect();
        ages.sort_unstable_by_key(|(seen, _)| *seen);
        let idle = ages
            .iter()
            .take_while(|(seen, _)| now.saturating_sub(*seen) > self.idle)
            .count();
        let count = idle.max(self.capacity / 8).max(1);
        for (_, key) in ages.into_iter().take(count) {
            if let Some((_, v)) = self.flows.remove(&key) {
                self.evicted += 1;
                on_evict(key, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn adu(tid: u16, pdu: &[u8]) -> Vec<u8> {
        let mut v = tid.to_be_bytes().to_vec();
        v.extend_from_slice(&[0, 0]);
        v.extend_from_slice(&((pdu.len() + 1) as u16).to_be_bytes());
        v.push(1);
        v.extend_from_slice(pdu);
        v
    }

    fn frames_of(stream: &mut Stream, segments: &[(u32, Vec<u8>)]) -> (Vec<Vec<u8>>, usize) {
        let mut frames = Vec::new();
        let mut skipped = 0;
        for (seq, bytes) in segments {
            stream.push(
                *seq,
                false,
                bytes,
                Framing::Modbus,
                &mut |item| match item {
                    Item::Frame(f) => frames.push(f.to_vec()),
                    Item::Skipped(n) | Item::Garbage(n) => skipped += n,
                    Item::Gap(_) => {}
                },
            );
        }
        (frames, skipped)
    }

    fn sample_stream() -> (Vec<u8>, Vec<Vec<u8>>) {
        let adus: Vec<Vec<u8>> = (0..20u16)
            .map(|i| adu(i, &[3, 0, (i % 200) as u8, 0, 1 + (i % 7) as u8]))
            .chain([adu(99, &[16, 0, 100, 0, 2, 4, 1, 2, 3, 4])])
            .collect();
        (adus.concat(), adus)
    }

    #[test]
    fn several_adus_in_one_segment_and_one_split_across_two() {
        let (bytes, adus) = sample_stream();
        let mut s = Stream::new();
        s.push(999, true, &[], Framing::Modbus, &mut |_| {});
        let (frames, skipped) = frames_of(
            &mut s,
            &[(1000, bytes[..30].to_vec()), (1030, bytes[30..].to_vec())],
        );
        assert_eq!(frames, adus);
        assert_eq!(skipped, 0);
    }

    #[test]
    fn retransmission_and_overlap_count_once() {
        let (bytes, adus) = sample_stream();
        let mut s = Stream::new();
        s.push(0, true, &[], Framing::Modbus, &mut |_| {});
        let (frames, _) = frames_of(
            &mut s,
            &[
                (1, bytes[..40].to_vec()),
                (1, bytes[..40].to_vec()),
                (21, bytes[20..].to_vec()),
            ],
        );
        assert_eq!(frames, adus);
        assert_eq!(s.stats().retransmissions, 1);
    }

    #[test]
    fn mid_stream_pickup_resynchronizes_on_a_plausible_header() {
        let (bytes, adus) = sample_stream();
        let mut s = Stream::new();
        // No SYN seen, and the first segment starts 5 bytes into the first ADU.
        let (frames, skipped) = frames_of(&mut s, &[(5, bytes[5..].to_vec())]);
        assert_eq!(frames, adus[1..].to_vec());
        assert_eq!(skipped, adus[0].len() - 5);
    }

    #[test]
    fn a_gap_too_long_to_wait_for_resynchronizes_after_it() {
        let (bytes, adus) = sample_stream();
        let mut s = Stream::new();
        s.push(0, true, &[], Framing::Modbus, &mut |_| {});
        let mut segments = vec![(1u32, bytes[..13].to_vec())];
        // The segment carrying bytes 13..26 is lost; then many small ones arrive.
        let filler: Vec<u8> = (0..(MAX_PENDING_SEGMENTS as u16 + 2))
            .flat_map(|i| adu(1000 + i, &[3, 0, 0, 0, 1]))
            .collect();
        let mut all = bytes.clone();
        all.extend_from_slice(&filler);
        let mut off = 26usize;
        while off < all.len() {
            let end = (off + 12).min(all.len());
            segments.push((1 + off as u32, all[off..end].to_vec()));
            off = end;
        }
        let mut gaps = 0;
        let mut frames = Vec::new();
        for (seq, b) in &segments {
            s.push(*seq, false, b, Framing::Modbus, &mut |item| match item {
                Item::Frame(f) => frames.push(f.to_vec()),
                Item::Gap(_) => gaps += 1,
                Item::Skipped(_) | Item::Garbage(_) => {}
            });
        }
        assert_eq!(gaps, 1);
        assert_eq!(frames[0], adus[0]);
        assert!(frames.len() > 10, "resynchronized after the gap");
        assert!(s.buffered() <= MAX_PENDING_BYTES + MODBUS_MAX_ADU);
    }

    #[test]
    fn dnp3_framing_lengths() {
        // len 5: header only, 10 bytes; len 0x44 (63 user bytes): 10 + 63 + 2*4 = 81.
        assert_eq!(Framing::Dnp3.cut(&[0x05, 0x64, 0x05]), Cut::Frame(10));
        assert_eq!(Framing::Dnp3.cut(&[0x05, 0x64, 0x44]), Cut::Frame(81));
        assert_eq!(Framing::Dnp3.cut(&[0x05, 0x64, 0x04]), Cut::Invalid);
        assert_eq!(Framing::Dnp3.cut(&[0x05]), Cut::NeedMore);
        assert_eq!(Framing::Modbus.cut(&[0, 1, 0, 1, 0, 6, 1]), Cut::Invalid);
        assert_eq!(Framing::Modbus.cut(&[0, 1, 0, 0, 0, 6, 1]), Cut::NeedMore);
        assert_eq!(
            Framing::Modbus.cut(&[0, 1, 0, 0, 0, 6, 1, 3, 0, 0, 0, 1, 9]),
            Cut::Frame(12)
        );
    }

    #[test]
    fn flow_table_stays_bounded_under_a_scan() {
        let mut table: FlowTable<u32, Vec<u8>> = FlowTable::new(1000, Duration::from_secs(60));
        let mut evicted = 0;
        for i in 0..100_000u32 {
            table.entry(&i, Duration::from_millis(u64::from(i)), Vec::new, |_, _| {
                evicted += 1
            });
            assert!(table.len() <= 1000);
        }
        assert_eq!(evicted as u64, table.evicted());
        assert!(evicted >= 99_000);
        // The most recent flow survives.
        assert!(table.remove(&99_999).is_some());
    }

    proptest! {
        #[test]
        fn any_segmentation_and_reordering_yields_the_same_adus(
            cuts in proptest::collection::vec(1usize..40, 1..60),
            swaps in proptest::collection::vec((0usize..300, 1usize..32), 0..20),
            dups in proptest::collection::vec(0usize..100, 0..10),
            isn in proptest::num::u32::ANY,
        ) {
            let (bytes, adus) = sample_stream();
            let mut segments = Vec::new();
            let mut off = 0usize;
            let mut k = 0;
            while off < bytes.len() {
                let end = (off + cuts[k % cuts.len()]).min(bytes.len());
                segments.push((isn.wrapping_add(1).wrapping_add(off as u32), bytes[off..end].to_vec()));
                off = end;
                k += 1;
            }
            let n = segments.len();
            // Reordering within the held-back bound (MAX_PENDING_SEGMENTS); farther than that,
            // reassembly gives up on the gap by design (memory stays bounded).
            for (a, d) in swaps {
                let a = a % n;
                segments.swap(a, (a + d).min(n - 1));
            }
            for d in dups {
                let seg = segments[d % n].clone();
                segments.insert((d * 7) % n, seg);
            }
            let mut s = Stream::new();
            s.push(isn, true, &[], Framing::Modbus, &mut |_| {});
            let (frames, skipped) = frames_of(&mut s, &segments);
            prop_assert_eq!(frames, adus);
            prop_assert_eq!(skipped, 0);
        }

        #[test]
        fn arbitrary_bytes_never_panic_and_stay_bounded(
            segs in proptest::collection::vec((proptest::num::u32::ANY, proptest::collection::vec(proptest::num::u8::ANY, 0..300)), 0..80),
            dnp3 in proptest::bool::ANY,
        ) {
            let framing = if dnp3 { Framing::Dnp3 } else { Framing::Modbus };
            let mut s = Stream::new();
            for (seq, b) in &segs {
                s.push(*seq, false, b, framing, &mut |_| {});
                prop_assert!(s.buffered() <= MAX_PENDING_BYTES + 2 * 300 + framing.max_frame());
            }
            s.finish(framing, &mut |_| {});
        }
    }
}
