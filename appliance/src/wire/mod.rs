//! Decoders of OT protocols, shared by the enforcing broker (strict) and passive inspection
//! (lenient). Zero-copy views over bytes plus plain structs of meaning; no panic on any input.
pub mod modbus;

#[cfg(test)]
mod tests;
