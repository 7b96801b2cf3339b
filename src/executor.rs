//! Keel's glommio executors: every thread that runs one is started by [`spawn`], which guards
//! against a glommio 0.9 scheduler bug.
//!
//! glommio 0.9's executor loop installs its preempt timer, then runs its task queues. When the
//! thread is descheduled for longer than that timer before it looks at the queues, it reads
//! "preempted before running anything" as "nothing to run" and goes to sleep with runnable
//! tasks, until its next timer or wake-up: forever when there is none (glommio/glommio#53,
//! fixed upstream after 0.9.0, not released). On a loaded machine a member hung at startup
//! about once in 400 starts, most often on the raft core's 2 ms preempt timer.
//!
//! [`spawn`] keeps a timer pending on every executor (a task that wakes every
//! [`Options::watchdog`]), so such a sleep ends within that period. The body's first poll runs
//! under glommio's default 100 ms preempt timer, so the race before the watchdog exists needs
//! a 100 ms stall of the thread at one exact point; a body that wants a shorter time slice
//! gets it from a task queue of its own ([`Options::time_slice`]) once it runs.

use std::future::Future;
use std::time::Duration;

use glommio::{ExecutorJoinHandle, Latency, LocalExecutorBuilder, Placement, Shares};

/// How often an executor without a time slice of its own wakes at least.
pub const WATCHDOG_DEFAULT: Duration = Duration::from_millis(100);

/// How an executor runs its body.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// The body runs in a task queue with this time slice (glommio's `Latency::Matters`):
    /// glommio polls for I/O completions at least this often while the body's tasks keep the
    /// thread busy. `None`: glommio's default of 100 ms.
    pub time_slice: Option<Duration>,
    /// The longest the executor sleeps (see the module's documentation).
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

/// Starts a thread named `name` running a glommio executor (not pinned to a core) that runs
/// the future `body` makes, with the watchdog task beside it. The executor ends when the body
/// does.
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
            glommio::spawn_local(watchdog(options.watchdog)).detach();
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
        })
}

/// Wakes the executor every `period`, so that it never sleeps longer than that.
async fn watchdog(period: Duration) {
    loop {
        glommio::timer::sleep(period).await;
    }
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

    #[test]
    fn the_executor_ends_with_its_body_despite_the_watchdog() {
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
