//! The control socket over a real Unix socket: requests, refusals with codes, malformed lines,
//! unknown methods, the notice stream, and the socket's mode.

use std::sync::Arc;

use serde_json::json;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::client::{Client, ClientError};
use crate::clock::ManualClock;
use crate::daemon::Appliance;
use crate::datadir::DataDir;
use crate::grants::tests::{ask, plant, saturday_six, Memory};
use crate::grants::{Grants, Registry};
use crate::stores::secret::Secret;
use crate::stores::totp::TotpEnrolment;

struct Harness {
    _dir: tempfile::TempDir,
    socket: std::path::PathBuf,
    app: Arc<Appliance>,
    shutdown: CancellationToken,
}

async fn harness() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = DataDir::new(dir.path());
    let clock = ManualClock::starting_at(saturday_six());
    let (notices, _) = broadcast::channel(64);
    let grants = Grants::new(
        Registry::new(),
        Arc::new(Memory::default()),
        Arc::new(plant(&[("shift-supervisor", 1)])),
        Arc::new(clock.clone()),
        notices.clone(),
    );
    let shutdown = CancellationToken::new();
    let ot_store = crate::stores::ot::OtStore::create(&data_dir.ot_store_dir()).unwrap();
    for (id, role, seed) in [
        ("sam", "shift-supervisor", 1),
        ("sue", "shift-supervisor", 2),
    ] {
        ot_store
            .add_user(id, &[role.to_owned()], None, saturday_six())
            .unwrap();
        ot_store
            .enroll_totp_with_seed(id, Secret::new(vec![seed; 20]), saturday_six())
            .unwrap();
    }
    let policy = otgate_policy::parse(
        include_str!("../../../policies/examples/plant.toml"),
        "plant.toml",
    )
    .unwrap();
    let journal = crate::journal::Journal::open_for_tests(dir.path()).unwrap();
    let state = crate::state::State::open(&data_dir, &journal).unwrap();
    let app = Arc::new(Appliance {
        data_dir: data_dir.clone(),
        clock: Arc::new(clock),
        journal,
        state,
        policy: std::sync::RwLock::new(Arc::new(policy)),
        grants,
        ot_store: Some(ot_store),
        notices,
        sessions: Arc::new(tokio::sync::Semaphore::new(4)),
        config: crate::daemon::DaemonConfig::new(
            data_dir.clone(),
            crate::daemon::PolicySource::ActiveBundle,
        ),
        shutdown: shutdown.clone(),
    });
    let socket = data_dir.control_socket();
    let listener = super::bind(&socket).await.unwrap();
    tokio::spawn(super::serve(listener, Arc::clone(&app), shutdown.clone()));
    Harness {
        _dir: dir,
        socket,
        app,
        shutdown,
    }
}

/// The TOTP code of the test user whose seed is 20 times `seed`, now.
fn code(h: &Harness, seed: u8) -> String {
    TotpEnrolment::from_seed(Secret::new(vec![seed; 20]), saturday_six())
        .code_at(h.app.clock.now_utc())
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approve_over_the_socket_and_follow_notices() {
    let h = harness().await;
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&h.socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    h.app
        .grants
        .submit(ask("alice", saturday_six()))
        .await
        .unwrap();
    let socket = h.socket.clone();
    let mut follower = blocking(move || Client::connect(&socket).unwrap().follow().unwrap()).await;
    let socket = h.socket.clone();
    let sam = code(&h, 1);
    let listed = blocking(move || {
        let mut c = Client::connect(&socket).unwrap();
        assert_eq!(c.call("ping", json!(null)).unwrap(), json!({"pong": true}));
        let pending = c.call("grants.list", json!({"filter": "pending"})).unwrap();
        let approved = c
            .call(
                "grants.approve",
                json!({"id": "R-0001", "as": "sam", "totp": sam}),
            )
            .unwrap();
        (pending, approved)
    })
    .await;
    assert_eq!(listed.0.as_array().unwrap().len(), 1);
    assert_eq!(listed.1["grant_id"], "G-0001");
    assert_eq!(listed.1["state"], "active");
    let kinds = blocking(move || {
        (0..3)
            .map(|_| follower.next_notice().unwrap().unwrap().kind)
            .collect::<Vec<_>>()
    })
    .await;
    assert_eq!(
        kinds,
        ["approval_given", "request_approved", "grant_activated"]
    );
    h.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_carry_a_code_and_bad_lines_an_error() {
    let h = harness().await;
    h.app
        .grants
        .submit(ask("alice", saturday_six()))
        .await
        .unwrap();
    h.app
        .grants
        .deny("R-0001", "sam", "not this weekend")
        .await
        .unwrap();
    let socket = h.socket.clone();
    let (sue, sue2) = (code(&h, 2), code(&h, 2));
    blocking(move || {
        let mut c = Client::connect(&socket).unwrap();
        let e = c
            .call("grants.approve", json!({"id": "R-0001", "as": "alice"}))
            .unwrap_err();
        let ClientError::Refused(e) = e else {
            panic!("{e}")
        };
        assert_eq!(e.code, "unauthenticated");
        assert!(
            e.message.contains("alice is an IT identity"),
            "{}",
            e.message
        );
        let e = c.call(
            "grants.approve",
            json!({"id": "R-0001", "as": "sam", "totp": "000000"}),
        );
        let ClientError::Refused(e) = e.unwrap_err() else {
            panic!()
        };
        assert_eq!(e.code, "unauthenticated");
        let e = c.call(
            "grants.approve",
            json!({"id": "R-0001", "as": "sue", "totp": sue}),
        );
        let ClientError::Refused(e) = e.unwrap_err() else {
            panic!()
        };
        assert_eq!(e.code, "refused", "{}", e.message);
        assert!(e.message.contains("not waiting"), "{}", e.message);
        let e = c.call(
            "grants.approve",
            json!({"id": "R-0001", "as": "sue", "totp": sue2}),
        );
        let ClientError::Refused(e) = e.unwrap_err() else {
            panic!()
        };
        assert!(
            e.message.contains("cannot authenticate sue"),
            "{}",
            e.message
        );
        let e = c
            .call("grants.deny", json!({"id": "R-0001", "as": "sue"}))
            .unwrap_err();
        assert!(e.to_string().contains("needs a reason"), "{e}");
        let e = c.call("grants.approve", json!({"as": "sue"})).unwrap_err();
        assert!(
            e.to_string().contains("bad parameters for grants.approve"),
            "{e}"
        );
        let e = c.call("grants.show", json!({"id": "G-0099"})).unwrap_err();
        let ClientError::Refused(e) = e else {
            panic!("{e}")
        };
        assert_eq!(e.code, "not_found");
        let e = c.call("nosuch.list", json!(null)).unwrap_err();
        assert!(
            e.to_string().contains("unknown method nosuch.list"),
            "{e}"
        );
    })
    .await;
    let socket = h.socket.clone();
    blocking(move || {
        use std::io::{BufRead, BufReader, Write};
        let mut raw = std::os::unix::net::UnixStream::connect(&socket).unwrap();
        raw.write_all(b"{not json\n").unwrap();
        let mut line = String::new();
        BufReader::new(raw).read_line(&mut line).unwrap();
        assert!(line.contains("malformed control request"), "{line}");
    })
    .await;
    h.shutdown.cancel();
}

#[tokio::test]
async fn a_second_daemon_cannot_take_a_live_socket() {
    let h = harness().await;
    let e = super::bind(&h.socket).await.unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse);
    h.shutdown.cancel();
}

#[test]
fn no_daemon_is_reported_as_not_running() {
    let dir = tempfile::tempdir().unwrap();
    let e = Client::connect(&dir.path().join("control.sock")).unwrap_err();
    assert!(matches!(e, ClientError::NotRunning { .. }), "{e}");
}
