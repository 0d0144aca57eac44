//! Background loops: the one runner behind every periodic pass of the service (the retention sweep,
//! the active-call sweep, the live-events outbox sweep). It waits between passes (or until woken),
//! backs off while passes fail, logs one line when an outage starts and one when it ends (never one
//! per failed pass), logs a panicking pass instead of dying with it, and stops at shutdown between
//! passes.

use futures::FutureExt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

/// What one pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// Nothing (more) to do: wait for the next interval.
    Idle,
    /// Work done and more may be waiting: run again at once (shutdown is still checked).
    More,
}

/// How a loop runs.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// Named in its log lines, e.g. `retention sweep`.
    pub name: &'static str,
    /// Time between passes.
    pub every: Duration,
    /// Longest wait between failing passes (the back-off doubles from `every` up to it).
    pub max_backoff: Duration,
    /// Run the first pass at once instead of after `every`.
    pub run_at_start: bool,
}

impl Schedule {
    pub fn every(name: &'static str, every: Duration) -> Self {
        Schedule {
            name,
            every,
            max_backoff: every.max(Duration::from_secs(30)),
            run_at_start: false,
        }
    }

    /// The wait after the `failures`-th failed pass in a row.
    pub fn backoff(&self, failures: u32) -> Duration {
        let factor = 1u32 << failures.saturating_sub(1).min(16);
        self.every
            .saturating_mul(factor)
            .min(self.max_backoff.max(self.every))
    }
}

/// How the loop ended, for tests and logs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub passes: u64,
    pub failures: u64,
    pub panics: u64,
    pub outages: u64,
}

/// Runs `pass` on `schedule` until `shutdown`; `wake` (if any) starts the next pass early.
pub async fn run<F, Fut, E>(
    schedule: Schedule,
    wake: Option<Arc<Notify>>,
    shutdown: CancellationToken,
    mut pass: F,
) -> Summary
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Pass, E>>,
    E: std::fmt::Display,
{
    let name = schedule.name;
    let mut summary = Summary::default();
    let mut failures = 0u32;
    let mut outage_since: Option<Instant> = None;
    let mut wait = if schedule.run_at_start {
        Duration::ZERO
    } else {
        schedule.every
    };
    loop {
        if !wait.is_zero() {
            let woken = async {
                match &wake {
                    Some(n) => n.notified().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => return summary,
                () = tokio::time::sleep(wait) => {}
                () = woken => {}
            }
        } else if shutdown.is_cancelled() {
            return summary;
        }
        summary.passes += 1;
        let outcome = AssertUnwindSafe(pass()).catch_unwind().await;
        let failed = match outcome {
            Ok(Ok(done)) => {
                if let Some(since) = outage_since.take() {
                    info!(
                        task = name,
                        failed_passes = failures,
                        outage_secs = since.elapsed().as_secs(),
                        "{name} recovered"
                    );
                }
                failures = 0;
                wait = match done {
                    Pass::Idle => schedule.every,
                    Pass::More => Duration::ZERO,
                };
                None
            }
            Ok(Err(e)) => Some(e.to_string()),
            Err(panic) => {
                summary.panics += 1;
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic without a message".into());
                error!(task = name, panic = %what, "{name} panicked; the loop goes on");
                Some(format!("panicked: {what}"))
            }
        };
        if let Some(reason) = failed {
            summary.failures += 1;
            failures += 1;
            if outage_since.is_none() {
                outage_since = Some(Instant::now());
                summary.outages += 1;
                warn!(task = name, error = %reason, "{name} failing; retrying with back-off (one line when it recovers)");
            }
            wait = schedule.backoff(failures);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn quick(name: &'static str) -> Schedule {
        Schedule {
            name,
            every: Duration::from_millis(2),
            max_backoff: Duration::from_millis(8),
            run_at_start: true,
        }
    }

    #[test]
    fn backoff_doubles_from_the_interval_up_to_its_cap() {
        let s = Schedule {
            name: "t",
            every: Duration::from_secs(1),
            max_backoff: Duration::from_secs(5),
            run_at_start: false,
        };
        let waits: Vec<u64> = (1..=5).map(|f| s.backoff(f).as_secs()).collect();
        assert_eq!(waits, vec![1, 2, 4, 5, 5]);
        assert_eq!(s.backoff(1_000).as_secs(), 5);
    }

    #[tokio::test]
    async fn failures_and_panics_are_one_outage_and_the_loop_goes_on() {
        let n = Arc::new(AtomicU32::new(0));
        let stop = CancellationToken::new();
        let (n2, stop2) = (n.clone(), stop.clone());
        let summary = run(quick("test loop"), None, stop.clone(), move || {
            let (n, stop) = (n2.clone(), stop2.clone());
            async move {
                match n.fetch_add(1, Ordering::SeqCst) {
                    0 | 1 => Err("database down"),
                    2 => panic!("a bug in one pass"),
                    3 => Ok(Pass::More),
                    4 => Err("down again"),
                    _ => {
                        stop.cancel();
                        Ok(Pass::Idle)
                    }
                }
            }
        })
        .await;
        assert_eq!(
            summary,
            Summary {
                passes: 6,
                failures: 4,
                panics: 1,
                outages: 2
            }
        );
    }

    #[tokio::test]
    async fn a_wake_starts_the_next_pass_before_its_interval() {
        let wake = Arc::new(Notify::new());
        let stop = CancellationToken::new();
        let n = Arc::new(AtomicU32::new(0));
        let schedule = Schedule {
            run_at_start: false,
            ..Schedule::every("woken loop", Duration::from_secs(3600))
        };
        let (n2, stop2) = (n.clone(), stop.clone());
        let task = tokio::spawn(run(schedule, Some(wake.clone()), stop.clone(), move || {
            let (n, stop) = (n2.clone(), stop2.clone());
            async move {
                if n.fetch_add(1, Ordering::SeqCst) == 1 {
                    stop.cancel();
                }
                Ok::<_, String>(Pass::Idle)
            }
        }));
        for _ in 0..200 {
            if task.is_finished() {
                break;
            }
            wake.notify_one();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let summary = task.await.unwrap();
        assert_eq!(summary.passes, 2);
    }
}
