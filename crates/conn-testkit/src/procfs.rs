//! Processes as `/proc` shows them: to check that a test killed, reaped or left alone exactly
//! the processes it should have.
//!
//! Every scan is a snapshot: a process may appear or vanish right after it. A process that
//! vanishes while being read is left out, never an error.

use std::collections::HashMap;
use std::fs;

/// One process, from `/proc/<pid>/stat`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proc {
    /// Its pid.
    pub pid: u32,
    /// The state letter: `R`, `S`, `D`, `T`, `Z` (zombie: exited, not yet reaped), `X` …
    pub state: char,
    /// The parent's pid.
    pub ppid: u32,
    /// The process group id.
    pub pgrp: u32,
}

impl Proc {
    /// Neither a zombie nor dead: it still runs code and holds its descriptors.
    pub fn is_live(&self) -> bool {
        self.state != 'Z' && self.state != 'X'
    }
}

/// Parses a `/proc/<pid>/stat` line: "pid (comm) state ppid pgrp …", where comm may hold
/// spaces and parentheses (hence the search for the last `)`).
fn parse_stat(pid: u32, stat: &str) -> Option<Proc> {
    let close = stat.rfind(')')?;
    let mut fields = stat[close + 1..].split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some(Proc {
        pid,
        state,
        ppid,
        pgrp,
    })
}

/// The process `pid`, or `None` when there is none (it never existed, or it was reaped).
pub fn process(pid: u32) -> Option<Proc> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(pid, &stat)
}

/// Every process on the machine (zombies included).
pub fn processes() -> Vec<Proc> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(process)
        .collect()
}

/// Whether `pid` exists and is not a zombie.
pub fn is_alive(pid: u32) -> bool {
    process(pid).is_some_and(|p| p.is_live())
}

/// Whether `pid` is gone entirely: not even a zombie awaits its reaper.
pub fn is_reaped(pid: u32) -> bool {
    process(pid).is_none()
}

/// Parent pid → pids of its live (non-zombie) children.
pub fn children_map() -> HashMap<u32, Vec<u32>> {
    let mut map: HashMap<u32, Vec<u32>> = HashMap::new();
    for p in processes().into_iter().filter(|p| p.state != 'Z') {
        map.entry(p.ppid).or_default().push(p.pid);
    }
    map
}

/// The live children of `pid`.
pub fn children(pid: u32) -> Vec<u32> {
    children_map().remove(&pid).unwrap_or_default()
}

/// Every live descendant of `root` (not `root` itself).
pub fn descendants(root: u32) -> Vec<u32> {
    let map = children_map();
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(p) = stack.pop() {
        if let Some(kids) = map.get(&p) {
            for &k in kids {
                out.push(k);
                stack.push(k);
            }
        }
    }
    out
}

/// Every process in process group `pgrp`, zombies included (check [`Proc::is_live`]).
pub fn group_members(pgrp: u32) -> Vec<Proc> {
    processes().into_iter().filter(|p| p.pgrp == pgrp).collect()
}

/// The members of group `pgrp` that are neither zombies nor dead.
pub fn live_group_members(pgrp: u32) -> Vec<Proc> {
    group_members(pgrp)
        .into_iter()
        .filter(Proc::is_live)
        .collect()
}

/// Pids of live processes whose command name (`/proc/<pid>/comm`) is `comm` and whose command
/// line contains `marker`: to find the processes a test started with a unique argument.
pub fn find(comm: &str, marker: &str) -> Vec<u32> {
    processes()
        .into_iter()
        .filter(|p| p.state != 'Z')
        .filter(|p| {
            let dir = format!("/proc/{}", p.pid);
            let name = fs::read_to_string(format!("{dir}/comm")).unwrap_or_default();
            // The command line only of a process with the right name: reading one takes the
            // process's memory lock, which a process that forks, execs or exits holds for a
            // while, so reading every process's can take seconds on a busy machine.
            name.trim() == comm && {
                let cmdline = fs::read(format!("{dir}/cmdline")).unwrap_or_default();
                String::from_utf8_lossy(&cmdline).contains(marker)
            }
        })
        .map(|p| p.pid)
        .collect()
}

/// The command name of `pid` (`/proc/<pid>/comm`), if it exists.
pub fn comm(pid: u32) -> Option<String> {
    let name = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    Some(name.trim_end().to_string())
}

/// Pids of live ssh masters whose control socket is under `dir`: every `ssh` process whose
/// command line has `-M` and `-S <dir>/…` (how conn starts one, `ssh … -S <socket> -M -N …`),
/// or that retitled itself `ssh: <dir>/… [mux]` (how a master backgrounded with a session of
/// its own shows). A master still starting (the foreground `ssh -M` before it forks to the
/// background) counts too: its parent is then the process that started it, where a
/// backgrounded master's parent is init or a subreaper.
pub fn ssh_masters(dir: &str) -> Vec<u32> {
    let under = format!("{}/", dir.trim_end_matches('/'));
    let title = format!("ssh: {under}");
    find("ssh", dir)
        .into_iter()
        .filter(|&pid| {
            let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
                return false;
            };
            // A retitled process pads its title with NULs.
            let end = cmdline.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
            let args: Vec<&[u8]> = cmdline[..end].split(|&b| b == 0).collect();
            let retitled = args.len() == 1 && {
                let line = String::from_utf8_lossy(args[0]);
                line.starts_with(&title) && line.ends_with("[mux]")
            };
            let started = args.contains(&&b"-M"[..])
                && args
                    .windows(2)
                    .any(|w| w[0] == b"-S" && w[1].starts_with(under.as_bytes()));
            retitled || started
        })
        .collect()
}

/// How many descriptors this process has open (`/proc/self/fd`). Only meaningful while no
/// other thread opens or closes descriptors.
pub fn open_fds() -> usize {
    fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or_else(|e| panic!("cannot list /proc/self/fd: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_odd_command_names_parse() {
        let p = parse_stat(42, "42 (a) b (c)) S 7 42 42 0 -1 4194560").unwrap();
        assert_eq!(
            p,
            Proc {
                pid: 42,
                state: 'S',
                ppid: 7,
                pgrp: 42
            }
        );
        assert_eq!(parse_stat(1, "1 (x"), None);
    }

    #[test]
    fn masters_are_found_by_their_command_line_and_clients_are_not() {
        // `ssh` here is a shell under that name (comm follows the name executed), which keeps
        // the arguments it was given in its command line.
        let bin = tempfile::tempdir().unwrap();
        let ssh = bin.path().join("ssh");
        std::os::unix::fs::symlink("/bin/sh", &ssh).unwrap();
        let sockets = tempfile::tempdir().unwrap();
        let dir = sockets.path().to_string_lossy().into_owned();
        let spawn = |args: &[&str]| {
            std::process::Command::new(&ssh)
                .args(["-c", "sleep 60; :"])
                .args(args)
                .spawn()
                .unwrap()
        };
        let socket = format!("{dir}/s");
        let mut master = spawn(&["-S", &socket, "-M", "-N", "h"]);
        let mut client = spawn(&["-S", &socket, "-oControlMaster=no", "h", "true"]);
        let mut other = spawn(&["-S", "/elsewhere/s", "-M", "h", &dir]);
        let found = ssh_masters(&dir);
        for child in [&mut master, &mut client, &mut other] {
            child.kill().unwrap();
            child.wait().unwrap();
        }
        assert_eq!(found, vec![master.id()]);
        assert!(comm(std::process::id()).is_some());
    }

    #[test]
    fn this_process_is_alive_and_a_child_of_its_parent() {
        let me = std::process::id();
        let p = process(me).expect("this process is in /proc");
        assert!(p.is_live());
        assert!(is_alive(me));
        assert!(children(p.ppid).contains(&me));
        assert!(descendants(p.ppid).contains(&me));
    }
}
