//! Background loops: the two runners behind every background task of the service.
//!
//! - [`run`]: periodic passes (the retention sweep, the active-call sweep, the live-events outbox
//!   sweep, webhook delivery). It waits between passes (or until woken), backs off while passes
//!   fail, logs one line when an outage starts and one when it ends (never one per failed pass),
//!   logs a panicking pass instead of dying with it, and stops at shutdown between passes.
//! - [`run_pool`]: a worker of a leased queue (STT analysis items, the analytics queue, the
//!   recording pipeline) that keeps up to its limit of runs in flight: it claims when a slot is
//!   free, wakes on a finished run, a wake-up or its poll, backs off and logs outages the same way,
//!   logs a panicking run (its claim runs again after its lease), and at shutdown either aborts its
//!   runs and hands their claims back or lets them hand back themselves ([`OnStop`]).

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

/// A leased queue's worker, as [`run_pool`] drives it.
pub trait Work: Send + Sync + 'static {
    /// One claimed item.
    type Claim: Clone + Send + Sync + 'static;
    type Error: std::fmt::Display + Send;

    /// How many runs may be in flight now (a worker may hold back, e.g. analytics while ingest
    /// works through a backlog).
    fn limit(&self) -> usize;

    /// Claims up to `n` due items.
    fn claim(&self, n: usize)
    -> impl Future<Output = Result<Vec<Self::Claim>, Self::Error>> + Send;

    /// Runs one claim to its end, recording what became of it (errors end in its rows or its log).
    fn run(self: Arc<Self>, claim: Self::Claim) -> impl Future<Output = ()> + Send + 'static;

    /// Hands a claim back after its run was aborted at shutdown ([`OnStop::Abort`]).
    fn hand_back(&self, claim: &Self::Claim) -> impl Future<Output = ()> + Send;

    /// Resolves when there may be new work before the next poll (default: never).
    fn woken(&self) -> impl Future<Output = ()> + Send {
        std::future::pending()
    }
}

/// What a pool does with its runs at shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnStop {
    /// Abort them, then hand each claim back (its start not counted).
    Abort,
    /// Wait for them: they watch the shutdown themselves and hand their claims back.
    Drain,
}

/// How a pool runs.
#[derive(Debug, Clone)]
pub struct PoolSchedule {
    /// Named in its log lines, e.g. `analytics worker`.
    pub name: &'static str,
    /// How often the queue is looked at when nothing wakes the worker.
    pub poll: Duration,
    /// Longest wait between failing claims (the back-off doubles from `poll` up to it).
    pub max_backoff: Duration,
    pub on_stop: OnStop,
}

/// How a pool ended, for tests and logs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PoolSummary {
    pub runs: u64,
    pub panics: u64,
    pub claim_failures: u64,
    pub outages: u64,
    pub handed_back: u64,
}

/// Drives `work` until `shutdown` (see the module doc).
pub async fn run_pool<W: Work>(
    work: Arc<W>,
    schedule: PoolSchedule,
    shutdown: CancellationToken,
) -> PoolSummary {
    let name = schedule.name;
    let as_loop = Schedule {
        name,
        every: schedule.poll,
        max_backoff: schedule.max_backoff,
        run_at_start: true,
    };
    let mut summary = PoolSummary::default();
    let mut running: tokio::task::JoinSet<()> = tokio::task::JoinSet::new();
    let mut held: std::collections::HashMap<tokio::task::Id, W::Claim> = Default::default();
    let mut failures = 0u32;
    let mut outage_since: Option<Instant> = None;
    loop {
        let limit = work.limit();
        let free = limit.saturating_sub(running.len());
        let mut claimed = 0;
        if free > 0 && !shutdown.is_cancelled() {
            match work.claim(free).await {
                Ok(claims) => {
                    if let Some(since) = outage_since.take() {
                        info!(
                            task = name,
                            failed_claims = failures,
                            outage_secs = since.elapsed().as_secs(),
                            "{name} recovered"
                        );
                    }
                    failures = 0;
                    claimed = claims.len();
                    for c in claims {
                        summary.runs += 1;
                        let handle = running.spawn(work.clone().run(c.clone()));
                        held.insert(handle.id(), c);
                    }
                }
                Err(e) => {
                    summary.claim_failures += 1;
                    failures += 1;
                    if outage_since.is_none() {
                        outage_since = Some(Instant::now());
                        summary.outages += 1;
                        warn!(task = name, error = %e, "{name} cannot claim work; retrying with back-off (one line when it recovers)");
                    }
                }
            }
        }
        if claimed > 0 && running.len() < limit {
            continue;
        }
        let wait = if failures > 0 {
            as_loop.backoff(failures)
        } else {
            schedule.poll
        };
        tokio::select! {
            () = shutdown.cancelled() => break,
            Some(done) = running.join_next_with_id(), if !running.is_empty() => {
                let id = match done {
                    Ok((id, ())) => id,
                    Err(e) => {
                        if e.is_panic() {
                            summary.panics += 1;
                            error!(task = name, error = %e, "a run of the {name} panicked; its item runs again after its lease");
                        }
                        e.id()
                    }
                };
                held.remove(&id);
            }
            () = work.woken() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
    if schedule.on_stop == OnStop::Abort {
        running.abort_all();
    }
    while let Some(done) = running.join_next_with_id().await {
        match done {
            // Finished before the abort reached it: nothing to hand back.
            Ok((id, ())) => {
                held.remove(&id);
            }
            Err(e) if e.is_panic() => {
                summary.panics += 1;
                error!(task = name, error = %e, "a run of the {name} panicked while stopping");
                held.remove(&e.id());
            }
            Err(_) => {}
        }
    }
    for c in held.values() {
        work.hand_back(c).await;
        summary.handed_back += 1;
    }
    summary
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

    /// A pool over a fake queue: items 0..n, item 2 panics, the first claim fails.
    struct Fake {
        next: std::sync::Mutex<u32>,
        total: u32,
        claims: AtomicU32,
        done: AtomicU32,
        handed_back: AtomicU32,
        slow: bool,
    }

    impl Work for Fake {
        type Claim = u32;
        type Error = &'static str;
        fn limit(&self) -> usize {
            2
        }
        async fn claim(&self, n: usize) -> Result<Vec<u32>, &'static str> {
            if self.claims.fetch_add(1, Ordering::SeqCst) == 0 {
                return Err("database down");
            }
            let mut next = self.next.lock().unwrap();
            let mut out = Vec::new();
            while out.len() < n && *next < self.total {
                out.push(*next);
                *next += 1;
            }
            Ok(out)
        }
        async fn run(self: Arc<Self>, c: u32) {
            if self.slow {
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
            assert_ne!(c, 2, "a bug in one run");
            self.done.fetch_add(1, Ordering::SeqCst);
        }
        async fn hand_back(&self, _c: &u32) {
            self.handed_back.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn fake(total: u32, slow: bool) -> Arc<Fake> {
        Arc::new(Fake {
            next: std::sync::Mutex::new(0),
            total,
            claims: AtomicU32::new(0),
            done: AtomicU32::new(0),
            handed_back: AtomicU32::new(0),
            slow,
        })
    }

    fn pool(on_stop: OnStop) -> PoolSchedule {
        PoolSchedule {
            name: "test pool",
            poll: Duration::from_millis(2),
            max_backoff: Duration::from_millis(8),
            on_stop,
        }
    }

    #[tokio::test]
    async fn a_pool_runs_every_claim_survives_a_panic_and_an_outage() {
        let f = fake(6, false);
        let stop = CancellationToken::new();
        let task = tokio::spawn(run_pool(f.clone(), pool(OnStop::Abort), stop.clone()));
        for _ in 0..500 {
            if f.done.load(Ordering::SeqCst) == 5 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        stop.cancel();
        let summary = task.await.unwrap();
        assert_eq!(
            f.done.load(Ordering::SeqCst),
            5,
            "every run but the panicking one"
        );
        assert_eq!(
            (
                summary.runs,
                summary.panics,
                summary.outages,
                summary.handed_back
            ),
            (6, 1, 1, 0)
        );
    }

    #[tokio::test]
    async fn a_stopping_pool_aborts_its_runs_and_hands_their_claims_back() {
        let f = fake(5, true);
        let stop = CancellationToken::new();
        let task = tokio::spawn(run_pool(f.clone(), pool(OnStop::Abort), stop.clone()));
        for _ in 0..500 {
            if *f.next.lock().unwrap() == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        stop.cancel();
        let summary = task.await.unwrap();
        assert_eq!(summary.runs, 2, "never more than its limit in flight");
        assert_eq!(summary.handed_back, 2);
        assert_eq!(f.handed_back.load(Ordering::SeqCst), 2);
    }
}
