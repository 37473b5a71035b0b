//! From frames to observations: the lenient side of the shared `wire` decoders. A Modbus ADU
//! becomes a [`ModbusPdu`] (request fields, values, exception, pairing with its request by
//! transaction id and latency); a DNP3 link frame feeds its direction's transport reassembly and,
//! once a fragment is whole, becomes a [`Dnp3Fragment`].
//!
//! What it does not do: cut streams into frames (`reassembly`) or judge (`alerts`). Guarantees:
//! never panics; allocates only the text of a malformed-frame detail and, for DNP3, the bytes of a
//! fragment being reassembled (bounded by [`MAX_FRAGMENT`]); pending requests per flow are bounded
//! by [`MAX_PENDING`] (the oldest is forgotten first).

use std::net::SocketAddr;
use std::time::Duration;

use otgate_policy::modbus::{Access, ModbusClass};

use super::event::{Direction, Endpoints, ModbusPdu, Values};
use crate::wire::modbus::{Adu, FunctionCode, Request, Response};

pub use super::dnp3::{
    dnp3_start_plausible, Dnp3Direction, Dnp3Outcome, Dnp3Pending, MAX_FRAGMENT,
};

/// Requests awaiting a response, per flow.
pub const MAX_PENDING: usize = 32;

#[derive(Debug, Clone, Copy)]
struct PendingRequest {
    transaction_id: u16,
    unit: u8,
    function: u8,
    quantity: Option<u16>,
    ts: Duration,
}

/// Modbus requests of one flow awaiting their responses.
#[derive(Debug, Default)]
pub struct ModbusPending {
    requests: heapless::Deque<PendingRequest, MAX_PENDING>,
}

impl ModbusPending {
    fn remember(&mut self, request: PendingRequest) {
        if self.requests.is_full() {
            self.requests.pop_front();
        }
        let _ = self.requests.push_back(request);
    }

    fn take(&mut self, transaction_id: u16, unit: u8) -> Option<PendingRequest> {
        let n = self.requests.len();
        let mut found = None;
        for _ in 0..n {
            let Some(r) = self.requests.pop_front() else {
                break;
            };
            if found.is_none() && r.transaction_id == transaction_id && r.unit == unit {
                found = Some(r);
            } else {
                let _ = self.requests.push_back(r);
            }
        }
        found
    }
}

fn anomaly_names(bits: crate::wire::modbus::Anomalies, into: &mut heapless::Vec<&'static str, 8>) {
    for name in bits.names() {
        if !into.contains(&name) {
            let _ = into.push(name);
        }
    }
}

fn access_of_class(class: ModbusClass) -> Access {
    match class {
        ModbusClass::Read | ModbusClass::DeviceId => Access::Read,
        ModbusClass::Diagnostics => Access::Read,
        ModbusClass::Write | ModbusClass::Program => Access::Write,
    }
}

/// Decode one Modbus ADU seen going from `at.src` to `at.dst`; `server` is the flow's server
/// endpoint when known. Errors are the text of a malformed-frame observation.
pub fn modbus<'a>(
    at: &Endpoints,
    server: Option<SocketAddr>,
    pending: &mut ModbusPending,
    frame: &'a [u8],
) -> Result<ModbusPdu<'a>, String> {
    let (adu, header_anomalies) =
        Adu::new_lenient(frame).map_err(|e| format!("ADU does not decode: {e}"))?;
    let direction = match server {
        Some(s) if s == at.src => Direction::Response,
        _ => Direction::Request,
    };
    let function = adu.function();
    let base = function.base();
    let class = base.class();
    let unit = adu.unit_id();
    let transaction_id = adu.transaction_id();
    let mut pdu = ModbusPdu {
        direction,
        transaction_id,
        unit,
        function_code: base.0,
        function: base.name(),
        class,
        access: access_of_class(class),
        table: None,
        address: None,
        quantity: None,
        write_range: None,
        read_range: None,
        values: Values::None,
        sub_function: None,
        mei_type: None,
        exception_code: None,
        exception: None,
        latency: None,
        anomalies: heapless::Vec::new(),
    };
    anomaly_names(header_anomalies, &mut pdu.anomalies);
    match direction {
        Direction::Request => {
            if function.is_exception() {
                let _ = pdu.anomalies.push("malformed_pdu");
            } else {
                match Request::parse_lenient(adu.pdu()) {
                    Ok((request, anomalies)) => {
                        anomaly_names(anomalies, &mut pdu.anomalies);
                        fill_request(&mut pdu, &request, unit);
                    }
                    Err(_) => {
                        if !pdu.anomalies.contains(&"malformed_pdu") {
                            let _ = pdu.anomalies.push("malformed_pdu");
                        }
                    }
                }
            }
            pending.remember(PendingRequest {
                transaction_id,
                unit,
                function: base.0,
                quantity: pdu.quantity,
                ts: at.ts,
            });
        }
        Direction::Response => {
            let request = pending.take(transaction_id, unit);
            let asked = request.map(|r| FunctionCode(r.function)).unwrap_or(base);
            if let Some(r) = request {
                pdu.latency = Some(at.ts.saturating_sub(r.ts));
            }
            match Response::parse_lenient(asked, adu.pdu()) {
                Ok((response, anomalies)) => {
                    anomaly_names(anomalies, &mut pdu.anomalies);
                    fill_response(&mut pdu, &response, request.and_then(|r| r.quantity));
                }
                Err(_) => {
                    if !pdu.anomalies.contains(&"malformed_pdu") {
                        let _ = pdu.anomalies.push("malformed_pdu");
                    }
                    if function.is_exception() {
                        pdu.exception_code = adu.pdu().get(1).copied();
                    }
                }
            }
            pdu.access = Access::Read;
        }
    }
    Ok(pdu)
}

fn fill_request<'a>(pdu: &mut ModbusPdu<'a>, request: &Request<'a>, unit: u8) {
    match *request {
        Request::ReadCoils { start, quantity }
        | Request::ReadDiscreteInputs { start, quantity }
        | Request::ReadHoldingRegisters { start, quantity }
        | Request::ReadInputRegisters { start, quantity } => {
            pdu.address = Some(start);
            pdu.quantity = Some(quantity);
        }
        Request::WriteSingleCoil { address, on } => {
            pdu.address = Some(address);
            pdu.quantity = Some(1);
            pdu.values = Values::Coil(on);
        }
        Request::WriteSingleRegister { address, value } => {
            pdu.address = Some(address);
            pdu.quantity = Some(1);
            pdu.values = Values::Register(value);
        }
        Request::Diagnostics { sub_function, .. } => pdu.sub_function = Some(sub_function),
        Request::WriteMultipleCoils {
            start,
            quantity,
            values,
        } => {
            pdu.address = Some(start);
            pdu.quantity = Some(quantity);
            pdu.values = Values::Coils(values, quantity);
        }
        Request::WriteMultipleRegisters {
            start,
            quantity,
            values,
        } => {
            pdu.address = Some(start);
            pdu.quantity = Some(quantity);
            pdu.values = Values::Registers(values);
        }
        Request::MaskWriteRegister { address, .. } | Request::ReadFifoQueue { address } => {
            pdu.address = Some(address);
        }
        Request::ReadWriteMultipleRegisters {
            read_start,
            read_quantity,
            values,
            ..
        } => {
            pdu.address = Some(read_start);
            pdu.quantity = Some(read_quantity);
            pdu.values = Values::Registers(values);
        }
        Request::ReadDeviceIdentification { .. } => pdu.mei_type = Some(0x0E),
        Request::EncapsulatedInterface { mei_type, .. } => pdu.mei_type = Some(mei_type),
        _ => {}
    }
    let mut access = Access::Read;
    for op in request.ops(unit) {
        if pdu.table.is_none() {
            pdu.table = op.table;
        }
        match op.access {
            Access::Write => {
                access = Access::Write;
                pdu.write_range = op.range;
                pdu.table = op.table.or(pdu.table);
            }
            Access::Read => pdu.read_range = op.range,
        }
    }
    pdu.access = access;
}

fn fill_response<'a>(pdu: &mut ModbusPdu<'a>, response: &Response<'a>, asked: Option<u16>) {
    match *response {
        Response::ReadCoils { values } | Response::ReadDiscreteInputs { values } => {
            let bits = u16::try_from(values.len() * 8).unwrap_or(u16::MAX);
            pdu.values = Values::Coils(values, asked.map_or(bits, |q| q.min(bits)));
        }
        Response::ReadHoldingRegisters { values }
        | Response::ReadInputRegisters { values }
        | Response::ReadWriteMultipleRegisters { values } => pdu.values = Values::Registers(values),
        Response::WriteSingleCoil { address, on } => {
            pdu.address = Some(address);
            pdu.values = Values::Coil(on);
        }
        Response::WriteSingleRegister { address, value } => {
            pdu.address = Some(address);
            pdu.values = Values::Register(value);
        }
        Response::WriteMultipleCoils { start, quantity }
        | Response::WriteMultipleRegisters { start, quantity } => {
            pdu.address = Some(start);
            pdu.quantity = Some(quantity);
        }
        Response::Diagnostics { sub_function, .. } => pdu.sub_function = Some(sub_function),
        Response::ReadDeviceIdentification { .. } => pdu.mei_type = Some(0x0E),
        Response::EncapsulatedInterface { mei_type, .. } => pdu.mei_type = Some(mei_type),
        Response::Exception(e) => {
            pdu.exception_code = Some(e.code.0);
            pdu.exception = e.code.name();
        }
        _ => {}
    }
}
