//! Money. Every amount is an integer number of SUN (1 TRX = 1,000,000 SUN);
//! TRX decimal text is parsed digit by digit so `5.85` is exactly 5,850,000 SUN.

use serde::{Deserialize, Serialize};
use std::fmt;

pub const SUN_PER_TRX: u64 = 1_000_000;

/// A non-negative amount of SUN. Arithmetic is checked: an overflow is an error, never a wrap.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Sun(u64);

/// A signed change of a balance, in SUN (a ledger line's delta).
pub type SunDelta = i64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("amount is not a decimal number")]
    NotANumber,
    #[error("amount must not be negative")]
    Negative,
    #[error("amount has more than 6 decimal places")]
    TooPrecise,
    #[error("amount is too large")]
    TooLarge,
}

impl Sun {
    pub const ZERO: Sun = Sun(0);

    pub fn from_sun(sun: u64) -> Sun {
        Sun(sun)
    }

    pub fn as_sun(self) -> u64 {
        self.0
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }

    pub fn checked_add(self, other: Sun) -> Option<Sun> {
        self.0.checked_add(other.0).map(Sun)
    }

    pub fn checked_sub(self, other: Sun) -> Option<Sun> {
        self.0.checked_sub(other.0).map(Sun)
    }

    pub fn checked_mul(self, factor: u64) -> Option<Sun> {
        self.0.checked_mul(factor).map(Sun)
    }

    /// Parses TRX written as decimal text (`"5.85"`, `"25"`, `"0.000001"`).
    /// Exponents, signs, more than six decimals and anything that is not plain digits are refused.
    ///
    /// ```
    /// use flashrent_events::{sun::AmountError, Sun};
    ///
    /// assert_eq!(Sun::parse_trx("5.85").unwrap().as_sun(), 5_850_000);
    /// assert_eq!(Sun::parse_trx("0.000001").unwrap().as_sun(), 1);
    /// assert_eq!(Sun::parse_trx("25.500000").unwrap().trx_text(2), "25.50");
    /// assert_eq!(Sun::parse_trx("0.0000001"), Err(AmountError::TooPrecise));
    /// assert_eq!(Sun::parse_trx("1e3"), Err(AmountError::NotANumber));
    /// assert_eq!(Sun::parse_trx("-1"), Err(AmountError::Negative));
    /// ```
    pub fn parse_trx(text: &str) -> Result<Sun, AmountError> {
        let text = text.trim();
        if text.starts_with('-') {
            return Err(AmountError::Negative);
        }
        let (whole, frac) = match text.split_once('.') {
            Some((w, f)) => (w, f),
            None => (text, ""),
        };
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(whole)
            || !(frac.is_empty() || digits(frac))
            || (text.contains('.') && frac.is_empty())
        {
            return Err(AmountError::NotANumber);
        }
        let frac_trimmed = frac.trim_end_matches('0');
        if frac_trimmed.len() > 6 {
            return Err(AmountError::TooPrecise);
        }
        let whole: u64 = whole.parse().map_err(|_| AmountError::TooLarge)?;
        let mut frac_sun: u64 = 0;
        for (i, b) in frac_trimmed.bytes().enumerate() {
            frac_sun += u64::from(b - b'0') * 10u64.pow(5 - i as u32);
        }
        whole
            .checked_mul(SUN_PER_TRX)
            .and_then(|w| w.checked_add(frac_sun))
            .map(Sun)
            .ok_or(AmountError::TooLarge)
    }

    /// TRX with exactly `min_decimals`..=6 decimals, trailing zeros beyond `min_decimals` trimmed:
    /// `trx_text(2)` of 3,500,000 SUN is `3.50`, of 5,850,000 is `5.85`, of 1 is `0.000001`.
    pub fn trx_text(self, min_decimals: usize) -> String {
        let whole = self.0 / SUN_PER_TRX;
        let frac = format!("{:06}", self.0 % SUN_PER_TRX);
        let keep = frac.trim_end_matches('0').len().max(min_decimals.min(6));
        if keep == 0 {
            whole.to_string()
        } else {
            format!("{whole}.{}", &frac[..keep])
        }
    }
}

impl fmt::Display for Sun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} TRX", self.trx_text(2))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_text_is_parsed_exactly() {
        assert_eq!(Sun::parse_trx("5.85").unwrap().as_sun(), 5_850_000);
        assert_eq!(Sun::parse_trx("25.500000").unwrap().as_sun(), 25_500_000);
        assert_eq!(Sun::parse_trx("0.000001").unwrap().as_sun(), 1);
        assert_eq!(Sun::parse_trx("7").unwrap().as_sun(), 7_000_000);
        assert_eq!(Sun::parse_trx("0.1000000").unwrap().as_sun(), 100_000);
    }

    #[test]
    fn bad_amounts_are_refused() {
        assert_eq!(Sun::parse_trx("-1"), Err(AmountError::Negative));
        assert_eq!(Sun::parse_trx("0.0000001"), Err(AmountError::TooPrecise));
        assert_eq!(Sun::parse_trx("1e3"), Err(AmountError::NotANumber));
        assert_eq!(Sun::parse_trx("1."), Err(AmountError::NotANumber));
        assert_eq!(Sun::parse_trx(".5"), Err(AmountError::NotANumber));
        assert_eq!(
            Sun::parse_trx("99999999999999999999"),
            Err(AmountError::TooLarge)
        );
    }

    #[test]
    fn trx_text_matches_the_seed_examples() {
        assert_eq!(Sun::from_sun(3_500_000).trx_text(2), "3.50");
        assert_eq!(Sun::from_sun(5_850_000).trx_text(2), "5.85");
        assert_eq!(Sun::from_sun(25_500_000).trx_text(6), "25.500000");
        assert_eq!(Sun::from_sun(5_850_000).trx_text(0), "5.85");
        assert_eq!(Sun::from_sun(7_000_000).trx_text(0), "7");
    }

    proptest::proptest! {
        #[test]
        fn text_round_trips(sun in 0u64..10_000_000_000_000) {
            let s = Sun::from_sun(sun);
            proptest::prop_assert_eq!(Sun::parse_trx(&s.trx_text(0)).unwrap(), s);
        }

        #[test]
        fn any_text_is_an_amount_or_refused_without_panicking(text in "\\PC{0,30}") {
            if let Ok(sun) = Sun::parse_trx(&text) {
                proptest::prop_assert_eq!(Sun::parse_trx(&sun.trx_text(0)), Ok(sun));
            }
        }

        #[test]
        fn digit_strings_with_a_point_parse_exactly(whole in 0u64..1_000_000_000, frac in "[0-9]{1,6}") {
            let sun = Sun::parse_trx(&format!("{whole}.{frac}")).unwrap();
            let scale = 10u64.pow(6 - frac.len() as u32);
            proptest::prop_assert_eq!(sun.as_sun(), whole * SUN_PER_TRX + frac.parse::<u64>().unwrap() * scale);
        }
    }
}
