//! `--json`: one object per host per line.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use conn_core::{Error, ExitStatus};
use conn_fleet::{HostEnd, Outcome};
use serde_json::{Value, json};

/// A host's line of `--json`: `host`, `exit_code`, `signal`, `duration_s`, `stdout`, `stderr`
/// (text when UTF-8, else `null` and the bytes in `stdout_base64`/`stderr_base64`), and
/// `failure` (`kind`, `command_ran`, `message`) or `null`.
pub fn to_json(end: &HostEnd) -> Value {
    let (exit_code, signal) = match end.status() {
        Some(ExitStatus::Code(c)) => (json!(c), Value::Null),
        Some(ExitStatus::Signal(s)) => (Value::Null, json!(s)),
        None => (Value::Null, Value::Null),
    };
    let failure = match (end.failure_kind(), end.failure()) {
        (Some(kind), Some(message)) => json!({
            "kind": kind,
            "command_ran": end.started().as_str(),
            "message": message,
        }),
        _ => Value::Null,
    };
    let mut obj = json!({
        "host": end.host.name,
        "exit_code": exit_code,
        "signal": signal,
        "duration_s": end.duration.as_secs_f64(),
        "failure": failure,
    });
    let (mut stdout, mut stderr) = match &end.gathered {
        Some(g) => (
            g.stdout.to_vec().unwrap_or_default(),
            g.stderr.to_vec().unwrap_or_default(),
        ),
        None => (Vec::new(), Vec::new()),
    };
    // What a transport failure carried (ssh's own words, held back from the stream).
    if let Outcome::Failed(e) = &end.outcome
        && let Error::Transport {
            stdout: out,
            stderr: err,
            ..
        } = &**e
    {
        stdout.extend_from_slice(out);
        stderr.extend_from_slice(err);
    }
    if let Value::Object(map) = &mut obj {
        for (key, bytes) in [("stdout", &stdout), ("stderr", &stderr)] {
            match std::str::from_utf8(bytes) {
                Ok(text) => {
                    map.insert(key.into(), json!(text));
                }
                Err(_) => {
                    map.insert(key.into(), Value::Null);
                    map.insert(format!("{key}_base64"), json!(BASE64.encode(bytes)));
                }
            }
        }
    }
    obj
}
