//! Brokers that carry an authenticated session to an OT asset and enforce its grant on every
//! request. Modbus TCP now; generic TCP and RFB (VNC) come next and share the session shape.

pub mod modbus;
