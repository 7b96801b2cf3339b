//! hyper's runtime hooks on a glommio executor: spawning tasks and sleeping.
//!
//! Both are bound to the executor thread that runs the connection. hyper asks for `Send + Sync`
//! sleeps; glommio's timers are thread-local, so a [`GlommioSleep`] keeps its timer in a
//! thread-local table and carries only a key.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

/// Runs hyper's background tasks (one per HTTP/2 stream) on the current glommio executor.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct LocalExec;

impl<F> hyper::rt::Executor<F> for LocalExec
where
    F: Future + 'static,
    F::Output: 'static,
{
    fn execute(&self, fut: F) {
        // The stream's outcome reaches the client through the connection, not through the task.
        glommio::spawn_local(fut).detach();
    }
}

/// hyper's timer (HTTP/1 header-read timeout, HTTP/2 keep-alive pings) on glommio timers.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct GlommioTimer;

impl hyper::rt::Timer for GlommioTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(GlommioSleep::until(Instant::now() + duration))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(GlommioSleep::until(deadline))
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn hyper::rt::Sleep>>, new_deadline: Instant) {
        match sleep.as_mut().downcast_mut_pin::<GlommioSleep>() {
            Some(sleep) => sleep.get_mut().reset(new_deadline),
            None => *sleep = self.sleep_until(new_deadline),
        }
    }
}

thread_local! {
    /// The armed glommio timers of this thread's sleeps, by key.
    static TIMERS: RefCell<HashMap<u64, glommio::timer::Timer>> = RefCell::new(HashMap::new());
    /// The next key for `TIMERS`.
    static NEXT_KEY: Cell<u64> = const { Cell::new(0) };
}

/// A sleep that hyper may move between threads in its types but that is only polled on the
/// executor thread serving the connection. Its glommio timer is created on the first poll and
/// removed when the sleep ends or is dropped.
#[derive(Debug)]
pub(crate) struct GlommioSleep {
    deadline: Instant,
    /// The key of this sleep's armed timer in `TIMERS` and the thread that owns the table.
    armed: Option<(u64, ThreadId)>,
}

impl GlommioSleep {
    fn until(deadline: Instant) -> Self {
        Self {
            deadline,
            armed: None,
        }
    }

    fn reset(&mut self, deadline: Instant) {
        self.disarm();
        self.deadline = deadline;
    }

    fn disarm(&mut self) {
        if let Some((key, owner)) = self.armed.take() {
            // A sleep dropped on a foreign thread would leave its timer behind on the owner
            // thread until that thread ends; hyper never does that, as its connection and
            // timers live on one executor thread.
            debug_assert_eq!(
                owner,
                thread::current().id(),
                "sleep left its executor thread"
            );
            if owner == thread::current().id() {
                // `try_with` because a sleep may be dropped while the thread-local table is
                // being torn down at thread exit.
                let _ = TIMERS.try_with(|timers| timers.borrow_mut().remove(&key));
            }
        }
    }
}

impl Future for GlommioSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let now = Instant::now();
        if now >= this.deadline {
            this.disarm();
            return Poll::Ready(());
        }
        let here = thread::current().id();
        if matches!(this.armed, Some((_, owner)) if owner != here) {
            this.disarm();
        }
        let key = match this.armed {
            Some((key, _)) => key,
            None => {
                let key = NEXT_KEY.with(|next| {
                    let key = next.get();
                    next.set(key + 1);
                    key
                });
                let timer = glommio::timer::Timer::new(this.deadline - now);
                TIMERS.with(|timers| timers.borrow_mut().insert(key, timer));
                this.armed = Some((key, here));
                key
            }
        };
        let fired = TIMERS.with(|timers| {
            let mut timers = timers.borrow_mut();
            let timer = timers.get_mut(&key).expect("an armed sleep has a timer");
            Pin::new(timer).poll(cx).is_ready()
        });
        if fired {
            this.disarm();
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl hyper::rt::Sleep for GlommioSleep {}

impl Drop for GlommioSleep {
    fn drop(&mut self) {
        self.disarm();
    }
}
