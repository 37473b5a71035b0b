//! Control-socket methods of the stores (`users.*`, `vault.*`), for the console while the daemon
//! runs and holds the journal. Each method does exactly what the offline CLI does, through
//! [`crate::stores::admin::Admin`]: check, journal, apply; a refusal changes nothing. Secrets
//! arrive over the 0600 socket and go straight into the stores; vault values are never returned.
//!
//! Methods: `users.add_ot {id, roles, password?}`, `users.enroll_totp {id, zone}` (returns the
//! secret and otpauth URL once), `users.set_password {id, zone, password}`, `users.remove {id,
//! zone}`, `users.list {zone?}`, `vault.set {name, value}` (returns `{replaced}`), `vault.list`,
//! `vault.remove {name}`.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{json, Value};

use super::{params, ControlError};
use crate::daemon::Appliance;
use crate::stores::admin::{Admin, AdminError};
use crate::stores::{Secret, StoreError, Zone};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddOt {
    id: String,
    roles: Vec<String>,
    #[serde(default)]
    password: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Account {
    id: String,
    zone: Zone,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetPassword {
    id: String,
    zone: Zone,
    password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct List {
    #[serde(default)]
    zone: Option<Zone>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VaultSet {
    name: String,
    value: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VaultName {
    name: String,
}

/// Answer a `users.*` or `vault.*` method.
pub async fn handle(
    app: &Arc<Appliance>,
    method: &str,
    args: Value,
) -> Result<Value, ControlError> {
    let admin =
        Admin::open(&app.data_dir, app.journal.clone(), "console").map_err(|e| store_error(&e))?;
    let method_owned = method.to_owned();
    // argon2 and fsync: off the async threads.
    tokio::task::spawn_blocking(move || run(&admin, &method_owned, args))
        .await
        .map_err(|e| ControlError::internal(format!("{method}: {e}")))?
}

fn run(admin: &Admin, method: &str, args: Value) -> Result<Value, ControlError> {
    match method {
        "users.add_ot" => {
            let a: AddOt = params(method, args)?;
            let password = a.password.map(Secret::from_string);
            admin
                .add_ot(&a.id, &a.roles, password.as_ref())
                .map_err(admin_error)?;
            Ok(json!({ "id": a.id }))
        }
        "users.enroll_totp" => {
            let a: Account = params(method, args)?;
            let shown = admin.enroll_totp(&a.id, a.zone).map_err(admin_error)?;
            Ok(json!({
                "identity": a.id,
                "zone": a.zone,
                "secret": shown.secret_base32.expose_str().unwrap_or_default(),
                "otpauth_url": shown.url.expose_str().unwrap_or_default(),
            }))
        }
        "users.set_password" => {
            let a: SetPassword = params(method, args)?;
            admin
                .set_password(&a.id, a.zone, &Secret::from_string(a.password))
                .map_err(admin_error)?;
            Ok(json!({ "id": a.id }))
        }
        "users.remove" => {
            let a: Account = params(method, args)?;
            admin.remove(&a.id, a.zone).map_err(admin_error)?;
            Ok(json!({ "id": a.id }))
        }
        "users.list" => {
            let a: List = params(method, args)?;
            let accounts = admin.list(a.zone).map_err(admin_error)?;
            serde_json::to_value(accounts).map_err(|e| ControlError::internal(e.to_string()))
        }
        "vault.set" => {
            let a: VaultSet = params(method, args)?;
            let replaced = admin
                .vault_set(&a.name, Secret::from_string(a.value))
                .map_err(admin_error)?;
            Ok(json!({ "name": a.name, "replaced": replaced }))
        }
        "vault.list" => {
            let entries = admin.vault_list().map_err(admin_error)?;
            serde_json::to_value(entries).map_err(|e| ControlError::internal(e.to_string()))
        }
        "vault.remove" => {
            let a: VaultName = params(method, args)?;
            admin.vault_remove(&a.name).map_err(admin_error)?;
            Ok(json!({ "name": a.name }))
        }
        _ => Err(ControlError::new(
            "unknown_method",
            format!("unknown method {method}"),
        )),
    }
}

fn store_error(e: &StoreError) -> ControlError {
    match e {
        StoreError::UnknownAccount { zone, id } => {
            let next = match zone {
                Zone::Ot => format!("add it first: otgate users add-ot {id} --role ROLE"),
                Zone::It => format!("otgate users list --zone {zone}"),
            };
            ControlError::new("not_found", e.to_string()).with_hint(next)
        }
        StoreError::UnknownSecret { .. } => {
            ControlError::new("not_found", e.to_string()).with_hint("otgate vault list shows the names")
        }
        StoreError::AccountExists { zone, id } => ControlError::invalid(e.to_string())
            .with_hint(format!("otgate users remove {id} --zone {zone} first, or otgate users set-password {id} --zone {zone}")),
        StoreError::InvalidName { .. } | StoreError::InvalidSecret { .. } => ControlError::invalid(e.to_string()),
        _ => ControlError::internal(e.to_string()),
    }
}

fn admin_error(e: AdminError) -> ControlError {
    match e {
        AdminError::Store(s) => store_error(&s),
        AdminError::Journal(j) => ControlError::internal(format!("not applied: {j}"))
            .with_hint("check the journal with: otgate audit verify"),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;
    use tokio::sync::broadcast;
    use tokio_util::sync::CancellationToken;

    use crate::cli::init::{self, InitArgs};
    use crate::cli::users::{EnrollTotpArgs, UsersCommand};
    use crate::cli::Globals;
    use crate::daemon::Appliance;
    use crate::datadir::DataDir;
    use crate::grants::tests::{plant, saturday_six, Memory};
    use crate::grants::{Grants, Registry};
    use crate::journal::event::{Event, Subjects};
    use crate::stores::ot::OtStore;

    /// A daemon's control socket over a data dir made by `otgate init`, holding the journal.
    async fn daemon() -> (
        tempfile::TempDir,
        Globals,
        Arc<Appliance>,
        CancellationToken,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let globals = Globals {
            data_dir: DataDir::new(dir.path().join("a")),
        };
        let args = InitArgs {
            trust: None,
            sans: vec![],
            it_listen: init::DEFAULT_IT_LISTEN.parse().unwrap(),
            force: false,
            json: true,
        };
        let g = globals.clone();
        tokio::task::spawn_blocking(move || init::run(&g, args).unwrap())
            .await
            .unwrap();
        let data_dir = globals.data_dir.clone();
        let key = crate::journal::keys::load_appliance_key(&data_dir.appliance_key()).unwrap();
        let journal = crate::journal::Journal::open(
            &data_dir.journal_dir(),
            key,
            crate::journal::JournalConfig::default(),
        )
        .unwrap();
        let clock = Arc::new(crate::clock::ManualClock::starting_at(saturday_six()));
        let (notices, _) = broadcast::channel(16);
        let grants = Grants::new(
            Registry::new(),
            Arc::new(Memory::default()),
            Arc::new(plant(&[("shift-supervisor", 1)])),
            clock.clone(),
            notices.clone(),
        );
        let policy = otgate_policy::parse(
            include_str!("../../../policies/examples/plant.toml"),
            "plant.toml",
        )
        .unwrap();
        let shutdown = CancellationToken::new();
        let state = crate::state::State::open(&data_dir, &journal).unwrap();
        let app = Arc::new(Appliance {
            data_dir: data_dir.clone(),
            clock,
            journal,
            state,
            policy: std::sync::RwLock::new(Arc::new(policy)),
            grants,
            ot_store: Some(OtStore::open(&data_dir.ot_store_dir()).unwrap()),
            notices,
            sessions: Arc::new(tokio::sync::Semaphore::new(4)),
            config: crate::daemon::DaemonConfig::new(
                data_dir.clone(),
                crate::daemon::PolicySource::ActiveBundle,
            ),
            shutdown: shutdown.clone(),
        });
        let listener = super::super::bind(&data_dir.control_socket())
            .await
            .unwrap();
        tokio::spawn(super::super::serve(
            listener,
            Arc::clone(&app),
            shutdown.clone(),
        ));
        (dir, globals, app, shutdown)
    }

    fn call(
        globals: &Globals,
        method: &str,
        params: serde_json::Value,
    ) -> Result<serde_json::Value, crate::control::client::ClientError> {
        crate::control::client::call(&globals.data_dir.control_socket(), method, params)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn console_changes_go_through_the_running_daemon_and_are_journaled() {
        let (_dir, globals, app, shutdown) = daemon().await;
        let g = globals.clone();
        tokio::task::spawn_blocking(move || {
            call(&g, "users.add_ot", json!({"id": "sam", "roles": ["shift-supervisor"], "password": "sam password 1"})).unwrap();
            let err = call(&g, "users.add_ot", json!({"id": "sam", "roles": ["shift-supervisor"]})).unwrap_err();
            assert!(err.to_string().contains("exists already"), "{err}");
            let shown = call(&g, "users.enroll_totp", json!({"id": "sam", "zone": "ot"})).unwrap();
            assert!(shown["otpauth_url"].as_str().unwrap().starts_with("otpauth://totp/"));
            let err = call(&g, "users.enroll_totp", json!({"id": "nobody", "zone": "ot"})).unwrap_err();
            assert!(matches!(&err, crate::control::client::ClientError::Refused(e) if e.code == "not_found"), "{err}");
            // The CLI finds the daemon and goes through it (the journal is the daemon's).
            crate::cli::users::run(&g, UsersCommand::EnrollTotp(EnrollTotpArgs { id: "alice".into(), zone: crate::stores::Zone::It, json: true }))
                .unwrap();
            let set = call(&g, "vault.set", json!({"name": "hmi-line1-vnc", "value": "Vnc-Pa55word!"})).unwrap();
            assert_eq!(set["replaced"], false);
            let listed = call(&g, "vault.list", json!({})).unwrap();
            assert!(!listed.to_string().contains("Pa55word"), "names only: {listed}");
            assert_eq!(listed[0]["name"], "hmi-line1-vnc");
            call(&g, "vault.remove", json!({"name": "hmi-line1-vnc"})).unwrap();
            let err = call(&g, "vault.remove", json!({"name": "hmi-line1-vnc"})).unwrap_err();
            assert!(err.to_string().contains("no vault entry"), "{err}");
            let users = call(&g, "users.list", json!({})).unwrap();
            assert_eq!(users["ot"][0]["id"], "sam");
            assert_eq!(users["it"][0]["id"], "alice");
        })
        .await
        .unwrap();

        let kinds: Vec<&'static str> =
            crate::journal::read::JournalReader::open(&globals.data_dir.journal_dir())
                .unwrap()
                .filter_map(|r| match r.unwrap().event {
                    Event::Admin(a) => Some(a.kind()),
                    _ => None,
                })
                .collect();
        assert_eq!(
            kinds,
            [
                "appliance_initialized",
                "account_added",
                "totp_enrolled",
                "totp_enrolled",
                "vault_secret_set",
                "vault_secret_removed"
            ]
        );
        shutdown.cancel();
        drop(app);
    }
}
