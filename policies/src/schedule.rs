//! Schedules: weekly windows and one-off date ranges in a site's timezone, and the question
//! "which window contains this instant, and when does it end?".
//!
//! Windows are written as local wall-clock times (`Sat 06:00-10:00`). Converting them to instants
//! follows two rules across daylight-saving changes, both chosen so a window never opens earlier
//! or ends later than its wall-clock text suggests:
//!
//! * a wall-clock time that occurs twice (autumn fall-back) means its **first** occurrence;
//! * a wall-clock time that does not exist (spring gap) means the first instant after the gap.
//!
//! A window whose end is not after its start (`22:00-06:00`) runs across midnight into the next
//! day. Windows of one schedule that touch (`Sat 22:00-24:00` and `Sun 00:00-24:00`) are merged
//! when computing where a window ends. Pure: no clock, no I/O, no panics; every loop is bounded.

use chrono::{
    DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone,
    Timelike, Utc, Weekday,
};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::ids::ScheduleId;

/// How far a DST change can move a wall-clock time (real shifts are at most 2 hours).
const DST_SLACK: Duration = Duration::hours(3);

/// Minutes in a day; a window's `to` may be exactly this (`24:00`).
pub const MINUTES_PER_DAY: u16 = 24 * 60;

/// A named set of windows in one timezone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// The schedule's id.
    pub id: ScheduleId,
    /// The timezone its wall-clock times are in.
    pub timezone: Tz,
    /// Recurring weekly windows.
    pub weekly: Vec<WeeklyWindow>,
    /// One-off windows.
    pub dates: Vec<DateWindow>,
}

/// A weekly window: on each of `days`, from `from` to `to` local time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeeklyWindow {
    /// The days the window starts on.
    pub days: Vec<Weekday>,
    /// Start, in minutes after local midnight (0..1440).
    pub from: u16,
    /// End, in minutes after local midnight (1..=1440); not after `from` means the next day.
    pub to: u16,
}

/// A one-off window between two local wall-clock times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateWindow {
    /// Start, local time.
    pub from: NaiveDateTime,
    /// End, local time (after `from`).
    pub to: NaiveDateTime,
}

/// A concrete window: two instants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// When the window opens (inclusive).
    pub start: DateTime<Utc>,
    /// When the window closes (exclusive).
    pub end: DateTime<Utc>,
}

impl Window {
    /// Whether `t` lies in `[start, end)`.
    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        self.start <= t && t < self.end
    }
}

/// The instant a local wall-clock time denotes in `tz` (see the module doc for DST rules).
pub fn resolve_local(tz: Tz, naive: NaiveDateTime) -> DateTime<Utc> {
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(first, _) => first.with_timezone(&Utc),
        LocalResult::None => {
            // Inside a gap: walk forward a minute at a time to its end. Real gaps last at most a
            // day (Samoa, 2011); the bound keeps the loop finite whatever the tz database says.
            let mut probe = naive;
            for _ in 0..(2 * 24 * 60) {
                probe += Duration::minutes(1);
                match tz.from_local_datetime(&probe) {
                    LocalResult::Single(t) => return t.with_timezone(&Utc),
                    LocalResult::Ambiguous(first, _) => return first.with_timezone(&Utc),
                    LocalResult::None => {}
                }
            }
            Utc.from_utc_datetime(&naive)
        }
    }
}

fn at_minutes(date: NaiveDate, minutes: u16) -> NaiveDateTime {
    let days = i64::from(minutes / MINUTES_PER_DAY);
    let rest = u32::from(minutes % MINUTES_PER_DAY);
    let time = NaiveTime::from_hms_opt(rest / 60, rest % 60, 0).unwrap_or(NaiveTime::MIN);
    date.and_time(time) + Duration::days(days)
}

impl WeeklyWindow {
    /// Whether the window crosses midnight (its end is on the next day).
    pub fn crosses_midnight(&self) -> bool {
        self.to <= self.from
    }

    /// Length in minutes.
    pub fn minutes(&self) -> u16 {
        if self.crosses_midnight() {
            MINUTES_PER_DAY - self.from + self.to
        } else {
            self.to - self.from
        }
    }

    /// The wall-clock start and end of the occurrence starting on `date`.
    fn wall_clock(&self, date: NaiveDate) -> (NaiveDateTime, NaiveDateTime) {
        let end_minutes = if self.crosses_midnight() {
            self.to + MINUTES_PER_DAY
        } else {
            self.to
        };
        (at_minutes(date, self.from), at_minutes(date, end_minutes))
    }

    fn occurrence(&self, tz: Tz, date: NaiveDate) -> Window {
        let (start, end) = self.wall_clock(date);
        Window {
            start: resolve_local(tz, start),
            end: resolve_local(tz, end),
        }
    }
}

impl Schedule {
    /// The single window (without merging) that contains `t`, if any.
    ///
    /// Candidates are first compared on the wall clock, with [`DST_SLACK`] either side, so only
    /// the one or two occurrences near `t` are converted to instants (each conversion is a
    /// timezone-table search).
    fn raw_window_at(&self, t: DateTime<Utc>) -> Option<Window> {
        let wall = t.with_timezone(&self.timezone).naive_local();
        let near = |from: NaiveDateTime, to: NaiveDateTime| {
            from - DST_SLACK <= wall && wall < to + DST_SLACK
        };
        let local = wall.date();
        let mut best: Option<Window> = None;
        let mut consider = |w: Window| {
            if w.contains(t) && best.is_none_or(|b| w.end > b.end) {
                best = Some(w);
            }
        };
        // A window starting yesterday may cross midnight into today; one starting two days ago
        // cannot (windows last under 24h), but a DST shift can move "today" by an hour, so look
        // one day further each way.
        for offset in -2i64..=1 {
            let date = local + Duration::days(offset);
            for w in &self.weekly {
                if w.days.contains(&date.weekday()) {
                    let (from, to) = w.wall_clock(date);
                    if near(from, to) {
                        consider(w.occurrence(self.timezone, date));
                    }
                }
            }
        }
        for d in &self.dates {
            if near(d.from, d.to) {
                consider(Window {
                    start: resolve_local(self.timezone, d.from),
                    end: resolve_local(self.timezone, d.to),
                });
            }
        }
        best
    }

    /// Whether the end of one window is, on the wall clock, the start of another (so windows
    /// may need merging). Integer arithmetic only.
    fn has_touching_windows(&self) -> bool {
        const WEEK: i64 = 7 * MINUTES_PER_DAY as i64;
        let minute_of_week = |t: NaiveDateTime| {
            i64::from(t.weekday().num_days_from_monday()) * i64::from(MINUTES_PER_DAY)
                + i64::from(t.hour() * 60 + t.minute())
        };
        let weekly = || {
            self.weekly.iter().flat_map(|w| {
                w.days.iter().map(move |day| {
                    let start = i64::from(day.num_days_from_monday()) * i64::from(MINUTES_PER_DAY)
                        + i64::from(w.from);
                    (start, (start + i64::from(w.minutes())).rem_euclid(WEEK))
                })
            })
        };
        let dates = || {
            self.dates
                .iter()
                .map(|d| (minute_of_week(d.from), minute_of_week(d.to)))
        };
        let starts = || weekly().chain(dates()).map(|(s, _)| s);
        weekly()
            .chain(dates())
            .any(|(_, end)| starts().any(|s| s == end))
    }

    /// The window containing `t`, extended across windows that touch it, if any.
    pub fn window_at(&self, t: DateTime<Utc>) -> Option<Window> {
        let mut window = self.raw_window_at(t)?;
        if !self.has_touching_windows() {
            return Some(window);
        }
        // Merge touching windows: at most one extension per weekly window and date per week.
        for _ in 0..16 {
            match self.raw_window_at(window.end) {
                Some(next) if next.end > window.end => window.end = next.end,
                _ => break,
            }
        }
        Some(window)
    }

    /// Whether `t` is inside one of the windows.
    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        self.raw_window_at(t).is_some()
    }

    /// The start of the next window at or after `t`, looking up to 8 days ahead (for one-off
    /// windows, any distance). Used to tell a requester when they may ask.
    pub fn next_start(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = t.with_timezone(&self.timezone).date_naive();
        let mut best: Option<DateTime<Utc>> = None;
        let mut consider = |s: DateTime<Utc>| {
            if s >= t && best.is_none_or(|b| s < b) {
                best = Some(s);
            }
        };
        for offset in -1i64..=8 {
            let date = local + Duration::days(offset);
            for w in &self.weekly {
                if w.days.contains(&date.weekday()) {
                    consider(w.occurrence(self.timezone, date).start);
                }
            }
        }
        for d in &self.dates {
            consider(resolve_local(self.timezone, d.from));
        }
        best
    }
}

/// Format minutes after midnight as `HH:MM` (1440 as `24:00`).
pub fn format_minutes(minutes: u16) -> String {
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

/// Parse `HH:MM` (00:00 to 24:00) into minutes after midnight.
pub fn parse_minutes(s: &str) -> Option<u16> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let h: u16 = h.parse().ok()?;
    let m: u16 = m.parse().ok()?;
    if m >= 60 || h > 24 || (h == 24 && m != 0) {
        return None;
    }
    Some(h * 60 + m)
}

/// Parse a weekday name (`mon`, `monday`, case-insensitive).
pub fn parse_weekday(s: &str) -> Option<Weekday> {
    Some(match s.to_ascii_lowercase().as_str() {
        "mon" | "monday" => Weekday::Mon,
        "tue" | "tuesday" => Weekday::Tue,
        "wed" | "wednesday" => Weekday::Wed,
        "thu" | "thursday" => Weekday::Thu,
        "fri" | "friday" => Weekday::Fri,
        "sat" | "saturday" => Weekday::Sat,
        "sun" | "sunday" => Weekday::Sun,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn berlin() -> Tz {
        chrono_tz::Europe::Berlin
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn weekly(days: &[Weekday], from: &str, to: &str) -> Schedule {
        Schedule {
            id: ScheduleId::new("s"),
            timezone: berlin(),
            weekly: vec![WeeklyWindow {
                days: days.to_vec(),
                from: parse_minutes(from).unwrap(),
                to: parse_minutes(to).unwrap(),
            }],
            dates: vec![],
        }
    }

    #[test]
    fn saturday_morning_in_berlin() {
        let s = weekly(&[Weekday::Sat], "06:00", "10:00");
        // 2026-11-28 is a Saturday; Berlin is UTC+1 in winter.
        let w = s.window_at(utc("2026-11-28T07:30:00+01:00")).unwrap();
        assert_eq!(w.start, utc("2026-11-28T06:00:00+01:00"));
        assert_eq!(w.end, utc("2026-11-28T10:00:00+01:00"));
        assert!(s.window_at(utc("2026-11-28T10:00:00+01:00")).is_none());
        assert!(s.window_at(utc("2026-11-28T05:59:59+01:00")).is_none());
        assert!(s.window_at(utc("2026-11-29T07:00:00+01:00")).is_none());
    }

    #[test]
    fn across_midnight() {
        let s = weekly(&[Weekday::Fri], "22:00", "06:00");
        // Friday 2026-11-27 22:00 to Saturday 06:00.
        let w = s.window_at(utc("2026-11-28T03:00:00+01:00")).unwrap();
        assert_eq!(w.start, utc("2026-11-27T22:00:00+01:00"));
        assert_eq!(w.end, utc("2026-11-28T06:00:00+01:00"));
        assert!(s.window_at(utc("2026-11-27T21:59:00+01:00")).is_none());
    }

    #[test]
    fn touching_windows_merge() {
        let mut s = weekly(&[Weekday::Sat], "22:00", "24:00");
        s.weekly.push(WeeklyWindow {
            days: vec![Weekday::Sun],
            from: 0,
            to: MINUTES_PER_DAY,
        });
        let w = s.window_at(utc("2026-11-28T23:00:00+01:00")).unwrap();
        assert_eq!(w.end, utc("2026-11-30T00:00:00+01:00"));
    }

    #[test]
    fn spring_gap_and_autumn_repeat() {
        // 2026-03-29: Berlin jumps from 02:00 to 03:00. A window 02:30-04:00 opens at 03:00 CEST.
        let s = weekly(&[Weekday::Sun], "02:30", "04:00");
        let w = s.window_at(utc("2026-03-29T03:30:00+02:00")).unwrap();
        assert_eq!(w.start, utc("2026-03-29T03:00:00+02:00"));
        assert_eq!(w.end, utc("2026-03-29T04:00:00+02:00"));
        // 2026-10-25: 03:00 CEST falls back to 02:00 CET; 02:30 happens twice, the first counts.
        let s = weekly(&[Weekday::Sun], "01:00", "02:30");
        let w = s.window_at(utc("2026-10-25T01:30:00+02:00")).unwrap();
        assert_eq!(w.start, utc("2026-10-25T01:00:00+02:00"));
        assert_eq!(w.end, utc("2026-10-25T02:30:00+02:00"));
        assert!(s.window_at(utc("2026-10-25T02:10:00+01:00")).is_none());
        // A full Sunday on the long day lasts 25 hours.
        let s = weekly(&[Weekday::Sun], "00:00", "24:00");
        let w = s.window_at(utc("2026-10-25T12:00:00+01:00")).unwrap();
        assert_eq!(w.end - w.start, Duration::hours(25));
    }

    #[test]
    fn one_off_dates() {
        let s = Schedule {
            id: ScheduleId::new("x"),
            timezone: berlin(),
            weekly: vec![],
            dates: vec![DateWindow {
                from: NaiveDate::from_ymd_opt(2026, 12, 24)
                    .unwrap()
                    .and_hms_opt(6, 0, 0)
                    .unwrap(),
                to: NaiveDate::from_ymd_opt(2026, 12, 24)
                    .unwrap()
                    .and_hms_opt(18, 0, 0)
                    .unwrap(),
            }],
        };
        assert!(s.contains(utc("2026-12-24T12:00:00+01:00")));
        assert!(!s.contains(utc("2026-12-25T12:00:00+01:00")));
        assert_eq!(
            s.next_start(utc("2026-12-01T00:00:00Z")),
            Some(utc("2026-12-24T06:00:00+01:00"))
        );
    }

    #[test]
    fn minutes_parse() {
        assert_eq!(parse_minutes("06:00"), Some(360));
        assert_eq!(parse_minutes("24:00"), Some(1440));
        assert_eq!(parse_minutes("24:01"), None);
        assert_eq!(parse_minutes("6:00"), None);
        assert_eq!(parse_minutes("12:60"), None);
    }
}
