//! The exporter as a task of the daemon (`otgate serve`), configured by the `[export]` table of
//! `appliance.toml`: it follows the journal from its durable cursor, sends only records the
//! running journal has made durable, retries the collector with backoff, and stops cleanly
//! (confirming what it sent) when the daemon shuts down.
//!
//! It decides nothing and writes no journal record (export progress is not an audit decision);
//! its progress is in the cursor and status files under `DATA_DIR/export/`, shown by
//! `otgate audit export --status`. If the export stops on an error (an unreadable journal, a
//! cursor that cannot be written), it is traced and retried after `retry_max`.

use tokio_util::sync::CancellationToken;

use super::{export, ExportConfigError, ExportNotice, ExportOptions};
use crate::datadir::DataDir;
use crate::journal::Journal;

/// A configured exporter, ready to run as a daemon task.
#[derive(Debug)]
pub struct Exporter {
    data_dir: DataDir,
    options: ExportOptions,
}

impl Exporter {
    /// The exporter the data dir's `[export]` table asks for, if any, following `journal`.
    pub fn from_config(
        data_dir: &DataDir,
        journal: &Journal,
    ) -> Result<Option<Exporter>, ExportConfigError> {
        Ok(ExportOptions::load(data_dir)?.map(|options| Exporter::new(data_dir, options, journal)))
    }

    /// An exporter with these options, following `journal` (only its durable records).
    pub fn new(data_dir: &DataDir, mut options: ExportOptions, journal: &Journal) -> Exporter {
        options.follow = true;
        options.journal = Some(journal.clone());
        Exporter {
            data_dir: data_dir.clone(),
            options,
        }
    }

    /// Run until `shutdown` fires (the export itself runs on a blocking thread).
    pub async fn run(self, shutdown: CancellationToken) {
        let destination = self.options.destination.to_string();
        tracing::info!(%destination, format = ?self.options.format, "SIEM export running");
        // If this future is dropped (the runtime shuts down, the task is aborted), the blocking
        // export must still stop.
        let _stop_on_drop = StopOnDrop(self.options.stop.clone());
        loop {
            let stop = self.options.stop.clone();
            stop.store(false, std::sync::atomic::Ordering::SeqCst);
            let data_dir = self.data_dir.clone();
            let options = self.options.clone();
            let mut task = tokio::task::spawn_blocking(move || {
                export(&data_dir, &options, |notice| match notice {
                    ExportNotice::Connected { from_seq } => {
                        tracing::info!(destination = %options.destination, from_seq, "SIEM export connected")
                    }
                    ExportNotice::Failed { error, retry_in } => tracing::warn!(
                        destination = %options.destination,
                        %error,
                        retry_in = %humantime::format_duration(*retry_in),
                        "SIEM export failed; records wait in the journal"
                    ),
                    ExportNotice::Confirmed { seq } => {
                        tracing::debug!(destination = %options.destination, seq, "SIEM export delivered")
                    }
                })
            });
            let (result, stopping) = tokio::select! {
                result = &mut task => (result, false),
                () = shutdown.cancelled() => {
                    stop.store(true, std::sync::atomic::Ordering::SeqCst);
                    (task.await, true)
                }
            };
            match result {
                Ok(Ok(report)) => tracing::info!(
                    %destination,
                    delivered_up_to = report.confirmed_seq,
                    sent = report.sent,
                    "SIEM export stopped"
                ),
                Ok(Err(e)) => tracing::error!(%destination, error = %e, "SIEM export stopped"),
                Err(e) => tracing::error!(%destination, error = %e, "SIEM export task failed"),
            }
            if stopping || shutdown.is_cancelled() {
                return;
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(self.options.retry_max) => {}
            }
        }
    }
}

/// Sets the export's stop flag when dropped.
struct StopOnDrop(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}
