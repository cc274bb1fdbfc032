//! The open-files budget: every connection is a file descriptor, and a run
//! that would hit RLIMIT_NOFILE half way is refused before it starts.
//!
//! The limit is read from `/proc/self/limits` (no `getrlimit`: the
//! workspace forbids unsafe code).

use anyhow::{bail, Context};

/// Descriptors kept free for everything that is not a connection: stdio,
/// the runtime's epoll and wakers, the publisher, `/proc` reads.
pub const MARGIN: u64 = 64;

/// The soft limit on open files of this process; `None` when unlimited.
pub fn soft_limit() -> anyhow::Result<Option<u64>> {
    let text = std::fs::read_to_string("/proc/self/limits")
        .context("cannot read /proc/self/limits for the open-files limit")?;
    parse_soft_limit(&text).context("no `Max open files` line in /proc/self/limits")
}

/// The soft limit from the text of `/proc/self/limits`: `Some(None)` for
/// "unlimited".
fn parse_soft_limit(text: &str) -> Option<Option<u64>> {
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line
        .trim_start_matches("Max open files")
        .split_whitespace()
        .next()?;
    if soft == "unlimited" {
        return Some(None);
    }
    soft.parse().ok().map(Some)
}

/// Refuses `conns` connections when they would not fit under the current
/// soft limit.
pub fn check(conns: usize) -> anyhow::Result<()> {
    check_against(conns, soft_limit()?)
}

fn check_against(conns: usize, soft: Option<u64>) -> anyhow::Result<()> {
    let Some(soft) = soft else { return Ok(()) };
    let room = soft.saturating_sub(MARGIN);
    if conns as u64 > room {
        bail!(
            "{conns} connections need {} open files, but this process may open {soft} \
             (RLIMIT_NOFILE soft limit; {MARGIN} are kept for other uses). These machines \
             cap open files at 20,000 per process: above ~19,000 connections run several \
             bench processes side by side, each with part of the count, or raise \
             `ulimit -n` where that is allowed",
            conns as u64 + MARGIN
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: &str = "\
Limit                     Soft Limit           Hard Limit           Units
Max cpu time              unlimited            unlimited            seconds
Max open files            20000                20000                files
Max locked memory         8388608              8388608              bytes
";

    #[test]
    fn reads_the_soft_limit() {
        assert_eq!(parse_soft_limit(LIMITS), Some(Some(20_000)));
        let unlimited = LIMITS.replace("20000                20000", "unlimited unlimited");
        assert_eq!(parse_soft_limit(&unlimited), Some(None));
        assert_eq!(parse_soft_limit("Limit Soft\n"), None);
        // This process has one.
        soft_limit().expect("limit");
    }

    #[test]
    fn refuses_counts_over_the_limit() {
        check_against(19_936, Some(20_000)).expect("fits");
        let e = check_against(19_937, Some(20_000))
            .expect_err("over")
            .to_string();
        assert!(e.contains("20,000 per process"), "{e}");
        assert!(e.contains("ulimit -n"), "{e}");
        check_against(1_000_000, None).expect("unlimited");
        assert!(check_against(1, Some(10)).is_err());
    }
}
