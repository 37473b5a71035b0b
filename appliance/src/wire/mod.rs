//! Decoders of OT protocols, shared by the enforcing broker (strict) and passive inspection
//! (lenient). Zero-copy views over bytes plus plain structs of meaning; no panic on any input,
//! no I/O, no tokio.
//!
//! - [`modbus`]: Modbus TCP (MBAP framing, every public function code, vendor codes kept raw).
//! - [`dnp3`]: DNP3 link, transport and application layers.

pub mod dnp3;
pub mod modbus;

#[doc(hidden)]
pub mod fuzzing;

#[cfg(test)]
mod tests;
