//! The demo's people's authenticator apps: TOTP codes from the secrets `otgate users
//! enroll-totp` showed once, computed on the plant's clock. A code is accepted once, so each
//! person moves to the next time step for their next code, waiting when they must.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context;

use super::plant::PlantClock;
use crate::stores::secret::Secret;
use crate::stores::totp::{base32_decode, TotpEnrolment};

const STEP_SECONDS: i64 = 30;

/// Everyone's authenticator.
#[derive(Debug, Default)]
pub struct Authenticators {
    seeds: HashMap<String, Vec<u8>>,
    last_step: HashMap<String, i64>,
}

impl Authenticators {
    /// Remember `who`'s secret as shown at enrolment (base32).
    pub fn enrol(&mut self, who: &str, secret_base32: &str) -> anyhow::Result<()> {
        let seed = base32_decode(secret_base32)
            .with_context(|| format!("the TOTP secret shown for {who} is not base32"))?;
        self.seeds.insert(who.to_owned(), seed);
        Ok(())
    }

    /// A fresh code for `who` on the plant's clock (waits for the next step if needed).
    pub async fn code(&mut self, who: &str, clock: &PlantClock) -> anyhow::Result<String> {
        let seed = self
            .seeds
            .get(who)
            .with_context(|| format!("{who} has no authenticator"))?;
        loop {
            let now = clock.now();
            let now_step = now.timestamp() / STEP_SECONDS;
            let step = match self.last_step.get(who) {
                Some(last) => now_step.max(last + 1),
                None => now_step,
            };
            // The appliance accepts the current step and the next one.
            if step <= now_step + 1 {
                self.last_step.insert(who.to_owned(), step);
                let at = chrono::DateTime::from_timestamp(step * STEP_SECONDS, 0)
                    .context("time out of range")?;
                let enrolment = TotpEnrolment::from_seed(Secret::new(seed.clone()), now);
                return Ok(enrolment.code_at(at));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}
