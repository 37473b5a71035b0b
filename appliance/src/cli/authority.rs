//! `otgate authority`: the HQ side of policy bundles (keygen, root, sign, verify, serve).
//!
//! These commands need no appliance data directory: keys, trust roots and bundles are files
//! named on the command line. Secret key files are written with mode 0600 and never printed.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, TimeDelta, Utc};
use otgate_sync::bundle::{hash_hex, Body, Bundle, Header, MAX_BUNDLE_BYTES};
use otgate_sync::key::load_public;
use otgate_sync::net::tls::{generate_cert, load_certs, load_key, server_config};
use otgate_sync::{AuthorityKey, KeyId, TrustRoot, TrustRootFile};

use super::{hint, Globals};

const KEYGEN_HELP: &str = "\
Examples:
  otgate authority keygen --out hq1.key --name hq-security-1     writes hq1.key (secret) and hq1.pub
  otgate authority keygen --tls --out hq-tls.key --cert-out hq.crt --name hq.example.com";

const ROOT_HELP: &str = "\
Example:
  otgate authority root --site plant-a --threshold 2 \\
      --key hq1.pub --key hq2.pub --key hq3.pub --out plant-a-root.json";

const SIGN_HELP: &str = "\
Examples (each authority signs the same file in turn, offline):
  otgate authority sign plant-a-v7.otgb --key hq1.key --policy plant.toml --site plant-a \\
      --bundle-version 7 --valid-for 30d --previous plant-a-v6.otgb
  otgate authority sign plant-a-v7.otgb --key hq2.key";

const VERIFY_HELP: &str = "\
Example:
  otgate authority verify plant-a-v7.otgb --trust plant-a-root.json --json";

const SERVE_HELP: &str = "\
Example:
  otgate authority serve /srv/otgate/bundles --cert hq.crt --key hq-tls.key --listen 0.0.0.0:8443
Appliances then run: otgate policy pull https://hq.example.com:8443 --cert hq.crt";

/// The `otgate authority` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum AuthorityCommand {
    /// Make an authority signing key (or, with --tls, HQ's TLS certificate and key).
    #[command(after_help = KEYGEN_HELP)]
    Keygen(KeygenArgs),
    /// Write a trust root: the authority keys of a site and how many must sign.
    #[command(after_help = ROOT_HELP)]
    Root(RootArgs),
    /// Create a bundle from a policy and sign it, or add one more signature to a bundle.
    #[command(after_help = SIGN_HELP)]
    Sign(Box<SignArgs>),
    /// Check a bundle against a trust root, as an appliance would, and show it.
    #[command(after_help = VERIFY_HELP)]
    Verify(VerifyArgs),
    /// Serve the newest bundle of each site in a directory over HTTPS (read only).
    #[command(after_help = SERVE_HELP)]
    Serve(ServeArgs),
    /// Write and sign a review record signing off a plant's emergency grants, or countersign one.
    Review(Box<super::review::SignReviewArgs>),
}

/// Arguments of `otgate authority keygen`.
#[derive(Debug, clap::Args)]
pub struct KeygenArgs {
    /// The secret key file to write (the public half goes next to it as `.pub`).
    #[arg(long, value_name = "PATH")]
    pub out: PathBuf,
    /// Make HQ's TLS certificate and key instead of a signing key.
    #[arg(long)]
    pub tls: bool,
    /// With --tls: where to write the certificate (PEM).
    #[arg(long, value_name = "PATH", requires = "tls")]
    pub cert_out: Option<PathBuf>,
    /// A name for the key; with --tls, the DNS names or IP addresses the certificate is for
    /// (repeatable; default localhost and 127.0.0.1).
    #[arg(long, value_name = "NAME")]
    pub name: Vec<String>,
}

/// Arguments of `otgate authority root`.
#[derive(Debug, clap::Args)]
pub struct RootArgs {
    /// The site (plant) the root guards.
    #[arg(long, value_name = "SITE")]
    pub site: String,
    /// How many distinct authorities must sign (M of N).
    #[arg(long, value_name = "M")]
    pub threshold: usize,
    /// An authority public key file (`.pub`), repeatable.
    #[arg(long = "key", value_name = "PUB", required = true)]
    pub keys: Vec<PathBuf>,
    /// A key id whose signatures never count again (repeatable).
    #[arg(long = "revoke", value_name = "KEY_ID")]
    pub revoke: Vec<KeyId>,
    /// The root's version; a rotation must raise it.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub root_version: u64,
    /// Where to write the trust root JSON.
    #[arg(long, value_name = "PATH")]
    pub out: PathBuf,
    /// Replace a different existing file.
    #[arg(long)]
    pub force: bool,
}

/// Arguments of `otgate authority sign`.
#[derive(Debug, clap::Args)]
pub struct SignArgs {
    /// The bundle file: created when --policy is given, otherwise signed in place.
    pub bundle: PathBuf,
    /// Your authority secret key file.
    #[arg(long, value_name = "KEY")]
    pub key: PathBuf,
    /// Create the bundle from this policy file (TOML).
    #[arg(long, value_name = "FILE", requires_all = ["site", "bundle_version"])]
    pub policy: Option<PathBuf>,
    /// The site the bundle is for.
    #[arg(long, value_name = "SITE", requires = "policy")]
    pub site: Option<String>,
    /// The bundle version (greater than the one the plant runs).
    #[arg(long, value_name = "N", requires = "policy")]
    pub bundle_version: Option<u64>,
    /// Valid from (RFC 3339; default now).
    #[arg(long, value_name = "TIME", requires = "policy")]
    pub not_before: Option<DateTime<chrono::FixedOffset>>,
    /// Valid for this long after not-before, e.g. `30d` (default: the policy's
    /// `[validity] lifetime`).
    #[arg(long, value_name = "DURATION", requires = "policy", value_parser = humantime::parse_duration)]
    pub valid_for: Option<Duration>,
    /// How long an offline appliance keeps enforcing the bundle after it expires, e.g. `7d`
    /// (default: the policy's `[validity] offline_grace`).
    #[arg(long, value_name = "DURATION", requires = "policy", value_parser = humantime::parse_duration)]
    pub grace: Option<Duration>,
    /// The bundle this one replaces (its hash is recorded).
    #[arg(long, value_name = "BUNDLE", requires = "policy")]
    pub previous: Option<PathBuf>,
    /// A new trust root to install with this bundle (a rotation).
    #[arg(long, value_name = "ROOT", requires = "policy")]
    pub trust_root: Option<PathBuf>,
    /// Replace a different existing bundle file when creating.
    #[arg(long)]
    pub force: bool,
}

/// Arguments of `otgate authority verify`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The bundle file.
    pub bundle: PathBuf,
    /// The trust root to check against.
    #[arg(long, value_name = "ROOT")]
    pub trust: PathBuf,
    /// Check as of this instant (RFC 3339; default now).
    #[arg(long, value_name = "TIME")]
    pub at: Option<DateTime<chrono::FixedOffset>>,
    /// Clock skew tolerated at either end of the validity.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = humantime::parse_duration)]
    pub skew: Duration,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `otgate authority serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The directory of `*.otgb` bundles to serve.
    pub dir: PathBuf,
    /// HQ's certificate (PEM).
    #[arg(long, value_name = "PEM")]
    pub cert: PathBuf,
    /// HQ's TLS private key (PEM).
    #[arg(long, value_name = "PEM")]
    pub key: PathBuf,
    /// The address to listen on (port 0 picks one; the address is printed).
    #[arg(long, default_value = "127.0.0.1:8443", value_name = "ADDR")]
    pub listen: SocketAddr,
}

/// Run an `otgate authority` subcommand.
pub fn run(_globals: &Globals, command: AuthorityCommand) -> anyhow::Result<ExitCode> {
    match command {
        AuthorityCommand::Keygen(a) => keygen(a),
        AuthorityCommand::Root(a) => root(a),
        AuthorityCommand::Sign(a) => sign(*a),
        AuthorityCommand::Verify(a) => verify(a),
        AuthorityCommand::Serve(a) => serve(a),
        AuthorityCommand::Review(a) => super::review::sign(*a),
    }
}

fn keygen(args: KeygenArgs) -> anyhow::Result<ExitCode> {
    if args.tls {
        let cert_out = args
            .cert_out
            .clone()
            .unwrap_or_else(|| args.out.with_extension("crt"));
        refuse_existing(&args.out)?;
        refuse_existing(&cert_out)?;
        let names = if args.name.is_empty() {
            vec!["localhost".to_owned(), "127.0.0.1".to_owned()]
        } else {
            args.name
        };
        let made = generate_cert(&names)?;
        write_private(&args.out, made.key_pem.as_bytes())?;
        write_atomic(&cert_out, made.cert_pem.as_bytes())?;
        println!(
            "wrote TLS key {} and certificate {}",
            args.out.display(),
            cert_out.display()
        );
        println!("pin {}", made.pin);
        return Ok(ExitCode::SUCCESS);
    }
    let pub_out = args.out.with_extension("pub");
    refuse_existing(&args.out)?;
    refuse_existing(&pub_out)?;
    let key = AuthorityKey::generate(args.name.first().cloned());
    key.save_new(&args.out)?;
    let public = serde_json::to_string_pretty(&key.public_entry())?;
    write_atomic(&pub_out, format!("{public}\n").as_bytes())?;
    println!(
        "key {} written to {} (public half {})",
        key.key_id(),
        args.out.display(),
        pub_out.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn root(args: RootArgs) -> anyhow::Result<ExitCode> {
    let mut keys = Vec::new();
    for path in &args.keys {
        keys.push(load_public(path)?);
    }
    let root = TrustRoot::new(TrustRootFile {
        format: otgate_sync::trust::TRUST_ROOT_FORMAT,
        site: args.site,
        root_version: args.root_version,
        threshold: args.threshold,
        keys,
        revoked: args.revoke,
    })
    .context("the trust root is invalid")?;
    write_out(&args.out, root.to_json().as_bytes(), args.force)?;
    println!(
        "trust root v{} for {}: {} of {} keys, {} revoked, written to {}",
        root.root_version(),
        root.site(),
        root.threshold(),
        root.key_ids().count(),
        root.revoked().count(),
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn sign(args: SignArgs) -> anyhow::Result<ExitCode> {
    let key = AuthorityKey::load(&args.key)?;
    let mut bundle = match &args.policy {
        Some(policy) => new_bundle(&args, policy)?,
        None => {
            let bytes = read_bundle(&args.bundle)?;
            Bundle::decode(&bytes).with_context(|| format!("{}", args.bundle.display()))?
        }
    };
    bundle.sign(&key).map_err(|e| {
        hint(
            e,
            "each authority signs once; pass another authority's --key",
        )
    })?;
    let bytes = bundle.encode();
    if args.policy.is_some() {
        write_out(&args.bundle, &bytes, args.force)?;
    } else {
        write_atomic(&args.bundle, &bytes)?;
    }
    let header = bundle.header();
    println!(
        "{}: {} v{} hash {}, signed by {} ({} signature{})",
        args.bundle.display(),
        header.site,
        header.version,
        hash_hex(&bundle.hash()),
        key.key_id(),
        bundle.signatures().len(),
        if bundle.signatures().len() == 1 {
            ""
        } else {
            "s"
        }
    );
    Ok(ExitCode::SUCCESS)
}

fn new_bundle(args: &SignArgs, policy_path: &Path) -> anyhow::Result<Bundle> {
    let source = read_limited(policy_path, otgate_sync::bundle::MAX_POLICY_BYTES as u64)?;
    let source = String::from_utf8(source)
        .with_context(|| format!("{}: not UTF-8", policy_path.display()))?;
    let policy =
        otgate_policy::parse(&source, &policy_path.display().to_string()).map_err(|d| {
            hint(
                anyhow::anyhow!(
                    "{} is not a valid policy; nothing was signed:\n{d}",
                    policy_path.display()
                ),
                format!("otgate policy check {}", policy_path.display()),
            )
        })?;
    let site = args.site.clone().unwrap_or_default();
    if policy.site.id.as_str() != site {
        anyhow::bail!(
            "--site {site} but the policy is for site {}",
            policy.site.id
        );
    }
    let now = Utc::now();
    let not_before = args
        .not_before
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or(now);
    let valid_for = args.valid_for.unwrap_or(policy.validity.lifetime);
    let valid_for = TimeDelta::from_std(valid_for).context("--valid-for is too long")?;
    let grace = args.grace.unwrap_or(policy.validity.offline_grace);
    let previous_hash = match &args.previous {
        Some(path) => {
            let bytes = read_bundle(path)?;
            Some(
                Bundle::decode(&bytes)
                    .with_context(|| format!("{}", path.display()))?
                    .hash(),
            )
        }
        None => None,
    };
    let trust_root = match &args.trust_root {
        Some(path) => {
            let root = TrustRoot::load(path).with_context(|| format!("{}", path.display()))?;
            Some(root.to_json().into_bytes())
        }
        None => None,
    };
    let body = Body {
        header: Header {
            site,
            version: args.bundle_version.unwrap_or_default(),
            issued_at: now,
            not_before,
            expires_at: not_before + valid_for,
            previous_hash,
            grace_period_secs: grace.as_secs(),
        },
        policy: otgate_sync::bundle::canonical_policy(&source, &policy_path.display().to_string())?,
        trust_root,
    };
    Ok(Bundle::new(body)?)
}

fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let root = TrustRoot::load(&args.trust).with_context(|| format!("{}", args.trust.display()))?;
    let bytes = read_bundle(&args.bundle)?;
    let now = args
        .at
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(Utc::now);
    let skew = TimeDelta::from_std(args.skew).context("--skew is too long")?;
    let verified = otgate_sync::verify(&bytes, &root, None, now, skew)
        .with_context(|| format!("{} refused", args.bundle.display()))?;
    let header = verified.header();
    let signers: Vec<String> = verified.signers().iter().map(ToString::to_string).collect();
    if args.json {
        let value = serde_json::json!({
            "site": header.site,
            "version": header.version,
            "hash": hash_hex(&verified.hash()),
            "signers": signers,
            "threshold": root.threshold(),
            "issued_at": header.issued_at.to_rfc3339(),
            "not_before": header.not_before.to_rfc3339(),
            "expires_at": header.expires_at.to_rfc3339(),
            "grace_period_secs": header.grace_period_secs,
            "previous_hash": header.previous_hash.as_ref().map(hash_hex),
            "new_trust_root_version": verified.new_trust_root().map(|r| r.root_version()),
        });
        println!("{value}");
    } else {
        println!(
            "{}: valid for {} at {}",
            args.bundle.display(),
            header.site,
            now.to_rfc3339()
        );
        println!("  version      {}", header.version);
        println!("  hash         {}", hash_hex(&verified.hash()));
        println!(
            "  signers      {} ({} of {} required)",
            signers.join(", "),
            signers.len(),
            root.threshold()
        );
        println!("  issued at    {}", header.issued_at.to_rfc3339());
        println!(
            "  valid        {} .. {}",
            header.not_before.to_rfc3339(),
            header.expires_at.to_rfc3339()
        );
        println!(
            "  grace        {}",
            humantime::format_duration(Duration::from_secs(header.grace_period_secs))
        );
        if let Some(next) = verified.new_trust_root() {
            println!(
                "  trust root   rotates to v{} ({} of {} keys, {} revoked)",
                next.root_version(),
                next.threshold(),
                next.key_ids().count(),
                next.revoked().count()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    if !args.dir.is_dir() {
        return Err(hint(
            anyhow::anyhow!("{} is not a directory", args.dir.display()),
            "give the directory that holds the signed *.otgb bundles",
        ));
    }
    let config = server_config(load_certs(&args.cert)?, load_key(&args.key)?)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let bound = listener.local_addr()?;
        println!("serving {} on https://{bound}", args.dir.display());
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        let shutdown = async {
            use tokio::signal::unix::{signal, SignalKind};
            match signal(SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {}
                        _ = term.recv() => {}
                    }
                }
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        };
        otgate_sync::net::serve(listener, config, args.dir, shutdown).await?;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Read a bundle file, refusing one over the bundle size limit before reading it whole.
pub(crate) fn read_bundle(path: &Path) -> anyhow::Result<Vec<u8>> {
    read_limited(path, MAX_BUNDLE_BYTES)
}

/// Read at most `limit` bytes of `path`, refusing a larger file by its size first.
pub(crate) fn read_limited(path: &Path, limit: u64) -> anyhow::Result<Vec<u8>> {
    use std::io::Read as _;
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let size = file
        .metadata()
        .with_context(|| format!("cannot stat {}", path.display()))?
        .len();
    if size > limit {
        anyhow::bail!(
            "{}: {size} bytes, over the limit of {limit} bytes",
            path.display()
        );
    }
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {}", path.display()))?;
    if bytes.len() as u64 > limit {
        anyhow::bail!(
            "{}: grew past the limit of {limit} bytes while being read",
            path.display()
        );
    }
    Ok(bytes)
}

fn refuse_existing(path: &Path) -> anyhow::Result<()> {
    if path.exists() {
        return Err(hint(
            anyhow::anyhow!("{} already exists", path.display()),
            "keys are never overwritten; choose another --out",
        ));
    }
    Ok(())
}

/// Write `bytes` to `path` unless a different file is there (then only with `force`).
pub(crate) fn write_out(path: &Path, bytes: &[u8], force: bool) -> anyhow::Result<()> {
    if !force {
        if let Ok(existing) = std::fs::read(path) {
            if existing != bytes {
                return Err(hint(
                    anyhow::anyhow!("{} already exists with other content", path.display()),
                    "pass --force to replace it, or choose another path",
                ));
            }
        }
    }
    write_atomic(path, bytes)
}

/// Write through a temporary file and a rename, so readers see the old or the new file.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut file =
        std::fs::File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}
