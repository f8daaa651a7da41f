//! The command line of `conn ssh`, read the way OpenSSH 9.2's ssh.c reads its own: BSD getopt
//! over ssh's option letters (clustered flags, an option's argument attached or in the next
//! word, no reordering: the first word that is not an option is the destination), a second
//! round of options after the destination, then the remote command. conn's own options are
//! long ones (`--mux native`, `--socket-dir=DIR`), which ssh has none of, and come before the
//! destination.
//!
//! What ssh would refuse (an unknown letter, a missing argument, no destination, a malformed
//! `ssh://` URI) is a [`SshUsage`]: conn hands the command line to ssh, which prints its own
//! message and usage. A bad conn option is conn's own usage error.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

/// ssh's option letters (OpenSSH 9.2, ssh.c): a letter followed by `:` takes an argument.
pub const SSH_OPTSTRING: &[u8] =
    b"1246ab:c:e:fgi:kl:m:no:p:qstvxAB:CD:E:F:GI:J:KL:MNO:PQ:R:S:TVw:W:XYy";

/// One ssh option as given: its letter and, for a letter that takes one, its argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SshOpt {
    /// The option letter (`p` for `-p`).
    pub letter: u8,
    /// Its argument (`2222` of `-p2222` or `-p 2222`), for a letter that takes one.
    pub value: Option<OsString>,
    /// Whether it came after the destination (ssh's second round).
    pub after_destination: bool,
}

/// The destination, as ssh splits it: `[user@]host`, or `ssh://[user@]host[:port]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destination {
    /// The user it names, if any.
    pub user: Option<OsString>,
    /// The host (brackets of an `ssh://` host removed).
    pub host: OsString,
    /// The port of an `ssh://` URI, if it names one.
    pub port: Option<u16>,
}

/// conn's own options of `conn ssh` (all long, all before the destination).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnOptions {
    /// `--ssh-program`: the ssh client to start masters with and to hand over to.
    pub ssh_program: Option<String>,
    /// `--mux native|process`.
    pub mux: Option<String>,
    /// `--capacity N`.
    pub capacity: Option<String>,
    /// `--socket-dir DIR`.
    pub socket_dir: Option<OsString>,
    /// `--control-persist SECS`.
    pub control_persist: Option<String>,
    /// `--location src|dst`.
    pub location: Option<String>,
    /// `--exit-on-shutdown`.
    pub exit_on_shutdown: bool,
}

/// A parsed `conn ssh` command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SshLine {
    /// conn's own options.
    pub conn: ConnOptions,
    /// The words as ssh gets them: the whole line but conn's own options, for a hand-over.
    pub ssh_argv: Vec<OsString>,
    /// ssh's options, in order.
    pub options: Vec<SshOpt>,
    /// The destination.
    pub destination: Destination,
    /// The remote command's words (joined with single spaces, as ssh joins them).
    pub command: Vec<OsString>,
}

/// Why ssh itself would refuse this command line (conn hands it over, and ssh says so).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SshUsage {
    /// What is wrong, for `-v`.
    pub reason: String,
    /// The words as ssh gets them.
    pub ssh_argv: Vec<OsString>,
    /// conn's own options seen before the problem (the ssh program to hand over to).
    pub conn: ConnOptions,
    /// Whether a `-v` came before the problem (conn then says that it handed over).
    pub verbose: bool,
}

/// How reading the command line stopped short of a line to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// `--help` came before the destination: print the help, run nothing.
    Help,
    /// A conn option is unknown or lacks its value: conn's own usage error.
    Conn(String),
    /// ssh would refuse the line: hand it to ssh.
    Ssh(Box<SshUsage>),
}

/// The conn options that take a value, by name.
const VALUED: [&str; 6] = [
    "ssh-program",
    "mux",
    "capacity",
    "socket-dir",
    "control-persist",
    "location",
];

/// Whether `letter` is one of ssh's, and whether it takes an argument.
fn letter_kind(letter: u8) -> Option<bool> {
    if letter == b':' {
        return None;
    }
    let at = SSH_OPTSTRING.iter().position(|&c| c == letter)?;
    Some(SSH_OPTSTRING.get(at + 1) == Some(&b':'))
}

/// Reads `args` (the words after `conn ssh`) as ssh reads its own.
pub fn parse(args: &[OsString]) -> Result<SshLine, ParseError> {
    let mut conn = ConnOptions::default();
    let mut ssh_argv = Vec::with_capacity(args.len());
    let mut options = Vec::new();
    let mut i = 0;
    let usage = |reason: String,
                 ssh_argv: &[OsString],
                 conn: &ConnOptions,
                 options: &[SshOpt],
                 rest: &[OsString]| {
        let mut all = ssh_argv.to_vec();
        all.extend_from_slice(rest);
        ParseError::Ssh(Box::new(SshUsage {
            reason,
            ssh_argv: all,
            conn: conn.clone(),
            verbose: options.iter().any(|o| o.letter == b'v'),
        }))
    };
    // Round one: options up to the destination, conn's long ones among them.
    let mut terminated = false;
    while let Some(word) = args.get(i) {
        let bytes = word.as_bytes();
        if bytes == b"--" {
            ssh_argv.push(word.clone());
            i += 1;
            terminated = true;
            break;
        }
        if bytes.starts_with(b"--") {
            i += conn_option(&mut conn, args, i)?;
            continue;
        }
        match options_in_word(args, i, false, &mut options) {
            Ok(0) => break, // not an option: the destination
            Ok(used) => {
                ssh_argv.extend_from_slice(&args[i..i + used]);
                i += used;
            }
            Err(reason) => return Err(usage(reason, &ssh_argv, &conn, &options, &args[i..])),
        }
    }
    let Some(dest_word) = args.get(i) else {
        return Err(usage(
            "no destination".to_string(),
            &ssh_argv,
            &conn,
            &options,
            &[],
        ));
    };
    let destination = match destination(dest_word) {
        Ok(d) => d,
        Err(reason) => return Err(usage(reason, &ssh_argv, &conn, &options, &args[i..])),
    };
    ssh_argv.push(dest_word.clone());
    i += 1;
    // Round two: ssh reads options again after the destination, unless `--` ended them.
    if !terminated {
        while let Some(word) = args.get(i) {
            if word.as_bytes() == b"--" {
                ssh_argv.push(word.clone());
                i += 1;
                break;
            }
            match options_in_word(args, i, true, &mut options) {
                Ok(0) => break, // the command
                Ok(used) => {
                    ssh_argv.extend_from_slice(&args[i..i + used]);
                    i += used;
                }
                Err(reason) => return Err(usage(reason, &ssh_argv, &conn, &options, &args[i..])),
            }
        }
    }
    let command = args[i..].to_vec();
    ssh_argv.extend_from_slice(&command);
    Ok(SshLine {
        conn,
        ssh_argv,
        options,
        destination,
        command,
    })
}

/// The ssh options of `args[i]` (a cluster such as `-qT`, or `-p2222`, or `-p` with its
/// argument in the next word): how many words they took, 0 when `args[i]` is no option.
fn options_in_word(
    args: &[OsString],
    i: usize,
    after_destination: bool,
    out: &mut Vec<SshOpt>,
) -> Result<usize, String> {
    let bytes = args[i].as_bytes();
    // A word that does not start with '-', and a lone "-", are not options (BSD getopt).
    if bytes.len() < 2 || bytes[0] != b'-' {
        return Ok(0);
    }
    let mut at = 1;
    while at < bytes.len() {
        let letter = bytes[at];
        let shown = String::from_utf8_lossy(&bytes[at..at + 1]).into_owned();
        let Some(takes_value) = letter_kind(letter) else {
            return Err(format!("unknown option -- {shown}"));
        };
        if !takes_value {
            out.push(SshOpt {
                letter,
                value: None,
                after_destination,
            });
            at += 1;
            continue;
        }
        let (value, used) = if at + 1 < bytes.len() {
            (OsStr::from_bytes(&bytes[at + 1..]).to_os_string(), 1)
        } else if let Some(next) = args.get(i + 1) {
            (next.clone(), 2)
        } else {
            return Err(format!("option requires an argument -- {shown}"));
        };
        out.push(SshOpt {
            letter,
            value: Some(value),
            after_destination,
        });
        return Ok(used);
    }
    Ok(1)
}

/// One conn option at `args[i]` (`--name`, `--name=value` or `--name value`): how many words
/// it took.
fn conn_option(conn: &mut ConnOptions, args: &[OsString], i: usize) -> Result<usize, ParseError> {
    let word = args[i].as_bytes();
    let body = &word[2..];
    let (name, inline) = match body.iter().position(|&b| b == b'=') {
        Some(eq) => (&body[..eq], Some(&body[eq + 1..])),
        None => (body, None),
    };
    let name = String::from_utf8_lossy(name).into_owned();
    if inline.is_some() && matches!(name.as_str(), "help" | "exit-on-shutdown") {
        return Err(ParseError::Conn(format!("--{name} takes no value")));
    }
    match name.as_str() {
        "help" => return Err(ParseError::Help),
        "exit-on-shutdown" => {
            conn.exit_on_shutdown = true;
            return Ok(1);
        }
        n if VALUED.contains(&n) => {}
        _ => {
            return Err(ParseError::Conn(format!(
                "unknown conn option --{name}: conn ssh reads ssh's own options, and conn's \
                 long ones before the destination ({}; see `conn ssh --help`)",
                VALUED
                    .iter()
                    .map(|v| format!("--{v}"))
                    .chain(["--exit-on-shutdown".to_string()])
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    let (value, used) = match inline {
        Some(v) => (OsStr::from_bytes(v).to_os_string(), 1),
        None => match args.get(i + 1) {
            Some(v) => (v.clone(), 2),
            None => return Err(ParseError::Conn(format!("--{name} needs a value"))),
        },
    };
    if name == "socket-dir" {
        conn.socket_dir = Some(value);
        return Ok(used);
    }
    let Some(text) = value.to_str().map(str::to_string) else {
        return Err(ParseError::Conn(format!(
            "--{name} {value:?} is not valid UTF-8"
        )));
    };
    let slot = match name.as_str() {
        "ssh-program" => &mut conn.ssh_program,
        "mux" => &mut conn.mux,
        "capacity" => &mut conn.capacity,
        "control-persist" => &mut conn.control_persist,
        _ => &mut conn.location,
    };
    *slot = Some(text);
    Ok(used)
}

/// Splits a destination as ssh.c does: an `ssh://[user[;params]@]host[:port][/]` URI (user
/// URL-decoded, host checked as a domain name or address, no path), else `[user@]host` at the
/// last `@`.
pub fn destination(word: &OsStr) -> Result<Destination, String> {
    let bytes = word.as_bytes();
    let shown = word.to_string_lossy();
    let Some(rest) = bytes.strip_prefix(b"ssh://") else {
        return match bytes.iter().rposition(|&b| b == b'@') {
            Some(0) => Err(format!("destination {shown:?} has an empty user")),
            Some(at) => Ok(Destination {
                user: Some(OsString::from_vec(bytes[..at].to_vec())),
                host: OsString::from_vec(bytes[at + 1..].to_vec()),
                port: None,
            }),
            None => Ok(Destination {
                user: None,
                host: word.to_os_string(),
                port: None,
            }),
        };
    };
    let bad = |why: &str| format!("ssh URI {shown:?} {why}");
    let (user, rest) = match rest.iter().position(|&b| b == b'@') {
        Some(at) => {
            let info = &rest[..at];
            let user = &info[..info.iter().position(|&b| b == b';').unwrap_or(info.len())];
            if user.is_empty() {
                return Err(bad("has an empty user"));
            }
            let user = url_decode(user).ok_or_else(|| bad("has a malformed %-escape"))?;
            (Some(OsString::from_vec(user)), &rest[at + 1..])
        }
        None => (None, rest),
    };
    // The host: "[…]" or up to ':' or '/'.
    let (host, after) = if rest.first() == Some(&b'[') {
        let close = rest
            .iter()
            .position(|&b| b == b']')
            .ok_or_else(|| bad("has an unclosed '['"))?;
        (&rest[1..close], &rest[close + 1..])
    } else {
        let end = rest
            .iter()
            .position(|&b| b == b':' || b == b'/')
            .unwrap_or(rest.len());
        (&rest[..end], &rest[end..])
    };
    if !valid_domain(host) {
        return Err(bad("has no valid host name"));
    }
    let (port, path) = match after.first() {
        None => (None, &after[..0]),
        Some(b':') => {
            let digits = &after[1..];
            let end = digits.iter().position(|&b| b == b'/');
            let (p, path) = match end {
                Some(e) => (&digits[..e], &digits[e + 1..]),
                None => (digits, &digits[..0]),
            };
            // `host:` alone names no port; anything after the ':' must be one.
            if digits.is_empty() {
                (None, path)
            } else {
                let port = std::str::from_utf8(p)
                    .ok()
                    .and_then(|s| s.parse::<u16>().ok())
                    .filter(|&p| p > 0)
                    .ok_or_else(|| bad("has no valid port"))?;
                (Some(port), path)
            }
        }
        Some(b'/') => (None, &after[1..]),
        Some(_) => return Err(bad("has text after its ']'")),
    };
    if !path.is_empty() {
        return Err(bad("has a path, which ssh does not take"));
    }
    // As ssh does, a trailing dot goes.
    let host = host.strip_suffix(b".").unwrap_or(host);
    Ok(Destination {
        user,
        host: OsString::from_vec(host.to_vec()),
        port,
    })
}

/// ssh's `valid_domain`: a letter or digit first, then letters, digits, `.`, `-`, `_`, no
/// `..`.
fn valid_domain(host: &[u8]) -> bool {
    host.first().is_some_and(u8::is_ascii_alphanumeric)
        && host
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_'))
        && !host.windows(2).any(|w| w == b"..")
}

/// `%XX` escapes and `+` for a space, as ssh's `urldecode`.
fn url_decode(text: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = text.get(i + 1..i + 3)?;
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return None;
                }
                out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    Some(out)
}

#[cfg(test)]
#[path = "args_tests.rs"]
mod tests;
