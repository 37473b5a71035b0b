//! Does a new policy still cover a live grant? The operations part of that question.
//!
//! When a policy is activated, every live request and grant is asked again: the same requester,
//! asset, operations, ticket, source and second factor, for what is left of its window. If the
//! new policy refuses, or grants a scope that no longer contains every operation the grant holds
//! ([`scope_covers`]), the grant is revoked (`Grants::policy_changed`). A grant is never narrowed
//! in place and never widened: its journaled scope stays what was approved, or it ends.
//!
//! Pure: no journal, no clock (instants are passed in), no I/O. Containment is checked operation
//! by operation against one operation of the new scope, so an operation covered only by the union
//! of two new ones counts as not covered: the safe direction (revoke) when in doubt.

use chrono::{DateTime, Utc};
use otgate_policy::{GrantScope, ModbusSpec};

use super::registry::GrantRecord;
use super::seams::Ask;
use crate::journal::event::GrantMode;

/// Whether every operation of `old` is inside `new`; `Err` names the first one that is not.
pub fn scope_covers(new: &GrantScope, old: &GrantScope) -> Result<(), String> {
    if new.asset != old.asset {
        return Err(format!(
            "the scope is now on asset {}, not {}",
            new.asset, old.asset
        ));
    }
    if new.protocol != old.protocol {
        return Err(format!(
            "asset {} is now brokered as {}, not {}",
            old.asset,
            new.protocol.name(),
            old.protocol.name()
        ));
    }
    for spec in &old.modbus {
        if !new.modbus.iter().any(|n| modbus_covers(n, spec)) {
            return Err(format!(
                "the policy no longer grants `{spec}` on {}",
                old.asset
            ));
        }
    }
    for class in &old.dnp3 {
        if !new.dnp3.contains(class) {
            return Err(format!(
                "the policy no longer grants DNP3 {class:?} on {}",
                old.asset
            ));
        }
    }
    if let Some(access) = old.vnc {
        if new.vnc.is_none_or(|n| n < access) {
            return Err(format!(
                "the policy no longer grants VNC {access:?} on {}",
                old.asset
            ));
        }
    }
    if old.tcp && !new.tcp {
        return Err(format!("the policy no longer grants TCP on {}", old.asset));
    }
    Ok(())
}

/// Whether `new` allows everything `old` allows (one Modbus operation against one).
fn modbus_covers(new: &ModbusSpec, old: &ModbusSpec) -> bool {
    let function = new.function.is_none() || new.function == old.function;
    let table = new.table.is_none() || new.table == old.table;
    let ranges = new.ranges.is_empty()
        || (!old.ranges.is_empty()
            && old.ranges.iter().all(|o| {
                new.ranges
                    .iter()
                    .any(|n| n.first() <= o.first() && o.last() <= n.last())
            }));
    let units = old.units.iter().all(|u| new.units.contains(u));
    new.class == old.class && function && table && ranges && units
}

/// The request a live record would make now: the same asker and terms, for what is left of its
/// window. `None` when nothing is left.
pub fn ask_again(record: &GrantRecord, mfa: bool, now: DateTime<Utc>) -> Option<Ask> {
    let start = record.start.max(now);
    let left = (record.end - start).num_seconds();
    let duration_secs = u64::try_from(left).ok().filter(|s| *s > 0)?;
    Some(Ask {
        requester: record.requester.clone(),
        asset: record.asset.clone(),
        operations: record.operations.clone(),
        start,
        duration_secs,
        ticket: record.ticket.clone(),
        reason: record.reason.clone(),
        source: record.source.as_deref().and_then(|s| s.parse().ok()),
        mfa,
        emergency: record.mode == Some(GrantMode::Emergency),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use otgate_policy::{OperationSpec, Protocol};

    fn scope(ops: &[&str], units: &[u8]) -> GrantScope {
        GrantScope::from_operations(
            "line3-plc",
            Protocol::Modbus,
            units,
            ops.iter().map(|o| o.parse::<OperationSpec>().unwrap()),
        )
    }

    #[test]
    fn the_same_or_a_wider_scope_covers() {
        let old = scope(&["read", "write:holding-registers:100-199"], &[1]);
        assert_eq!(scope_covers(&old, &old), Ok(()));
        let wider = scope(&["read", "write:holding-registers"], &[1, 2]);
        assert_eq!(scope_covers(&wider, &old), Ok(()));
        let wider_range = scope(&["read", "write:holding-registers:0-499"], &[1]);
        assert_eq!(scope_covers(&wider_range, &old), Ok(()));
    }

    #[test]
    fn a_narrower_scope_names_what_it_lost() {
        let old = scope(&["read", "write:holding-registers:100-199"], &[1]);
        for (new, lost) in [
            (scope(&["read"], &[1]), "write"),
            (
                scope(&["read", "write:holding-registers:100-149"], &[1]),
                "write",
            ),
            (scope(&["read", "write:coils"], &[1]), "write"),
            (
                scope(&["read", "write:holding-registers:100-199"], &[2]),
                "read",
            ),
        ] {
            let e = scope_covers(&new, &old).unwrap_err();
            assert!(e.contains(lost) && e.contains("line3-plc"), "{e}");
        }
        let mut other = old.clone();
        other.asset = "line1-plc".into();
        assert!(scope_covers(&other, &old).is_err());
    }
}
