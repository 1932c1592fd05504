//! Cron expressions of recurring schedules: five fields (minute, hour, day of month, month,
//! day of week) read by the `croner` crate, evaluated in an IANA time zone (`chrono-tz`),
//! with the standard day rule: when both day fields are restricted, a day matching either
//! one matches (as Vixie cron does); when one is `*`, the other alone decides.

use chrono::TimeZone;
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};

/// Longest accepted expression.
pub const MAX_LEN: usize = 128;

/// A parsed expression and its time zone.
#[derive(Debug, Clone)]
pub struct Cron {
    cron: croner::Cron,
    tz: Tz,
}

impl Cron {
    /// Parse `expr` for time zone `tz` (UTC when none); the error is a sentence for the user.
    pub fn parse(expr: &str, tz: Option<&str>) -> Result<Cron, String> {
        if expr.len() > MAX_LEN {
            return Err(format!("a cron expression is at most {MAX_LEN} bytes"));
        }
        let tz: Tz = match tz.map(str::trim) {
            None | Some("") => Tz::UTC,
            Some(t) => t.parse().map_err(|_| {
                format!("unknown time zone '{t}'; use an IANA name such as Europe/Berlin, or UTC")
            })?,
        };
        let parser = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build();
        let cron = parser.parse(expr).map_err(|e| {
            format!(
                "cron '{expr}' is not a 5-field expression (minute hour day-of-month month day-of-week): {e}"
            )
        })?;
        Ok(Cron { cron, tz })
    }

    /// The first match strictly after `ms` (ms since the Unix epoch); `None` when there is
    /// none (an expression such as `0 0 30 2 *`).
    pub fn next_after(&self, ms: u64) -> Option<u64> {
        let t = self
            .tz
            .timestamp_millis_opt(i64::try_from(ms).ok()?)
            .single()?;
        let n = self.cron.find_next_occurrence(&t, false).ok()?;
        u64::try_from(n.timestamp_millis()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ms of a UTC wall time.
    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> u64 {
        chrono::Utc
            .with_ymd_and_hms(y, mo, d, h, mi, 0)
            .single()
            .map(|t| t.timestamp_millis() as u64)
            .unwrap()
    }

    #[test]
    fn day_of_month_and_day_of_week_match_either_when_both_are_restricted() {
        // "at 09:00 on the 13th, and on every Friday": 2026-11-30 is a Monday.
        let c = Cron::parse("0 9 13 * 5", None).unwrap();
        let mut t = utc(2026, 11, 30, 0, 0);
        let mut hits = Vec::new();
        for _ in 0..4 {
            t = c.next_after(t).unwrap();
            hits.push(t);
        }
        assert_eq!(
            hits,
            vec![
                utc(2026, 12, 4, 9, 0),  // Friday
                utc(2026, 12, 11, 9, 0), // Friday
                utc(2026, 12, 13, 9, 0), // the 13th (a Sunday)
                utc(2026, 12, 18, 9, 0), // Friday
            ]
        );
        // With day of week unrestricted, the day of month alone decides.
        let c = Cron::parse("0 9 13 * *", None).unwrap();
        assert_eq!(
            c.next_after(utc(2026, 11, 30, 0, 0)),
            Some(utc(2026, 12, 13, 9, 0))
        );
    }

    #[test]
    fn a_time_zone_moves_the_match_and_follows_daylight_saving() {
        let c = Cron::parse("30 8 * * *", Some("Europe/Berlin")).unwrap();
        // Winter: CET is UTC+1.
        assert_eq!(
            c.next_after(utc(2026, 12, 3, 12, 0)),
            Some(utc(2026, 12, 4, 7, 30))
        );
        // Summer: CEST is UTC+2.
        assert_eq!(
            c.next_after(utc(2026, 7, 1, 12, 0)),
            Some(utc(2026, 7, 2, 6, 30))
        );
    }

    #[test]
    fn bad_expressions_and_zones_are_sentences_and_impossible_dates_never_match() {
        assert!(Cron::parse("* * * *", None)
            .unwrap_err()
            .contains("5-field"));
        assert!(Cron::parse("0 0 * * * *", None)
            .unwrap_err()
            .contains("5-field"));
        assert!(Cron::parse("61 * * * *", None).is_err());
        assert!(Cron::parse("* * * * *", Some("Mars/Olympus"))
            .unwrap_err()
            .contains("unknown time zone"));
        assert!(Cron::parse(&"1".repeat(200), None).is_err());
        let c = Cron::parse("0 0 30 2 *", None).unwrap();
        assert_eq!(c.next_after(utc(2026, 1, 1, 0, 0)), None);
        // Strictly after: a match at the instant itself is not the next one.
        let c = Cron::parse("* * * * *", None).unwrap();
        let t = utc(2026, 1, 1, 0, 0);
        assert_eq!(c.next_after(t), Some(t + 60_000));
    }
}
