//! Fuzz the whole passive-inspection pipeline: arbitrary frames (link type chosen by the first
//! byte, each frame length-prefixed) through slicing, TCP/UDP flows, reassembly, Modbus and DNP3
//! decoding, inventory and detection. Seeds: `corpus/pcap_flow/` (frames of `shared/pcaps`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    otgate::inspect::fuzzing::pcap_flow(data);
});
