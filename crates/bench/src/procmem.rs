//! The target process's memory, from `/proc/<pid>`: resident set size
//! (VmRSS in `status`) and proportional set size (Pss in `smaps_rollup`,
//! which splits shared pages between the processes that map them). Read
//! before and after opening connections, their difference divided by the
//! count is the memory one idle connection costs the server. Also the
//! number of files it has open (`/proc/<pid>/fd`), which shows a socket
//! leak.

use anyhow::Context;
use serde::Serialize;

/// One reading, in KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Sample {
    pub rss_kib: u64,
    /// `None` when `smaps_rollup` cannot be read (another user's process,
    /// or an old kernel).
    pub pss_kib: Option<u64>,
}

/// Reads the memory of process `pid`.
pub fn read(pid: u32) -> anyhow::Result<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status (is --pid {pid} running?)"))?;
    let rss_kib =
        field_kib(&status, "VmRSS:").with_context(|| format!("no VmRSS in /proc/{pid}/status"))?;
    let pss_kib = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .and_then(|t| field_kib(&t, "Pss:"));
    Ok(Sample { rss_kib, pss_kib })
}

/// The number of files process `pid` has open (the entries of
/// `/proc/<pid>/fd`).
pub fn open_fds(pid: u32) -> anyhow::Result<u64> {
    let dir = std::fs::read_dir(format!("/proc/{pid}/fd")).with_context(|| {
        format!("cannot list /proc/{pid}/fd (is --pid {pid} running, and ours?)")
    })?;
    Ok(dir.count() as u64)
}

/// The value of a `Name:   1234 kB` line.
fn field_kib(text: &str, name: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(name))?;
    let mut parts = line[name.len()..].split_whitespace();
    let value = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") | None => Some(value),
        Some(_) => None,
    }
}

/// KiB per connection between two readings: may be negative when the
/// process returned memory in between.
pub fn per_conn(before: u64, after: u64, conns: usize) -> f64 {
    if conns == 0 {
        return 0.0;
    }
    (after as f64 - before as f64) / conns as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_and_smaps_rollup_lines() {
        let status = "Name:\twsgate\nVmPeak:\t  99 kB\nVmRSS:\t   12345 kB\nRssAnon:\t 1 kB\n";
        assert_eq!(field_kib(status, "VmRSS:"), Some(12_345));
        let rollup = "00400000-7fff [rollup]\nRss:   900 kB\nPss:   812 kB\nPss_Anon:  700 kB\n";
        assert_eq!(field_kib(rollup, "Pss:"), Some(812));
        assert_eq!(field_kib(rollup, "Swap:"), None);
        assert_eq!(field_kib("VmRSS: lots\n", "VmRSS:"), None);
    }

    #[test]
    fn reads_this_process() {
        let s = read(std::process::id()).expect("own memory");
        assert!(s.rss_kib > 0);
        assert!(read(u32::MAX).is_err());
        let file = std::fs::File::open("/proc/self/status").expect("open");
        assert!(open_fds(std::process::id()).expect("own fds") > 0);
        drop(file);
        assert!(open_fds(u32::MAX).is_err());
    }

    #[test]
    fn per_connection_difference() {
        assert_eq!(per_conn(1_000, 3_000, 100), 20.0);
        assert_eq!(per_conn(3_000, 1_000, 100), -20.0);
        assert_eq!(per_conn(1, 2, 0), 0.0);
    }
}
