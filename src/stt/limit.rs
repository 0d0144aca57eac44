//! A provider's process-wide concurrency limit with two priorities: a freed slot goes to the oldest
//! interactive waiter (a single analysis, a report analysis) before any batch waiter, so a batch of
//! 50 calls queued ahead cannot make a QA engineer's single analysis wait for all of it. Within a
//! priority, first come first served.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::oneshot;

/// Who asks for a provider slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Priority {
    /// Someone is waiting for this answer.
    #[default]
    Interactive,
    /// Background work (batch jobs): served when no interactive caller waits.
    Batch,
}

#[derive(Debug)]
struct State {
    free: usize,
    /// Waiters per priority (index = `Priority as usize`); a sender whose receiver is gone (the
    /// caller stopped waiting) is skipped when a slot is handed out.
    waiting: [VecDeque<oneshot::Sender<Permit>>; 2],
}

#[derive(Debug)]
pub struct Limiter {
    state: Mutex<State>,
}

/// A held slot; dropping it hands the slot to the next waiter.
#[derive(Debug)]
pub struct Permit {
    limiter: Arc<Limiter>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.limiter.release();
    }
}

impl Limiter {
    pub fn new(slots: usize) -> Arc<Self> {
        Arc::new(Limiter {
            state: Mutex::new(State {
                free: slots,
                waiting: [VecDeque::new(), VecDeque::new()],
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state stays consistent across a panic (each update is one assignment).
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits for a slot. Cancel-safe: dropping the future gives up the place in line (and a slot
    /// handed over meanwhile goes to the next waiter).
    pub async fn acquire(self: &Arc<Self>, priority: Priority) -> Permit {
        let receiver = {
            let mut state = self.lock();
            let nobody_ahead = match priority {
                Priority::Interactive => state.waiting[0].is_empty(),
                Priority::Batch => state.waiting.iter().all(VecDeque::is_empty),
            };
            if state.free > 0 && nobody_ahead {
                state.free -= 1;
                return Permit {
                    limiter: self.clone(),
                };
            }
            let (sender, receiver) = oneshot::channel();
            state.waiting[priority as usize].push_back(sender);
            receiver
        };
        match receiver.await {
            Ok(permit) => permit,
            // Senders are only dropped after sending or when the limiter is gone, which cannot
            // happen while `self` is alive; take a slot directly rather than fail.
            Err(_) => Permit {
                limiter: self.clone(),
            },
        }
    }

    fn release(self: &Arc<Self>) {
        loop {
            let next = {
                let mut state = self.lock();
                let next = state.waiting[0]
                    .pop_front()
                    .or_else(|| state.waiting[1].pop_front());
                match next {
                    Some(sender) => sender,
                    None => {
                        state.free += 1;
                        return;
                    }
                }
            };
            match next.send(Permit {
                limiter: self.clone(),
            }) {
                Ok(()) => return,
                // That waiter left: keep the slot (no release recursion) and try the next one.
                Err(permit) => std::mem::forget(permit),
            }
        }
    }

    /// Slots free and callers waiting (interactive, batch), for metrics and tests.
    pub fn snapshot(&self) -> (usize, usize, usize) {
        let state = self.lock();
        (
            state.free,
            state.waiting[0].iter().filter(|s| !s.is_closed()).count(),
            state.waiting[1].iter().filter(|s| !s.is_closed()).count(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn interactive_waiters_go_before_batch_waiters() {
        let limit = Limiter::new(1);
        let held = limit.acquire(Priority::Batch).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (name, priority) in [
            ("batch-1", Priority::Batch),
            ("batch-2", Priority::Batch),
            ("interactive", Priority::Interactive),
        ] {
            let (l, order) = (limit.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let _p = l.acquire(priority).await;
                order.lock().unwrap().push(name);
            }));
            // Queue them in this order.
            while limit.snapshot().1 + limit.snapshot().2 < tasks.len() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        drop(held);
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(
            *order.lock().unwrap(),
            vec!["interactive", "batch-1", "batch-2"]
        );
        assert_eq!(limit.snapshot(), (1, 0, 0));
    }

    #[tokio::test]
    async fn a_waiter_that_gives_up_does_not_lose_the_slot() {
        let limit = Limiter::new(1);
        let held = limit.acquire(Priority::Interactive).await;
        let gave_up = tokio::time::timeout(
            Duration::from_millis(10),
            limit.acquire(Priority::Interactive),
        )
        .await;
        assert!(gave_up.is_err());
        drop(held);
        assert_eq!(limit.snapshot(), (1, 0, 0));
        let _again = limit.acquire(Priority::Batch).await;
        assert_eq!(limit.snapshot(), (0, 0, 0));
    }
}
