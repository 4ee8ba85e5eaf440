//! What `/proc` says about a process: its parent, its memory
//! (`smaps_rollup`) and the CPUs it may run on.

use std::collections::BTreeMap;
use std::fs;

use anyhow::Context as _;

/// The `kB` fields of a `smaps_rollup` (or `status`) text, by name.
pub fn kib_fields(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|line| {
            let (name, rest) = line.split_once(':')?;
            let value = rest.trim().strip_suffix("kB")?.trim().parse().ok()?;
            Some((name.trim().to_owned(), value))
        })
        .collect()
}

/// Resident, proportional and private memory of one process, in KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Memory {
    pub rss: u64,
    pub pss: u64,
    pub private: u64,
}

impl Memory {
    pub fn of(pid: u32) -> anyhow::Result<Memory> {
        let text = fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
            .with_context(|| format!("reading /proc/{pid}/smaps_rollup"))?;
        Ok(Memory::parse(&text))
    }

    pub fn parse(text: &str) -> Memory {
        let f = kib_fields(text);
        let get = |k: &str| f.get(k).copied().unwrap_or(0);
        Memory {
            rss: get("Rss"),
            pss: get("Pss"),
            private: get("Private_Clean") + get("Private_Dirty"),
        }
    }
}

/// The parent pid from a `/proc/<pid>/stat` text (the command name may hold
/// spaces and parentheses, so fields are counted after the last `)`).
pub fn parent_from_stat(stat: &str) -> Option<u32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Every process whose parent is `parent`.
pub fn children_of(parent: u32) -> Vec<u32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut children: Vec<u32> = dir
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| parent_from_stat(&s))
                == Some(parent)
        })
        .collect();
    children.sort_unstable();
    children
}

/// The CPUs this process may run on, as the kernel lists them (`0-1`).
pub fn cpus_allowed() -> String {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("Cpus_allowed_list:")
                    .map(|v| v.trim().to_owned())
            })
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLLUP: &str =
        "5581a4a0e000-7ffd0b7f3000 ---p 00000000 00:00 0                          [rollup]
Rss:                1908 kB
Pss:                 251 kB
Pss_Dirty:            80 kB
Shared_Clean:       1700 kB
Shared_Dirty:          0 kB
Private_Clean:        12 kB
Private_Dirty:        80 kB
Swap:                  0 kB
";

    #[test]
    fn parses_smaps_rollup() {
        assert_eq!(
            Memory::parse(ROLLUP),
            Memory {
                rss: 1908,
                pss: 251,
                private: 92
            }
        );
        assert_eq!(Memory::parse("garbage\nRss: lots kB\n"), Memory::default());
    }

    #[test]
    fn parent_survives_odd_names() {
        assert_eq!(parent_from_stat("42 (a) b (c)) S 7 42 42 0"), Some(7));
        assert_eq!(parent_from_stat("42 (x"), None);
    }

    #[test]
    fn finds_its_own_child() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .expect("sleep runs");
        let me = std::process::id();
        let found = children_of(me);
        child.kill().expect("kill the sleeper");
        child.wait().expect("reap the sleeper");
        assert!(found.contains(&child.id()), "{found:?}");
        assert!(Memory::of(me).expect("own smaps").rss > 0);
        assert_ne!(cpus_allowed(), "unknown");
    }
}
