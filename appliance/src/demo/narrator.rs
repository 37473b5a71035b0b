//! The demo's voice: one line per thing an actor does or the appliance decides, with the actor
//! in a fixed column so a plant engineer can scan who did what. Colour only on a terminal.

use std::io::{IsTerminal, Write};
use std::time::Duration;

/// How fast the demo plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Pace {
    /// Windows shortened to seconds, no pauses: the whole demo in well under a minute.
    Fast,
    /// Pauses between steps, as a person would watch.
    Real,
}

/// Prints the narration.
#[derive(Debug)]
pub struct Narrator {
    colour: bool,
    pace: Pace,
}

impl Narrator {
    /// A narrator writing to stdout.
    pub fn new(pace: Pace) -> Self {
        Self {
            colour: std::io::stdout().is_terminal(),
            pace,
        }
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.colour {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    /// A heading for an act.
    pub fn act(&self, title: &str) {
        println!();
        println!("{}", self.paint("1", title));
    }

    /// One thing an actor did or saw.
    pub fn say(&self, actor: &str, text: &str) {
        let code = match actor {
            "appliance" => "36",
            "HQ" => "35",
            "plant" | "monitor" => "33",
            "rogue" => "31",
            _ => "32",
        };
        let label = format!("{actor:>11}");
        println!("{}  {}", self.paint(code, &label), text);
        let _ = std::io::stdout().flush();
    }

    /// A refusal or alert, marked so it stands out.
    pub fn refused(&self, actor: &str, text: &str) {
        self.say(actor, &self.paint("31", text));
    }

    /// A continuation line (details) under the previous one.
    pub fn detail(&self, text: &str) {
        println!("{:>11}    {}", "", self.paint("2", text));
    }

    /// A pause a person would take to read, in `Pace::Real` only.
    pub async fn pause(&self) {
        if self.pace == Pace::Real {
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
}
