//! Simulators for the demo and the tests: a Modbus TCP PLC (tokio-modbus server) and a traffic
//! generator that writes large, valid captures.

pub mod plc;
pub mod traffic;
