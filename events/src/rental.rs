//! What a renter buys: an amount of energy for a duration.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EnergyAmount(u64);

impl EnergyAmount {
    /// Bounds are policy (configuration), so the parser only refuses zero.
    pub fn new(units: u64) -> Option<EnergyAmount> {
        (units > 0).then_some(EnergyAmount(units))
    }

    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for EnergyAmount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A rental period written as `<n><unit>` with unit `m`, `h` or `d` (`"1h"`, `"3d"`, `"30m"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RentalDuration {
    count: u32,
    unit: DurationUnit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum DurationUnit {
    Minutes,
    Hours,
    Days,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a duration is a positive number followed by m, h or d, like \"1h\"")]
pub struct DurationError;

impl RentalDuration {
    pub fn parse(text: &str) -> Result<RentalDuration, DurationError> {
        let t = text.trim();
        // The unit is the last character, which need not be one byte long: split at the
        // last character's boundary, never inside it.
        let Some((at, unit)) = t.char_indices().next_back() else {
            return Err(DurationError);
        };
        let num = &t[..at];
        let unit = match unit {
            'm' => DurationUnit::Minutes,
            'h' => DurationUnit::Hours,
            'd' => DurationUnit::Days,
            _ => return Err(DurationError),
        };
        if num.is_empty() || num.len() > 4 || !num.bytes().all(|b| b.is_ascii_digit()) {
            return Err(DurationError);
        }
        match num.parse::<u32>() {
            Ok(count) if count > 0 => Ok(RentalDuration { count, unit }),
            _ => Err(DurationError),
        }
    }

    /// Whole hours, rounded up (the seed's `duration_hours`).
    pub fn from_hours(hours: u32) -> Result<RentalDuration, DurationError> {
        Self::parse(&format!("{hours}h"))
    }

    pub fn seconds(self) -> u64 {
        let per = match self.unit {
            DurationUnit::Minutes => 60,
            DurationUnit::Hours => 3_600,
            DurationUnit::Days => 86_400,
        };
        u64::from(self.count) * per
    }

    pub fn hours_ceil(self) -> u64 {
        self.seconds().div_ceil(3_600)
    }
}

impl fmt::Display for RentalDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let u = match self.unit {
            DurationUnit::Minutes => 'm',
            DurationUnit::Hours => 'h',
            DurationUnit::Days => 'd',
        };
        write!(f, "{}{}", self.count, u)
    }
}

impl Serialize for RentalDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RentalDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        RentalDuration::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_print_back() {
        for t in ["1h", "30m", "3d", "24h"] {
            assert_eq!(RentalDuration::parse(t).unwrap().to_string(), t);
        }
        assert_eq!(RentalDuration::parse("1d").unwrap().seconds(), 86_400);
        let bad = [
            "",
            "h",
            "0h",
            "1w",
            "-1h",
            "1.5h",
            "99999h",
            "é",
            "1é",
            "é1h",
            "1\u{2007}h",
            "١h",
        ];
        for bad in bad {
            assert!(RentalDuration::parse(bad).is_err(), "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_text_parses_or_is_refused_without_panicking(text in "\\PC{0,12}") {
            if let Ok(d) = RentalDuration::parse(&text) {
                proptest::prop_assert_eq!(RentalDuration::parse(&d.to_string()), Ok(d));
            }
        }

        #[test]
        fn any_duration_reads_back_from_its_text(count in 1u32..10_000, unit in 0usize..3) {
            let text = format!("{count}{}", ["m", "h", "d"][unit]);
            let d = RentalDuration::parse(&text).unwrap();
            proptest::prop_assert_eq!(d.to_string(), text);
        }
    }
}
