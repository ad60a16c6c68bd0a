//! [`Team`]: helper threads that spin while a forward runs, so the many short parallel regions of a
//! CPU decode step (a 135M model's products take microseconds) start on every core at once.
//!
//! rayon hands a region's second half to a worker by work stealing; an idle worker yields, then
//! sleeps, and the thief's latency is a sizeable share of a 10 µs product (SmolLM2-135M decode
//! scaled 1.4× from one thread to two, llama.cpp — whose threads spin at a barrier — 2.1×).
//! During [`Team::scope`] the helpers poll one atomic word for work; a region
//! ([`for_each`]) publishes its task count under a new generation and every thread, the caller
//! included, claims task indices from that word until none is left. Outside a scope the helpers
//! are parked and the kernels fall back to rayon.
//!
//! A claim is a compare-and-swap of `(generation, next index)`, so a helper that read a previous
//! region's job can never run one of its indices against a later region; a task's panic is
//! caught on the helper and re-raised on the caller.

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// The job of the current region: a type-erased `&(dyn Fn(usize) + Sync)` living on the caller's
/// stack until the region's last task has finished.
type Job<'a> = &'a (dyn Fn(usize) + Sync);

struct Shared {
    /// `generation << 32 | task count << 16 | next task index`: one word, so that a claim can
    /// only succeed for the region whose job a helper read.
    state: AtomicU64,
    /// Points to the caller's `Job` of the current region.
    job: AtomicPtr<()>,
    /// Tasks of the current region not finished yet.
    pending: AtomicUsize,
    /// Whether a scope is open (helpers spin) or not (helpers park).
    active: AtomicBool,
    stop: AtomicBool,
    /// Helpers plus the caller.
    threads: usize,
    /// A panic caught on a helper, re-raised by the caller.
    panic: Mutex<Option<Box<dyn std::any::Any + Send>>>,
}

/// Helper threads for the parallel regions of a forward (see the module docs).
pub struct Team {
    shared: Arc<Shared>,
    helpers: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Team {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Team({} helpers)", self.helpers.len())
    }
}

thread_local! {
    /// The team of the scope this thread is in.
    static CURRENT: Cell<*const Shared> = const { Cell::new(std::ptr::null()) };
}

impl Team {
    /// A team of `helpers` threads besides the caller (0: regions run on the caller alone).
    pub fn new(helpers: usize) -> std::io::Result<Team> {
        let shared = Arc::new(Shared {
            state: AtomicU64::new(0),
            job: AtomicPtr::new(std::ptr::null_mut()),
            pending: AtomicUsize::new(0),
            active: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            threads: helpers + 1,
            panic: Mutex::new(None),
        });
        let mut handles = Vec::with_capacity(helpers);
        for i in 0..helpers {
            let s = Arc::clone(&shared);
            handles.push(
                std::thread::Builder::new()
                    .name(format!("specsweep-team-{i}"))
                    .spawn(move || helper(&s))?,
            );
        }
        Ok(Team {
            shared,
            helpers: handles,
        })
    }

    /// Run `f` with the helpers spinning, so that `for_each` regions inside it use them.
    pub fn scope<R>(&self, f: impl FnOnce() -> R) -> R {
        struct Close<'a>(&'a Shared, *const Shared);
        impl Drop for Close<'_> {
            fn drop(&mut self) {
                self.0.active.store(false, Ordering::Release);
                CURRENT.with(|c| c.set(self.1));
            }
        }
        let previous = CURRENT.with(|c| c.replace(Arc::as_ptr(&self.shared)));
        self.shared.active.store(true, Ordering::Release);
        for h in &self.helpers {
            h.thread().unpark();
        }
        let _close = Close(&self.shared, previous);
        f()
    }
}

impl Drop for Team {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        for h in self.helpers.drain(..) {
            h.thread().unpark();
            let _ = h.join();
        }
    }
}

/// Run `f(0..n)` on the team of the current [`Team::scope`], the calling thread included; `false`
/// (running nothing) outside a scope, where the caller uses rayon instead.
pub fn for_each(n: usize, f: &(dyn Fn(usize) + Sync)) -> bool {
    let shared = CURRENT.with(|c| c.get());
    if shared.is_null() {
        return false;
    }
    // SAFETY: the pointer was set by `Team::scope` on this thread from a live `Arc` that the scope
    // borrows, and is reset before the scope returns.
    let shared = unsafe { &*shared };
    if n > MAX_TASKS {
        return false;
    }
    if n == 0 {
        return true;
    }
    let job: Job<'_> = f;
    let job_ptr = &job as *const Job<'_> as *mut ();
    shared.job.store(job_ptr, Ordering::Relaxed);
    shared.pending.store(n, Ordering::Relaxed);
    let generation = ((shared.state.load(Ordering::Relaxed) >> 32) + 1) & 0xFFFF_FFFF;
    // publishes job and pending with the new generation
    shared
        .state
        .store(generation << 32 | (n as u64) << 16, Ordering::Release);
    while let Some(i) = claim(shared, generation) {
        run(shared, &job, i);
    }
    // the helpers' claimed tasks
    let mut spins = 0u32;
    while shared.pending.load(Ordering::Acquire) != 0 {
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(1024) {
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
    }
    if let Some(p) = shared
        .panic
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
    {
        resume_unwind(p);
    }
    true
}

/// Threads of the current [`Team::scope`]'s team, the caller included; `None` outside a scope.
pub fn current_threads() -> Option<usize> {
    let shared = CURRENT.with(|c| c.get());
    // SAFETY: as in `for_each`: set by a live scope on this thread, reset before it returns.
    (!shared.is_null()).then(|| unsafe { (*shared).threads })
}

/// Most tasks one region takes (the task count is 16 bits of the state word).
const MAX_TASKS: usize = 0xFFFF;

/// Claim the next task of region `generation`, if any is left.
fn claim(shared: &Shared, generation: u64) -> Option<usize> {
    let mut cur = shared.state.load(Ordering::Acquire);
    loop {
        let (g, n, i) = (cur >> 32, (cur >> 16) & 0xFFFF, cur & 0xFFFF);
        if g != generation || i >= n {
            return None;
        }
        match shared
            .state
            .compare_exchange_weak(cur, cur + 1, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => return Some(i as usize),
            Err(now) => cur = now,
        }
    }
}

/// Run task `i` and count it finished, keeping a panic for the caller.
fn run(shared: &Shared, job: &Job<'_>, i: usize) {
    if let Err(p) = catch_unwind(AssertUnwindSafe(|| job(i))) {
        let mut slot = shared.panic.lock().unwrap_or_else(|e| e.into_inner());
        slot.get_or_insert(p);
    }
    shared.pending.fetch_sub(1, Ordering::AcqRel);
}

fn helper(shared: &Shared) {
    let mut seen = 0u64;
    let mut idle = 0u32;
    loop {
        if shared.stop.load(Ordering::Acquire) {
            return;
        }
        if !shared.active.load(Ordering::Acquire) {
            std::thread::park();
            continue;
        }
        let state = shared.state.load(Ordering::Acquire);
        let generation = state >> 32;
        if generation != seen {
            let job = shared.job.load(Ordering::Relaxed) as *const Job<'_>;
            // `job` was stored before `state` took `generation` (so it is that region's or a
            // later one's), and a later region stores its job only once every task of this one
            // was claimed — after which no claim of `generation` succeeds. So a successful claim
            // means `job` is this region's, alive until its last task is counted finished.
            while let Some(i) = claim(shared, generation) {
                // SAFETY: see above — the region that published `job` is still waiting for task i.
                run(shared, unsafe { &*job }, i);
            }
            seen = generation;
            idle = 0;
            continue;
        }
        idle = idle.wrapping_add(1);
        if idle.is_multiple_of(256) {
            // let a runnable thread have the core (2 cores, other work of the process)
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[test]
    fn every_task_runs_once_per_region_inside_a_scope() {
        let team = Team::new(1).expect("team");
        let hits: Vec<AtomicU32> = (0..37).map(|_| AtomicU32::new(0)).collect();
        team.scope(|| {
            for _ in 0..500 {
                assert!(for_each(hits.len(), &|i| {
                    hits[i].fetch_add(1, Ordering::Relaxed);
                }));
            }
        });
        assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 500));
        // outside a scope the caller is told to use rayon
        assert!(!for_each(3, &|_| {}));
        assert_eq!(current_threads(), None);
        assert_eq!(team.scope(current_threads), Some(2));
    }

    #[test]
    fn a_task_panic_reaches_the_caller_and_the_team_goes_on() {
        let team = Team::new(2).expect("team");
        let r = std::panic::catch_unwind(AssertUnwindSafe(|| {
            team.scope(|| {
                for_each(8, &|i| {
                    if i == 5 {
                        panic!("task 5");
                    }
                })
            })
        }));
        assert!(r.is_err());
        let count = AtomicU32::new(0);
        team.scope(|| {
            for_each(8, &|_| {
                count.fetch_add(1, Ordering::Relaxed);
            })
        });
        assert_eq!(count.load(Ordering::Relaxed), 8);
    }
}
