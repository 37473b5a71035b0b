//! Runs the real `otgate` binary for each step, exactly as a person following the README's tour
//! would, and keeps every command line so `--keep` users can repeat them by hand.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use anyhow::{bail, Context};
use serde_json::Value;

/// The `otgate` binary, pointed at one data directory.
#[derive(Debug, Clone)]
pub struct Otgate {
    bin: PathBuf,
    data_dir: PathBuf,
}

impl Otgate {
    /// The running binary itself, with `--data-dir data_dir`.
    pub fn current(data_dir: &Path) -> anyhow::Result<Self> {
        let bin = std::env::current_exe().context("cannot find the otgate binary")?;
        Ok(Self {
            bin,
            data_dir: data_dir.to_owned(),
        })
    }

    fn command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let mut command = Command::new(&self.bin);
        command.arg("--data-dir").arg(&self.data_dir);
        command.args(args.into_iter().map(Into::into));
        command.env_remove("OTGATE_PROFILE");
        command.stdin(Stdio::null());
        command
    }

    /// Run `otgate ARGS`; its output whatever the exit status.
    pub fn output<I, S>(&self, args: I) -> anyhow::Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let mut command = self.command(args);
        let shown = format!("{command:?}");
        command
            .output()
            .with_context(|| format!("cannot run {shown}"))
    }

    /// Run `otgate ARGS` and insist that it succeeds; its stdout.
    pub fn ok<I, S>(&self, args: I) -> anyhow::Result<String>
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        let out = self.output(args.clone())?;
        if !out.status.success() {
            bail!(
                "`otgate {}` failed ({}): {}",
                shown_args(&args),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Run `otgate ARGS` (which must include `--json`) and parse its last stdout line as JSON.
    pub fn json<I, S>(&self, args: I) -> anyhow::Result<Value>
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        let stdout = self.ok(args.clone())?;
        parse_json(&stdout)
            .with_context(|| format!("`otgate {}` printed no JSON", shown_args(&args)))
    }

    /// Start `otgate ARGS` in the background with stdout piped and stderr into `log`.
    pub fn spawn<I, S>(&self, args: I, log: &Path) -> anyhow::Result<Child>
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let mut command = self.command(args);
        let log = std::fs::File::create(log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        command.stdout(Stdio::piped()).stderr(Stdio::from(log));
        let shown = format!("{command:?}");
        command
            .spawn()
            .with_context(|| format!("cannot start {shown}"))
    }
}

/// The JSON value on the last non-empty line of `text` (or the whole text, pretty-printed).
pub fn parse_json(text: &str) -> Option<Value> {
    if let Ok(value) = serde_json::from_str(text.trim()) {
        return Some(value);
    }
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .and_then(|l| serde_json::from_str(l).ok())
}

fn shown_args(args: &[OsString]) -> String {
    args.iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// A string field of a JSON object, or "?".
pub fn field(value: &Value, name: &str) -> String {
    match value.get(name) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => "?".to_owned(),
        Some(other) => other.to_string(),
    }
}
