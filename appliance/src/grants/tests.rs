//! Unit tests of the grants service against a small in-memory policy and a counting recorder:
//! approvals, races, expiry on paused time with a wall clock that moves, resume, revocation.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::seams::{AccessPolicy, Answer, Ask, RecordError, RecordFuture, Recorder, Tally, Terms};
use super::service::{GrantError, Grants, ListFilter};
use super::state::GrantState;
use super::Registry;
use crate::clock::{Clock, ManualClock};
use crate::journal::event::{AccessEvent, Event, GrantMode, RevokeCause, RoleCount};

#[derive(Debug, Default)]
pub(crate) struct Memory {
    events: Mutex<Vec<AccessEvent>>,
}

impl Recorder for Memory {
    fn record(&self, event: Event, _reserved: bool) -> RecordFuture<'_> {
        Box::pin(async move {
            match event {
                Event::Access(a) => {
                    self.events.lock().unwrap().push(a);
                    Ok(())
                }
                _ => Err(RecordError("unexpected category".into())),
            }
        })
    }
}

impl Memory {
    pub(crate) fn kinds(&self) -> Vec<&'static str> {
        use crate::journal::event::Subjects;
        self.events
            .lock()
            .unwrap()
            .iter()
            .map(|e| e.kind())
            .collect()
    }
    fn registry(&self) -> Registry {
        let mut r = Registry::new();
        for e in self.events.lock().unwrap().iter() {
            r.apply(e).unwrap();
        }
        r
    }
}

/// alice asks; sam and sue supervise; olga is a safety engineer; vendor-acme expires.
#[derive(Debug)]
pub(crate) struct Plant {
    mode: GrantMode,
    needs: Vec<RoleCount>,
    length: chrono::Duration,
    vendor_expiry: Option<DateTime<Utc>>,
    end_on_last: bool,
    dropped_assets: Vec<&'static str>,
    /// What the rule allows on line3-plc; a request's scope is its operations clipped to these.
    allowed: Vec<&'static str>,
    /// Identities the policy no longer names.
    dropped_people: Vec<&'static str>,
}

impl AccessPolicy for Plant {
    fn decide(&self, ask: &Ask, _now: DateTime<Utc>) -> Answer {
        if ask.asset != "line3-plc" {
            return Answer::Deny(format!("no rule names {}", ask.asset));
        }
        if self.dropped_people.contains(&ask.requester.as_str()) {
            return Answer::Deny(format!("no identity {}", ask.requester));
        }
        let allowed: Vec<otgate_policy::OperationSpec> =
            self.allowed.iter().map(|o| o.parse().unwrap()).collect();
        let granted: Vec<otgate_policy::OperationSpec> = ask
            .operations
            .iter()
            .map(|o| o.parse::<otgate_policy::OperationSpec>().unwrap())
            .filter(|o| allowed.contains(o))
            .collect();
        if granted.is_empty() {
            return Answer::Deny(format!("the rule allows none of {:?}", ask.operations));
        }
        let scope = otgate_policy::GrantScope::from_operations(
            "line3-plc",
            otgate_policy::Protocol::Modbus,
            &[1],
            granted,
        );
        let terms = Terms {
            rule: "line3-maintenance".into(),
            mode: self.mode,
            scope: serde_json::to_value(&scope).unwrap(),
            start: ask.start,
            end: ask.start + self.length,
            idle_timeout_secs: 900,
            end_on_last_disconnect: self.end_on_last,
            revoke_on: vec!["denied-safety-write".into()],
            approvals_required: self.needs.clone(),
            approvers: Vec::new(),
            words: "allowed by rule line3-maintenance".into(),
        };
        match self.mode {
            GrantMode::Approvers => Answer::NeedApproval(terms),
            _ => Answer::Allow(terms),
        }
    }
    fn ot_roles(&self, id: &str) -> Option<Vec<String>> {
        match id {
            "sam" | "sue" => Some(vec!["shift-supervisor".into()]),
            "olga" => Some(vec!["safety-engineer".into()]),
            "oscar" => Some(vec!["emergency".into()]),
            "otto" => Some(vec!["operator".into()]),
            _ => None,
        }
    }
    fn ot_supervises(&self, id: &str) -> bool {
        matches!(id, "sam" | "sue" | "olga")
    }
    fn tally(
        &self,
        required: &[RoleCount],
        _: &[String],
        requester: &str,
        approvers: &[String],
    ) -> Tally {
        // Greedy is enough here: nobody in this plant holds two roles.
        let mut missing = required.to_vec();
        let mut newest = Err("nobody approved".to_owned());
        for who in approvers {
            newest = if who == requester {
                Err("the requester cannot approve their own request".into())
            } else {
                let roles = self.ot_roles(who).unwrap_or_default();
                match missing
                    .iter_mut()
                    .find(|m| m.count > 0 && roles.contains(&m.role))
                {
                    Some(m) => {
                        m.count -= 1;
                        Ok(m.role.clone())
                    }
                    None => Err(format!("{who} holds none of the roles still needed")),
                }
            };
        }
        missing.retain(|m| m.count > 0);
        Tally { missing, newest }
    }
    fn is_it_identity(&self, id: &str) -> bool {
        matches!(id, "alice" | "vendor-acme")
    }
    fn account_expiry(&self, id: &str) -> Option<DateTime<Utc>> {
        (id == "vendor-acme")
            .then_some(self.vendor_expiry)
            .flatten()
    }
    fn still_covers(&self, _: &str, asset: &str, _: &str, _: &[String]) -> Result<(), String> {
        if self.dropped_assets.contains(&asset) {
            Err(format!("the policy no longer names asset {asset}"))
        } else {
            Ok(())
        }
    }
}

/// A grant lasted `planned`: never longer, and shorter only by the real milliseconds that
/// `ManualClock`'s wall time advanced while tokio's time stood paused.
fn assert_window(lasted: Duration, planned: Duration) {
    assert!(
        lasted <= planned,
        "the grant lasted {lasted:?}, longer than {planned:?}"
    );
    assert!(
        lasted + Duration::from_secs(1) >= planned,
        "the grant lasted only {lasted:?}"
    );
}

pub(crate) fn saturday_six() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 28, 5, 0, 0).unwrap()
}

pub(crate) fn plant(needs: &[(&str, u32)]) -> Plant {
    Plant {
        mode: GrantMode::Approvers,
        needs: needs
            .iter()
            .map(|(r, c)| RoleCount {
                role: (*r).into(),
                count: *c,
            })
            .collect(),
        length: chrono::Duration::hours(4),
        vendor_expiry: None,
        end_on_last: false,
        dropped_assets: Vec::new(),
        allowed: vec!["read", "write:holding-registers:100-199"],
        dropped_people: Vec::new(),
    }
}

pub(crate) fn service(policy: Plant, clock: &ManualClock) -> (Arc<Grants>, Arc<Memory>) {
    let memory = Arc::new(Memory::default());
    let (notices, _) = broadcast::channel(64);
    let grants = Grants::new(
        Registry::new(),
        memory.clone(),
        Arc::new(policy),
        Arc::new(clock.clone()),
        notices,
    );
    (grants, memory)
}

pub(crate) fn ask(who: &str, start: DateTime<Utc>) -> Ask {
    Ask {
        requester: who.into(),
        asset: "line3-plc".into(),
        operations: vec!["write:holding-registers:100-199".into()],
        start,
        duration_secs: 4 * 3600,
        ticket: Some("CHG-1234".into()),
        reason: "pump curve".into(),
        source: None,
        mfa: true,
        emergency: false,
    }
}

#[tokio::test]
async fn one_approval_of_two_is_not_enough() {
    let clock = ManualClock::starting_at(saturday_six());
    let (grants, memory) = service(plant(&[("shift-supervisor", 2)]), &clock);
    let s = grants.submit(ask("alice", saturday_six())).await.unwrap();
    assert_eq!(
        (s.request_id.as_str(), s.state),
        ("R-0001", GrantState::Requested)
    );
    let first = grants.approve("R-0001", "sam").await.unwrap();
    assert_eq!(first.state, GrantState::Requested);
    assert_eq!(first.missing, "1 shift-supervisor");
    let again = grants.approve("R-0001", "sam").await.unwrap_err();
    assert!(again.to_string().contains("distinct"), "{again}");
    let second = grants.approve("R-0001", "sue").await.unwrap();
    assert_eq!(
        (second.grant_id.as_deref(), second.state),
        (Some("G-0001"), GrantState::Active)
    );
    assert_eq!(
        memory.kinds(),
        [
            "request_submitted",
            "approval_given",
            "refused",
            "approval_given",
            "request_approved",
            "grant_activated"
        ]
    );
}

#[tokio::test]
async fn bad_approvers_are_refused_on_record_and_change_nothing() {
    let clock = ManualClock::starting_at(saturday_six());
    let (grants, memory) = service(plant(&[("shift-supervisor", 1)]), &clock);
    grants.submit(ask("alice", saturday_six())).await.unwrap();
    let cases = [
        ("alice", "cannot approve their own request"),
        ("vendor-acme", "is an IT identity"),
        ("mallory", "not an OT identity"),
        ("olga", "still needs 1 shift-supervisor"),
    ];
    for (who, why) in cases {
        let e = grants.approve("R-0001", who).await.unwrap_err();
        assert!(matches!(e, GrantError::Refused { .. }), "{who}: {e}");
        assert!(e.to_string().contains(why), "{who}: {e}");
    }
    let e = grants.approve("R-0042", "sam").await.unwrap_err();
    assert!(e.to_string().contains("no request R-0042"), "{e}");
    assert_eq!(
        grants.show("R-0001").await.unwrap().state,
        GrantState::Requested
    );
    assert!(grants.show("R-0001").await.unwrap().approvals.is_empty());
    assert_eq!(
        memory.kinds().iter().filter(|k| **k == "refused").count(),
        5
    );
}

#[tokio::test]
async fn approval_across_roles_needs_each_role() {
    let clock = ManualClock::starting_at(saturday_six());
    let (grants, _) = service(
        plant(&[("shift-supervisor", 1), ("safety-engineer", 1)]),
        &clock,
    );
    grants.submit(ask("alice", saturday_six())).await.unwrap();
    let a = grants.approve("R-0001", "sam").await.unwrap();
    assert_eq!(a.missing, "1 safety-engineer");
    let e = grants.approve("R-0001", "sue").await.unwrap_err();
    assert!(e.to_string().contains("needs 1 safety-engineer"), "{e}");
    let b = grants.approve("R-0001", "olga").await.unwrap();
    assert_eq!(b.state, GrantState::Active);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_approvals_activate_exactly_once() {
    let clock = ManualClock::starting_at(saturday_six());
    let (grants, memory) = service(plant(&[("shift-supervisor", 1)]), &clock);
    grants.submit(ask("alice", saturday_six())).await.unwrap();
    let (a, b) = tokio::join!(
        tokio::spawn({
            let g = grants.clone();
            async move { g.approve("R-0001", "sam").await }
        }),
        tokio::spawn({
            let g = grants.clone();
            async move { g.approve("R-0001", "sue").await }
        }),
    );
    let results = [a.unwrap(), b.unwrap()];
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "{results:?}"
    );
    let refused = results.iter().find_map(|r| r.as_ref().err()).unwrap();
    assert!(
        refused.to_string().contains("not waiting for approval"),
        "{refused}"
    );
    let kinds = memory.kinds();
    assert_eq!(kinds.iter().filter(|k| **k == "grant_activated").count(), 1);
    assert_eq!(
        kinds.iter().filter(|k| **k == "request_approved").count(),
        1
    );
}

#[tokio::test]
async fn an_approval_after_the_request_expired_is_refused_and_expires_it() {
    let clock = ManualClock::starting_at(saturday_six());
    let (grants, memory) = service(plant(&[("shift-supervisor", 1)]), &clock);
    grants.submit(ask("alice", saturday_six())).await.unwrap();
    clock.shift(chrono::Duration::hours(5));
    let e = grants.approve("R-0001", "sam").await.unwrap_err();
    assert!(e.to_string().contains("expired"), "{e}");
    assert_eq!(
        grants.show("R-0001").await.unwrap().state,
        GrantState::Expired
    );
    assert!(memory.kinds().contains(&"request_expired"));
}

#[tokio::test(start_paused = true)]
async fn a_grant_ends_on_the_monotonic_clock_whatever_the_wall_clock_does() {
    let clock = ManualClock::starting_at(saturday_six());
    let (grants, memory) = service(plant(&[("shift-supervisor", 1)]), &clock);
    let shutdown = CancellationToken::new();
    let expiry = tokio::spawn(grants.clone().run_expiry(shutdown.clone()));
    grants.submit(ask("alice", saturday_six())).await.unwrap();
    grants.approve("R-0001", "sam").await.unwrap();
    let token = grants.grant_token("G-0001").unwrap();
    // Someone sets the wall clock back by a day: the grant must not last longer.
    clock.shift(-chrono::Duration::days(1));
    let lease = grants
        .open_session("G-0001", "alice", "line3-plc")
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(4 * 3600 - 11 * 60)).await;
    assert!(!token.is_cancelled());
    assert!(!memory.kinds().contains(&"grant_warning"));
    tokio::time::sleep(Duration::from_secs(2 * 60)).await;
    let warnings: Vec<u32> = memory
        .events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            AccessEvent::GrantWarning { minutes_left, .. } => Some(*minutes_left),
            _ => None,
        })
        .collect();
    assert_eq!(warnings, [10]);
    lease.cancel.cancelled().await;
    assert_window(started.elapsed(), Duration::from_secs(4 * 3600));
    let record = grants.show("G-0001").await.unwrap();
    assert_eq!(record.state, GrantState::Ended);
    assert_eq!(record.warned, [10, 2]);
    drop(lease);
    shutdown.cancel();
    expiry.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn moving_the_wall_clock_forward_does_not_shorten_or_lengthen_an_active_grant() {
    let clock = ManualClock::starting_at(saturday_six());
    let (grants, _) = service(plant(&[("shift-supervisor", 1)]), &clock);
    let shutdown = CancellationToken::new();
    tokio::spawn(grants.clone().run_expiry(shutdown.clone()));
    grants.submit(ask("alice", saturday_six())).await.unwrap();
    grants.approve("R-0001", "sam").await.unwrap();
    let token = grants.grant_token("G-0001").unwrap();
    let started = tokio::time::Instant::now();
    clock.shift(chrono::Duration::hours(3));
    token.cancelled().await;
    assert_window(started.elapsed(), Duration::from_secs(4 * 3600));
    shutdown.cancel();
}

#[tokio::test]
async fn revoking_cancels_every_session_and_is_final() {
    let clock = ManualClock::starting_at(saturday_six());
    let (grants, _) = service(plant(&[("shift-supervisor", 1)]), &clock);
    grants.submit(ask("alice", saturday_six())).await.unwrap();
    grants.approve("R-0001", "sam").await.unwrap();
    let one = grants
        .open_session("G-0001", "alice", "line3-plc")
        .await
        .unwrap();
    let two = grants
        .open_session("G-0001", "alice", "line3-plc")
        .await
        .unwrap();
    assert_eq!(grants.session_count("G-0001"), 2);
    let e = grants
        .revoke("G-0001", "alice", RevokeCause::Manual, "x")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("not an OT identity"), "{e}");
    grants
        .revoke("G-0001", "sue", RevokeCause::Manual, "done early")
        .await
        .unwrap();
    assert!(one.cancel.is_cancelled() && two.cancel.is_cancelled());
    let e = grants
        .revoke("G-0001", "sue", RevokeCause::Manual, "again")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("revoked already"), "{e}");
    let e = grants
        .open_session("G-0001", "alice", "line3-plc")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("grant is revoked"), "{e}");
}

#[tokio::test]
async fn sessions_need_the_grant_owner_and_its_asset() {
    let clock = ManualClock::starting_at(saturday_six());
    let (grants, _) = service(plant(&[("shift-supervisor", 1)]), &clock);
    grants.submit(ask("alice", saturday_six())).await.unwrap();
    let e = grants
        .open_session("R-0001", "alice", "line3-plc")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("grant is requested"), "{e}");
    grants.approve("R-0001", "sam").await.unwrap();
    let e = grants
        .open_session("G-0001", "vendor-acme", "line3-plc")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("belongs to alice"), "{e}");
    let e = grants
        .open_session("G-0001", "alice", "line1-plc")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("covers line3-plc"), "{e}");
}

#[tokio::test]
async fn policy_denials_are_recorded_as_denied_requests() {
    let clock = ManualClock::starting_at(saturday_six());
    let (grants, memory) = service(plant(&[("shift-supervisor", 1)]), &clock);
    let mut a = ask("alice", saturday_six());
    a.asset = "line9-plc".into();
    let s = grants.submit(a).await.unwrap();
    assert_eq!(s.state, GrantState::Denied);
    assert!(s.decision.contains("no rule names line9-plc"));
    assert_eq!(memory.kinds(), ["request_refused"]);
    assert_eq!(grants.list(ListFilter::Ended).await.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_restart_resumes_active_grants_and_ends_those_that_ran_out() {
    let clock = ManualClock::starting_at(saturday_six());
    let (grants, memory) = service(plant(&[("shift-supervisor", 1)]), &clock);
    grants.submit(ask("alice", saturday_six())).await.unwrap();
    grants.approve("R-0001", "sam").await.unwrap();
    grants
        .submit(ask("alice", saturday_six() + chrono::Duration::hours(3)))
        .await
        .unwrap();
    grants.approve("R-0002", "sue").await.unwrap();
    // Down for two hours: nothing ran out yet. The registry comes back from the records.
    clock.shift(chrono::Duration::hours(2));
    let (notices, _) = broadcast::channel(8);
    let again = Grants::new(
        memory.registry(),
        memory.clone(),
        Arc::new(plant(&[("shift-supervisor", 1)])),
        Arc::new(clock.clone()),
        notices,
    );
    again.resume().await.unwrap();
    assert_eq!(
        again.show("G-0001").await.unwrap().state,
        GrantState::Active
    );
    assert_eq!(
        again.show("G-0002").await.unwrap().state,
        GrantState::Approved
    );
    let shutdown = CancellationToken::new();
    tokio::spawn(again.clone().run_expiry(shutdown.clone()));
    let token = again.grant_token("G-0001").unwrap();
    let resumed = tokio::time::Instant::now();
    token.cancelled().await;
    assert_window(resumed.elapsed(), Duration::from_secs(2 * 3600));
    // Down past the end of everything.
    clock.shift(chrono::Duration::hours(10));
    let (notices, _) = broadcast::channel(8);
    let third = Grants::new(
        memory.registry(),
        memory.clone(),
        Arc::new(plant(&[("shift-supervisor", 1)])),
        Arc::new(clock.clone()),
        notices,
    );
    third.resume().await.unwrap();
    let g2 = third.show("G-0002").await.unwrap();
    assert!(g2.state.is_final(), "{:?}", g2.state);
    shutdown.cancel();
}

#[tokio::test]
async fn emergency_grants_wait_for_sign_off() {
    let clock = ManualClock::starting_at(saturday_six());
    let mut p = plant(&[]);
    p.mode = GrantMode::Emergency;
    let (grants, _) = service(p, &clock);
    let s = grants.submit(ask("oscar", clock.now_utc())).await.unwrap();
    assert_eq!(s.state, GrantState::Active);
    assert_eq!(grants.list(ListFilter::Review).await.len(), 1);
    let e = grants.sign_off("G-0001", "alice").await.unwrap_err();
    assert!(e.to_string().contains("cannot sign off"), "{e}");
    let e = grants.sign_off("G-0001", "oscar").await.unwrap_err();
    assert!(
        e.to_string().contains("cannot sign off their own use"),
        "{e}"
    );
    // Another operator is not a supervisor.
    let e = grants.sign_off("G-0001", "otto").await.unwrap_err();
    assert!(e.to_string().contains("not a supervisor"), "{e}");
    grants.sign_off("G-0001", "sue").await.unwrap();
    assert!(grants.list(ListFilter::Review).await.is_empty());
    let e = grants.sign_off("G-0001", "sam").await.unwrap_err();
    assert!(
        e.to_string()
            .contains("not an emergency grant awaiting review"),
        "{e}"
    );
}

#[tokio::test]
async fn a_vendor_grant_is_revoked_when_the_account_expires() {
    let clock = ManualClock::starting_at(saturday_six());
    let mut p = plant(&[("shift-supervisor", 1)]);
    p.vendor_expiry = Some(saturday_six() + chrono::Duration::hours(1));
    let (grants, _) = service(p, &clock);
    grants
        .submit(ask("vendor-acme", saturday_six()))
        .await
        .unwrap();
    grants.approve("R-0001", "sam").await.unwrap();
    let token = grants.grant_token("G-0001").unwrap();
    grants.tick().await.unwrap();
    assert!(!token.is_cancelled());
    clock.shift(chrono::Duration::hours(1));
    grants.tick().await.unwrap();
    assert!(token.is_cancelled());
    let r = grants.show("G-0001").await.unwrap();
    assert_eq!(r.state, GrantState::Revoked);
    assert!(r.outcome.unwrap().reason.contains("account expired"));
}

#[tokio::test]
async fn triggers_revoke_grants_that_name_them() {
    let clock = ManualClock::starting_at(saturday_six());
    let (grants, _) = service(plant(&[("shift-supervisor", 1)]), &clock);
    grants.submit(ask("alice", saturday_six())).await.unwrap();
    grants.approve("R-0001", "sam").await.unwrap();
    assert!(grants
        .fire_trigger("inspection-alert", "line3-plc", "x")
        .await
        .unwrap()
        .is_empty());
    let hit = grants
        .fire_trigger("denied-safety-write", "line3-plc", "FC 6 at 40")
        .await
        .unwrap();
    assert_eq!(hit, ["G-0001"]);
}

#[tokio::test]
async fn the_sled_view_matches_the_registry_and_applies_each_record_once() {
    use crate::state::View;
    let clock = ManualClock::starting_at(saturday_six());
    let (grants, memory) = service(plant(&[("shift-supervisor", 2)]), &clock);
    grants.submit(ask("alice", saturday_six())).await.unwrap();
    grants.approve("R-0001", "sam").await.unwrap();
    grants.approve("R-0001", "sue").await.unwrap();
    grants.submit(ask("alice", saturday_six())).await.unwrap();
    grants
        .revoke("G-0001", "sue", RevokeCause::Manual, "done")
        .await
        .unwrap();
    let _ = grants.approve("R-0002", "alice").await;
    let db = sled::Config::new().temporary(true).open().unwrap();
    let tree = db.open_tree(super::view::NAME).unwrap();
    let events: Vec<AccessEvent> = memory.events.lock().unwrap().clone();
    // Twice, as after a crash that lost sled's last writes: the second pass changes nothing.
    for _ in 0..2 {
        for (i, e) in events.iter().enumerate() {
            super::view::GrantsView
                .apply(&tree, i as u64 + 1, &Event::Access(e.clone()))
                .unwrap();
        }
    }
    let from_view = super::view::load(&tree).unwrap();
    let expected = memory.registry();
    assert_eq!(
        from_view.records().collect::<Vec<_>>(),
        expected.records().collect::<Vec<_>>()
    );
    assert_eq!(from_view.next_request_id(), "R-0003");
    assert_eq!(from_view.next_grant_id(), "G-0002");
    assert_eq!(from_view.find("G-0001").unwrap().approvals.len(), 2);
}

#[tokio::test]
async fn a_grant_that_ends_on_last_disconnect_ends_when_its_last_session_leaves() {
    let clock = ManualClock::starting_at(saturday_six());
    let mut p = plant(&[("shift-supervisor", 1)]);
    p.end_on_last = true;
    let (grants, _) = service(p, &clock);
    grants
        .submit(ask("vendor-acme", saturday_six()))
        .await
        .unwrap();
    grants.approve("R-0001", "sam").await.unwrap();
    grants.tick().await.unwrap();
    // No session yet: the grant waits for one.
    assert_eq!(
        grants.show("G-0001").await.unwrap().state,
        GrantState::Active
    );
    let one = grants
        .open_session("G-0001", "vendor-acme", "line3-plc")
        .await
        .unwrap();
    let two = grants
        .open_session("G-0001", "vendor-acme", "line3-plc")
        .await
        .unwrap();
    drop(one);
    grants.tick().await.unwrap();
    assert_eq!(
        grants.show("G-0001").await.unwrap().state,
        GrantState::Active
    );
    drop(two);
    grants.tick().await.unwrap();
    let record = grants.show("G-0001").await.unwrap();
    assert_eq!(record.state, GrantState::Ended);
    assert_eq!(
        record.outcome.unwrap().reason,
        "its last session disconnected"
    );
}

#[tokio::test]
async fn a_new_policy_that_no_longer_covers_a_grant_revokes_it() {
    let clock = ManualClock::starting_at(saturday_six());
    let (grants, memory) = service(plant(&[("shift-supervisor", 1)]), &clock);
    grants.submit(ask("alice", saturday_six())).await.unwrap();
    grants.approve("R-0001", "sam").await.unwrap();
    grants.submit(ask("alice", saturday_six())).await.unwrap();
    let session = grants
        .open_session("G-0001", "alice", "line3-plc")
        .await
        .unwrap();
    // A policy that still covers everything changes nothing.
    let same = grants
        .policy_changed(Arc::new(plant(&[("shift-supervisor", 1)])))
        .await
        .unwrap();
    assert!(same.is_empty());
    let mut narrower = plant(&[("shift-supervisor", 1)]);
    narrower.dropped_assets = vec!["line3-plc"];
    let revoked = grants.policy_changed(Arc::new(narrower)).await.unwrap();
    assert_eq!(revoked, ["G-0001", "R-0002"]);
    assert!(session.cancel.is_cancelled());
    let record = grants.show("G-0001").await.unwrap();
    assert_eq!(record.state, GrantState::Revoked);
    assert!(record
        .outcome
        .unwrap()
        .reason
        .starts_with("policy change: "));
    assert!(memory.events.lock().unwrap().iter().any(|e| matches!(
        e,
        AccessEvent::GrantRevoked {
            cause: RevokeCause::PolicyChange,
            ..
        }
    )));
}

#[tokio::test]
async fn who_may_deny_and_revoke_comes_from_the_policy_and_refusals_are_journaled() {
    let clock = ManualClock::starting_at(saturday_six());
    let (grants, memory) = service(plant(&[("shift-supervisor", 1)]), &clock);
    grants.submit(ask("alice", saturday_six())).await.unwrap();
    // olga is an OT approver, but of the safety role: she cannot approve this, so not deny it.
    let e = grants.deny("R-0001", "olga", "no").await.unwrap_err();
    assert!(e.to_string().contains("holds none of the roles"), "{e}");
    let e = grants.deny("R-0001", "otto", "no").await.unwrap_err();
    assert!(e.to_string().contains("holds none of the roles"), "{e}");
    assert_eq!(
        grants.show("R-0001").await.unwrap().state,
        GrantState::Requested
    );
    grants.approve("R-0001", "sam").await.unwrap();
    // An operator cannot revoke by hand; a supervisor can.
    let e = grants
        .revoke("G-0001", "otto", RevokeCause::Manual, "x")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("not a supervisor"), "{e}");
    assert_eq!(
        grants.show("G-0001").await.unwrap().state,
        GrantState::Active
    );
    grants
        .revoke("G-0001", "olga", RevokeCause::Manual, "safety hold")
        .await
        .unwrap();
    let refused: Vec<(String, String)> = memory
        .events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            AccessEvent::Refused { action, actor, .. } => Some((action.clone(), actor.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        refused,
        [
            ("deny".to_owned(), "olga".to_owned()),
            ("deny".into(), "otto".into()),
            ("revoke".into(), "otto".into())
        ]
    );
    // sam may deny a request he could approve.
    grants.submit(ask("alice", saturday_six())).await.unwrap();
    grants.deny("R-0002", "sam", "not today").await.unwrap();
}

#[tokio::test]
async fn a_policy_that_narrows_the_operations_revokes_the_grant() {
    let clock = ManualClock::starting_at(saturday_six());
    let (grants, _) = service(plant(&[("shift-supervisor", 1)]), &clock);
    grants.submit(ask("alice", saturday_six())).await.unwrap();
    grants.approve("R-0001", "sam").await.unwrap();
    let session = grants
        .open_session("G-0001", "alice", "line3-plc")
        .await
        .unwrap();
    // A wider rule changes nothing: the grant keeps what was approved.
    let mut wider = plant(&[("shift-supervisor", 1)]);
    wider.allowed = vec!["read", "write:holding-registers:100-199", "write:coils"];
    assert!(grants
        .policy_changed(Arc::new(wider))
        .await
        .unwrap()
        .is_empty());
    // Setpoint writes narrowed to 100-149: the grant's 100-199 is no longer covered.
    let mut narrower = plant(&[("shift-supervisor", 1)]);
    narrower.allowed = vec!["read", "write:holding-registers:100-149"];
    let revoked = grants.policy_changed(Arc::new(narrower)).await.unwrap();
    assert_eq!(revoked, ["G-0001"]);
    assert!(session.cancel.is_cancelled());
    let reason = grants.show("G-0001").await.unwrap().outcome.unwrap().reason;
    assert!(
        reason.contains("refuses it") || reason.contains("no longer grants"),
        "{reason}"
    );
}

#[tokio::test]
async fn a_policy_that_drops_the_identity_or_expires_the_vendor_revokes_the_grant() {
    let clock = ManualClock::starting_at(saturday_six());
    let (grants, _) = service(plant(&[("shift-supervisor", 1)]), &clock);
    grants.submit(ask("alice", saturday_six())).await.unwrap();
    grants.approve("R-0001", "sam").await.unwrap();
    let mut without_alice = plant(&[("shift-supervisor", 1)]);
    without_alice.dropped_people = vec!["alice"];
    let revoked = grants
        .policy_changed(Arc::new(without_alice))
        .await
        .unwrap();
    assert_eq!(revoked, ["G-0001"]);
    assert!(grants
        .show("G-0001")
        .await
        .unwrap()
        .outcome
        .unwrap()
        .reason
        .contains("no identity alice"));

    // A vendor whose account the new policy ends now: revoked at the next tick.
    grants
        .submit(ask("vendor-acme", saturday_six()))
        .await
        .unwrap();
    grants.approve("R-0002", "sue").await.unwrap();
    let session = grants
        .open_session("G-0002", "vendor-acme", "line3-plc")
        .await
        .unwrap();
    let mut expired = plant(&[("shift-supervisor", 1)]);
    expired.vendor_expiry = Some(saturday_six());
    grants.policy_changed(Arc::new(expired)).await.unwrap();
    grants.tick().await.unwrap();
    assert!(session.cancel.is_cancelled());
    let record = grants.show("G-0002").await.unwrap();
    assert_eq!(record.state, GrantState::Revoked);
    assert!(record.outcome.unwrap().reason.contains("account expired"));
}

#[tokio::test(start_paused = true)]
async fn a_grant_that_ends_on_last_disconnect_idles_out_without_a_session() {
    let clock = ManualClock::starting_at(saturday_six());
    let mut p = plant(&[("shift-supervisor", 1)]);
    p.end_on_last = true;
    let (grants, memory) = service(p, &clock);
    let shutdown = CancellationToken::new();
    let expiry = tokio::spawn(grants.clone().run_expiry(shutdown.clone()));
    grants
        .submit(ask("vendor-acme", saturday_six()))
        .await
        .unwrap();
    grants.approve("R-0001", "sam").await.unwrap();
    let token = grants.grant_token("G-0001").unwrap();
    let started = tokio::time::Instant::now();
    token.cancelled().await;
    // The rule's idle timeout (900 s), not the 4-hour window.
    assert_window(started.elapsed(), Duration::from_secs(900));
    let record = grants.show("G-0001").await.unwrap();
    assert_eq!(record.state, GrantState::Ended);
    assert_eq!(
        record.outcome.unwrap().reason,
        "no session used it for its idle timeout"
    );
    assert!(memory.events.lock().unwrap().iter().any(|e| matches!(
        e,
        AccessEvent::GrantEnded {
            reason: crate::journal::event::EndReason::Idle,
            ..
        }
    )));
    shutdown.cancel();
    expiry.await.unwrap();
}

#[tokio::test]
async fn a_grant_whose_last_session_idled_out_ends_as_idle() {
    let clock = ManualClock::starting_at(saturday_six());
    let mut p = plant(&[("shift-supervisor", 1)]);
    p.end_on_last = true;
    let (grants, _) = service(p, &clock);
    grants
        .submit(ask("vendor-acme", saturday_six()))
        .await
        .unwrap();
    grants.approve("R-0001", "sam").await.unwrap();
    let lease = grants
        .open_session("G-0001", "vendor-acme", "line3-plc")
        .await
        .unwrap();
    lease.idled_out();
    drop(lease);
    grants.tick().await.unwrap();
    let record = grants.show("G-0001").await.unwrap();
    assert_eq!(record.state, GrantState::Ended);
    assert_eq!(
        record.outcome.unwrap().reason,
        "no session used it for its idle timeout"
    );
}

#[tokio::test(start_paused = true)]
async fn a_grant_without_the_rule_survives_its_sessions_leaving() {
    let clock = ManualClock::starting_at(saturday_six());
    let (grants, _) = service(plant(&[("shift-supervisor", 1)]), &clock);
    grants.submit(ask("alice", saturday_six())).await.unwrap();
    grants.approve("R-0001", "sam").await.unwrap();
    let lease = grants
        .open_session("G-0001", "alice", "line3-plc")
        .await
        .unwrap();
    lease.idled_out();
    drop(lease);
    tokio::time::sleep(Duration::from_secs(3600)).await;
    grants.tick().await.unwrap();
    assert_eq!(
        grants.show("G-0001").await.unwrap().state,
        GrantState::Active
    );
}

#[tokio::test(start_paused = true)]
async fn a_wall_clock_set_back_across_a_restart_does_not_lengthen_a_grant() {
    let clock = ManualClock::starting_at(saturday_six());
    let (grants, memory) = service(plant(&[("shift-supervisor", 1)]), &clock);
    let shutdown = CancellationToken::new();
    let expiry = tokio::spawn(grants.clone().run_expiry(shutdown.clone()));
    grants.submit(ask("alice", saturday_six())).await.unwrap();
    grants.approve("R-0001", "sam").await.unwrap();
    // Three hours of the four are used (the ManualClock's wall time moves with real time only,
    // so move it along with tokio's paused clock).
    for _ in 0..180 {
        tokio::time::sleep(Duration::from_secs(60)).await;
        clock.shift(chrono::Duration::seconds(60));
    }
    shutdown.cancel();
    expiry.await.unwrap();
    let used = memory.registry().find("G-0001").unwrap().active_secs;
    assert!(
        (3 * 3600 - 60..=3 * 3600).contains(&used),
        "checkpointed {used}"
    );
    // While the daemon is down, someone sets the wall clock back by three hours.
    clock.shift(-chrono::Duration::hours(3));
    let (notices, _) = broadcast::channel(8);
    let again = Grants::new(
        memory.registry(),
        memory.clone(),
        Arc::new(plant(&[("shift-supervisor", 1)])),
        Arc::new(clock.clone()),
        notices,
    );
    again.resume().await.unwrap();
    let shutdown = CancellationToken::new();
    let expiry = tokio::spawn(again.clone().run_expiry(shutdown.clone()));
    let token = again.grant_token("G-0001").unwrap();
    let resumed = tokio::time::Instant::now();
    token.cancelled().await;
    // One hour was left, not four.
    assert_window(resumed.elapsed(), Duration::from_secs(3600));
    shutdown.cancel();
    expiry.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_wall_clock_set_forward_across_a_restart_shortens_a_grant() {
    let clock = ManualClock::starting_at(saturday_six());
    let (grants, memory) = service(plant(&[("shift-supervisor", 1)]), &clock);
    grants.submit(ask("alice", saturday_six())).await.unwrap();
    grants.approve("R-0001", "sam").await.unwrap();
    grants.checkpoint_all().await.unwrap();
    clock.shift(chrono::Duration::hours(3));
    let (notices, _) = broadcast::channel(8);
    let again = Grants::new(
        memory.registry(),
        memory.clone(),
        Arc::new(plant(&[("shift-supervisor", 1)])),
        Arc::new(clock.clone()),
        notices,
    );
    again.resume().await.unwrap();
    let shutdown = CancellationToken::new();
    tokio::spawn(again.clone().run_expiry(shutdown.clone()));
    let token = again.grant_token("G-0001").unwrap();
    let resumed = tokio::time::Instant::now();
    token.cancelled().await;
    assert_window(resumed.elapsed(), Duration::from_secs(3600));
    shutdown.cancel();
}

mod review_records {
    use super::*;
    use otgate_sync::review::{verify_review, ReviewBody, ReviewRecord, Verdict};
    use otgate_sync::{AuthorityKey, TrustRoot, TrustRootFile};

    fn hq_key(n: u8) -> AuthorityKey {
        AuthorityKey::from_secret([n; 32], None)
    }

    fn root() -> TrustRoot {
        TrustRoot::new(TrustRootFile {
            format: 1,
            site: "plant-a".into(),
            root_version: 1,
            threshold: 2,
            keys: vec![hq_key(1).public_entry(), hq_key(2).public_entry()],
            revoked: vec![],
        })
        .unwrap()
    }

    fn review(grants: &[&str], issued_at: DateTime<Utc>) -> Vec<u8> {
        let mut record = ReviewRecord::new(ReviewBody {
            site: "plant-a".into(),
            issued_at,
            reviewer: "security-officer".into(),
            verdict: Verdict::Justified,
            comment: "burner trip".into(),
            grant_ids: grants.iter().map(|g| (*g).to_owned()).collect(),
        })
        .unwrap();
        record.sign(&hq_key(1)).unwrap();
        record.sign(&hq_key(2)).unwrap();
        record.encode()
    }

    async fn emergency_and_normal(clock: &ManualClock) -> (Arc<Grants>, Arc<Memory>) {
        let mut p = plant(&[]);
        p.mode = GrantMode::Emergency;
        let (grants, memory) = service(p, clock);
        grants.submit(ask("oscar", clock.now_utc())).await.unwrap();
        grants.submit(ask("oscar", clock.now_utc())).await.unwrap();
        (grants, memory)
    }

    #[tokio::test]
    async fn a_signed_review_signs_off_every_grant_it_names_once() {
        let clock = ManualClock::starting_at(saturday_six());
        let (grants, memory) = emergency_and_normal(&clock).await;
        let later = saturday_six() + chrono::Duration::hours(5);
        clock.set(later);
        let bytes = review(&["G-0001", "G-0002"], later);
        let verified = verify_review(&bytes, &root(), later).unwrap();
        let done = grants.import_review(&verified).await.unwrap();
        assert_eq!(done, ["G-0001", "G-0002"]);
        assert!(grants.list(ListFilter::Review).await.is_empty());
        let r = grants.show("G-0002").await.unwrap().review.unwrap();
        assert_eq!(r.signed_off_by.as_deref(), Some("hq:security-officer"));
        assert_eq!(r.verdict.as_deref(), Some("justified"));
        assert_eq!(r.record, Some(hex::encode(verified.hash())));
        // The rebuilt registry agrees (one record, both grants).
        assert_eq!(
            memory.registry().find("G-0001").unwrap().review,
            grants.show("G-0001").await.unwrap().review
        );
        // A replay is refused by name and journaled.
        let e = grants.import_review(&verified).await.unwrap_err();
        assert!(e.to_string().contains("imported already"), "{e}");
        assert_eq!(memory.kinds().last(), Some(&"refused"));
    }

    #[tokio::test]
    async fn unknown_grants_signed_off_grants_and_old_records_are_refused_whole() {
        let clock = ManualClock::starting_at(saturday_six());
        let (grants, memory) = emergency_and_normal(&clock).await;
        let later = saturday_six() + chrono::Duration::hours(5);
        clock.set(later);
        let cases = [
            (
                review(&["G-0001", "G-0042"], later),
                "G-0042 is not a grant",
            ),
            (
                review(&["G-0001"], saturday_six() - chrono::Duration::days(1)),
                "before G-0001 was granted",
            ),
        ];
        for (bytes, why) in cases {
            let verified = verify_review(&bytes, &root(), later).unwrap();
            let e = grants.import_review(&verified).await.unwrap_err();
            assert!(e.to_string().contains(why), "{why}: {e}");
            // All or nothing: G-0001 still waits.
            assert_eq!(grants.list(ListFilter::Review).await.len(), 2);
        }
        grants.sign_off("G-0001", "sue").await.unwrap();
        let verified =
            verify_review(&review(&["G-0001", "G-0002"], later), &root(), later).unwrap();
        let e = grants.import_review(&verified).await.unwrap_err();
        assert!(e.to_string().contains("signed off already by sue"), "{e}");
        assert_eq!(grants.list(ListFilter::Review).await.len(), 1);
        assert!(!memory.kinds().contains(&"review_imported"));
    }

    #[tokio::test]
    async fn a_normal_grant_is_not_reviewed() {
        let clock = ManualClock::starting_at(saturday_six());
        let (grants, _) = service(plant(&[("shift-supervisor", 1)]), &clock);
        grants.submit(ask("alice", saturday_six())).await.unwrap();
        grants.approve("R-0001", "sam").await.unwrap();
        let at = clock.now_utc();
        let verified = verify_review(&review(&["G-0001"], at), &root(), at).unwrap();
        let e = grants.import_review(&verified).await.unwrap_err();
        assert!(e.to_string().contains("not an emergency grant"), "{e}");
    }
}

#[tokio::test]
async fn status_is_for_the_grant_owner_only_and_refusals_are_journaled() {
    let clock = ManualClock::starting_at(saturday_six());
    let (grants, memory) = service(plant(&[("shift-supervisor", 1)]), &clock);
    grants.submit(ask("alice", saturday_six())).await.unwrap();
    let e = grants.status("R-0001", "alice").await.unwrap_err();
    assert!(e.to_string().contains("is not a grant"), "{e}");
    grants.approve("R-0001", "sam").await.unwrap();
    let s = grants.status("G-0001", "alice").await.unwrap();
    assert_eq!(
        (s.state, s.asset.as_str()),
        (GrantState::Active, "line3-plc")
    );
    assert!(s.remaining_secs > 3 * 3600, "{s:?}");
    let e = grants.status("G-0001", "vendor-acme").await.unwrap_err();
    assert!(e.to_string().contains("belongs to alice"), "{e}");
    let e = grants.status("G-0042", "alice").await.unwrap_err();
    assert!(e.to_string().contains("no grant G-0042"), "{e}");
    let refused = memory.kinds().iter().filter(|k| **k == "refused").count();
    assert_eq!(refused, 3);
}
