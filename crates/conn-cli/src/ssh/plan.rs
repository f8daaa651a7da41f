//! What a parsed `conn ssh` line asks for, decided the way ssh would settle its options: a
//! command (or subsystem) a pooled master can serve, with the options that make up the
//! master's identity, or a hand-over to the real ssh and why.
//!
//! ssh settles each option by its own rule, and so does this module: a command-line flag
//! overrides what came before it (`-T` after `-t`), a `-o Key=Value` counts only when nothing
//! has set that key yet, and the user and port go to whichever of `-l`/`-p`, `-o User`/`-o
//! Port`, and the destination comes first.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use super::args::{SshLine, SshOpt};

/// How loud `conn ssh` is about itself, as ssh's `-q`, `-v` and `-E` set it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Log {
    /// `-q` (or `LogLevel` QUIET/FATAL): conn prints nothing of its own.
    pub quiet: bool,
    /// `-v` given (debug level): conn says what it does (a hand-over and why).
    pub verbose: bool,
    /// `-E FILE`: conn's messages are appended there instead of going to stderr.
    pub file: Option<PathBuf>,
}

/// What the pool runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Remote {
    /// The command words joined with single spaces, sent as they are.
    Command(OsString),
    /// `-s`: a subsystem by this name.
    Subsystem(OsString),
}

/// A line the pool serves: everything the master and the session need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Serve {
    /// `[user@]host`.
    pub user_host: String,
    /// `-p`, `-o Port` or the URI's port.
    pub port: Option<u16>,
    /// `-F` (the last one).
    pub ssh_config: Option<PathBuf>,
    /// `-c` (the last one); conn's default cipher when `None`.
    pub cipher: Option<String>,
    /// How many `-v` (at most 3): the master's log and an `ssh -S` client get them.
    pub verbose: u8,
    /// The options that shape the master, in order and each one word (`-C`, `-i/abs/key`,
    /// `-oCompression=yes`): part of the master's identity.
    pub identity: Vec<String>,
    /// The command or subsystem.
    pub remote: Remote,
    /// `-n`: stdin is `/dev/null`.
    pub stdin_null: bool,
    /// `-o BatchMode=yes` given: nothing may prompt (conn then never hands a master that
    /// could not start over to ssh).
    pub batch_mode: bool,
    /// conn's own messages.
    pub log: Log,
}

/// The decision for a parsed line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The pool serves it.
    Serve(Box<Serve>),
    /// Real ssh runs it, for this reason (said with `-v`).
    Handover {
        /// Why a pooled session cannot serve it.
        reason: String,
        /// conn's messages.
        log: Log,
    },
}

/// ssh's log level as `-q`, `-v` and `-o LogLevel` leave it (ssh.c: `-q` and `-v` set it,
/// `-v` again raises it, `-o LogLevel` only fills it when unset).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Level {
    Quiet,
    Info,
    Debug(u8),
}

/// The settings whose last word ssh takes from its flags and whose first from `-o`.
#[derive(Default)]
struct State {
    level: Option<Level>,
    debug_flag: bool,
    tty: Option<bool>,
    agent: Option<bool>,
    x11: Option<bool>,
    stdin_null: Option<bool>,
    user: Option<OsString>,
    port: Option<Result<u16, String>>,
    remote_command: Option<bool>,
    batch_mode: Option<bool>,
}

/// Decides what to do with `line`; `stdin_is_terminal` tells an interactive login apart.
pub fn decide(line: &SshLine, stdin_is_terminal: bool) -> Decision {
    let mut d = Decider::default();
    let (before, after): (Vec<&SshOpt>, Vec<&SshOpt>) =
        line.options.iter().partition(|o| !o.after_destination);
    for opt in before {
        d.apply(opt);
    }
    // The destination's user and port count where it stands: after round one's options.
    let dest = &line.destination;
    if let Some(user) = &dest.user {
        d.st.user.get_or_insert(user.clone());
    }
    if let Some(p) = dest.port {
        d.st.port.get_or_insert(Ok(p));
    }
    for opt in after {
        d.apply(opt);
    }
    let level = d.st.level.unwrap_or(Level::Info);
    let log = Log {
        quiet: matches!(level, Level::Quiet),
        verbose: matches!(level, Level::Debug(_)),
        file: d.log_file.take(),
    };
    match d.finish(line, stdin_is_terminal) {
        Ok(mut serve) => {
            serve.log = log;
            Decision::Serve(Box::new(serve))
        }
        Err(reason) => Decision::Handover { reason, log },
    }
}

/// A port as ssh's `a2port` reads it, numbers only (a service name goes to ssh).
fn port(value: &OsString) -> Result<u16, String> {
    value
        .to_str()
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|&p| p > 0)
        .ok_or_else(|| format!("port {:?} is not a number from 1 to 65535", value))
}

/// The keyword and value of an `-o` option: `Key=Value`, `Key Value` or `Key = Value`.
fn key_value(option: &str) -> (String, String) {
    let option = option.trim_start();
    let end = option
        .find(|c: char| c == '=' || c.is_whitespace())
        .unwrap_or(option.len());
    let key = option[..end].to_ascii_lowercase();
    let rest = option[end..].trim_start();
    let rest = rest.strip_prefix('=').unwrap_or(rest).trim();
    let value = rest
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(rest);
    (key, value.to_string())
}

/// ssh's yes/no words (`true`/`false` too), `None` for anything else.
fn yes_no(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "yes" | "true" => Some(true),
        "no" | "false" => Some(false),
        _ => None,
    }
}

#[derive(Default)]
struct Decider {
    st: State,
    identity: Vec<String>,
    ssh_config: Option<PathBuf>,
    cipher: Option<String>,
    verbose: u8,
    log_file: Option<PathBuf>,
    subsystem: bool,
    /// The first reason to hand over.
    handover: Option<String>,
}

impl Decider {
    fn note(&mut self, why: impl Into<String>) {
        self.handover.get_or_insert_with(|| why.into());
    }

    /// One option word for the master's identity, `-<letter><value>`.
    fn word(&mut self, letter: char, text: Option<&str>) {
        match text {
            Some(v) => self.identity.push(format!("-{letter}{v}")),
            None => self.note(format!("the argument of -{letter} is not UTF-8")),
        }
    }

    fn apply(&mut self, opt: &SshOpt) {
        let value = opt.value.clone().unwrap_or_default();
        let text = value.to_str();
        let letter = opt.letter as char;
        let st = &mut self.st;
        match opt.letter {
            b'2' | b'P' => {} // ignored by ssh itself
            b'4' | b'6' | b'C' | b'g' | b'k' | b'K' => self.identity.push(format!("-{letter}")),
            b'b' | b'B' | b'I' | b'J' | b'm' => self.word(letter, text),
            b'i' => match text {
                // The master starts from this directory, but its identity must not depend on
                // it: a relative key path is made absolute.
                Some(p) if !p.starts_with('~') => match std::path::absolute(p) {
                    Ok(abs) => self.word(letter, abs.to_str()),
                    Err(e) => self.note(format!("identity file {p:?}: {e}")),
                },
                _ => self.word(letter, text),
            },
            b'c' => match text {
                Some(v) => self.cipher = Some(v.to_string()),
                None => self.note("the cipher of -c is not UTF-8"),
            },
            b'F' => self.ssh_config = Some(PathBuf::from(&value)),
            b'l' => {
                st.user.get_or_insert(value);
            }
            b'p' => {
                st.port.get_or_insert_with(|| port(&value));
            }
            b'E' => self.log_file = Some(PathBuf::from(&value)),
            b'n' => st.stdin_null = Some(true),
            b'q' => st.level = Some(Level::Quiet),
            b'v' => {
                self.verbose = (self.verbose + 1).min(3);
                st.level = Some(match (st.debug_flag, st.level) {
                    (true, Some(Level::Debug(n))) => Level::Debug((n + 1).min(3)),
                    // After a -q, a second -v leaves the level as -q set it.
                    (true, Some(other)) => other,
                    _ => Level::Debug(1),
                });
                st.debug_flag = true;
            }
            b't' => st.tty = Some(true),
            b'T' => st.tty = Some(false),
            b'a' => st.agent = Some(false),
            b'A' => st.agent = Some(true),
            b'x' => st.x11 = Some(false),
            b'X' | b'Y' => st.x11 = Some(true),
            b's' => self.subsystem = true,
            b'e' | b'S' => {} // a terminal's escape character; the control path is conn's
            b'o' => match text {
                Some(v) => self.o_option(v),
                None => self.note("an -o option is not UTF-8"),
            },
            b'1' => self.note("-1 asks for SSH protocol 1"),
            b'f' => self.note("-f puts ssh in the background after authentication"),
            b'y' => self.note("-y sends ssh's messages to syslog"),
            b'G' => self.note("-G prints ssh's configuration"),
            b'V' => self.note("-V prints ssh's version"),
            b'O' => self.note("-O sends a control command to a master"),
            b'Q' => self.note("-Q queries ssh's algorithms"),
            b'M' => self.note("-M makes ssh a master itself"),
            b'N' => self.note("-N runs no command (forwarding only)"),
            b'L' | b'R' | b'D' => self.note(format!("-{letter} forwards a port")),
            b'W' => self.note("-W forwards stdin and stdout to a port"),
            b'w' => self.note("-w forwards a tunnel device"),
            _ => self.note(format!("-{letter} is an option conn does not know")),
        }
    }

    /// One `-o` option: a session's own (dropped, or a setting of this session), one a pooled
    /// session cannot serve (a hand-over), or one of the master's identity.
    fn o_option(&mut self, option: &str) {
        let (key, value) = key_value(option);
        let flag = yes_no(&value);
        let st = &mut self.st;
        match key.as_str() {
            // Only this session's, or conn's to decide: never a reason for another master.
            "permitlocalcommand"
            | "clearallforwardings"
            | "controlmaster"
            | "controlpath"
            | "controlpersist"
            | "escapechar" => {}
            "batchmode" => {
                st.batch_mode.get_or_insert(flag == Some(true));
            }
            "loglevel" => {
                let level = match value.to_ascii_uppercase().as_str() {
                    "QUIET" | "FATAL" => Level::Quiet,
                    v if v.starts_with("DEBUG") => Level::Debug(1),
                    _ => Level::Info,
                };
                st.level.get_or_insert(level);
            }
            "requesttty" => {
                st.tty.get_or_insert(matches!(
                    value.to_ascii_lowercase().as_str(),
                    "yes" | "true" | "force"
                ));
            }
            "forwardagent" => {
                // A path or an environment variable names an agent to forward, too.
                st.agent.get_or_insert(flag != Some(false));
            }
            "forwardx11" => {
                st.x11.get_or_insert(flag == Some(true));
            }
            "stdinnull" => {
                st.stdin_null.get_or_insert(flag == Some(true));
            }
            "remotecommand" => {
                if *st
                    .remote_command
                    .get_or_insert(!value.eq_ignore_ascii_case("none"))
                {
                    self.note("RemoteCommand replaces the command");
                }
            }
            "user" => {
                st.user.get_or_insert(OsString::from(value));
            }
            "port" => {
                st.port.get_or_insert_with(|| port(&OsString::from(&value)));
            }
            "forkafterauthentication" if flag != Some(false) => {
                self.note("ForkAfterAuthentication puts ssh in the background")
            }
            "sessiontype" if !value.eq_ignore_ascii_case("default") => self.note(format!(
                "SessionType {value} asks for no command or a subsystem"
            )),
            "tunnel" if flag != Some(false) => self.note("Tunnel forwards a tunnel device"),
            "localforward" | "remoteforward" | "dynamicforward" => {
                self.note(format!("{option:?} forwards a port"))
            }
            "forkafterauthentication" | "sessiontype" | "tunnel" => {}
            _ => self.identity.push(format!("-o{option}")),
        }
    }

    /// The served line, or why it must be handed over.
    fn finish(&mut self, line: &SshLine, stdin_is_terminal: bool) -> Result<Serve, String> {
        if let Some(reason) = self.handover.take() {
            return Err(reason);
        }
        let st = &self.st;
        if st.tty == Some(true) {
            return Err(
                "a terminal is asked for (-t or RequestTTY), which a pooled session \
                        does not give"
                    .into(),
            );
        }
        if st.agent == Some(true) {
            return Err("agent forwarding is asked for (-A or ForwardAgent)".into());
        }
        if st.x11 == Some(true) {
            return Err("X11 forwarding is asked for (-X, -Y or ForwardX11)".into());
        }
        if line.command.is_empty() {
            return Err(if self.subsystem {
                "-s without a subsystem name".into()
            } else if stdin_is_terminal {
                "no command: an interactive login".into()
            } else {
                "no command: a login shell that reads its commands from stdin".into()
            });
        }
        let mut joined = Vec::new();
        for (i, word) in line.command.iter().enumerate() {
            if i > 0 {
                joined.push(b' ');
            }
            joined.extend_from_slice(word.as_bytes());
        }
        if joined.is_empty() {
            return Err("an empty command: ssh opens a login shell for it".into());
        }
        let joined = <OsString as std::os::unix::ffi::OsStringExt>::from_vec(joined);
        let remote = if self.subsystem {
            if joined.as_bytes().iter().any(u8::is_ascii_whitespace) {
                return Err(format!("subsystem name {joined:?} holds a space"));
            }
            Remote::Subsystem(joined)
        } else {
            Remote::Command(joined)
        };
        let port = match &st.port {
            Some(Ok(p)) => Some(*p),
            Some(Err(why)) => return Err(why.clone()),
            None => None,
        };
        let host = line.destination.host.to_str();
        let user = st.user.as_ref().map(|u| u.to_str());
        let user_host = match (user, host) {
            (_, None) | (Some(None), _) => {
                return Err("the destination is not UTF-8".into());
            }
            (Some(Some(u)), Some(h)) => format!("{u}@{h}"),
            (None, Some(h)) => h.to_string(),
        };
        if let Err(e) = conn_core::UserHost::parse(&user_host) {
            return Err(format!("the destination is not one conn takes: {e}"));
        }
        Ok(Serve {
            user_host,
            port,
            ssh_config: self.ssh_config.take(),
            cipher: self.cipher.take(),
            verbose: self.verbose,
            identity: std::mem::take(&mut self.identity),
            remote,
            stdin_null: st.stdin_null == Some(true),
            batch_mode: st.batch_mode == Some(true),
            log: Log::default(),
        })
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
