//! Detection: turns observations into [`Alert`]s. Some alerts need no baseline (restarts and
//! disturbing diagnostics, program and file transfer, broadcast writes, exception bursts,
//! malformed frames and bad CRCs, scans, non-OT traffic on OT ports); some compare against a
//! learned [`Baseline`] (new talker, new function code, write outside the learned ranges, rate);
//! and one needs the appliance's grants (a write to a policy asset that no grant covers).
//!
//! What it does not do: act on alerts (revoking grants is the daemon's, where the policy says
//! so) or journal them (the caller does). Guarantees: every table it keeps is bounded (it is
//! cleared when it reaches [`MAX_TRACKED`] entries), and repeated alerts of one kind for one flow
//! are suppressed for [`REPEAT_AFTER`] of capture time and counted instead.

use std::collections::VecDeque;

use super::fasthash::{FastMap as HashMap, FastSet as HashSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use otgate_policy::dnp3::{class_of as dnp3_class, Dnp3Class};
use otgate_policy::modbus::{Access, ModbusClass, ModbusOp};

use super::baseline::{Baseline, PairKey};
use super::event::{
    instant, Alert, AlertKind, Direction, Dnp3Fragment, Endpoints, Malformed, ModbusPdu, Protocol,
    Severity,
};
use super::grants::GrantCoverage;

/// The most entries any tracking table holds before it is cleared.
pub const MAX_TRACKED: usize = 65_536;
/// How long (capture time) an alert of one kind for one flow and subject stays quiet.
pub const REPEAT_AFTER: Duration = Duration::from_secs(60);
/// Exceptions from one outstation to one master within [`EXCEPTION_WINDOW`] that make a burst.
pub const EXCEPTION_BURST: usize = 10;
/// The window of an exception burst.
pub const EXCEPTION_WINDOW: Duration = Duration::from_secs(10);
/// Distinct (host, port) targets one source opens connections to before it counts as a scan.
pub const SCAN_TARGETS: usize = 16;
/// Distinct Modbus unit ids one master addresses on one outstation before it counts as a scan.
pub const SCAN_UNITS: usize = 32;
/// Distinct function codes answered "illegal function" before it counts as a scan.
pub const SCAN_FUNCTIONS: usize = 8;
/// A pair's messages in one minute above this many times its learned peak is a rate anomaly.
pub const RATE_FACTOR: u64 = 3;

#[derive(Debug, Default)]
struct ScanState {
    targets: HashSet<SocketAddr>,
    /// Per outstation, a bitmap of the unit ids addressed.
    units: HashMap<IpAddr, [u64; 4]>,
    illegal_functions: HashSet<u8>,
    alerted_targets: bool,
    alerted_units: bool,
    alerted_functions: bool,
}

/// The detector's state.
pub struct Detector {
    baseline: Option<Baseline>,
    grants: Option<Box<dyn GrantCoverage + Send>>,
    new_pairs: HashSet<PairKey>,
    new_functions: HashSet<(PairKey, u8)>,
    quiet_until: HashMap<(AlertKind, SocketAddr, SocketAddr, u32), Duration>,
    exceptions: HashMap<(IpAddr, IpAddr), VecDeque<Duration>>,
    scans: HashMap<IpAddr, ScanState>,
    rates: HashMap<PairKey, (u64, u64, bool)>,
    suppressed: u64,
    raised: u64,
}

impl std::fmt::Debug for Detector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Detector")
            .field("baseline", &self.baseline.is_some())
            .field("grants", &self.grants.is_some())
            .field("raised", &self.raised)
            .field("suppressed", &self.suppressed)
            .finish_non_exhaustive()
    }
}

fn bound<K, V>(map: &mut HashMap<K, V>) {
    if map.len() >= MAX_TRACKED {
        map.clear();
    }
}

fn bound_set<K>(set: &mut HashSet<K>) {
    if set.len() >= MAX_TRACKED {
        set.clear();
    }
}

impl Detector {
    /// A detector with neither baseline nor grants: only the alerts that need neither.
    pub fn new() -> Self {
        Self {
            baseline: None,
            grants: None,
            new_pairs: HashSet::default(),
            new_functions: HashSet::default(),
            quiet_until: HashMap::default(),
            exceptions: HashMap::default(),
            scans: HashMap::default(),
            rates: HashMap::default(),
            suppressed: 0,
            raised: 0,
        }
    }

    /// Compare traffic against `baseline` as well.
    pub fn with_baseline(mut self, baseline: Baseline) -> Self {
        self.baseline = Some(baseline);
        self
    }

    /// Judge writes to policy assets against `grants` as well.
    pub fn with_grants(mut self, grants: Box<dyn GrantCoverage + Send>) -> Self {
        self.grants = Some(grants);
        self
    }

    /// Alerts raised so far.
    pub fn raised(&self) -> u64 {
        self.raised
    }

    /// Repeats suppressed so far.
    pub fn suppressed(&self) -> u64 {
        self.suppressed
    }

    fn asset_name(&self, addr: SocketAddr) -> String {
        self.grants
            .as_ref()
            .and_then(|g| g.asset(addr.ip(), addr.port()))
            .unwrap_or_else(|| addr.ip().to_string())
    }

    #[allow(clippy::too_many_arguments)]
    fn raise(
        &mut self,
        at: &Endpoints,
        kind: AlertKind,
        severity: Severity,
        subject: u32,
        device: SocketAddr,
        protocol: Option<Protocol>,
        detail: String,
        out: &mut impl FnMut(Alert),
    ) {
        let key = (kind, at.src, at.dst, subject);
        if let Some(until) = self.quiet_until.get(&key) {
            if at.ts < *until {
                self.suppressed += 1;
                return;
            }
        }
        bound(&mut self.quiet_until);
        self.quiet_until.insert(key, at.ts + REPEAT_AFTER);
        self.raised += 1;
        out(Alert {
            time: instant(at.ts),
            kind,
            severity,
            flow: format!("{} -> {}", at.src, at.dst),
            asset: self.asset_name(device),
            protocol,
            detail,
        });
    }

    /// A connection attempt (TCP SYN) from `at.src` to `at.dst`: feeds scan detection.
    pub fn on_connection_attempt(&mut self, at: &Endpoints, out: &mut impl FnMut(Alert)) {
        bound(&mut self.scans);
        let state = self.scans.entry(at.src.ip()).or_default();
        if state.alerted_targets || state.targets.len() >= SCAN_TARGETS {
            return;
        }
        state.targets.insert(at.dst);
        if state.targets.len() >= SCAN_TARGETS {
            state.alerted_targets = true;
            let detail = format!(
                "{} opened connections to {} distinct host:port targets",
                at.src.ip(),
                SCAN_TARGETS
            );
            self.raise(
                at,
                AlertKind::Scan,
                Severity::Warning,
                0,
                at.dst,
                None,
                detail,
                out,
            );
        }
    }

    /// Bytes on an OT port that are not the port's protocol.
    pub fn on_non_ot_traffic(
        &mut self,
        at: &Endpoints,
        expected: Protocol,
        out: &mut impl FnMut(Alert),
    ) {
        let detail = format!(
            "traffic on port {} does not look like {}",
            at.dst.port().min(at.src.port()),
            expected.name()
        );
        let device = if at.dst.port() < at.src.port() {
            at.dst
        } else {
            at.src
        };
        self.raise(
            at,
            AlertKind::NonOtTraffic,
            Severity::Warning,
            0,
            device,
            Some(expected),
            detail,
            out,
        );
    }

    /// Bytes that did not decode.
    pub fn on_malformed(&mut self, at: &Endpoints, m: &Malformed, out: &mut impl FnMut(Alert)) {
        let (kind, severity) = if m.bad_crc {
            (AlertKind::BadCrc, Severity::Warning)
        } else {
            (AlertKind::MalformedFrame, Severity::Warning)
        };
        let detail = format!("{}: {}", m.protocol.name(), m.detail);
        self.raise(at, kind, severity, 0, at.dst, Some(m.protocol), detail, out);
    }

    fn baseline_checks(
        &mut self,
        at: &Endpoints,
        key: PairKey,
        function: u8,
        device: SocketAddr,
        out: &mut impl FnMut(Alert),
    ) {
        let Some(baseline) = &self.baseline else {
            return;
        };
        let known = baseline.pair(&key).map(|profile| {
            (
                profile.functions.contains(&function),
                profile.peak_per_minute,
            )
        });
        match known {
            None => {
                bound_set(&mut self.new_pairs);
                if self.new_pairs.insert(key) {
                    let detail = format!(
                        "{} master {} and outstation {} never talked in the baseline",
                        key.protocol.name(),
                        key.master,
                        key.outstation
                    );
                    self.raise(
                        at,
                        AlertKind::NewTalker,
                        Severity::Warning,
                        0,
                        device,
                        Some(key.protocol),
                        detail,
                        out,
                    );
                }
            }
            Some((has_function, peak)) => {
                if !has_function {
                    bound_set(&mut self.new_functions);
                    if self.new_functions.insert((key, function)) {
                        let detail = format!(
                            "{} function code {function} between {} and {} is not in the baseline",
                            key.protocol.name(),
                            key.master,
                            key.outstation
                        );
                        self.raise(
                            at,
                            AlertKind::NewFunctionCode,
                            Severity::Warning,
                            u32::from(function),
                            device,
                            Some(key.protocol),
                            detail,
                            out,
                        );
                    }
                }
                let minute = at.ts.as_secs() / 60;
                bound(&mut self.rates);
                let slot = self.rates.entry(key).or_insert((minute, 0, false));
                if slot.0 != minute {
                    *slot = (minute, 0, false);
                }
                slot.1 += 1;
                let limit = peak.saturating_mul(RATE_FACTOR).max(60);
                if slot.1 > limit && !slot.2 {
                    slot.2 = true;
                    let detail = format!(
                        "more than {limit} messages in one minute between {} and {} (learned peak {peak})",
                        key.master, key.outstation
                    );
                    self.raise(
                        at,
                        AlertKind::RateAnomaly,
                        Severity::Warning,
                        0,
                        device,
                        Some(key.protocol),
                        detail,
                        out,
                    );
                }
            }
        }
    }

    /// One Modbus PDU.
    pub fn on_modbus(&mut self, at: &Endpoints, pdu: &ModbusPdu<'_>, out: &mut impl FnMut(Alert)) {
        let key = PairKey::of(at, pdu.direction, Protocol::Modbus);
        let device = if pdu.direction == Direction::Request {
            at.dst
        } else {
            at.src
        };
        let fc = pdu.function_code;
        let name = pdu.function.unwrap_or("unassigned function");
        let proto = Some(Protocol::Modbus);
        self.baseline_checks(at, key, fc, device, out);

        if pdu.direction == Direction::Response {
            if let Some(code) = pdu.exception_code {
                self.on_modbus_exception(at, key, fc, code, device, out);
            }
            return;
        }

        // Requests from here on.
        if fc == 8 {
            match pdu.sub_function {
                Some(1) => self.raise(
                    at,
                    AlertKind::Diagnostics,
                    Severity::Critical,
                    1,
                    device,
                    proto,
                    format!(
                        "diagnostics: restart communications option (unit {})",
                        pdu.unit
                    ),
                    out,
                ),
                Some(4) => self.raise(
                    at,
                    AlertKind::Diagnostics,
                    Severity::Critical,
                    4,
                    device,
                    proto,
                    format!("diagnostics: force listen only mode (unit {})", pdu.unit),
                    out,
                ),
                Some(sub @ (0x0A | 0x14)) => self.raise(
                    at,
                    AlertKind::Diagnostics,
                    Severity::Info,
                    u32::from(sub),
                    device,
                    proto,
                    format!(
                        "diagnostics: clear counters sub-function {sub} (unit {})",
                        pdu.unit
                    ),
                    out,
                ),
                _ => {}
            }
        }
        if pdu.class == ModbusClass::Program {
            self.raise(
                at,
                AlertKind::ProgramTransfer,
                Severity::Critical,
                u32::from(fc),
                device,
                proto,
                format!(
                    "programming or vendor function code {fc} ({name}) to unit {}",
                    pdu.unit
                ),
                out,
            );
        }
        if fc == 21 {
            self.raise(
                at,
                AlertKind::FileTransfer,
                Severity::Warning,
                21,
                device,
                proto,
                format!("write file record to unit {}", pdu.unit),
                out,
            );
        }
        let writes = pdu.access == Access::Write;
        if writes && pdu.unit == 0 {
            self.raise(
                at,
                AlertKind::BroadcastWrite,
                Severity::Critical,
                u32::from(fc),
                device,
                proto,
                format!("broadcast {name} (unit 0)"),
                out,
            );
        }
        bound(&mut self.scans);
        let scan = self.scans.entry(at.src.ip()).or_default();
        if !scan.alerted_units {
            if scan.units.len() >= 1024 && !scan.units.contains_key(&at.dst.ip()) {
                scan.units.clear();
            }
            let bits = scan.units.entry(at.dst.ip()).or_default();
            if let Some(word) = bits.get_mut(usize::from(pdu.unit / 64)) {
                *word |= 1 << (pdu.unit % 64);
            }
            let on_this: u32 = bits.iter().map(|w| w.count_ones()).sum();
            if on_this as usize >= SCAN_UNITS {
                scan.alerted_units = true;
                let detail = format!(
                    "{} addressed {SCAN_UNITS} distinct unit ids on {}",
                    at.src.ip(),
                    at.dst.ip()
                );
                self.raise(
                    at,
                    AlertKind::Scan,
                    Severity::Warning,
                    1,
                    device,
                    proto,
                    detail,
                    out,
                );
            }
        }
        if writes {
            if let Some(baseline) = &self.baseline {
                if let (Some(profile), Some(table), Some(range)) =
                    (baseline.pair(&key), pdu.table, pdu.write_range)
                {
                    let learned = profile.write_ranges.get(&table);
                    if !learned.is_some_and(|set| set.covers(range)) {
                        let detail = format!(
                            "{name} to {table:?} {range} on unit {}; learned writes: {}",
                            pdu.unit,
                            learned
                                .map(|s| s.to_string())
                                .filter(|s| !s.is_empty())
                                .unwrap_or_else(|| "none".into())
                        );
                        self.raise(
                            at,
                            AlertKind::WriteOutsideBaseline,
                            Severity::Warning,
                            u32::from(range.first()),
                            device,
                            proto,
                            detail,
                            out,
                        );
                    }
                }
            }
            self.check_grants(at, pdu, device, out);
        }
    }

    fn check_grants(
        &mut self,
        at: &Endpoints,
        pdu: &ModbusPdu<'_>,
        device: SocketAddr,
        out: &mut impl FnMut(Alert),
    ) {
        let Some(grants) = &self.grants else { return };
        let Some(asset) = grants.asset(device.ip(), device.port()) else {
            return;
        };
        let op = ModbusOp {
            unit: pdu.unit,
            function: pdu.function_code,
            sub_function: pdu.sub_function.or(pdu.mei_type.map(u16::from)),
            class: pdu.class,
            access: pdu.access,
            table: pdu.table,
            range: pdu.write_range,
        };
        if grants.covers(device.ip(), device.port(), &op, instant(at.ts)) {
            return;
        }
        let what = match (pdu.table, pdu.write_range) {
            (Some(t), Some(r)) => format!(" to {t:?} {r}"),
            _ => String::new(),
        };
        let detail = format!(
            "{}{what} (unit {}) from {} on {asset}: no active grant covers it (traffic bypassed the broker)",
            pdu.function.unwrap_or("write"),
            pdu.unit,
            at.src.ip()
        );
        let subject = u32::from(pdu.function_code) << 16
            | u32::from(pdu.write_range.map_or(0, |r| r.first()));
        self.raise(
            at,
            AlertKind::UnauthorizedWrite,
            Severity::Critical,
            subject,
            device,
            Some(Protocol::Modbus),
            detail,
            out,
        );
    }

    fn on_modbus_exception(
        &mut self,
        at: &Endpoints,
        key: PairKey,
        fc: u8,
        code: u8,
        device: SocketAddr,
        out: &mut impl FnMut(Alert),
    ) {
        bound(&mut self.exceptions);
        let times = self
            .exceptions
            .entry((key.outstation, key.master))
            .or_default();
        times.push_back(at.ts);
        while times
            .front()
            .is_some_and(|t| at.ts.saturating_sub(*t) > EXCEPTION_WINDOW)
        {
            times.pop_front();
        }
        if times.len() > EXCEPTION_BURST {
            times.pop_front();
        }
        if times.len() >= EXCEPTION_BURST {
            let detail = format!(
                "{EXCEPTION_BURST} exception responses within {}s from {} to {}",
                EXCEPTION_WINDOW.as_secs(),
                key.outstation,
                key.master
            );
            self.raise(
                at,
                AlertKind::ExceptionBurst,
                Severity::Warning,
                0,
                device,
                Some(Protocol::Modbus),
                detail,
                out,
            );
        }
        if code == 1 {
            bound(&mut self.scans);
            let scan = self.scans.entry(key.master).or_default();
            if !scan.alerted_functions {
                scan.illegal_functions.insert(fc);
                if scan.illegal_functions.len() >= SCAN_FUNCTIONS {
                    scan.alerted_functions = true;
                    let detail = format!("{} tried {SCAN_FUNCTIONS} function codes the device refused as illegal (function code sweep)", key.master);
                    self.raise(
                        at,
                        AlertKind::Scan,
                        Severity::Warning,
                        2,
                        device,
                        Some(Protocol::Modbus),
                        detail,
                        out,
                    );
                }
            }
        }
    }

    /// One DNP3 application fragment.
    pub fn on_dnp3(&mut self, at: &Endpoints, f: &Dnp3Fragment, out: &mut impl FnMut(Alert)) {
        let key = PairKey::of(at, f.direction, Protocol::Dnp3);
        let device = if f.direction == Direction::Request {
            at.dst
        } else {
            at.src
        };
        let fc = f.function_code;
        let name = f.function.unwrap_or("unassigned function");
        let proto = Some(Protocol::Dnp3);
        self.baseline_checks(at, key, fc, device, out);
        if f.direction != Direction::Request {
            return;
        }
        let subject = u32::from(fc);
        match fc {
            0x0D | 0x0E => self.raise(
                at,
                AlertKind::Restart,
                Severity::Critical,
                subject,
                device,
                proto,
                format!("{name} to outstation {}", f.link_dst),
                out,
            ),
            0x11 | 0x12 => self.raise(
                at,
                AlertKind::Restart,
                Severity::Critical,
                subject,
                device,
                proto,
                format!(
                    "{name} (application start/stop) to outstation {}",
                    f.link_dst
                ),
                out,
            ),
            _ => {}
        }
        if dnp3_class(fc) == Dnp3Class::File && fc != 0x13 {
            self.raise(
                at,
                AlertKind::FileTransfer,
                Severity::Warning,
                subject,
                device,
                proto,
                format!("file function {name} to outstation {}", f.link_dst),
                out,
            );
        }
        if f.link_dst >= 0xFFFD && dnp3_class(fc) == Dnp3Class::Control {
            self.raise(
                at,
                AlertKind::BroadcastWrite,
                Severity::Critical,
                subject,
                device,
                proto,
                format!("broadcast {name} (link address {:#06x})", f.link_dst),
                out,
            );
        }
    }
}

impl Default for Detector {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::baseline::{Learner, PairProfile};
    use crate::inspect::event::{Values, L4};
    use crate::inspect::grants::GrantWindows;
    use otgate_policy::modbus::{AddressRange, Table};

    fn at(src: &str, dst: &str, secs: u64) -> Endpoints {
        Endpoints {
            ts: Duration::from_secs(1_800_000_000 + secs),
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            src_mac: None,
            dst_mac: None,
            l4: L4::Tcp,
        }
    }

    const M: &str = "10.0.0.1:40000";
    const P: &str = "10.0.0.2:502";

    fn request(fc: u8) -> ModbusPdu<'static> {
        let class = otgate_policy::modbus::class_of(fc);
        ModbusPdu {
            direction: Direction::Request,
            transaction_id: 1,
            unit: 1,
            function_code: fc,
            function: None,
            class,
            access: if matches!(class, ModbusClass::Write | ModbusClass::Program) {
                Access::Write
            } else {
                Access::Read
            },
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
        }
    }

    fn write(first: u16, last: u16) -> ModbusPdu<'static> {
        let mut p = request(16);
        p.table = Some(Table::HoldingRegisters);
        p.write_range = Some(AddressRange::new(first, last).unwrap());
        p
    }

    fn exception(code: u8, fc: u8) -> ModbusPdu<'static> {
        let mut p = request(fc);
        p.direction = Direction::Response;
        p.access = Access::Read;
        p.exception_code = Some(code);
        p
    }

    fn dnp3(fc: u8, link_dst: u16) -> Dnp3Fragment {
        Dnp3Fragment {
            direction: if fc >= 0x81 {
                Direction::Response
            } else {
                Direction::Request
            },
            link_src: 1,
            link_dst,
            function_code: fc,
            function: None,
            sequence: 0,
            unsolicited: false,
            iin: None,
            objects: heapless::Vec::new(),
            latency: None,
            anomalies: heapless::Vec::new(),
        }
    }

    fn kinds(
        d: &mut Detector,
        f: impl FnOnce(&mut Detector, &mut dyn FnMut(Alert)),
    ) -> Vec<AlertKind> {
        let mut out = Vec::new();
        f(d, &mut |a: Alert| out.push(a.kind));
        out
    }

    #[test]
    fn disturbing_diagnostics_program_file_and_broadcast_writes() {
        let mut d = Detector::new();
        let mut restart = request(8);
        restart.sub_function = Some(1);
        let mut listen_only = request(8);
        listen_only.sub_function = Some(4);
        let mut echo = request(8);
        echo.sub_function = Some(0);
        let mut broadcast = write(10, 10);
        broadcast.unit = 0;
        let a = at(M, P, 0);
        assert_eq!(
            kinds(&mut d, |d, o| d.on_modbus(&a, &restart, &mut |x| o(x))),
            [AlertKind::Diagnostics]
        );
        assert_eq!(
            kinds(&mut d, |d, o| d.on_modbus(&a, &listen_only, &mut |x| o(x))),
            [AlertKind::Diagnostics]
        );
        assert!(kinds(&mut d, |d, o| d.on_modbus(&a, &echo, &mut |x| o(x))).is_empty());
        assert_eq!(
            kinds(&mut d, |d, o| d.on_modbus(&a, &request(90), &mut |x| o(x))),
            [AlertKind::ProgramTransfer]
        );
        assert_eq!(
            kinds(&mut d, |d, o| d.on_modbus(&a, &request(21), &mut |x| o(x))),
            [AlertKind::FileTransfer]
        );
        assert_eq!(
            kinds(&mut d, |d, o| d.on_modbus(&a, &broadcast, &mut |x| o(x))),
            [AlertKind::BroadcastWrite]
        );
        // Repeats within a minute are counted, not raised again.
        assert!(kinds(&mut d, |d, o| d.on_modbus(&a, &request(90), &mut |x| o(x))).is_empty());
        assert_eq!(d.suppressed(), 1);
        let later = at(M, P, 61);
        assert_eq!(
            kinds(&mut d, |d, o| d.on_modbus(
                &later,
                &request(90),
                &mut |x| o(x)
            )),
            [AlertKind::ProgramTransfer]
        );
    }

    #[test]
    fn dnp3_restarts_application_stop_file_functions_and_broadcast_controls() {
        let mut d = Detector::new();
        let a = at("10.0.0.1:40000", "10.0.0.3:20000", 0);
        for (fc, kind) in [
            (0x0D, AlertKind::Restart),
            (0x0E, AlertKind::Restart),
            (0x12, AlertKind::Restart),
            (0x11, AlertKind::Restart),
            (0x19, AlertKind::FileTransfer),
            (0x1B, AlertKind::FileTransfer),
        ] {
            assert_eq!(
                kinds(&mut d, |d, o| d.on_dnp3(&a, &dnp3(fc, 10), &mut |x| o(x))),
                [kind],
                "fc {fc}"
            );
        }
        assert_eq!(
            kinds(&mut d, |d, o| d.on_dnp3(
                &a,
                &dnp3(0x05, 0xFFFF),
                &mut |x| o(x)
            )),
            [AlertKind::BroadcastWrite]
        );
        assert!(kinds(&mut d, |d, o| d.on_dnp3(&a, &dnp3(0x01, 10), &mut |x| o(x))).is_empty());
    }

    #[test]
    fn exception_bursts_function_sweeps_unit_sweeps_and_port_scans() {
        let mut d = Detector::new();
        let mut raised = Vec::new();
        for i in 0..EXCEPTION_BURST as u64 {
            let a = at(P, M, i);
            d.on_modbus(&a, &exception(2, 3), &mut |x| raised.push(x.kind));
        }
        assert_eq!(raised, [AlertKind::ExceptionBurst]);
        raised.clear();
        for fc in 100..100 + SCAN_FUNCTIONS as u8 {
            d.on_modbus(
                &at(P, M, 100 + u64::from(fc)),
                &exception(1, fc),
                &mut |x| raised.push(x.kind),
            );
        }
        assert!(raised.contains(&AlertKind::Scan), "{raised:?}");
        raised.clear();
        for unit in 0..SCAN_UNITS as u8 {
            let mut r = request(3);
            r.unit = unit + 1;
            d.on_modbus(&at("10.0.0.9:40000", P, 0), &r, &mut |x| {
                raised.push(x.kind)
            });
        }
        assert_eq!(raised, [AlertKind::Scan]);
        raised.clear();
        for port in 0..SCAN_TARGETS as u16 {
            let dst = format!("10.0.1.{}:{}", port % 4, 500 + port);
            d.on_connection_attempt(&at("10.0.0.66:5555", &dst, 0), &mut |x| raised.push(x.kind));
        }
        assert_eq!(raised, [AlertKind::Scan]);
    }

    #[test]
    fn malformed_bad_crc_and_non_ot_traffic() {
        let mut d = Detector::new();
        let a = at(M, P, 0);
        let m = Malformed {
            protocol: Protocol::Dnp3,
            detail: "x".into(),
            bad_crc: true,
        };
        assert_eq!(
            kinds(&mut d, |d, o| d.on_malformed(&a, &m, &mut |x| o(x))),
            [AlertKind::BadCrc]
        );
        let m = Malformed {
            protocol: Protocol::Modbus,
            detail: "x".into(),
            bad_crc: false,
        };
        assert_eq!(
            kinds(&mut d, |d, o| d.on_malformed(&a, &m, &mut |x| o(x))),
            [AlertKind::MalformedFrame]
        );
        assert_eq!(
            kinds(&mut d, |d, o| d.on_non_ot_traffic(
                &a,
                Protocol::Modbus,
                &mut |x| o(x)
            )),
            [AlertKind::NonOtTraffic]
        );
    }

    #[test]
    fn baseline_new_talker_new_function_write_outside_and_rate() {
        let mut learner = Learner::new("test");
        let a = at(M, P, 0);
        learner.observe_modbus(&a, &request(3));
        learner.observe_modbus(&a, &write(100, 109));
        let baseline = learner.finish();
        let mut d = Detector::new().with_baseline(baseline);
        assert!(kinds(&mut d, |d, o| d.on_modbus(
            &a,
            &write(100, 105),
            &mut |x| o(x)
        ))
        .is_empty());
        assert_eq!(
            kinds(&mut d, |d, o| d.on_modbus(
                &a,
                &write(105, 115),
                &mut |x| o(x)
            )),
            [AlertKind::WriteOutsideBaseline]
        );
        assert_eq!(
            kinds(&mut d, |d, o| d.on_modbus(&a, &request(4), &mut |x| o(x))),
            [AlertKind::NewFunctionCode]
        );
        assert!(
            kinds(&mut d, |d, o| d.on_modbus(&a, &request(4), &mut |x| o(x))).is_empty(),
            "once per pair and code"
        );
        let stranger = at("10.0.0.50:40000", P, 0);
        assert_eq!(
            kinds(&mut d, |d, o| d.on_modbus(
                &stranger,
                &request(3),
                &mut |x| o(x)
            )),
            [AlertKind::NewTalker]
        );
        let mut raised = Vec::new();
        for _ in 0..200 {
            d.on_modbus(&at(M, P, 120), &request(3), &mut |x| raised.push(x.kind));
        }
        assert_eq!(raised, [AlertKind::RateAnomaly]);
        let _ = PairProfile::default();
    }

    #[test]
    fn unauthorized_write_only_for_policy_assets_without_a_covering_grant() {
        let plc: SocketAddr = P.parse().unwrap();
        let g = GrantWindows::new([("line3-plc".to_string(), plc)]);
        let mut d = Detector::new().with_grants(Box::new(g));
        let a = at(M, P, 0);
        assert_eq!(
            kinds(&mut d, |d, o| d.on_modbus(
                &a,
                &write(100, 100),
                &mut |x| o(x)
            )),
            [AlertKind::UnauthorizedWrite]
        );
        assert!(
            kinds(&mut d, |d, o| d.on_modbus(&a, &request(3), &mut |x| o(x))).is_empty(),
            "reads are not judged"
        );
        let elsewhere = at(M, "10.0.0.77:502", 0);
        assert!(kinds(&mut d, |d, o| d.on_modbus(
            &elsewhere,
            &write(100, 100),
            &mut |x| o(x)
        ))
        .is_empty());
    }
}
