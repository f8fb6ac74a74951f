//! A persistent thread pool for the kernels.
//!
//! Workers are spawned once (pinned to one CPU each where the OS allows) and
//! wait for work by spinning for a while, then parking on a condition
//! variable. The caller of a run takes part too, and the run returns when
//! the work is done, so closures may borrow from the caller's stack. No
//! thread is spawned per operation.
//!
//! Work is split into parts by index, never by who comes first:
//! [`ThreadPool::run`] calls `f(part, n_parts)` exactly once for every part,
//! on whichever thread claims it. A worker that the OS has not scheduled
//! yet (another process holds its CPU) does not hold the others up: the
//! threads that are running claim its parts. Results depend only on what
//! each part computes, never on timing or on the thread that ran it.
//! [`ThreadPool::run_ctx`] instead runs one part per thread, with a barrier.

#![allow(unsafe_code)]

use std::cell::{Cell, UnsafeCell};
use std::marker::PhantomData;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

/// How a [`ThreadPool`] is built.
#[derive(Clone, Debug)]
pub struct PoolConfig {
    /// Threads in all, the caller of `run` included (at least 1).
    pub n_threads: usize,
    /// Pin each worker to one CPU of the process's affinity mask (Linux;
    /// ignored elsewhere or when there are more threads than CPUs).
    pub pin: bool,
    /// Spin iterations (`spin_loop` hints) a waiting thread makes before it
    /// parks (workers) or yields (the caller).
    pub spin: u32,
}

impl PoolConfig {
    /// `n_threads` threads, pinned, spinning about 50-300 µs before parking.
    pub fn new(n_threads: usize) -> PoolConfig {
        PoolConfig {
            n_threads: n_threads.max(1),
            pin: true,
            spin: 1 << 18,
        }
    }
}

/// What a thread knows inside [`ThreadPool::run_ctx`].
pub struct WorkerCtx<'a> {
    idx: usize,
    n: usize,
    shared: Option<&'a Shared>,
}

impl WorkerCtx<'_> {
    /// This thread's index in `0..n_threads()`.
    pub fn idx(&self) -> usize {
        self.idx
    }

    /// Threads running this closure.
    pub fn n_threads(&self) -> usize {
        self.n
    }

    /// Waits until every thread of this run has reached the barrier.
    ///
    /// # Panics
    /// If another thread of the run panicked (instead of waiting forever).
    pub fn barrier(&self) {
        if let Some(shared) = self.shared {
            shared.barrier(self.n);
        }
    }
}

/// One run: parts `0..n` of `f`, claimed through `next`. With `many`, a
/// thread keeps claiming parts until none is left; without, it takes one.
struct Job<'a> {
    f: &'a (dyn Fn(usize) + Sync + 'a),
    n: usize,
    many: bool,
    next: AtomicUsize,
}

impl Job<'_> {
    /// Claims and runs parts.
    fn participate(&self) {
        loop {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            if i >= self.n {
                return;
            }
            (self.f)(i);
            if !self.many {
                return;
            }
        }
    }
}

struct Shared {
    /// Bumped once per run; sleeping or spinning workers wake on a change.
    generation: AtomicUsize,
    /// The current job, lifetime erased. Written only while `open` is false
    /// and read only by threads that saw `open` true after entering
    /// (`inside`), so every read sees the job of a run in progress.
    job: UnsafeCell<*const Job<'static>>,
    /// Whether the current job may still be entered.
    open: AtomicBool,
    /// Workers that entered (and may be running) the current job.
    inside: AtomicUsize,
    /// Workers parked (or about to park) on `wake`.
    sleepers: AtomicUsize,
    lock: Mutex<()>,
    wake: Condvar,
    shutdown: AtomicBool,
    /// A thread of the current run panicked.
    panicked: AtomicBool,
    /// Sense-reversing barrier: arrivals, and the phase they wait to change.
    bar_count: AtomicUsize,
    bar_phase: AtomicUsize,
    spin: u32,
}

// SAFETY: `job` follows the protocol documented on the field: the caller
// writes it while `open` is false and no thread may read it; workers read
// it only after `inside += 1` then `open == true` (SeqCst, pairing with the
// caller's `open = false` then `inside == 0` check), and the job it points
// to lives until the caller has seen `inside == 0`. Everything else is
// atomics or std synchronization.
unsafe impl Sync for Shared {}
// SAFETY: as above; the raw pointer is only dereferenced during a run.
unsafe impl Send for Shared {}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn barrier(&self, n: usize) {
        if n <= 1 {
            return;
        }
        let phase = self.bar_phase.load(Ordering::Acquire);
        if self.bar_count.fetch_add(1, Ordering::AcqRel) == n - 1 {
            self.bar_count.store(0, Ordering::Relaxed);
            self.bar_phase
                .store(phase.wrapping_add(1), Ordering::Release);
            return;
        }
        let mut spins = 0u32;
        while self.bar_phase.load(Ordering::Acquire) == phase {
            if self.panicked.load(Ordering::Relaxed) {
                panic!("hearth pool: another thread panicked before the barrier");
            }
            spin_or_yield(&mut spins, self.spin);
        }
    }
}

#[inline]
fn spin_or_yield(spins: &mut u32, limit: u32) {
    if *spins < limit {
        *spins += 1;
        std::hint::spin_loop();
    } else {
        std::thread::yield_now();
    }
}

thread_local! {
    /// Set while this thread runs a pool job (nested runs execute inline).
    static IN_JOB: Cell<bool> = const { Cell::new(false) };
}

/// A persistent pool of `n_threads - 1` workers plus the calling thread.
pub struct ThreadPool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    n_threads: usize,
    run_lock: Mutex<()>,
}

impl ThreadPool {
    /// A pool of `n_threads` threads in all (workers pinned, see [`PoolConfig`]).
    pub fn new(n_threads: usize) -> ThreadPool {
        ThreadPool::with_config(PoolConfig::new(n_threads))
    }

    /// A pool with one thread per CPU this process may run on.
    pub fn with_available_parallelism() -> ThreadPool {
        ThreadPool::new(std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    /// A pool built as `config` says.
    pub fn with_config(config: PoolConfig) -> ThreadPool {
        let n_threads = config.n_threads.max(1);
        let shared = Arc::new(Shared {
            generation: AtomicUsize::new(0),
            job: UnsafeCell::new(std::ptr::null()),
            open: AtomicBool::new(false),
            inside: AtomicUsize::new(0),
            sleepers: AtomicUsize::new(0),
            lock: Mutex::new(()),
            wake: Condvar::new(),
            shutdown: AtomicBool::new(false),
            panicked: AtomicBool::new(false),
            bar_count: AtomicUsize::new(0),
            bar_phase: AtomicUsize::new(0),
            spin: config.spin,
        });
        let cpus = if config.pin {
            affinity::allowed_cpus()
        } else {
            Vec::new()
        };
        let pin = config.pin && cpus.len() >= n_threads;
        let workers = (1..n_threads)
            .map(|idx| {
                let shared = Arc::clone(&shared);
                let cpu = if pin { Some(cpus[idx]) } else { None };
                std::thread::Builder::new()
                    .name(format!("hearth-worker-{idx}"))
                    .spawn(move || {
                        if let Some(cpu) = cpu {
                            affinity::pin_current_thread(cpu);
                        }
                        worker_loop(&shared);
                    })
                    .expect("hearth pool: cannot spawn a worker thread")
            })
            .collect();
        ThreadPool {
            shared,
            workers,
            n_threads,
            run_lock: Mutex::new(()),
        }
    }

    /// Threads in all, the caller included.
    pub fn n_threads(&self) -> usize {
        self.n_threads
    }

    /// Calls `f(part, n_threads)` once for every `part in 0..n_threads`,
    /// spread over the pool's threads, and returns when all calls have
    /// finished. A panic in any call is re-raised here.
    pub fn run<F>(&self, f: F)
    where
        F: Fn(usize, usize) + Sync,
    {
        self.run_parts(self.n_threads, f);
    }

    /// Calls `f(part, n_parts)` once for every `part in 0..n_parts` (more
    /// parts than threads balance better when some thread is slow), spread
    /// over the pool's threads, and returns when all have finished.
    pub fn run_parts<F>(&self, n_parts: usize, f: F)
    where
        F: Fn(usize, usize) + Sync,
    {
        if n_parts == 0 {
            return;
        }
        let g = |i: usize| f(i, n_parts);
        if self.n_threads == 1 || n_parts == 1 || IN_JOB.with(Cell::get) {
            for i in 0..n_parts {
                g(i);
            }
            return;
        }
        self.execute(&Job {
            f: &g,
            n: n_parts,
            many: true,
            next: AtomicUsize::new(0),
        });
    }

    /// Calls `f(i, chunk)` for every `chunk_len`-sized chunk of `data` (the
    /// last may be shorter), chunks spread over the pool's threads. Each
    /// chunk is handed to exactly one call, so the calls may write freely.
    pub fn par_chunks_mut<T, F>(&self, data: &mut [T], chunk_len: usize, f: F)
    where
        T: Send,
        F: Fn(usize, &mut [T]) + Sync,
    {
        let chunk_len = chunk_len.max(1);
        let n_chunks = data.len().div_ceil(chunk_len);
        let len = data.len();
        let shared = SharedMut::new(data);
        self.run_parts(n_chunks, |i, _| {
            let start = i * chunk_len;
            let n = chunk_len.min(len - start);
            // SAFETY: part i covers exactly chunk i, and `run_parts` calls
            // every part once, so no two slices overlap.
            f(i, unsafe { shared.slice(start, n) });
        });
    }

    /// Runs `f` once on every thread, each with its own [`WorkerCtx::idx`]
    /// in `0..n_threads`, so that [`WorkerCtx::barrier`] can synchronize
    /// them. Called from inside a job (nested), `f` runs inline as the only
    /// thread (`n_threads() == 1`).
    pub fn run_ctx<F>(&self, f: F)
    where
        F: Fn(&WorkerCtx<'_>) + Sync,
    {
        if self.n_threads == 1 || IN_JOB.with(Cell::get) {
            f(&WorkerCtx {
                idx: 0,
                n: 1,
                shared: None,
            });
            return;
        }
        let shared = &*self.shared;
        let n = self.n_threads;
        let g = |idx: usize| {
            f(&WorkerCtx {
                idx,
                n,
                shared: Some(shared),
            })
        };
        self.execute(&Job {
            f: &g,
            n,
            many: false,
            next: AtomicUsize::new(0),
        });
    }

    fn execute(&self, job: &Job<'_>) {
        let _run = self.run_lock.lock().unwrap_or_else(|e| e.into_inner());
        let shared = &*self.shared;
        // SAFETY: only the lifetime is erased. Workers dereference the
        // pointer only between entering (`inside`) and leaving, and this
        // function does not return (nor unwind) before `open` is false and
        // `inside` is 0, so the job outlives every use.
        let erased: *const Job<'static> = unsafe { std::mem::transmute(job as *const Job<'_>) };
        // SAFETY: `open` is false (the previous run closed it), so no thread
        // reads `job` now (see `Shared::job`).
        unsafe { *shared.job.get() = erased };
        shared.panicked.store(false, Ordering::Relaxed);
        shared.bar_count.store(0, Ordering::Relaxed);
        shared.open.store(true, Ordering::SeqCst);
        shared.generation.fetch_add(1, Ordering::SeqCst);
        if shared.sleepers.load(Ordering::SeqCst) > 0 {
            let _g = shared.lock();
            shared.wake.notify_all();
        }

        IN_JOB.with(|c| c.set(true));
        let result = panic::catch_unwind(AssertUnwindSafe(|| job.participate()));
        IN_JOB.with(|c| c.set(false));
        if result.is_err() {
            shared.panicked.store(true, Ordering::Relaxed);
        }
        // One part per thread: every part must be claimed before closing.
        let mut spins = 0u32;
        while result.is_ok()
            && job.next.load(Ordering::Relaxed) < job.n
            && !shared.panicked.load(Ordering::Relaxed)
        {
            spin_or_yield(&mut spins, shared.spin);
        }
        shared.open.store(false, Ordering::SeqCst);
        let mut spins = 0u32;
        while shared.inside.load(Ordering::SeqCst) != 0 {
            spin_or_yield(&mut spins, shared.spin);
        }
        if let Err(payload) = result {
            panic::resume_unwind(payload);
        }
        if shared.panicked.load(Ordering::Relaxed) {
            panic!("hearth pool: a worker thread panicked");
        }
    }
}

impl Default for ThreadPool {
    fn default() -> ThreadPool {
        ThreadPool::with_available_parallelism()
    }
}

impl std::fmt::Debug for ThreadPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadPool")
            .field("n_threads", &self.n_threads)
            .finish()
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        {
            let _g = self.shared.lock();
            self.shared.wake.notify_all();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

fn worker_loop(shared: &Shared) {
    let mut seen = 0usize;
    loop {
        // Wait for a new generation: spin, then park.
        let mut spins = 0u32;
        loop {
            if shared.generation.load(Ordering::Acquire) != seen {
                break;
            }
            if shared.shutdown.load(Ordering::Acquire) {
                return;
            }
            if spins < shared.spin {
                spins += 1;
                std::hint::spin_loop();
                continue;
            }
            let mut guard = shared.lock();
            shared.sleepers.fetch_add(1, Ordering::SeqCst);
            while shared.generation.load(Ordering::SeqCst) == seen
                && !shared.shutdown.load(Ordering::SeqCst)
            {
                guard = shared.wake.wait(guard).unwrap_or_else(|e| e.into_inner());
            }
            shared.sleepers.fetch_sub(1, Ordering::SeqCst);
            drop(guard);
            spins = 0;
        }
        seen = shared.generation.load(Ordering::Acquire);
        shared.inside.fetch_add(1, Ordering::SeqCst);
        if shared.open.load(Ordering::SeqCst) {
            // SAFETY: we entered (`inside`) and then saw `open`, so `job`
            // points to the job of the run in progress, which stays alive
            // until we leave (see `Shared::job`).
            let job = unsafe { &**shared.job.get() };
            IN_JOB.with(|c| c.set(true));
            if panic::catch_unwind(AssertUnwindSafe(|| job.participate())).is_err() {
                shared.panicked.store(true, Ordering::Relaxed);
            }
            IN_JOB.with(|c| c.set(false));
        }
        shared.inside.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A slice that the threads of one run write to at disjoint places.
pub(crate) struct SharedMut<'a, T> {
    ptr: *mut T,
    len: usize,
    _borrow: PhantomData<&'a mut [T]>,
}

// SAFETY: access goes through `slice`, whose callers guarantee disjointness;
// `T: Send` makes handing parts of it to other threads sound.
unsafe impl<T: Send> Sync for SharedMut<'_, T> {}

impl<'a, T> SharedMut<'a, T> {
    pub(crate) fn new(slice: &'a mut [T]) -> Self {
        SharedMut {
            ptr: slice.as_mut_ptr(),
            len: slice.len(),
            _borrow: PhantomData,
        }
    }

    /// The elements `start..start + len`.
    ///
    /// # Safety
    /// No two live slices obtained from `self` (in any thread) may overlap.
    ///
    /// # Panics
    /// If the range is out of bounds.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn slice(&self, start: usize, len: usize) -> &mut [T] {
        assert!(start <= self.len && len <= self.len - start);
        // SAFETY: in bounds (checked above) of a slice borrowed mutably for
        // 'a; disjointness is the caller's promise.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(start), len) }
    }
}

/// `start..end` of `0..n` for part `i` of `parts`, in contiguous pieces that
/// are multiples of `align` (the last one takes the rest).
pub(crate) fn split_range(n: usize, parts: usize, i: usize, align: usize) -> (usize, usize) {
    let units = n.div_ceil(align);
    let per = units / parts;
    let extra = units % parts;
    let start_u = i * per + i.min(extra);
    let end_u = start_u + per + usize::from(i < extra);
    ((start_u * align).min(n), (end_u * align).min(n))
}

#[cfg(target_os = "linux")]
mod affinity {
    /// The CPUs in this process's affinity mask, in order.
    pub(super) fn allowed_cpus() -> Vec<usize> {
        // SAFETY: `set` is a plain bitmask struct, all-zero is valid; the
        // kernel writes at most `size_of::<cpu_set_t>()` bytes into it.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
                return Vec::new();
            }
            (0..libc::CPU_SETSIZE as usize)
                .filter(|&c| libc::CPU_ISSET(c, &set))
                .collect()
        }
    }

    /// Pins the calling thread to `cpu` (best effort).
    pub(super) fn pin_current_thread(cpu: usize) {
        // SAFETY: as above; pid 0 means the calling thread.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            let _ = libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod affinity {
    pub(super) fn allowed_cpus() -> Vec<usize> {
        Vec::new()
    }

    pub(super) fn pin_current_thread(_cpu: usize) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    #[test]
    fn every_part_runs_once_per_call() {
        for n in [1, 2, 3, 5] {
            let pool = ThreadPool::new(n);
            for parts in [1, n, 4 * n + 1] {
                for _ in 0..200 {
                    let hits: Vec<AtomicU64> = (0..parts).map(|_| AtomicU64::new(0)).collect();
                    pool.run_parts(parts, |i, np| {
                        assert_eq!(np, parts);
                        hits[i].fetch_add(1, Ordering::Relaxed);
                    });
                    assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1));
                }
            }
        }
    }

    #[test]
    fn par_chunks_mut_hands_out_every_chunk_once() {
        for n in [1, 2, 3] {
            let pool = ThreadPool::new(n);
            for (len, chunk) in [(0, 4), (1, 4), (10, 3), (64, 8), (65, 64)] {
                let mut data = vec![0u32; len];
                pool.par_chunks_mut(&mut data, chunk, |i, c| {
                    for (j, x) in c.iter_mut().enumerate() {
                        *x += (i * chunk + j) as u32 + 1;
                    }
                });
                let want: Vec<u32> = (1..=len as u32).collect();
                assert_eq!(data, want, "len {len} chunk {chunk} threads {n}");
            }
        }
    }

    #[test]
    fn run_ctx_gives_each_thread_its_own_index() {
        for n in [1, 2, 3, 5] {
            let pool = ThreadPool::new(n);
            for _ in 0..200 {
                let hits: Vec<AtomicU64> = (0..n).map(|_| AtomicU64::new(0)).collect();
                pool.run_ctx(|ctx| {
                    assert_eq!(ctx.n_threads(), n);
                    hits[ctx.idx()].fetch_add(1, Ordering::Relaxed);
                    ctx.barrier();
                });
                assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1));
            }
        }
    }

    #[test]
    fn a_busy_caller_runs_the_parts_of_late_workers() {
        // Workers parked long ago may be slow to wake; every part still
        // runs exactly once.
        let pool = ThreadPool::with_config(PoolConfig {
            n_threads: 3,
            pin: false,
            spin: 1,
        });
        for round in 0..50 {
            std::thread::sleep(std::time::Duration::from_micros(200 * (round % 3)));
            let hits: Vec<AtomicU64> = (0..16).map(|_| AtomicU64::new(0)).collect();
            pool.run_parts(16, |i, _| {
                hits[i].fetch_add(1, Ordering::Relaxed);
            });
            assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1));
        }
    }

    #[test]
    fn borrows_and_writes_disjoint_parts() {
        let pool = ThreadPool::new(3);
        let input: Vec<u32> = (0..1000).collect();
        let mut out = vec![0u32; 1000];
        let shared = SharedMut::new(&mut out);
        pool.run(|i, n| {
            let (a, b) = split_range(input.len(), n, i, 7);
            // SAFETY: split_range gives disjoint ranges per thread.
            let dst = unsafe { shared.slice(a, b - a) };
            for (d, &s) in dst.iter_mut().zip(&input[a..b]) {
                *d = s * 2;
            }
        });
        assert!(out.iter().enumerate().all(|(i, &v)| v == 2 * i as u32));
    }

    #[test]
    fn barrier_orders_phases() {
        let pool = ThreadPool::new(4);
        let stage1: Vec<AtomicU64> = (0..4).map(|_| AtomicU64::new(0)).collect();
        let ok = AtomicBool::new(true);
        for round in 1..50u64 {
            pool.run_ctx(|ctx| {
                stage1[ctx.idx()].store(round, Ordering::Relaxed);
                ctx.barrier();
                if stage1.iter().any(|s| s.load(Ordering::Relaxed) != round) {
                    ok.store(false, Ordering::Relaxed);
                }
                ctx.barrier();
            });
        }
        assert!(ok.load(Ordering::Relaxed));
    }

    #[test]
    fn parked_workers_wake_up() {
        let pool = ThreadPool::with_config(PoolConfig {
            n_threads: 2,
            pin: false,
            spin: 10,
        });
        std::thread::sleep(std::time::Duration::from_millis(20));
        let count = AtomicU64::new(0);
        for _ in 0..20 {
            pool.run(|_, _| {
                count.fetch_add(1, Ordering::Relaxed);
            });
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!(count.load(Ordering::Relaxed), 40);
    }

    #[test]
    fn nested_runs_execute_inline() {
        let pool = ThreadPool::new(2);
        let count = AtomicU64::new(0);
        pool.run(|_, _| {
            pool.run_ctx(|ctx| {
                assert_eq!((ctx.idx(), ctx.n_threads()), (0, 1));
                count.fetch_add(1, Ordering::Relaxed);
            });
            // Nested parts all run, inline.
            pool.run(|_, n| {
                assert_eq!(n, 2);
                count.fetch_add(1, Ordering::Relaxed);
            });
        });
        assert_eq!(count.load(Ordering::Relaxed), 6);
    }

    #[test]
    fn worker_panic_reaches_the_caller_and_the_pool_survives() {
        let pool = ThreadPool::new(2);
        let r = panic::catch_unwind(AssertUnwindSafe(|| {
            pool.run(|i, _| {
                if i == 1 {
                    panic!("boom");
                }
            })
        }));
        assert!(r.is_err());
        let count = AtomicU64::new(0);
        pool.run(|_, _| {
            count.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(count.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn split_range_covers_everything_once() {
        for n in [0, 1, 5, 64, 1000, 1001] {
            for parts in 1..6 {
                for align in [1, 4, 16] {
                    let mut next = 0;
                    for i in 0..parts {
                        let (a, b) = split_range(n, parts, i, align);
                        assert_eq!(a, next);
                        assert!(b >= a);
                        assert!(a % align == 0 || a == n);
                        next = b;
                    }
                    assert_eq!(next, n);
                }
            }
        }
    }
}
