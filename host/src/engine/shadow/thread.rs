//! The shadow thread's place on the machine: its scheduling priority, and the CPU clock its
//! budget is counted on.

use std::time::Duration;

/// The nice value of the shadow thread (Linux): the engine, connections and writer run at the
/// process's own, so when cores are short the scheduler gives the shadow what they leave.
pub const NICE: i32 = 19;

/// Lowers the calling thread's scheduling priority to [`NICE`]. On Linux a nice value belongs
/// to the thread; elsewhere this does nothing and the budget and breaker alone bound the shadow.
pub(super) fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: setpriority takes plain integers and touches no memory of ours; `who` 0 is
        // the calling thread on Linux.
        let failed = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, NICE) } != 0;
        if failed {
            let error = std::io::Error::last_os_error();
            tracing::warn!(%error, "cannot lower the shadow thread's priority");
        }
    }
}

/// The CPU time the calling thread has used, where the platform has a thread clock.
pub(super) fn thread_cpu_time() -> Option<Duration> {
    #[cfg(unix)]
    {
        let mut now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes one timespec, which `now` is.
        let read = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) } == 0;
        if read {
            let secs = u64::try_from(now.tv_sec).unwrap_or(0);
            let nanos = u32::try_from(now.tv_nsec).unwrap_or(0);
            return Some(Duration::new(secs, nanos));
        }
    }
    None
}
