//! Passive inspection of mirrored OT traffic: capture input (pcap/pcapng files, live receive-only
//! sockets), TCP reassembly, events, asset inventory, baseline and alerts. It never transmits.

pub mod alerts;
pub mod appliance;
pub mod baseline;
pub mod capture;
pub mod decode;
pub mod dnp3;
pub mod event;
pub mod grants;
pub mod inventory;
pub mod live;
pub mod monitor;
pub mod reassembly;

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
