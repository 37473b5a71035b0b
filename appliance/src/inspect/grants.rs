//! Grant correlation: does any grant explain a write seen on the wire? A write to a policy asset
//! that no active grant covers bypassed the broker, and inspection reports it as
//! `unauthorized_write`.
//!
//! [`GrantCoverage`] is the question; [`GrantWindows`] answers it from the policy's asset
//! addresses and a list of grant windows (each: asset, address, start, end, and what its scope
//! allows). The windows come from the journal's grant records when the appliance has them, or
//! from a plain list in tests.
//!
//! What it does not do: decide access (the policy engine does) or read the clock: the instant
//! asked about is the capture time of the write.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use otgate_policy::modbus::ModbusOp;

/// Whether a grant explains an operation seen on the wire.
pub trait GrantCoverage {
    /// Whether a grant active at `at` covers `op` sent to `dst:port`.
    fn covers(&self, dst: IpAddr, port: u16, op: &ModbusOp, at: DateTime<Utc>) -> bool;

    /// The policy asset at `dst:port`, if policy names one; only writes to named assets are
    /// judged.
    fn asset(&self, dst: IpAddr, port: u16) -> Option<String>;
}

/// What a grant's scope allows, as a predicate over Modbus operations.
pub type ScopeCheck = Arc<dyn Fn(&ModbusOp) -> bool + Send + Sync>;

/// One grant's window on one asset.
#[derive(Clone)]
pub struct GrantWindow {
    /// The grant's id (for details).
    pub grant: String,
    /// The asset id.
    pub asset: String,
    /// From (inclusive).
    pub start: DateTime<Utc>,
    /// Until (exclusive); `None` while the grant is active with no end recorded yet.
    pub end: Option<DateTime<Utc>>,
    /// What the scope allows.
    pub allows: ScopeCheck,
}

impl std::fmt::Debug for GrantWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrantWindow")
            .field("grant", &self.grant)
            .field("asset", &self.asset)
            .field("start", &self.start)
            .field("end", &self.end)
            .finish_non_exhaustive()
    }
}

/// Coverage from asset addresses and grant windows.
#[derive(Debug, Clone, Default)]
pub struct GrantWindows {
    assets: Vec<(String, SocketAddr)>,
    windows: Vec<GrantWindow>,
}

impl GrantWindows {
    /// Coverage over these assets (id, address) with no grant at all.
    pub fn new(assets: impl IntoIterator<Item = (String, SocketAddr)>) -> Self {
        Self {
            assets: assets.into_iter().collect(),
            windows: Vec::new(),
        }
    }

    /// Add a grant window.
    pub fn add(&mut self, window: GrantWindow) {
        self.windows.push(window);
    }

    /// Close the open windows of `grant` at `end` (a grant ended or was revoked).
    pub fn close(&mut self, grant: &str, end: DateTime<Utc>) {
        for w in self.windows.iter_mut().filter(|w| w.grant == grant) {
            w.end = Some(w.end.map_or(end, |e| e.min(end)));
        }
    }

    /// The windows known.
    pub fn windows(&self) -> &[GrantWindow] {
        &self.windows
    }

    /// The assets known.
    pub fn assets(&self) -> &[(String, SocketAddr)] {
        &self.assets
    }
}

impl GrantWindows {
    fn asset_ref(&self, dst: IpAddr, port: u16) -> Option<&str> {
        self.assets
            .iter()
            .find(|(_, a)| a.ip() == dst && a.port() == port)
            .map(|(id, _)| id.as_str())
    }
}

impl GrantCoverage for GrantWindows {
    fn covers(&self, dst: IpAddr, port: u16, op: &ModbusOp, at: DateTime<Utc>) -> bool {
        let Some(asset) = self.asset_ref(dst, port) else {
            return false;
        };
        self.windows.iter().any(|w| {
            w.asset == asset && w.start <= at && w.end.is_none_or(|end| at < end) && (w.allows)(op)
        })
    }

    fn asset(&self, dst: IpAddr, port: u16) -> Option<String> {
        self.asset_ref(dst, port).map(str::to_owned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use otgate_policy::modbus::{Access, AddressRange, ModbusClass, Table};

    fn write(first: u16, last: u16) -> ModbusOp {
        ModbusOp {
            unit: 1,
            function: 16,
            sub_function: None,
            class: ModbusClass::Write,
            access: Access::Write,
            table: Some(Table::HoldingRegisters),
            range: Some(AddressRange::new(first, last).unwrap()),
        }
    }

    #[test]
    fn a_window_covers_only_its_asset_its_time_and_its_scope() {
        let plc: SocketAddr = "10.0.3.10:502".parse().unwrap();
        let mut g = GrantWindows::new([("line3-plc".to_string(), plc)]);
        let t = |h: u32| {
            DateTime::parse_from_rfc3339(&format!("2026-11-28T{h:02}:00:00Z"))
                .unwrap()
                .to_utc()
        };
        let allowed = AddressRange::new(100, 199).unwrap();
        g.add(GrantWindow {
            grant: "g1".into(),
            asset: "line3-plc".into(),
            start: t(6),
            end: Some(t(10)),
            allows: Arc::new(move |op| op.range.is_some_and(|r| allowed.contains_range(r))),
        });
        assert!(g.covers(plc.ip(), 502, &write(100, 109), t(7)));
        assert!(
            !g.covers(plc.ip(), 502, &write(200, 209), t(7)),
            "outside scope"
        );
        assert!(
            !g.covers(plc.ip(), 502, &write(100, 109), t(11)),
            "after the window"
        );
        assert!(
            !g.covers(plc.ip(), 502, &write(100, 109), t(5)),
            "before the window"
        );
        assert!(
            !g.covers(plc.ip(), 503, &write(100, 109), t(7)),
            "another port"
        );
        g.close("g1", t(8));
        assert!(
            !g.covers(plc.ip(), 502, &write(100, 109), t(9)),
            "revoked early"
        );
        assert_eq!(g.asset(plc.ip(), 502), Some("line3-plc".to_owned()));
    }
}
