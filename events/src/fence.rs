//! Which records of a partition count: the rule every reader applies the same way, so a
//! stale writer's records are ignored by everyone, whatever the log let it append.
//!
//! A writer that takes a partition over appends a *claim*: a record with no events that
//! names its owner, with an epoch higher than any claim before it. From then on only records of that epoch count.
//! A paused old owner (a "zombie") that resumes and appends is below the new epoch, so its
//! records are skipped by every projector, by the writers' own state, and by the audit. Two
//! writers that claim the same epoch at once are told apart by the log's order: the first
//! claim wins, the second is below it. The embedded log has one process, no claims, and all
//! its records at epoch 0, which the rule admits.

use crate::CommandRecord;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EpochFence {
    /// The epoch of the partition's last admitted claim (0 before any).
    pub epoch: u64,
}

/// What the fence made of one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Its events count.
    Events,
    /// A claim that starts a new epoch.
    Claim,
    /// A stale writer's record, or a claim that lost: its events do not count.
    Fenced,
}

impl EpochFence {
    pub fn admit(&mut self, record: &CommandRecord) -> Admission {
        if record.is_claim() {
            if record.writer_epoch > self.epoch {
                self.epoch = record.writer_epoch;
                Admission::Claim
            } else {
                Admission::Fenced
            }
        } else if record.writer_epoch == self.epoch {
            Admission::Events
        } else {
            Admission::Fenced
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn rec(epoch: u64, claim: bool) -> CommandRecord {
        let mut r = CommandRecord {
            command_id: Uuid::now_v7(),
            key: "u".into(),
            writer_epoch: epoch,
            events: vec![],
            owner: None,
        };
        if claim {
            r.owner = Some("http://a".into());
        }
        r
    }

    #[test]
    fn a_zombie_after_a_new_claim_is_fenced_and_a_lost_claim_too() {
        let mut f = EpochFence::default();
        // Before any claim: the embedded log's epoch-0 records.
        assert_eq!(f.admit(&rec(0, false)), Admission::Events);
        assert_eq!(f.admit(&rec(1, true)), Admission::Claim);
        assert_eq!(f.admit(&rec(1, false)), Admission::Events);
        assert_eq!(f.admit(&rec(2, true)), Admission::Claim);
        // The old owner resumes: fenced.
        assert_eq!(f.admit(&rec(1, false)), Admission::Fenced);
        // A racing claim of the same epoch lost.
        assert_eq!(f.admit(&rec(2, true)), Admission::Fenced);
        assert_eq!(f.admit(&rec(2, false)), Admission::Events);
        // A record above the epoch without its claim counts for nothing.
        assert_eq!(f.admit(&rec(3, false)), Admission::Fenced);
        assert_eq!(f.epoch, 2);
    }
}
