//! Passive inspection of mirrored OT traffic: capture input (pcap/pcapng files, live receive-only
//! sockets), TCP reassembly, events, asset inventory, baseline and alerts. It never transmits.
//!
//! On the appliance (`appliance`, `service`): writes are judged against the grants, alerts are
//! journaled and revoke the grants whose rule opts in (`revoke_on`), inventory changes are
//! journaled and kept in the `inventory` state view (`inventory_view`), and `otgate serve` runs
//! the live capture as a task when `appliance.toml` has an `[inspect]` table.

pub mod alerts;
pub mod appliance;
pub mod baseline;
pub mod capture;
pub mod decode;
pub mod dnp3;
pub mod event;
pub mod fasthash;
pub mod grants;
pub mod inventory;
pub mod inventory_view;
pub mod live;
pub mod monitor;
pub mod reassembly;
pub mod service;

use std::path::Path;

/// Run every frame of the capture file at `path` through `monitor`, then flush it. `progress`
/// is called now and then with (bytes read, file size). Returns the frames read.
pub fn inspect_file(
    path: &Path,
    monitor: &mut monitor::Monitor,
    sink: &mut dyn monitor::Sink,
    mut progress: Option<&mut dyn FnMut(u64, u64)>,
) -> Result<u64, capture::CaptureError> {
    let mut file = capture::CaptureFile::open(path)?;
    let size = file.size();
    let mut n = 0u64;
    let position = file.position_handle();
    let result = file.for_each_frame(|frame| {
        monitor.process(frame, sink);
        n += 1;
        if n % 65_536 == 0 {
            if let Some(p) = progress.as_mut() {
                p(position.load(std::sync::atomic::Ordering::Relaxed), size);
            }
        }
    });
    monitor.finish(sink);
    result.map(|_| n)
}

/// Entry points for `cargo fuzz` (`appliance/fuzz/fuzz_targets/pcap_flow.rs`); not an API.
#[doc(hidden)]
pub mod fuzzing {
    use std::time::Duration;

    use super::alerts::Detector;
    use super::capture::{Frame, LinkType};
    use super::monitor::{Monitor, Sink};

    /// Feed `data` through the pipeline: byte 0 picks the link type, then frames follow, each
    /// behind a 2-byte big-endian length. Every observation is rendered to JSON as well, so the
    /// rendering is fuzzed too. Must never panic.
    pub fn pcap_flow(data: &[u8]) {
        let Some((&link, mut rest)) = data.split_first() else {
            return;
        };
        let link = match link % 5 {
            0 => LinkType::Ethernet,
            1 => LinkType::Null,
            2 => LinkType::LinuxSll,
            3 => LinkType::LinuxSll2,
            _ => LinkType::RawIp,
        };
        let mut monitor = Monitor::with_bounds(Detector::new(), 16, Duration::from_secs(1));
        let mut sink = |o: &super::event::Observation<'_>| {
            let _ = o.to_json();
            let _ = o.to_text();
        };
        let sink: &mut dyn Sink = &mut sink;
        let mut ts = Duration::from_secs(1_800_000_000);
        while let Some((len, tail)) = rest.split_first_chunk::<2>() {
            let len = usize::from(u16::from_be_bytes(*len));
            let (frame, tail) = tail.split_at(len.min(tail.len()));
            monitor.process(
                &Frame {
                    ts,
                    link,
                    data: frame,
                },
                sink,
            );
            ts += Duration::from_millis(1);
            rest = tail;
        }
        monitor.finish(sink);
    }

    /// Frames of a capture in the fuzz input format (for seeding the corpus).
    pub fn encode(link: u8, frames: &[&[u8]]) -> Vec<u8> {
        let mut out = vec![link];
        for f in frames {
            let len = u16::try_from(f.len()).unwrap_or(u16::MAX);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(f.get(..usize::from(len)).unwrap_or(f));
        }
        out
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn shared_captures_as_fuzz_inputs_do_not_panic_and_seed_the_corpus() {
            let shared =
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/pcaps");
            let shared = if shared.exists() {
                shared
            } else {
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/pcaps")
            };
            let Ok(dirs) = std::fs::read_dir(shared.join("modbus")) else {
                eprintln!("*** shared/pcaps not found: skipped ***");
                return;
            };
            let mut files: Vec<_> = dirs.filter_map(|e| e.ok()).map(|e| e.path()).collect();
            files.extend(
                std::fs::read_dir(shared.join("dnp3"))
                    .into_iter()
                    .flatten()
                    .filter_map(|e| e.ok())
                    .map(|e| e.path()),
            );
            for path in files
                .iter()
                .filter(|p| p.extension().is_some_and(|e| e == "pcap"))
            {
                let mut reader =
                    pcap_file::pcap::PcapReader::new(std::fs::File::open(path).unwrap()).unwrap();
                let link = match reader.header().datalink {
                    pcap_file::DataLink::NULL => 1u8,
                    _ => 0,
                };
                let mut frames = Vec::new();
                while let Some(p) = reader.next_packet() {
                    frames.push(p.unwrap().data.into_owned());
                    if frames.len() == 64 {
                        break;
                    }
                }
                let refs: Vec<&[u8]> = frames.iter().map(|f| f.as_slice()).collect();
                let input = encode(link, &refs);
                pcap_flow(&input);
                // Cut and flipped versions too.
                for cut in [1, 7, 40, input.len() / 2] {
                    pcap_flow(&input[..input.len().saturating_sub(cut)]);
                }
                let mut flipped = input.clone();
                for i in (3..flipped.len()).step_by(13) {
                    flipped[i] ^= 0x5A;
                }
                pcap_flow(&flipped);
            }
        }

        proptest::proptest! {
            #[test]
            fn arbitrary_inputs_never_panic(data in proptest::collection::vec(proptest::num::u8::ANY, 0..2048)) {
                pcap_flow(&data);
            }
        }
    }
}
