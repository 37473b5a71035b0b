//! End-to-end: modbus_interop.
