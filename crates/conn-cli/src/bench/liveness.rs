//! Liveness of one warm master: the refresh fast path and its in-process probe against a
//! spawned `ssh -O check`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use conn_core::{Connection, ConnectionPool, SimpleJob};
use conn_openssh::OpenSsh;

use super::stats::{median, ratio};
use super::{COMMAND_TIMEOUT, interrupted};
use crate::output::{Failure, one_line};
use crate::signals;

/// One kind of liveness check, a row of the liveness section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// `Connection::refresh` taking the fast path (lock, age check, probe), right after a
    /// spawned `ssh -O check`.
    FastPathCold,
    /// The same, right after a probe.
    FastPathWarm,
    /// `OpenSshConnection::master_is_listening` (the probe alone), right after a spawned
    /// `ssh -O check`.
    ProbeCold,
    /// The same, right after a refresh fast path.
    ProbeWarm,
    /// A spawned `ssh <options> -S <socket> -O check <host>`.
    SpawnedSsh,
    /// `OpenSshConnection::master_still_serving`: the clean-end check that ends every session
    /// (the master's `/proc` entry and a probe), right after a probe.
    CleanEnd,
}

impl Check {
    /// Every check, in table order.
    pub const ALL: [Check; 6] = [
        Check::FastPathCold,
        Check::FastPathWarm,
        Check::ProbeCold,
        Check::ProbeWarm,
        Check::SpawnedSsh,
        Check::CleanEnd,
    ];

    /// Stable identifier for JSON.
    pub fn key(self) -> &'static str {
        match self {
            Check::FastPathCold => "refresh_fast_path_cold",
            Check::FastPathWarm => "refresh_fast_path_warm",
            Check::ProbeCold => "probe_cold",
            Check::ProbeWarm => "probe_warm",
            Check::SpawnedSsh => "ssh_check",
            Check::CleanEnd => "clean_end_check",
        }
    }

    /// The table's label.
    pub fn label(self) -> &'static str {
        match self {
            Check::FastPathCold => "refresh() fast path, cold",
            Check::FastPathWarm => "refresh() fast path, warm",
            Check::ProbeCold => "probe (master_is_listening), cold",
            Check::ProbeWarm => "probe (master_is_listening), warm",
            Check::SpawnedSsh => "ssh -O check (spawned)",
            Check::CleanEnd => "clean-end check (ends every session)",
        }
    }
}

/// Liveness of one warm master. Each round spawns an `ssh -O check`, then runs either the
/// refresh fast path then the probe, or the probe then the fast path (alternately): so each
/// in-process check is measured both "cold", right after the spawned process (as it runs in
/// practice, after the previous command), and "warm", right after the other one.
#[derive(Debug, Clone, Default)]
pub struct Liveness {
    /// [`Check::FastPathCold`], sorted.
    pub fast_path_cold: Vec<Duration>,
    /// [`Check::FastPathWarm`], sorted.
    pub fast_path_warm: Vec<Duration>,
    /// [`Check::ProbeCold`], sorted.
    pub probe_cold: Vec<Duration>,
    /// [`Check::ProbeWarm`], sorted.
    pub probe_warm: Vec<Duration>,
    /// [`Check::SpawnedSsh`], sorted.
    pub ssh_check: Vec<Duration>,
    /// [`Check::CleanEnd`], sorted.
    pub clean_end: Vec<Duration>,
}

impl Liveness {
    /// The latencies of one kind of check, sorted.
    pub fn of(&self, check: Check) -> &[Duration] {
        match check {
            Check::FastPathCold => &self.fast_path_cold,
            Check::FastPathWarm => &self.fast_path_warm,
            Check::ProbeCold => &self.probe_cold,
            Check::ProbeWarm => &self.probe_warm,
            Check::SpawnedSsh => &self.ssh_check,
            Check::CleanEnd => &self.clean_end,
        }
    }

    /// Median of `ssh -O check` over the median of `check`.
    pub fn speedup_of(&self, check: Check) -> Option<f64> {
        ratio(median(&self.ssh_check), median(self.of(check)))
    }

    /// Median of `ssh -O check` over the median of the cold refresh fast path.
    pub fn speedup(&self) -> Option<f64> {
        self.speedup_of(Check::FastPathCold)
    }
}

/// Liveness of the pool's first master, `n` times each way, interleaved: the in-process probe
/// alone, a whole `refresh()` on its fast path, and a spawned `ssh -O check`.
pub fn measure_liveness(pool: &ConnectionPool<OpenSsh>, n: usize) -> Result<Liveness, Failure> {
    let job = SimpleJob::with_timeout(COMMAND_TIMEOUT);
    let conn = pool.get(&job)?; // refreshed: the fast path is taken from here on
    let socket = conn
        .control_path()
        .ok_or_else(|| Failure::other("the pool's connections have no control socket"))?;
    // What the process back end's own liveness check spawns, from the transport itself.
    let argv = conn.check_command_line();
    let mut l = Liveness::default();
    let probe = |into: &mut Vec<Duration>| -> Result<(), Failure> {
        let t0 = Instant::now();
        let listening = conn.master_is_listening();
        into.push(t0.elapsed());
        if listening {
            Ok(())
        } else {
            Err(Failure::other(format!(
                "the master on {} stopped listening",
                socket.display()
            )))
        }
    };
    let clean_end = |into: &mut Vec<Duration>| -> Result<(), Failure> {
        let t0 = Instant::now();
        let serving = conn.master_still_serving(&job)?;
        into.push(t0.elapsed());
        if serving {
            Ok(())
        } else {
            Err(Failure::other(format!(
                "the master on {} is no longer serving",
                socket.display()
            )))
        }
    };
    // The first call may ask the master for its pid; every later one is what a session pays.
    conn.master_still_serving(&job)?;
    let fast_path = |into: &mut Vec<Duration>| -> Result<(), Failure> {
        let t0 = Instant::now();
        conn.refresh(&job)?;
        into.push(t0.elapsed());
        Ok(())
    };
    for round in 0..n {
        if signals::interrupted().is_some() {
            return Err(interrupted());
        }
        let t0 = Instant::now();
        let out = Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .output()
            .map_err(|e| Failure::other(format!("cannot run {}: {e}", argv[0].display())))?;
        l.ssh_check.push(t0.elapsed());
        if !out.status.success() {
            return Err(Failure::other(format!(
                "ssh -O check on {} failed ({}): {}",
                socket.display(),
                out.status,
                one_line(&String::from_utf8_lossy(&out.stderr))
            )));
        }
        if round % 2 == 0 {
            fast_path(&mut l.fast_path_cold)?;
            probe(&mut l.probe_warm)?;
        } else {
            probe(&mut l.probe_cold)?;
            fast_path(&mut l.fast_path_warm)?;
        }
        clean_end(&mut l.clean_end)?;
    }
    for v in [
        &mut l.fast_path_cold,
        &mut l.fast_path_warm,
        &mut l.probe_cold,
        &mut l.probe_warm,
        &mut l.ssh_check,
        &mut l.clean_end,
    ] {
        v.sort();
    }
    Ok(l)
}
