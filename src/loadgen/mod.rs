//! The load generator: one workload, several targets (ringraft, and etcd with the `etcd`
//! feature), one recorder, one report format. Closed loop measures capacity; open loop measures
//! latency at a fixed rate from each request's intended start (no coordinated omission).

#[cfg(feature = "etcd")]
pub mod etcd_target;
pub mod failure;
pub mod hlog;
pub mod process;
pub mod progress;
pub mod recorder;
pub mod report;
pub mod retry;
pub mod ringraft_target;
pub mod workload;

pub use recorder::{OpKind, Recorder, SecondBucket};
pub use report::{hgrm, LoadReport, Percentiles};
pub use retry::RetryPolicy;
pub use workload::{LoopMode, Op, OpGen, Workload};

/// The load generator's threads: how many, and the cores they are pinned on (round robin;
/// none: wherever the kernel puts them).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadThreads {
    /// Threads, each with its own connections (at least one runs).
    pub count: usize,
    /// Cores to pin the threads on, thread `i` on `cores[i % len]`.
    pub cores: Vec<usize>,
}

impl LoadThreads {
    /// `count` threads, unpinned.
    pub fn unpinned(count: usize) -> LoadThreads {
        LoadThreads {
            count,
            cores: Vec::new(),
        }
    }

    /// The core thread `thread` runs on, if pinned.
    pub fn core_of(&self, thread: usize) -> Option<usize> {
        (!self.cores.is_empty()).then(|| self.cores[thread % self.cores.len()])
    }

    /// Pins the calling thread as thread `thread` of these; a core this process may not use
    /// is an error that names it.
    pub fn pin_current(&self, thread: usize) -> Result<(), String> {
        let Some(core) = self.core_of(thread) else {
            return Ok(());
        };
        if core >= libc::CPU_SETSIZE as usize {
            return Err(format!("core {core} is beyond what this system can name"));
        }
        // SAFETY: `set` is a plain bit set, zeroed and then filled by the libc macros; its
        // size is passed with it; pid 0 is the calling thread.
        let rc = unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(core, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
        };
        if rc != 0 {
            return Err(format!(
                "cannot pin load thread {thread} on core {core}: {} (is it one of this \
                 machine's cores, and allowed to this process?)",
                std::io::Error::last_os_error()
            ));
        }
        Ok(())
    }
}
