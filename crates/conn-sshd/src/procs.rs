//! The daemon's process tree, read from `/proc`: which per-connection processes a listener has
//! forked, so that stopping it leaves none behind.
//!
//! Every scan is a snapshot: a process that vanishes while being read is left out.

use std::collections::HashMap;
use std::fs;

/// `(pid, ppid)` of every live process (zombies are left out: they run nothing and hold no
/// port). `/proc/<pid>/stat` is "pid (comm) state ppid …", where comm may hold spaces and
/// parentheses, hence the search for the last `)`.
fn parents() -> Vec<(u32, u32)> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
            let state = fields.next()?;
            let ppid = fields.next()?.parse().ok()?;
            (state != "Z").then_some((pid, ppid))
        })
        .collect()
}

fn children_map() -> HashMap<u32, Vec<u32>> {
    let mut map: HashMap<u32, Vec<u32>> = HashMap::new();
    for (pid, ppid) in parents() {
        map.entry(ppid).or_default().push(pid);
    }
    map
}

/// The live children of `pid`.
pub(crate) fn children(pid: u32) -> Vec<u32> {
    children_map().remove(&pid).unwrap_or_default()
}

/// Every live descendant of `root` (not `root` itself).
pub(crate) fn descendants(root: u32) -> Vec<u32> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_a_child_and_a_descendant_of_its_parent() {
        let me = std::process::id();
        let stat = fs::read_to_string("/proc/self/stat").unwrap();
        let ppid: u32 = stat[stat.rfind(')').unwrap() + 1..]
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        assert!(children(ppid).contains(&me));
        assert!(descendants(ppid).contains(&me));
        assert!(!descendants(me).contains(&me));
    }
}
