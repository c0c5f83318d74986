//! Giving memory back. Logins and bursts allocate transiently (TLS handshakes, SCRAM,
//! parsing); with glibc's malloc that freed memory stays in the process unless asked back,
//! so an idle server would keep the footprint of its busiest minute.

use std::time::Duration;

/// How often freed memory is returned to the operating system.
const TRIM_EVERY: Duration = Duration::from_secs(10);

/// Limits glibc to a few malloc arenas (by default it makes up to eight per core, each
/// holding on to its own free memory). Call before any thread is started.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator tunable; called before other threads exist.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Periodically returns free heap memory to the OS, off the async threads.
pub async fn trim_periodically(mut shutdown: tokio::sync::watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(TRIM_EVERY) => {}
        }
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: malloc_trim is thread-safe and only releases memory malloc owns.
        let _ = tokio::task::spawn_blocking(|| unsafe { libc::malloc_trim(0) }).await;
    }
}
