//! The price table: SUN per unit of energy for each allowed duration, and the bounds of
//! an order's energy amount. Policy, so it comes from configuration.

use flashrent_events::{EnergyAmount, RentalDuration, Sun};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceTable {
    sun_per_energy: BTreeMap<String, u64>,
    pub min_energy: u64,
    pub max_energy: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PricingError {
    #[error("duration {0} is not offered")]
    DurationNotOffered(String),
    #[error("energy must be between {min} and {max}")]
    EnergyOutOfBounds { min: u64, max: u64 },
    #[error("price overflows")]
    Overflow,
    #[error("price table entry {0:?} is not DURATION=SUN_PER_ENERGY")]
    BadEntry(String),
}

impl Default for PriceTable {
    /// 90 SUN per energy for an hour makes the seed's 65,000 energy cost 5.85 TRX.
    fn default() -> Self {
        PriceTable::parse(
            "1h=90,3h=100,1d=120,3d=330,7d=700,30d=2700",
            10_000,
            10_000_000,
        )
        .expect("the default price table parses")
    }
}

impl PriceTable {
    /// Parses `1h=90,1d=120`.
    pub fn parse(spec: &str, min_energy: u64, max_energy: u64) -> Result<PriceTable, PricingError> {
        let mut sun_per_energy = BTreeMap::new();
        for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let bad = || PricingError::BadEntry(entry.to_owned());
            let (d, p) = entry.split_once('=').ok_or_else(bad)?;
            let d = RentalDuration::parse(d).map_err(|_| bad())?;
            let p: u64 = p.trim().parse().map_err(|_| bad())?;
            sun_per_energy.insert(d.to_string(), p);
        }
        if sun_per_energy.is_empty() || min_energy == 0 || min_energy > max_energy {
            return Err(PricingError::BadEntry(spec.to_owned()));
        }
        Ok(PriceTable {
            sun_per_energy,
            min_energy,
            max_energy,
        })
    }

    pub fn durations(&self) -> impl Iterator<Item = (&str, u64)> {
        self.sun_per_energy.iter().map(|(d, p)| (d.as_str(), *p))
    }

    pub fn quote(
        &self,
        energy: EnergyAmount,
        duration: RentalDuration,
    ) -> Result<Sun, PricingError> {
        let per = *self
            .sun_per_energy
            .get(&duration.to_string())
            .ok_or_else(|| PricingError::DurationNotOffered(duration.to_string()))?;
        if energy.get() < self.min_energy || energy.get() > self.max_energy {
            return Err(PricingError::EnergyOutOfBounds {
                min: self.min_energy,
                max: self.max_energy,
            });
        }
        Sun::from_sun(per)
            .checked_mul(energy.get())
            .ok_or(PricingError::Overflow)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_table_prices_the_seeds_order_at_5_85_trx() {
        let t = PriceTable::default();
        let price = t
            .quote(
                EnergyAmount::new(65_000).unwrap(),
                RentalDuration::parse("1h").unwrap(),
            )
            .unwrap();
        assert_eq!(price.as_sun(), 5_850_000);
    }

    #[test]
    fn durations_not_in_the_table_and_amounts_out_of_bounds_are_refused() {
        let t = PriceTable::default();
        let e = EnergyAmount::new(65_000).unwrap();
        assert!(matches!(
            t.quote(e, RentalDuration::parse("2h").unwrap()),
            Err(PricingError::DurationNotOffered(_))
        ));
        let tiny = EnergyAmount::new(1).unwrap();
        assert!(matches!(
            t.quote(tiny, RentalDuration::parse("1h").unwrap()),
            Err(PricingError::EnergyOutOfBounds { .. })
        ));
    }
}
