//! Entry points for `cargo fuzz` (`policies/fuzz/`): one function per target. Hidden from docs;
//! not an API. Each must never panic on any input.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::{parse, parse_canonical, AccessRequest, OperationSpec};

/// `policy_toml`: parse and validate arbitrary text as a policy; on success, decide one request
/// per rule and identity and render the decisions, and check the operation grammar.
pub fn policy_toml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for line in text.lines().take(8) {
        if let Ok(op) = line.parse::<OperationSpec>() {
            let _ = op.to_string();
        }
    }
    match parse(text, "fuzz.toml") {
        Err(diags) => {
            let _ = diags.to_string();
        }
        Ok(policy) => {
            let now = DateTime::<Utc>::from_timestamp(1_796_000_000, 0).unwrap_or_default();
            let identities = policy.it_identities.iter().map(|p| p.id.clone());
            let identities = identities.chain(policy.ot_identities.iter().map(|p| p.id.clone()));
            for (who, rule) in identities.zip(policy.rules.iter().cycle()).take(16) {
                for asset in policy.assets_of(&rule.targets).take(2) {
                    let request = AccessRequest {
                        who: who.clone(),
                        target: asset.id.clone(),
                        operations: rule.operations.clone(),
                        start: now,
                        duration: Duration::from_secs(3600),
                        ticket: Some("CHG-1".into()),
                        source: None,
                        mfa: true,
                        emergency: rule.mode == crate::GrantMode::Emergency,
                    };
                    let decision = policy.decide(&request, now);
                    let _ = decision.to_string();
                }
            }
        }
    }
}

/// `policy_json`: parse and validate arbitrary bytes as a policy in canonical form (what signed
/// bundles carry); neither may panic, and what is accepted once is accepted again.
pub fn policy_json(data: &[u8]) {
    match parse_canonical(data, "fuzz.json") {
        Err(diags) => {
            let _ = diags.to_string();
        }
        Ok(policy) => {
            let _ = policy.warnings().len();
            assert!(parse_canonical(data, "fuzz.json").is_ok());
        }
    }
}
