//! `max_memory` and `max_memory_low_water`: a size in bytes, with a unit,
//! or a percentage; and the cgroup memory limit a percentage refers to.
//!
//! Accepted forms: `536870912` (bytes), `"512MiB"`, `"2GB"`, `"80%"`.
//! Binary units (`KiB`, `MiB`, `GiB`, `TiB`) are powers of 1024, decimal
//! units (`KB`, `MB`, `GB`, `TB`) powers of 1000; `B` and no unit are bytes;
//! units are case-insensitive and may follow a space. `0` turns the bound
//! off.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A memory bound as written.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum MemorySize {
    /// `0`: no bound.
    #[default]
    Off,
    Bytes(u64),
    /// A percentage, more than 0 and at most 100.
    Percent(f64),
}

const UNITS: &[(&str, u64)] = &[
    ("b", 1),
    ("kb", 1000),
    ("mb", 1000 * 1000),
    ("gb", 1000 * 1000 * 1000),
    ("tb", 1000 * 1000 * 1000 * 1000),
    ("kib", 1 << 10),
    ("mib", 1 << 20),
    ("gib", 1 << 30),
    ("tib", 1 << 40),
];

const EXPECTED: &str = "expected a size in bytes (536870912), with a unit (\"512MiB\", \"2GB\"; \
     units B, KB, MB, GB, TB, KiB, MiB, GiB, TiB) or a percentage (\"80%\")";

impl MemorySize {
    /// Parses the string form (`"512MiB"`, `"80%"`, `"1024"`).
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        if let Some(number) = t.strip_suffix('%') {
            let p: f64 = number
                .trim()
                .parse()
                .map_err(|_| format!("`{text}`: {EXPECTED}"))?;
            if !(p > 0.0 && p <= 100.0) {
                return Err(format!(
                    "`{text}`: a percentage must be more than 0 and at most 100"
                ));
            }
            return Ok(Self::Percent(p));
        }
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (digits, unit) = t.split_at(split);
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("`{text}`: {EXPECTED}"))?;
        let unit = unit.trim().to_ascii_lowercase();
        let scale = if unit.is_empty() {
            1
        } else {
            UNITS
                .iter()
                .find(|(u, _)| *u == unit)
                .map(|(_, s)| *s)
                .ok_or_else(|| format!("`{text}`: unknown unit; {EXPECTED}"))?
        };
        let bytes = n
            .checked_mul(scale)
            .ok_or_else(|| format!("`{text}`: too large"))?;
        Ok(Self::bytes(bytes))
    }

    fn bytes(n: u64) -> Self {
        if n == 0 {
            Self::Off
        } else {
            Self::Bytes(n)
        }
    }

    pub fn is_off(&self) -> bool {
        matches!(self, Self::Off)
    }

    /// Bytes, with a percentage taken of `whole` (`None`: no whole to take
    /// it of, or off).
    pub fn of(&self, whole: Option<u64>) -> Option<u64> {
        match *self {
            Self::Off => None,
            Self::Bytes(n) => Some(n),
            // At most 100 % of a u64: the product fits.
            Self::Percent(p) => whole.map(|w| (w as f64 * p / 100.0) as u64),
        }
    }
}

impl fmt::Display for MemorySize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Off => f.write_str("0"),
            Self::Bytes(n) => write!(f, "{n}"),
            Self::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl Serialize for MemorySize {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Off => s.serialize_u64(0),
            Self::Bytes(n) => s.serialize_u64(*n),
            Self::Percent(_) => s.collect_str(self),
        }
    }
}

impl<'de> Deserialize<'de> for MemorySize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = MemorySize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(EXPECTED)
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<MemorySize, E> {
                Ok(MemorySize::bytes(n))
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<MemorySize, E> {
                u64::try_from(n)
                    .map(MemorySize::bytes)
                    .map_err(|_| E::custom(format!("`{n}`: {EXPECTED}")))
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<MemorySize, E> {
                MemorySize::parse(s).map_err(E::custom)
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// `max_memory` and its low-water mark in bytes, as the daemon runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryBounds {
    /// Above this, new upgrades are refused.
    pub high: u64,
    /// Under pressure, upgrades are accepted again below this.
    pub low: u64,
}

/// The bounds in bytes (`None`: off), and a warning to show.
pub type Resolved = (Option<MemoryBounds>, Option<String>);

/// `max_memory` and `max_memory_low_water` in bytes (`Ok(None)`: off), with
/// a warning when a percentage has no cgroup limit to be taken of. `limit`
/// reads the cgroup limit (only called for a percentage).
pub fn resolve(
    max: MemorySize,
    low_water: MemorySize,
    limit: impl FnOnce() -> Result<Option<u64>, String>,
) -> Result<Resolved, (&'static str, String)> {
    if low_water.is_off() {
        return Err((
            "server.max_memory_low_water",
            "must be more than 0 (bytes, or a percentage of max_memory)".into(),
        ));
    }
    let high = match max {
        MemorySize::Off => return Ok((None, None)),
        MemorySize::Bytes(n) => n,
        MemorySize::Percent(p) => match limit() {
            Ok(Some(l)) => max.of(Some(l)).unwrap_or(l),
            Ok(None) => {
                let w = format!(
                    "server.max_memory: {p}% of the cgroup memory limit, but the cgroup has none (memory.max is `max`): memory pressure is off"
                );
                return Ok((None, Some(w)));
            }
            Err(e) => {
                let w = format!(
                    "server.max_memory: {p}% of the cgroup memory limit, which cannot be read ({e}): memory pressure is off"
                );
                return Ok((None, Some(w)));
            }
        },
    };
    let low = low_water.of(Some(high)).unwrap_or(high);
    if low > high {
        return Err((
            "server.max_memory_low_water",
            format!("must be at most max_memory ({high} bytes)"),
        ));
    }
    Ok((Some(MemoryBounds { high, low }), None))
}

/// The memory limit of this process's cgroup (cgroup v2): the smallest
/// `memory.max` from its own cgroup up to the root, `Ok(None)` when every
/// one says `max`. An error says why it cannot be known (no cgroup v2).
pub fn cgroup_limit() -> Result<Option<u64>, String> {
    let membership = std::fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| format!("cannot read /proc/self/cgroup: {e}"))?;
    let Some(path) = own_cgroup(&membership) else {
        return Err("no cgroup v2 entry in /proc/self/cgroup".into());
    };
    limit_under(Path::new("/sys/fs/cgroup"), path)
}

/// The cgroup v2 path (`0::/system.slice/wsgate.service`).
fn own_cgroup(membership: &str) -> Option<&str> {
    membership.lines().find_map(|l| l.strip_prefix("0::"))
}

/// The smallest `memory.max` on the way from `path` up to `root`.
fn limit_under(root: &Path, path: &str) -> Result<Option<u64>, String> {
    let mut dir: PathBuf = root.join(path.trim_start_matches('/'));
    let mut limit: Option<u64> = None;
    let mut found = false;
    loop {
        let file = dir.join("memory.max");
        if let Ok(text) = std::fs::read_to_string(&file) {
            found = true;
            let text = text.trim();
            if text != "max" {
                let n: u64 = text
                    .parse()
                    .map_err(|_| format!("{}: unexpected `{text}`", file.display()))?;
                limit = Some(limit.map_or(n, |l| l.min(n)));
            }
        }
        if dir == root || !dir.pop() || !dir.starts_with(root) {
            break;
        }
    }
    if found {
        Ok(limit)
    } else {
        Err(format!(
            "no memory.max under {} (is the memory controller of cgroup v2 enabled?)",
            root.join(path.trim_start_matches('/')).display()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_every_form() {
        assert_eq!(
            MemorySize::parse("512MiB"),
            Ok(MemorySize::Bytes(512 << 20))
        );
        assert_eq!(
            MemorySize::parse("2 GB"),
            Ok(MemorySize::Bytes(2_000_000_000))
        );
        assert_eq!(MemorySize::parse("1kib"), Ok(MemorySize::Bytes(1024)));
        assert_eq!(MemorySize::parse("1024"), Ok(MemorySize::Bytes(1024)));
        assert_eq!(MemorySize::parse("7B"), Ok(MemorySize::Bytes(7)));
        assert_eq!(MemorySize::parse("0"), Ok(MemorySize::Off));
        assert_eq!(MemorySize::parse("80%"), Ok(MemorySize::Percent(80.0)));
        assert_eq!(MemorySize::parse("12.5 %"), Ok(MemorySize::Percent(12.5)));
    }

    #[test]
    fn bad_sizes_say_what_is_expected() {
        for bad in ["", "MiB", "12 parsecs", "-5", "1.5GiB", "0%", "150%", "x%"] {
            let e = MemorySize::parse(bad).expect_err(bad);
            assert!(e.contains(&format!("`{bad}`")), "{bad}: {e}");
        }
        assert!(MemorySize::parse("99999999TiB")
            .expect_err("overflow")
            .contains("too large"));
    }

    #[test]
    fn a_percentage_needs_a_whole() {
        assert_eq!(MemorySize::Percent(50.0).of(Some(1000)), Some(500));
        assert_eq!(MemorySize::Percent(50.0).of(None), None);
        assert_eq!(MemorySize::Bytes(7).of(None), Some(7));
        assert_eq!(MemorySize::Off.of(Some(1000)), None);
    }

    #[test]
    fn bounds_resolve_against_max_memory_and_the_cgroup() {
        let pct = MemorySize::Percent;
        let b = MemorySize::Bytes;
        let none = || -> Result<Option<u64>, String> { panic!("no cgroup read for bytes") };
        assert_eq!(
            resolve(b(1000), pct(90.0), none),
            Ok((
                Some(MemoryBounds {
                    high: 1000,
                    low: 900
                }),
                None
            ))
        );
        assert_eq!(
            resolve(pct(50.0), b(100), || Ok(Some(1000))),
            Ok((
                Some(MemoryBounds {
                    high: 500,
                    low: 100
                }),
                None
            ))
        );
        let (bounds, warning) = resolve(pct(50.0), pct(90.0), || Ok(None)).expect("ok");
        assert_eq!(bounds, None);
        assert!(warning.expect("warning").contains("memory pressure is off"));
        assert_eq!(resolve(MemorySize::Off, pct(90.0), none), Ok((None, None)));
        assert!(resolve(b(1000), b(2000), none).is_err());
        assert!(resolve(b(1000), MemorySize::Off, none).is_err());
    }

    #[test]
    fn the_smallest_limit_up_the_tree_wins() {
        let root = tempfile::tempdir().expect("tempdir");
        let leaf = root.path().join("a/b");
        std::fs::create_dir_all(&leaf).expect("mkdir");
        std::fs::write(leaf.join("memory.max"), "max\n").expect("write");
        assert_eq!(limit_under(root.path(), "/a/b"), Ok(None));
        std::fs::write(root.path().join("a/memory.max"), "1048576\n").expect("write");
        assert_eq!(limit_under(root.path(), "/a/b"), Ok(Some(1 << 20)));
        std::fs::write(leaf.join("memory.max"), "4096\n").expect("write");
        assert_eq!(limit_under(root.path(), "/a/b"), Ok(Some(4096)));
        assert!(limit_under(root.path(), "/elsewhere").is_err());
        assert_eq!(
            own_cgroup("0::/system.slice/x.service\n"),
            Some("/system.slice/x.service")
        );
    }
}
