//! Calendar time in UTC from seconds since the epoch, without a time-zone database: what
//! `corralctl status` shows and what names a corrupt state file set aside.

/// A moment in UTC, split into its calendar and clock fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Utc {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

impl Utc {
    /// The moment `secs` seconds after 1970-01-01 00:00:00 UTC (proleptic Gregorian).
    pub fn from_epoch_secs(secs: u64) -> Utc {
        let days = (secs / 86_400) as i64;
        let rest = (secs % 86_400) as u32;
        // Howard Hinnant's days-to-civil algorithm.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        Utc {
            year: yoe + era * 400 + i64::from(month <= 2),
            month,
            day,
            hour: rest / 3600,
            minute: rest % 3600 / 60,
            second: rest % 60,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        let leap = Utc::from_epoch_secs(951_782_400);
        assert_eq!((leap.year, leap.month, leap.day), (2000, 2, 29));
        let end = Utc::from_epoch_secs(1_767_225_599);
        assert_eq!(
            (
                end.year, end.month, end.day, end.hour, end.minute, end.second
            ),
            (2025, 12, 31, 23, 59, 59)
        );
    }
}
