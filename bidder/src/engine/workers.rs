//! The lifecycle both engines share: one thread per worker, optionally pinned to a core,
//! each reporting exactly once that it is ready (or why it cannot start) before it
//! serves. Start waits for every report ([`Startup::wait`]); stop is the engine's own
//! signal, then [`WorkerThreads::join`].

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use tracing::warn;

use super::EngineError;

type Report<T> = (usize, Result<T, EngineError>);

/// A worker's one-shot readiness report. Dropping it unsent (a panic during start) is
/// seen by [`WorkerThreads::wait_ready`] as that worker having died.
pub(crate) struct Ready<T> {
    index: usize,
    tx: mpsc::Sender<Report<T>>,
}

impl<T> Ready<T> {
    /// Reports that the worker is about to serve (`Ok`) or has given up (`Err`).
    pub(crate) fn report(self, result: Result<T, EngineError>) {
        // The receiver is gone only if start already failed; nothing to tell then.
        let _ = self.tx.send((self.index, result));
    }
}

/// Collects the workers' readiness reports while an engine starts. Kept apart from
/// [`WorkerThreads`] because a receiver cannot be shared between threads and a running
/// engine must be.
pub(crate) struct Startup<T> {
    tx: mpsc::Sender<Report<T>>,
    rx: mpsc::Receiver<Report<T>>,
}

impl<T> Startup<T> {
    pub(crate) fn new() -> Self {
        let (tx, rx) = mpsc::channel();
        Startup { tx, rx }
    }

    /// Waits until each of the `count` workers spawned with this startup has reported.
    /// Returns the reports in worker order, or the first failure (the caller then stops
    /// and joins the workers that did start).
    pub(crate) fn wait(self, count: usize) -> Result<Vec<T>, EngineError> {
        let Startup { tx, rx } = self;
        drop(tx);
        let mut reports: Vec<Option<T>> = (0..count).map(|_| None).collect();
        for _ in 0..count {
            match rx.recv() {
                Ok((index, Ok(report))) => reports[index] = Some(report),
                Ok((_, Err(e))) => return Err(e),
                // Every sender is gone and someone never reported: a `Ready` can only
                // be dropped unsent by a worker that panicked while starting.
                Err(mpsc::RecvError) => {
                    let died = reports.iter().position(Option::is_none);
                    return Err(EngineError::WorkerPanicked(died.unwrap_or(usize::MAX)));
                }
            }
        }
        Ok(reports.into_iter().flatten().collect())
    }
}

/// Whether an engine's workers still run: the service manager's watchdog is fed only
/// while every worker spawned is alive, so a worker that panicked or returned gets the
/// bidder restarted instead of serving on fewer cores unnoticed.
#[derive(Clone, Default)]
pub struct Liveness {
    spawned: Arc<AtomicUsize>,
    exited: Arc<AtomicUsize>,
}

impl Liveness {
    /// True while no worker has exited (returned or panicked) since it was spawned.
    pub fn all_alive(&self) -> bool {
        self.exited.load(Ordering::Acquire) == 0 && self.spawned.load(Ordering::Acquire) > 0
    }
}

/// Counts its worker as exited when dropped: on return and on unwind alike.
struct ExitGuard(Arc<AtomicUsize>);

impl Drop for ExitGuard {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::AcqRel);
    }
}

/// An engine's worker threads, in worker order.
pub(crate) struct WorkerThreads {
    /// Thread name prefix: `ring`, `tokio`.
    name: &'static str,
    threads: Vec<Option<JoinHandle<()>>>,
    liveness: Liveness,
}

impl WorkerThreads {
    pub(crate) fn new(name: &'static str) -> Self {
        WorkerThreads {
            name,
            threads: Vec::new(),
            liveness: Liveness::default(),
        }
    }

    /// A handle that tells whether every worker spawned so far still runs.
    pub(crate) fn liveness(&self) -> Liveness {
        self.liveness.clone()
    }

    /// Starts the next worker on its own thread, pinned to `core` when one is given (a
    /// refused pin is logged and the worker runs unpinned: containers often forbid it).
    /// The worker reports to `startup` through the [`Ready`] it is given.
    pub(crate) fn spawn<T: Send + 'static>(
        &mut self,
        startup: &Startup<T>,
        core: Option<usize>,
        body: impl FnOnce(Ready<T>) + Send + 'static,
    ) -> Result<(), EngineError> {
        let index = self.threads.len();
        let tx = startup.tx.clone();
        let name = self.name;
        let exited = ExitGuard(Arc::clone(&self.liveness.exited));
        let thread = std::thread::Builder::new()
            .name(format!("{name}-{index}"))
            .spawn(move || {
                let _exited = exited;
                if let Some(id) = core {
                    if !core_affinity::set_for_current(core_affinity::CoreId { id }) {
                        warn!(
                            engine = name,
                            worker = index,
                            core = id,
                            "could not pin worker to its core; running unpinned"
                        );
                    }
                }
                body(Ready { index, tx });
            })
            .map_err(EngineError::io("spawning a worker thread"))?;
        self.threads.push(Some(thread));
        self.liveness.spawned.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// How many workers were spawned.
    pub(crate) fn len(&self) -> usize {
        self.threads.len()
    }

    /// Joins every worker (the engine has signalled them to stop); the error names the
    /// first that panicked. Joining twice is a no-op.
    pub(crate) fn join(&mut self) -> Result<(), EngineError> {
        let mut result = Ok(());
        for (index, thread) in self.threads.iter_mut().enumerate() {
            if let Some(t) = thread.take() {
                if t.join().is_err() && result.is_ok() {
                    result = Err(EngineError::WorkerPanicked(index));
                }
            }
        }
        result
    }
}

/// Moves the calling thread, and so every thread it spawns from now on (the control
/// thread, the strategy mirror, the supply fetcher), off the workers' CPUs: onto the
/// CPUs this process may use that no worker is pinned to. Returns them, or `None` when
/// there are none (every allowed CPU has a worker) and the thread is left as it was.
///
/// Why: an unpinned control thread lands on a worker's CPU as often as not, and there
/// it waits behind a busy worker: `perf sched` at half load (50k req/s, one worker)
/// showed it waiting up to 440 ms in one run and 3.4 ms in another, while notices
/// queue; confined to the spare CPU, 0.6 ms at most (one run each). It did not move
/// the p99 of bids here (0.9–1.7 ms either way over three alternating runs each: the
/// worker itself still waits up to 1 ms for its CPU with nothing of ours beside it).
pub fn confine_to_spare_cpus(worker_cpus: &[usize]) -> std::io::Result<Option<Vec<usize>>> {
    // SAFETY: `cpu_set_t` is plain bits; all-zero is the empty set.
    let mut allowed: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: `allowed` is a valid, writable `cpu_set_t` of `size` bytes; pid 0 is the
    // calling thread.
    if unsafe { libc::sched_getaffinity(0, size, &mut allowed) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let max_cpus = 8 * size;
    let mut spare: libc::cpu_set_t = allowed;
    for &cpu in worker_cpus.iter().filter(|&&cpu| cpu < max_cpus) {
        // SAFETY: `cpu` is below the set's capacity (checked above).
        unsafe { libc::CPU_CLR(cpu, &mut spare) };
    }
    // SAFETY: every index is below the set's capacity.
    let cpus: Vec<usize> = (0..max_cpus)
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &spare) })
        .collect();
    if cpus.is_empty() {
        return Ok(None);
    }
    // SAFETY: `spare` is a valid `cpu_set_t` of `size` bytes, a subset of the CPUs this
    // thread may already use.
    if unsafe { libc::sched_setaffinity(0, size, &spare) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(Some(cpus))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_come_back_in_worker_order() {
        let mut workers = WorkerThreads::new("test");
        let startup = Startup::new();
        for index in 0..3 {
            workers
                .spawn(&startup, None, move |ready| ready.report(Ok(index * 10)))
                .unwrap();
        }
        assert_eq!(startup.wait(workers.len()).unwrap(), vec![0, 10, 20]);
        assert!(workers.join().is_ok());
    }

    #[test]
    fn liveness_turns_false_when_one_worker_panics_after_starting() {
        let mut workers = WorkerThreads::new("test");
        let liveness = workers.liveness();
        assert!(
            !liveness.all_alive(),
            "no worker spawned yet: nothing to vouch for"
        );
        let startup = Startup::<()>::new();
        let (die, dying) = mpsc::channel::<()>();
        let (finish, finishing) = mpsc::channel::<()>();
        workers
            .spawn(&startup, None, move |ready| {
                ready.report(Ok(()));
                finishing.recv().unwrap();
            })
            .unwrap();
        workers
            .spawn(&startup, None, move |ready| {
                ready.report(Ok(()));
                dying.recv().unwrap();
                panic!("worker 1 dies while serving (expected by this test)");
            })
            .unwrap();
        startup.wait(workers.len()).unwrap();
        assert!(liveness.all_alive());
        die.send(()).unwrap();
        let handle = workers.threads[1].take().unwrap();
        assert!(handle.join().is_err());
        assert!(
            !liveness.all_alive(),
            "a panicked worker must stop the watchdog"
        );
        finish.send(()).unwrap();
        assert!(workers.join().is_ok());
    }

    #[test]
    fn a_worker_that_dies_before_reporting_is_named() {
        let mut workers = WorkerThreads::new("test");
        let startup = Startup::<()>::new();
        workers
            .spawn(&startup, None, |ready| ready.report(Ok(())))
            .unwrap();
        workers
            .spawn(&startup, None, |ready| {
                let _keep = ready;
                panic!("worker 1 fails to start (expected by this test)");
            })
            .unwrap();
        match startup.wait(workers.len()) {
            Err(EngineError::WorkerPanicked(1)) => {}
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            workers.join(),
            Err(EngineError::WorkerPanicked(1))
        ));
    }

    #[test]
    fn a_start_failure_is_returned_as_reported() {
        let mut workers = WorkerThreads::new("test");
        let startup = Startup::<()>::new();
        workers
            .spawn(&startup, None, |ready| {
                ready.report(Err(EngineError::Config("no".into())));
            })
            .unwrap();
        let result = startup.wait(workers.len());
        assert!(matches!(result, Err(EngineError::Config(_))));
        assert!(workers.join().is_ok());
    }

    #[test]
    fn threads_confined_to_spare_cpus_leave_the_workers_cpus() {
        let cpus = core_affinity::get_core_ids().expect("this thread's CPUs can be read");
        // In its own thread: the affinity it sets is inherited by nothing else.
        std::thread::spawn(move || {
            let worker = cpus.first().map_or(0, |c| c.id);
            match confine_to_spare_cpus(&[worker]).expect("affinity calls succeed") {
                Some(spare) => {
                    assert!(!spare.contains(&worker), "{spare:?}");
                    assert_eq!(spare.len(), cpus.len() - 1, "{spare:?} of {cpus:?}");
                    let now = core_affinity::get_core_ids().expect("affinity");
                    assert!(now.iter().all(|c| c.id != worker), "{now:?}");
                }
                None => assert_eq!(cpus.len(), 1, "only a one-CPU host has no spare CPU"),
            }
            assert_eq!(
                confine_to_spare_cpus(&cpus.iter().map(|c| c.id).collect::<Vec<_>>()).unwrap(),
                None,
                "a worker on every CPU leaves none spare"
            );
        })
        .join()
        .expect("test thread");
    }
}
