//! Read your writes: a command is answered only once the read models show its record, so a
//! GET right after a successful POST (or the saga's next step) sees what it did.

use crate::engine::Executed;
use flashrent_events::{Offset, PartitionId};
use flashrent_projections::ReadModels;
use std::cell::Cell;

tokio::task_local! {
    /// The last record a request wrote, for the `X-Flashrent-Position` answer header: an
    /// instance that forwarded the request waits for its own read models to reach it.
    pub static WRITTEN: Cell<Option<(PartitionId, Offset)>>;
}

pub async fn projected<R>(models: &ReadModels, done: &Executed<R>) {
    if let Some(offset) = done.offset {
        let _ = WRITTEN.try_with(|w| w.set(Some((done.partition, offset))));
        models.wait_applied(done.partition, offset).await;
    }
}
