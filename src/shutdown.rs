//! Stopping the service's long-lived tasks, as mini-redis does: every task watches a signal
//! (a [`Token`]) in its loop, and whoever stops them sends it and then *waits* until each
//! task has returned, so what a task was doing (a command, an append, a record being
//! applied) finishes instead of being cut off. Only a task still running after a grace
//! period is aborted, and named in the log; crash safety covers it (every step is durable
//! before it counts), but a stop that needs it is a bug to look at.
//!
//! Tasks stop in [`Stage`]s, in the order the service depends on them: what makes commands
//! (the saga, the timers) before the writers that decide them, the writers before the read
//! side that applies what they wrote (see [`crate::startup::Application::run_until`]).

use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What a long-lived task watches: `true` once it is to stop. A task that awaits something
/// else selects on [`stopped`] beside it; one that loops checks [`is_stopping`] each turn.
pub type Token = watch::Receiver<bool>;

/// Resolves once `token` says stop (at once if it said so already, unlike
/// [`watch::Receiver::changed`] on a receiver cloned after the signal), or when its sender is
/// gone.
pub async fn stopped(token: &mut Token) {
    let _ = token.wait_for(|stop| *stop).await;
}

pub fn is_stopping(token: &Token) -> bool {
    *token.borrow()
}

/// A group of long-lived tasks that are told to stop by one signal and awaited together.
pub struct Stage {
    name: &'static str,
    signal: watch::Sender<bool>,
    tasks: Vec<(&'static str, JoinHandle<()>)>,
}

impl Stage {
    pub fn new(name: &'static str) -> Stage {
        Stage {
            name,
            signal: watch::channel(false).0,
            tasks: Vec::new(),
        }
    }

    /// The signal the tasks of this stage watch.
    pub fn token(&self) -> Token {
        self.signal.subscribe()
    }

    /// Awaits `task` when the stage stops; `what` names it in the log if it must be aborted.
    pub fn track(&mut self, what: &'static str, task: JoinHandle<()>) {
        self.tasks.push((what, task));
    }

    pub fn track_all(
        &mut self,
        what: &'static str,
        tasks: impl IntoIterator<Item = JoinHandle<()>>,
    ) {
        self.tasks.extend(tasks.into_iter().map(|t| (what, t)));
    }

    /// How many tasks it tracks.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Signals every task of the stage, then waits for each to return. A task still running
    /// once `grace` has passed is aborted. Returns how many were aborted (0: all stopped by
    /// themselves).
    pub async fn stop(self, grace: Duration) -> usize {
        let Stage {
            name,
            signal,
            tasks,
        } = self;
        signal.send_replace(true);
        let count = tasks.len();
        let deadline = tokio::time::Instant::now() + grace;
        let mut aborted = 0;
        for (what, mut task) in tasks {
            match tokio::time::timeout_at(deadline, &mut task).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) if e.is_panic() => {
                    tracing::error!(
                        stage = name,
                        task = what,
                        "a task had panicked before the stop"
                    )
                }
                Ok(Err(_)) => {}
                Err(_) => {
                    task.abort();
                    aborted += 1;
                    tracing::warn!(
                        stage = name,
                        task = what,
                        ?grace,
                        "a task did not stop in time; aborted"
                    );
                }
            }
        }
        tracing::info!(stage = name, tasks = count, aborted, "stopped");
        aborted
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    #[tokio::test]
    async fn a_stage_waits_for_its_tasks_to_finish_what_they_do_and_aborts_only_after_the_grace() {
        let mut stage = Stage::new("test");
        let finished = Arc::new(AtomicBool::new(false));
        // Finishes its work after the signal, within the grace.
        let (mut token, done) = (stage.token(), finished.clone());
        stage.track(
            "finisher",
            tokio::spawn(async move {
                stopped(&mut token).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
                done.store(true, Ordering::Release);
            }),
        );
        // A token cloned after the signal still sees it.
        let late = stage.token();
        assert_eq!(stage.stop(Duration::from_secs(10)).await, 0);
        assert!(finished.load(Ordering::Acquire));
        let mut late = late;
        stopped(&mut late).await;
        assert!(is_stopping(&late));

        let mut stage = Stage::new("test");
        stage.track("stuck", tokio::spawn(std::future::pending::<()>()));
        assert_eq!(stage.stop(Duration::from_millis(50)).await, 1);
    }
}
