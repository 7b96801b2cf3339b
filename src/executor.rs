//! Keel's glommio executors: every thread that runs one is started by [`spawn`], which guards
//! against a glommio 0.9 scheduler bug.
//!
//! glommio 0.9's executor loop installs its preempt timer, then runs its task queues. When the
//! preempt timer has fired (or anything else completed in its latency ring) by the time it
//! looks at the queues, it reads "preempted before running anything" as "nothing to run" and
//! goes to sleep with runnable tasks, until an I/O completion, a timer or a wake-up from
//! another thread: forever when there is none (glommio/glommio#53, fixed upstream after 0.9.0,
//! not released). On a loaded machine a member hung at startup about once in 400 starts, most
//! often on the raft core's 2 ms preempt timer.
//!
//! A timer of the executor's own cannot end such a sleep for sure: the task whose timer fired
//! is itself one of the runnable tasks left asleep, and no timer is pending then (seen on a
//! member stuck in `io_uring_enter` with only its eventfd read in flight). So a thread of its
//! own, the kicker, wakes each executor's root task from outside every [`Options::watchdog`]:
//! a wake-up from another thread writes the executor's eventfd while it sleeps, and the
//! executor runs its queues again. An executor that is awake takes the wake-up as one more
//! poll of its root task (a few instructions).
//!
//! The root task registers with the kicker before anything else runs, under glommio's default
//! 100 ms preempt timer, so the race left is a 100 ms stall of the thread at one exact point
//! before that. A body that wants a shorter time slice gets it from a task queue of its own
//! ([`Options::time_slice`]).

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use glommio::{ExecutorJoinHandle, Latency, LocalExecutorBuilder, Placement, Shares};

/// How often an executor without a time slice of its own is woken at least.
pub const WATCHDOG_DEFAULT: Duration = Duration::from_millis(100);

/// How an executor runs its body.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// The body runs in a task queue with this time slice (glommio's `Latency::Matters`):
    /// glommio polls for I/O completions at least this often while the body's tasks keep the
    /// thread busy. `None`: glommio's default of 100 ms.
    pub time_slice: Option<Duration>,
    /// The longest the executor sleeps while it has work (see the module's documentation).
    pub watchdog: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            time_slice: None,
            watchdog: WATCHDOG_DEFAULT,
        }
    }
}

/// The kicks an executor's root task may have queued and not yet taken: glommio queues a
/// clone of the waker for every wake-up from another thread, and a task's reference count
/// is an `i16`, so an executor stuck in one poll (a hung system call) must not collect a
/// kick every period for minutes. 1,000 kicks are 10 s on the raft core.
const UNPOLLED_KICKS_MAX: u32 = 1_000;

/// What the kicker holds of one executor.
struct KickSlot {
    /// The waker of the executor's root task; emptied by the executor when its body ends,
    /// so that the waker is dropped on its own thread.
    waker: Mutex<Option<Waker>>,
    /// Kicks since the root task was last polled.
    unpolled: AtomicU32,
}

/// One executor the kicker wakes.
struct Kick {
    slot: Weak<KickSlot>,
    period: Duration,
    due: Instant,
}

/// The executors the kicker wakes; the kicker thread starts with the first.
static KICKS: Mutex<Vec<Kick>> = Mutex::new(Vec::new());
/// Tells the kicker of a new executor, whose period may end before its current sleep.
static KICKS_ADDED: Condvar = Condvar::new();
static KICKER: std::sync::Once = std::sync::Once::new();

/// Has the kicker wake the root task in `slot` every `period`, for as long as `slot` lives.
fn kick_every(slot: &Arc<KickSlot>, period: Duration) {
    let period = period.max(Duration::from_millis(1));
    KICKS.lock().expect("kicks lock").push(Kick {
        slot: Arc::downgrade(slot),
        period,
        due: Instant::now() + period,
    });
    KICKS_ADDED.notify_one();
    KICKER.call_once(|| {
        // Without the thread the executors still run; they only lose the guard.
        if let Err(error) = std::thread::Builder::new()
            .name("keel-kicker".to_string())
            .spawn(kick_forever)
        {
            tracing::warn!(%error, "starting the executor kicker thread");
        }
    });
}

fn kick_forever() {
    let mut kicks = KICKS.lock().expect("kicks lock");
    loop {
        let now = Instant::now();
        let mut next = now + WATCHDOG_DEFAULT;
        kicks.retain_mut(|kick| {
            let Some(slot) = kick.slot.upgrade() else {
                return false;
            };
            if kick.due <= now {
                // Only this thread counts up, so the check and the count need no loop.
                if slot.unpolled.load(Ordering::Acquire) < UNPOLLED_KICKS_MAX {
                    slot.unpolled.fetch_add(1, Ordering::AcqRel);
                    if let Some(waker) = slot.waker.lock().expect("kick slot lock").as_ref() {
                        waker.wake_by_ref();
                    }
                }
                kick.due = now + kick.period;
            }
            next = next.min(kick.due);
            true
        });
        let wait = next.saturating_duration_since(Instant::now());
        kicks = KICKS_ADDED.wait_timeout(kicks, wait).expect("kicks lock").0;
    }
}

/// Starts a thread named `name` running a glommio executor (not pinned to a core) that runs
/// the future `body` makes, woken by the kicker at least every [`Options::watchdog`]. The
/// executor ends when the body does.
pub fn spawn<G, F, T>(
    name: &str,
    options: Options,
    body: G,
) -> Result<ExecutorJoinHandle<T>, glommio::GlommioError<()>>
where
    G: FnOnce() -> F + Send + 'static,
    F: Future<Output = T> + 'static,
    T: Send + 'static,
{
    let queue_name = name.to_string();
    LocalExecutorBuilder::new(Placement::Unbound)
        .name(name)
        .spawn(move || async move {
            let slot = Arc::new(KickSlot {
                waker: Mutex::new(None),
                unpolled: AtomicU32::new(0),
            });
            std::future::poll_fn(|cx| {
                *slot.waker.lock().expect("kick slot lock") = Some(cx.waker().clone());
                Poll::Ready(())
            })
            .await;
            kick_every(&slot, options.watchdog);
            let run = async {
                match options.time_slice {
                    None => body().await,
                    Some(slice) => {
                        let queue = glommio::executor().create_task_queue(
                            Shares::default(),
                            Latency::Matters(slice),
                            &queue_name,
                        );
                        match glommio::spawn_local_into(body(), queue) {
                            Ok(task) => task.await,
                            // Only a queue handle of another executor fails; this one is ours.
                            Err(error) => panic!("spawning into a new task queue: {error}"),
                        }
                    }
                }
            };
            let mut run = std::pin::pin!(run);
            let result = std::future::poll_fn(|cx| {
                slot.unpolled.store(0, Ordering::Release);
                run.as_mut().poll(cx)
            })
            .await;
            let waker = slot.waker.lock().expect("kick slot lock").take();
            drop(waker);
            result
        })
}

/// Runs `work` on a new thread named `name` and waits for it without blocking the executor.
/// The future is `Send` (unlike one from glommio's blocking pool), so gRPC handlers, which run
/// under tonic's `Send` bounds, can await it. `Err` if the thread could not start or `work`
/// panicked.
pub async fn on_own_thread<T: Send + 'static>(
    name: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, futures::channel::oneshot::Canceled> {
    let (done, result) = futures::channel::oneshot::channel();
    // A thread that cannot start drops `done`: the caller sees `Canceled`.
    let _ = std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            let _ = done.send(work());
        });
    result.await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_runs_in_its_time_slice_queue_and_its_result_comes_back() {
        let options = Options {
            time_slice: Some(Duration::from_millis(2)),
            watchdog: Duration::from_millis(5),
        };
        let handle = spawn("keel-test", options, || async {
            let queue = glommio::executor().current_task_queue();
            let spawned =
                glommio::spawn_local(async { glommio::executor().current_task_queue() }).await;
            // Tasks the body spawns share its queue, which is not the executor's default one.
            (
                queue != glommio::TaskQueueHandle::default(),
                queue == spawned,
            )
        })
        .expect("spawn");
        assert_eq!(handle.join().expect("join"), (true, true));
    }

    /// A 50 µs time slice makes glommio 0.9 often find its preempt timer fired before it ran
    /// anything, and then sleep with the body runnable (the bug the kicker guards against):
    /// without the kicker this body stops within a few thousand sleeps; with it, it finishes.
    #[test]
    fn the_kicker_wakes_an_executor_asleep_with_work() {
        let options = Options {
            time_slice: Some(Duration::from_micros(50)),
            watchdog: Duration::from_millis(5),
        };
        const SLEEPS: usize = 10_000;
        let handle = spawn("keel-test", options, || async {
            let mut done = 0;
            for _ in 0..SLEEPS {
                glommio::timer::sleep(Duration::from_micros(20)).await;
                done += 1;
            }
            done
        })
        .expect("spawn");
        let (joined, result) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = joined.send(handle.join().expect("join"));
        });
        assert_eq!(
            result.recv_timeout(Duration::from_secs(120)),
            Ok(SLEEPS),
            "the executor stopped with work to do"
        );
    }

    #[test]
    fn the_executor_ends_with_its_body_despite_the_kicker() {
        let handle = spawn("keel-test", Options::default(), || async {
            glommio::timer::sleep(Duration::from_millis(1)).await;
            7
        })
        .expect("spawn");
        assert_eq!(handle.join().expect("join"), 7);
    }

    #[test]
    fn work_on_its_own_thread_returns_its_result_or_canceled_when_it_panics() {
        let (name, failed) = futures::executor::block_on(async {
            let name = on_own_thread("keel-test-io", || {
                std::thread::current().name().map(str::to_string)
            })
            .await;
            let failed = on_own_thread("keel-test-io", || -> u8 { panic!("work failed") }).await;
            (name, failed)
        });
        assert_eq!(name, Ok(Some("keel-test-io".to_string())));
        assert!(failed.is_err());
    }
}
