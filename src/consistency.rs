//! Read your writes: a command is answered only once the read models show its record, so a
//! GET right after a successful POST (or the saga's next step) sees what it did. A record an
//! instance wrote for another (`cluster::remote`) comes to this one's read models through
//! the log.

use crate::engine::Executed;
use flashrent_projections::ReadModels;

pub async fn projected<R>(models: &ReadModels, done: &Executed<R>) {
    if let Some(offset) = done.offset {
        models.wait_applied(done.partition, offset).await;
    }
}
