//! Export tests against real files and a real syslog listener on loopback (TCP and TLS),
//! including an outage of the collector and the catch-up after it.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use super::collector::{Collector, Received};
use super::*;
use crate::journal::event::{Event, JournalEvent};

fn note(n: u64) -> Event {
    Event::Journal(JournalEvent::Note {
        actor: Some("exporter-test".into()),
        text: format!("note {n}"),
    })
}

fn seq_of(message: &str) -> u64 {
    let start = message.find("seq=\"").expect("a seq") + 5;
    let end = start + message[start..].find('"').unwrap();
    message[start..end].parse().unwrap()
}

fn options(destination: Destination, format: Format) -> ExportOptions {
    ExportOptions {
        ack_timeout: Duration::from_millis(200),
        poll_interval: Duration::from_millis(20),
        retry_max: Duration::from_millis(200),
        hostname: "gw".into(),
        ..ExportOptions::new(destination, format)
    }
}

/// Wait (bounded) until `done` holds.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if done() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("timed out waiting until {what}");
}

#[test]
fn destinations_parse_and_print() {
    assert_eq!(
        "syslog+tls://siem.example:6514"
            .parse::<Destination>()
            .unwrap(),
        Destination::SyslogTls {
            address: "siem.example:6514".into(),
            host: "siem.example".into()
        }
    );
    assert_eq!(
        "syslog+tcp://[::1]:514"
            .parse::<Destination>()
            .unwrap()
            .to_string(),
        "syslog+tcp://[::1]:514"
    );
    assert_eq!(
        "file:/tmp/a.jsonl"
            .parse::<Destination>()
            .unwrap()
            .to_string(),
        "file:/tmp/a.jsonl"
    );
    for bad in [
        "syslog://x:1",
        "syslog+tcp://host",
        "syslog+tls://:514",
        "syslog+tcp://h:99999",
        "file:",
    ] {
        assert!(bad.parse::<Destination>().is_err(), "{bad}");
    }
}

#[test]
fn a_file_export_resumes_at_its_cursor_without_duplicates() {
    let root = tempfile::tempdir().unwrap();
    let data = DataDir::new(root.path());
    let journal = Journal::open_for_tests(root.path()).unwrap();
    for i in 0..10 {
        journal.append_blocking(note(i)).unwrap();
    }
    let out = root.path().join("audit.jsonl");
    let opts = options(Destination::File { path: out.clone() }, Format::Json);
    let first = export(&data, &opts, |_| {}).unwrap();
    assert_eq!(first.confirmed_seq, journal.head().seq);
    for i in 10..15 {
        journal.append_blocking(note(i)).unwrap();
    }
    let second = export(&data, &opts, |_| {}).unwrap();
    assert_eq!(second.sent, 5);
    let seqs: Vec<u64> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(seqs, (1..=journal.head().seq).collect::<Vec<_>>());
    let cursor = load_cursor(&cursor_path(&data, &opts.destination, Format::Json))
        .unwrap()
        .unwrap();
    assert_eq!(cursor.confirmed_seq, journal.head().seq);
    // Another format to the same place has its own cursor.
    let cef = export(
        &data,
        &options(
            Destination::File {
                path: root.path().join("a.cef"),
            },
            Format::Cef,
        ),
        |_| {},
    )
    .unwrap();
    assert_eq!(cef.sent, journal.head().seq);
}

#[test]
fn a_tcp_export_delivers_every_record_as_rfc5424_and_confirms_on_close() {
    let root = tempfile::tempdir().unwrap();
    let data = DataDir::new(root.path());
    let journal = Journal::open_for_tests(root.path()).unwrap();
    for i in 0..30 {
        journal.append_blocking(note(i)).unwrap();
    }
    let collector = Collector::start_tcp("127.0.0.1:0".parse().unwrap()).unwrap();
    let destination = Destination::SyslogTcp {
        address: collector.addr().to_string(),
    };
    let report = export(&data, &options(destination, Format::Rfc5424), |_| {}).unwrap();
    assert_eq!(report.confirmed_seq, journal.head().seq);
    let messages = collector.stop();
    let seqs: Vec<u64> = messages.iter().map(|m| seq_of(&m.message)).collect();
    assert_eq!(seqs, (1..=journal.head().seq).collect::<Vec<_>>());
    assert!(messages
        .iter()
        .all(|m| m.message.starts_with('<') && m.message.contains(" gw otgate - journal.")));
}

#[test]
fn an_unreachable_collector_leaves_the_cursor_and_the_next_run_sends_everything() {
    let root = tempfile::tempdir().unwrap();
    let data = DataDir::new(root.path());
    let journal = Journal::open_for_tests(root.path()).unwrap();
    journal.append_blocking(note(1)).unwrap();
    // A port with nobody listening.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let destination = Destination::SyslogTcp {
        address: format!("127.0.0.1:{port}"),
    };
    let error = export(&data, &options(destination.clone(), Format::Json), |_| {}).unwrap_err();
    assert!(
        matches!(
            error,
            ExportError::Unreachable {
                confirmed_seq: 0,
                ..
            }
        ),
        "{error}"
    );
    let collector = Collector::start_tcp(SocketAddr::from(([127, 0, 0, 1], port))).unwrap();
    let report = export(&data, &options(destination, Format::Json), |_| {}).unwrap();
    assert_eq!(report.confirmed_seq, journal.head().seq);
    let messages = collector.stop();
    assert_eq!(messages.len() as u64, journal.head().seq);
    // JSON travels as the MSG of an RFC 5424 message.
    let json = messages[0].message.split_once("] ").unwrap().1;
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(json).unwrap()["seq"],
        1
    );
}

#[test]
fn an_outage_is_caught_up_in_order_without_gaps() {
    let root = tempfile::tempdir().unwrap();
    let data = DataDir::new(root.path());
    let journal = Journal::open_for_tests(root.path()).unwrap();
    for i in 0..20 {
        journal.append_blocking(note(i)).unwrap();
    }
    let collector = Collector::start_tcp("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = collector.addr();
    let mut opts = options(
        Destination::SyslogTcp {
            address: addr.to_string(),
        },
        Format::Rfc5424,
    );
    opts.follow = true;
    let stop = opts.stop.clone();
    let exporter = {
        let data = data.clone();
        std::thread::spawn(move || export(&data, &opts, |_| {}))
    };
    let head = journal.head().seq;
    wait_until("the first records arrive", || {
        collector.messages().len() as u64 >= head
    });
    let before: Vec<Received> = collector.stop(); // the outage

    // Records written during the outage wait in the journal.
    for i in 20..40 {
        journal.append_blocking(note(i)).unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    let collector = Collector::start_tcp(addr).unwrap();
    for i in 40..50 {
        journal.append_blocking(note(i)).unwrap();
    }
    let head = journal.head().seq;
    wait_until("the backlog arrives", || {
        collector
            .messages()
            .iter()
            .any(|m| seq_of(&m.message) == head)
    });
    stop.store(true, Ordering::SeqCst);
    let report = exporter.join().unwrap().unwrap();
    let after = collector.stop();

    let all: BTreeSet<u64> = before
        .iter()
        .chain(after.iter())
        .map(|m| seq_of(&m.message))
        .collect();
    assert_eq!(
        all,
        (1..=head).collect::<BTreeSet<_>>(),
        "every record arrives: no gaps"
    );
    // In order on every connection, and the catch-up starts at or before the first record lost.
    for received in [&before, &after] {
        let mut by_connection: std::collections::BTreeMap<u64, Vec<u64>> = Default::default();
        for m in received.iter() {
            by_connection
                .entry(m.connection)
                .or_default()
                .push(seq_of(&m.message));
        }
        for seqs in by_connection.values() {
            assert!(
                seqs.windows(2).all(|w| w[1] == w[0] + 1),
                "in order: {seqs:?}"
            );
        }
    }
    let first_after = seq_of(&after[0].message);
    let last_before = before.iter().map(|m| seq_of(&m.message)).max().unwrap();
    assert!(
        first_after <= last_before + 1,
        "caught up from {first_after} after {last_before}"
    );
    assert_eq!(report.confirmed_seq, head);
    assert!(
        report.failures >= 1 && report.connections >= 2,
        "{report:?}"
    );
}

fn tls_material() -> (
    Vec<rustls::pki_types::CertificateDer<'static>>,
    rustls::pki_types::PrivateKeyDer<'static>,
    String,
) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let der = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    (vec![cert.der().clone()], der, ca.pem())
}

#[test]
fn a_tls_export_verifies_the_collector_by_ca_or_pin() {
    let root = tempfile::tempdir().unwrap();
    let data = DataDir::new(root.path());
    let journal = Journal::open_for_tests(root.path()).unwrap();
    for i in 0..5 {
        journal.append_blocking(note(i)).unwrap();
    }
    let (chain, key, ca_pem) = tls_material();
    let pin: [u8; 32] = Sha256::digest(chain[0].as_ref()).into();
    let collector = Collector::start_tls("127.0.0.1:0".parse().unwrap(), chain, key).unwrap();
    let destination: Destination = format!("syslog+tls://{}", collector.addr())
        .parse()
        .unwrap();

    // A wrong pin is refused and nothing moves.
    let mut opts = options(destination.clone(), Format::Cef);
    opts.tls_trust = Some(TlsTrust::Pin([0; 32]));
    match export(&data, &opts, |_| {}) {
        Err(ExportError::Unreachable {
            confirmed_seq: 0,
            source,
            ..
        }) => {
            // The shared pinned verifier names the certificate the collector presented.
            let expected = format!(
                "the collector's certificate is sha256:{}, not the pinned sha256:{}",
                hex::encode(pin),
                hex::encode([0u8; 32])
            );
            assert_eq!(source.to_string(), expected);
        }
        other => panic!("{other:?}"),
    }
    // No trust at all is a usage error.
    opts.tls_trust = None;
    assert!(matches!(
        export(&data, &opts, |_| {}),
        Err(ExportError::Tls(_))
    ));

    opts.tls_trust = Some(TlsTrust::Pin(pin));
    let report = export(&data, &opts, |_| {}).unwrap();
    assert_eq!(report.confirmed_seq, journal.head().seq);

    let ca_file = root.path().join("ca.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();
    let mut opts = options(destination, Format::Rfc5424);
    opts.tls_trust = Some(TlsTrust::CaFile(ca_file));
    opts.server_name = Some("localhost".into());
    let report = export(&data, &opts, |_| {}).unwrap();
    assert_eq!(report.confirmed_seq, journal.head().seq);

    let messages = collector.stop();
    let cef: Vec<&Received> = messages
        .iter()
        .filter(|m| m.message.contains("CEF:0|otgate"))
        .collect();
    assert_eq!(cef.len() as u64, journal.head().seq);
    assert_eq!(messages.len() as u64, 2 * journal.head().seq);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_exporter_catches_up_after_an_outage_and_stops_on_shutdown() {
    let root = tempfile::tempdir().unwrap();
    let data = DataDir::new(root.path());
    let journal = Journal::open_for_tests(root.path()).unwrap();
    for i in 0..10 {
        journal.append(note(i)).await.unwrap();
    }
    let collector = Collector::start_tcp("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = collector.addr();
    // Configured as `otgate serve` reads it, and run as `daemon::run` runs it.
    std::fs::write(
        data.config_file(),
        format!(
            "[journal]\ncheckpoint_every = '1h'\n[export]\nto = 'syslog+tcp://{addr}'\nhostname = 'gw'\n\
             ack_timeout = '200ms'\nretry_max = '200ms'\npoll_interval = '20ms'\n"
        ),
    )
    .unwrap();
    let exporter = Exporter::from_config(&data, &journal).unwrap().unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(exporter.run(shutdown.clone()));
    let status = || {
        let mut all = list(&data).unwrap();
        assert_eq!(all.len(), 1);
        all.remove(0)
    };

    let head = journal.head().seq;
    wait_until("the first records arrive", || {
        collector.messages().len() as u64 >= head
    });
    let before = collector.stop(); // the outage
    for i in 10..30 {
        journal.append(note(i)).await.unwrap();
    }
    wait_until("the outage shows in the status", || {
        let (_, status) = status();
        status.is_some_and(|s| !s.connected && s.last_error.is_some() && s.stopped_at.is_none())
    });
    let (cursor, _) = status();
    assert!(
        cursor.confirmed_seq <= head,
        "nothing past the outage is confirmed"
    );

    let collector = Collector::start_tcp(addr).unwrap();
    for i in 30..35 {
        journal.append(note(i)).await.unwrap();
    }
    let head = journal.head().seq;
    wait_until("the backlog arrives", || {
        collector
            .messages()
            .iter()
            .any(|m| seq_of(&m.message) == head)
    });
    shutdown.cancel();
    task.await.unwrap();
    let after = collector.stop();

    let all: BTreeSet<u64> = before
        .iter()
        .chain(after.iter())
        .map(|m| seq_of(&m.message))
        .collect();
    assert_eq!(all, (1..=head).collect::<BTreeSet<_>>(), "no gaps");
    let (cursor, status) = status();
    assert_eq!(
        cursor.confirmed_seq, head,
        "a clean stop confirms what was sent"
    );
    let status = status.unwrap();
    assert!(status.follow && status.stopped_at.is_some() && status.failures >= 1);
}
