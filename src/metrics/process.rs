//! The standard process metrics (`process_resident_memory_bytes`,
//! `process_virtual_memory_bytes`, `process_open_fds`, `process_max_fds`,
//! `process_cpu_seconds_total`, `process_start_time_seconds`), read from
//! `/proc/self` at scrape time, so they cost nothing between scrapes.
//!
//! Files read per scrape: `/proc/self/stat` (CPU time, start time, memory),
//! the `/proc/self/fd` directory and `/proc/self/limits`. The clock tick
//! and page size come once from `/proc/self/auxv` (what `sysconf` reads),
//! the boot time once from `/proc/stat`. A value that cannot be read is left
//! out of the exposition; the first failure is logged (once).

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

/// `AT_PAGESZ` and `AT_CLKTCK` in the auxiliary vector (`<elf.h>`).
const AT_PAGESZ: u64 = 6;
const AT_CLKTCK: u64 = 17;
/// What Linux reports to user space on every architecture when the
/// auxiliary vector cannot be read (`USER_HZ`, a fixed ABI value).
const USER_HZ: u64 = 100;
/// The page size assumed when the auxiliary vector cannot be read.
const PAGE_SIZE: u64 = 4096;

/// Clock ticks per second and page size of this system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct System {
    clock_ticks: u64,
    page_size: u64,
}

/// One reading of the process's numbers; `None` where a file could not be
/// read or parsed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub resident_memory_bytes: Option<u64>,
    pub virtual_memory_bytes: Option<u64>,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
    pub cpu_seconds: Option<f64>,
    pub start_time_seconds: Option<f64>,
}

/// The fields of `/proc/<pid>/stat` this module uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    utime: u64,
    stime: u64,
    starttime: u64,
    vsize: u64,
    rss_pages: u64,
}

/// Parses `/proc/<pid>/stat`. The command name (field 2) is in
/// parentheses and may hold spaces and parentheses itself, so fields are
/// counted from the last `)`.
fn parse_stat(text: &str) -> Result<Stat, String> {
    let after = text
        .rfind(')')
        .and_then(|i| text.get(i + 1..))
        .ok_or("no `)` after the command name")?;
    // Field 3 (state) is index 0 here.
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |n: usize| -> Result<u64, String> {
        let s = fields
            .get(n - 3)
            .ok_or_else(|| format!("field {n} is missing"))?;
        s.parse().map_err(|_| format!("field {n} is `{s}`"))
    };
    Ok(Stat {
        utime: field(14)?,
        stime: field(15)?,
        starttime: field(22)?,
        vsize: field(23)?,
        rss_pages: field(24)?,
    })
}

/// The soft `Max open files` of `/proc/<pid>/limits`; `None` for
/// `unlimited`.
fn parse_max_fds(text: &str) -> Result<Option<u64>, String> {
    let line = text
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .ok_or("no `Max open files` line")?;
    let soft = line
        .trim_start_matches("Max open files")
        .split_whitespace()
        .next()
        .ok_or("no soft limit")?;
    if soft == "unlimited" {
        return Ok(None);
    }
    soft.parse()
        .map(Some)
        .map_err(|_| format!("soft limit is `{soft}`"))
}

/// `btime` (boot time, seconds since the epoch) of `/proc/stat`.
fn parse_btime(text: &str) -> Result<u64, String> {
    let value = text
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .ok_or("no `btime` line")?;
    value
        .trim()
        .parse()
        .map_err(|_| format!("btime is `{value}`"))
}

/// Reads `AT_PAGESZ` and `AT_CLKTCK` from the auxiliary vector: pairs of
/// native-endian machine words.
fn parse_auxv(bytes: &[u8]) -> System {
    let word = std::mem::size_of::<usize>();
    let read = |chunk: &[u8]| -> u64 {
        let mut buf = [0u8; 8];
        let n = chunk.len().min(8);
        if cfg!(target_endian = "little") {
            buf[..n].copy_from_slice(&chunk[..n]);
            u64::from_le_bytes(buf)
        } else {
            buf[8 - n..].copy_from_slice(&chunk[..n]);
            u64::from_be_bytes(buf)
        }
    };
    let mut system = System {
        clock_ticks: USER_HZ,
        page_size: PAGE_SIZE,
    };
    for pair in bytes.chunks_exact(2 * word) {
        let (key, value) = (read(&pair[..word]), read(&pair[word..]));
        match key {
            AT_PAGESZ if value > 0 => system.page_size = value,
            AT_CLKTCK if value > 0 => system.clock_ticks = value,
            _ => {}
        }
    }
    system
}

fn system() -> System {
    static SYSTEM: OnceLock<System> = OnceLock::new();
    *SYSTEM.get_or_init(|| match std::fs::read("/proc/self/auxv") {
        Ok(bytes) => parse_auxv(&bytes),
        Err(_) => parse_auxv(&[]),
    })
}

/// Seconds since the epoch when the system booted; read once (it does not
/// change while the process runs).
fn boot_time() -> Result<u64, String> {
    static BOOT: OnceLock<Result<u64, String>> = OnceLock::new();
    BOOT.get_or_init(|| {
        std::fs::read_to_string("/proc/stat")
            .map_err(|e| format!("/proc/stat: {e}"))
            .and_then(|t| parse_btime(&t).map_err(|e| format!("/proc/stat: {e}")))
    })
    .clone()
}

impl Snapshot {
    /// Reads the process's numbers now. The first problem met is returned
    /// beside what could be read.
    pub fn read() -> (Snapshot, Option<String>) {
        let system = system();
        let mut snap = Snapshot::default();
        let mut problem: Option<String> = None;
        let mut note = |e: String| {
            problem.get_or_insert(e);
        };

        match std::fs::read_to_string("/proc/self/stat")
            .map_err(|e| e.to_string())
            .and_then(|t| parse_stat(&t))
        {
            Ok(stat) => {
                let ticks = system.clock_ticks as f64;
                snap.cpu_seconds = Some((stat.utime + stat.stime) as f64 / ticks);
                snap.virtual_memory_bytes = Some(stat.vsize);
                snap.resident_memory_bytes = Some(stat.rss_pages * system.page_size);
                match boot_time() {
                    Ok(boot) => {
                        snap.start_time_seconds = Some(boot as f64 + stat.starttime as f64 / ticks)
                    }
                    Err(e) => note(e),
                }
            }
            Err(e) => note(format!("/proc/self/stat: {e}")),
        }

        match std::fs::read_dir("/proc/self/fd") {
            // The directory's own descriptor is among the entries, as in
            // every exporter that counts this way.
            Ok(dir) => snap.open_fds = Some(dir.count() as u64),
            Err(e) => note(format!("/proc/self/fd: {e}")),
        }

        match std::fs::read_to_string("/proc/self/limits")
            .map_err(|e| e.to_string())
            .and_then(|t| parse_max_fds(&t))
        {
            Ok(max) => snap.max_fds = max,
            Err(e) => note(format!("/proc/self/limits: {e}")),
        }

        (snap, problem)
    }
}

/// Encodes a [`Snapshot`] taken at each scrape.
#[derive(Debug, Default)]
pub struct ProcessCollector {
    /// Whether a read failure was logged already.
    warned: AtomicBool,
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let (snap, problem) = Snapshot::read();
        if let Some(problem) = problem {
            if !self.warned.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    "process metrics: cannot read {problem}; /metrics leaves out what it could not read"
                );
            }
        }
        let gauges: [(&str, &str, Option<Unit>, Option<f64>); 5] = [
            (
                "process_resident_memory",
                "Resident memory size.",
                Some(Unit::Bytes),
                snap.resident_memory_bytes.map(|v| v as f64),
            ),
            (
                "process_virtual_memory",
                "Virtual memory size.",
                Some(Unit::Bytes),
                snap.virtual_memory_bytes.map(|v| v as f64),
            ),
            (
                "process_open_fds",
                "Open file descriptors.",
                None,
                snap.open_fds.map(|v| v as f64),
            ),
            (
                "process_max_fds",
                "Most file descriptors the process may open (soft limit).",
                None,
                snap.max_fds.map(|v| v as f64),
            ),
            (
                "process_start_time",
                "Start time of the process since the Unix epoch.",
                Some(Unit::Seconds),
                snap.start_time_seconds,
            ),
        ];
        for (name, help, unit, value) in &gauges {
            if let Some(v) = value {
                let metric = ConstGauge::new(*v);
                let m = encoder.encode_descriptor(name, help, unit.as_ref(), MetricType::Gauge)?;
                metric.encode(m)?;
            }
        }
        if let Some(v) = snap.cpu_seconds {
            let metric = ConstCounter::new(v);
            let m = encoder.encode_descriptor(
                "process_cpu",
                "User and system CPU time spent.",
                Some(&Unit::Seconds),
                MetricType::Counter,
            )?;
            metric.encode(m)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        // A command name with spaces and a `)` in it.
        let text = "4242 (a) b c) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 75 0 0 20 0 9 0 \
                    123456 987654321 2048 18446744073709551615 1 1 0 0 0 0 0 4096 17475 0 0 0 17 1 0 0 0 0 0\n";
        let stat = parse_stat(text).expect("parses");
        assert_eq!(
            stat,
            Stat {
                utime: 250,
                stime: 75,
                starttime: 123456,
                vsize: 987654321,
                rss_pages: 2048,
            }
        );
        assert!(parse_stat("4242 (short) S 1 2").is_err());
        assert!(parse_stat("no parenthesis").is_err());
    }

    #[test]
    fn max_fds_is_the_soft_limit() {
        let text = "Limit                     Soft Limit           Hard Limit           Units     \n\
                    Max processes             63438                63438                processes \n\
                    Max open files            20000                524288               files     \n";
        assert_eq!(parse_max_fds(text), Ok(Some(20000)));
        let unlimited =
            "Max open files            unlimited            unlimited            files     \n";
        assert_eq!(parse_max_fds(unlimited), Ok(None));
        assert!(parse_max_fds("Max processes 1 1\n").is_err());
    }

    #[test]
    fn boot_time_and_auxv_are_parsed() {
        assert_eq!(
            parse_btime("cpu  1 2 3\nbtime 1764662400\nprocesses 9\n"),
            Ok(1764662400)
        );
        assert!(parse_btime("cpu 1\n").is_err());
        let word = std::mem::size_of::<usize>();
        let mut auxv = Vec::new();
        for (k, v) in [
            (AT_PAGESZ as usize, 16384usize),
            (AT_CLKTCK as usize, 250),
            (0, 0),
        ] {
            auxv.extend_from_slice(&k.to_ne_bytes()[..word]);
            auxv.extend_from_slice(&v.to_ne_bytes()[..word]);
        }
        assert_eq!(
            parse_auxv(&auxv),
            System {
                clock_ticks: 250,
                page_size: 16384
            }
        );
        assert_eq!(
            parse_auxv(&[]),
            System {
                clock_ticks: USER_HZ,
                page_size: PAGE_SIZE
            }
        );
    }

    #[test]
    fn this_process_reads_plausibly() {
        let (snap, problem) = Snapshot::read();
        assert_eq!(problem, None);
        let rss = snap.resident_memory_bytes.expect("rss");
        assert!(rss > 1024 * 1024, "rss {rss}");
        let open = snap.open_fds.expect("fds");
        // stdin, stdout, stderr and the directory itself at least.
        assert!(open >= 4, "open fds {open}");
        if let Some(max) = snap.max_fds {
            assert!(max >= open, "max {max} < open {open}");
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs_f64();
        let start = snap.start_time_seconds.expect("start time");
        // Started in the past, and not before 2020.
        assert!(
            start <= now + 1.0 && start > 1.5e9,
            "start {start}, now {now}"
        );
        assert!(snap.cpu_seconds.expect("cpu") >= 0.0);
    }
}
