//! Resident memory and CPU time of a process, from Linux's /proc (the server under test
//! with `--server-pid`, and the bench itself).

use std::time::Instant;

/// Clock ticks per second of /proc/PID/stat times; 100 on every Linux we run on
/// (USER_HZ), and not worth a libc dependency to ask.
const TICKS_PER_SEC: f64 = 100.0;

#[derive(Clone, Copy, Debug)]
pub struct ProcSample {
    pub rss_kb: u64,
    /// User + system CPU seconds since the process started.
    pub cpu_secs: f64,
    pub at: Instant,
}

/// Samples `pid` (`None`: this process); `None` if it is gone or /proc is unreadable.
pub fn sample(pid: Option<u32>) -> Option<ProcSample> {
    let dir = match pid {
        Some(pid) => format!("/proc/{pid}"),
        None => "/proc/self".to_owned(),
    };
    let status = std::fs::read_to_string(format!("{dir}/status")).ok()?;
    let stat = std::fs::read_to_string(format!("{dir}/stat")).ok()?;
    Some(ProcSample {
        rss_kb: parse_rss_kb(&status)?,
        cpu_secs: parse_cpu_ticks(&stat)? as f64 / TICKS_PER_SEC,
        at: Instant::now(),
    })
}

/// The sum of several processes' samples (a cluster's nodes); `None` without any, or when
/// one cannot be read.
pub fn sample_all(pids: &[u32]) -> Option<ProcSample> {
    let mut total: Option<ProcSample> = None;
    for pid in pids {
        let one = sample(Some(*pid))?;
        total = Some(match total {
            None => one,
            Some(sum) => ProcSample {
                rss_kb: sum.rss_kb + one.rss_kb,
                cpu_secs: sum.cpu_secs + one.cpu_secs,
                at: one.at,
            },
        });
    }
    total
}

/// `VmRSS:   12345 kB` from /proc/PID/status.
fn parse_rss_kb(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// utime + stime (fields 14 and 15) from /proc/PID/stat. The command name (field 2)
/// may contain spaces and parentheses, so fields are counted after its last `)`.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state), so field n is at index n - 3.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// CPU use between two samples, in percent of one core.
pub fn cpu_percent(from: &ProcSample, to: &ProcSample) -> f64 {
    let wall = to.at.duration_since(from.at).as_secs_f64();
    if wall <= 0.0 {
        return 0.0;
    }
    100.0 * (to.cpu_secs - from.cpu_secs) / wall
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_and_stat() {
        let status = "Name:\tprosody\nVmPeak:\t  99 kB\nVmRSS:\t   51234 kB\nRssAnon:\t 1 kB\n";
        assert_eq!(parse_rss_kb(status), Some(51234));
        let stat = "4242 (lua5.4 (x) y) S 1 4242 4242 0 -1 4194560 2000 0 0 0 1234 567 0 0 20 0 1 0 100 2000000 5000";
        assert_eq!(parse_cpu_ticks(stat), Some(1234 + 567));
        assert_eq!(parse_rss_kb("Name: x\n"), None);
        assert_eq!(parse_cpu_ticks("garbage"), None);
    }

    #[test]
    fn samples_this_process() {
        let s = sample(None).expect("/proc/self is readable on Linux");
        assert!(s.rss_kb > 0);
    }
}
