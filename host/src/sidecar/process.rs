//! Worker processes as process groups.
//!
//! Each worker starts in a process group of its own, so a timeout or a cancel kills everything
//! it started (a shell script's children included), not just the first process. The group is
//! also marked on disk while it runs: if the sidecar itself is killed, its workers live on as
//! orphans, and the restarted sidecar kills them before running the task again, so two copies
//! of one task never run side by side.
//!
//! A mark identifies the group by more than its number, because numbers are reused: the
//! session it was started in, the leader's start time and the boot it belongs to. Only
//! processes matching all of them are treated as ours. (Linux: read from /proc. Elsewhere no
//! mark is made, and nothing is killed after a restart.)

use serde::{Deserialize, Serialize};
use std::path::Path;

/// What identifies a worker's process group across a restart of the sidecar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessMark {
    /// The process group id, which is the leader's pid.
    pub pgid: i32,
    /// The session the sidecar (and so the group) belongs to.
    pub session: i32,
    /// The leader's start time, in clock ticks since boot.
    pub start_ticks: u64,
    /// /proc/sys/kernel/random/boot_id: ticks since boot mean nothing across a reboot.
    pub boot_id: String,
}

/// The fields of /proc/PID/stat this module needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    zombie: bool,
    pgrp: i32,
    session: i32,
    start_ticks: u64,
}

/// Parses /proc/PID/stat. The command name (field 2) is in parentheses and may itself contain
/// spaces and parentheses, so the fields are counted from the last `)`.
fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state (field 3) is index 0, so field N is index N - 3.
    Some(Stat {
        zombie: matches!(*fields.first()?, "Z" | "X"),
        pgrp: fields.get(2)?.parse().ok()?,
        session: fields.get(3)?.parse().ok()?,
        start_ticks: fields.get(19)?.parse().ok()?,
    })
}

fn read_stat(pid: &str) -> Option<Stat> {
    parse_stat(&std::fs::read_to_string(Path::new("/proc").join(pid).join("stat")).ok()?)
}

fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|id| id.trim().to_owned())
}

/// The mark of a freshly started group leader.
pub fn mark(pid: u32) -> Option<ProcessMark> {
    let stat = read_stat(&pid.to_string())?;
    Some(ProcessMark {
        pgid: i32::try_from(pid).ok()?,
        session: stat.session,
        start_ticks: stat.start_ticks,
        boot_id: boot_id()?,
    })
}

/// Sends `signal` to every process of the group led by `pgid`. A group that is already gone
/// is not an error.
pub fn kill_group(pgid: u32, signal: i32) {
    let Ok(pgid) = i32::try_from(pgid) else {
        return;
    };
    if pgid <= 1 {
        return;
    }
    // SAFETY: kill(2) with a negative pid signals a process group; no memory is involved.
    unsafe {
        libc::kill(-pgid, signal);
    }
}

/// Kills what is left of a marked group (after a crash of the sidecar). Returns how many live
/// processes matched the mark.
pub fn kill_leftovers(mark: &ProcessMark) -> usize {
    if boot_id().as_deref() != Some(mark.boot_id.as_str()) {
        return 0;
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let members = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name();
            let name = name.to_str()?;
            name.bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| read_stat(name))?
        })
        .filter(|stat| {
            !stat.zombie
                && stat.pgrp == mark.pgid
                && stat.session == mark.session
                && stat.start_ticks >= mark.start_ticks
        })
        .count();
    if members > 0 {
        kill_group(mark.pgid as u32, libc::SIGKILL);
    }
    members
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_parse_even_with_odd_names() {
        let line =
            "4242 (a) b (c) S 1 4242 4100 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1 2";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                zombie: false,
                pgrp: 4242,
                session: 4100,
                start_ticks: 987654
            })
        );
        assert!(
            parse_stat("4242 (x) Z 1 4242 4100 0 -1 0 0 0 0 0 0 0 0 0 0 0 1 0 5")
                .unwrap()
                .zombie
        );
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x) S 1"), None);
    }

    #[test]
    fn our_own_process_has_a_mark() {
        if !Path::new("/proc/self/stat").exists() {
            return;
        }
        let mark = mark(std::process::id()).expect("a mark for this process");
        assert!(mark.start_ticks > 0);
        assert!(!mark.boot_id.is_empty());
    }

    #[test]
    fn leftovers_of_a_killed_sidecar_are_killed_and_nothing_else() {
        if !Path::new("/proc/self/stat").exists() {
            return;
        }
        use std::os::unix::process::CommandExt;
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .unwrap();
        let mark = mark(child.id()).unwrap();
        // A mark from another boot, or from a leader started later, matches nothing.
        let other_boot = ProcessMark {
            boot_id: "another-boot".into(),
            ..mark.clone()
        };
        assert_eq!(kill_leftovers(&other_boot), 0);
        let later = ProcessMark {
            start_ticks: mark.start_ticks + 1_000_000,
            ..mark.clone()
        };
        assert_eq!(kill_leftovers(&later), 0);
        assert!(child.try_wait().unwrap().is_none(), "still running");
        assert_eq!(kill_leftovers(&mark), 1);
        let status = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGKILL));
    }
}
