//! Points of the saga where the crash tests stop the process, between two recorded steps.

use flashrent_events::Leg;

/// Where the process aborts, if anywhere: handed to the saga by whoever builds it (the
/// server reads `FLASHRENT_CRASH_AT`, see [`FaultPoints::from_env`]). None by default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultPoints {
    abort_at: Option<FaultPoint>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultPoint {
    /// A delegation signed and recorded, not yet broadcast.
    AfterSign,
    /// A delegation broadcast, not yet confirmed.
    AfterBroadcast,
    /// A reclaim broadcast, not yet confirmed.
    AfterReclaimBroadcast,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("FLASHRENT_CRASH_AT names no point of the saga: {0:?} (after_sign, after_broadcast or after_reclaim_broadcast)")]
pub struct UnknownFaultPoint(String);

impl FaultPoint {
    pub fn name(self) -> &'static str {
        match self {
            FaultPoint::AfterSign => "after_sign",
            FaultPoint::AfterBroadcast => "after_broadcast",
            FaultPoint::AfterReclaimBroadcast => "after_reclaim_broadcast",
        }
    }

    /// After a transaction of the leg is signed and recorded (a delegation's only).
    pub(super) fn after_sign(leg: Leg) -> Option<FaultPoint> {
        (leg == Leg::Delegation).then_some(FaultPoint::AfterSign)
    }

    /// After a transaction of the leg is broadcast.
    pub(super) fn after_broadcast(leg: Leg) -> FaultPoint {
        match leg {
            Leg::Delegation => FaultPoint::AfterBroadcast,
            Leg::Reclaim => FaultPoint::AfterReclaimBroadcast,
        }
    }
}

impl FaultPoints {
    pub fn abort_at(point: FaultPoint) -> FaultPoints {
        FaultPoints {
            abort_at: Some(point),
        }
    }

    /// A point's name (`after_sign`, …); empty for none.
    pub fn parse(name: &str) -> Result<FaultPoints, UnknownFaultPoint> {
        if name.is_empty() {
            return Ok(FaultPoints::default());
        }
        [
            FaultPoint::AfterSign,
            FaultPoint::AfterBroadcast,
            FaultPoint::AfterReclaimBroadcast,
        ]
        .into_iter()
        .find(|p| p.name() == name)
        .map(FaultPoints::abort_at)
        .ok_or_else(|| UnknownFaultPoint(name.to_owned()))
    }

    /// The crash tests' `FLASHRENT_CRASH_AT` (a test hook: production never sets it).
    pub fn from_env() -> Result<FaultPoints, UnknownFaultPoint> {
        FaultPoints::parse(&std::env::var("FLASHRENT_CRASH_AT").unwrap_or_default())
    }

    /// Aborts the process if it is to stop at `point`.
    pub(super) fn reached(&self, point: Option<FaultPoint>) {
        if point.is_some() && self.abort_at == point {
            eprintln!(
                "FLASHRENT_CRASH_AT={}: aborting",
                point.map_or("", FaultPoint::name)
            );
            std::process::abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_point_is_named_as_the_crash_tests_name_it_and_nothing_else_is_one() {
        for (name, point) in [
            ("after_sign", FaultPoint::AfterSign),
            ("after_broadcast", FaultPoint::AfterBroadcast),
            ("after_reclaim_broadcast", FaultPoint::AfterReclaimBroadcast),
        ] {
            assert_eq!(FaultPoints::parse(name), Ok(FaultPoints::abort_at(point)));
        }
        assert_eq!(FaultPoints::parse(""), Ok(FaultPoints::default()));
        assert!(FaultPoints::parse("after_signing").is_err());
        // A reclaim's signature is no point; its broadcast is.
        assert_eq!(FaultPoint::after_sign(Leg::Reclaim), None);
        assert_eq!(
            FaultPoint::after_broadcast(Leg::Reclaim),
            FaultPoint::AfterReclaimBroadcast
        );
        // No point reached aborts nothing.
        FaultPoints::abort_at(FaultPoint::AfterSign).reached(None);
        FaultPoints::default().reached(Some(FaultPoint::AfterSign));
    }
}
