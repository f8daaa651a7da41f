//! The environment a native session offers its master (`Cmd::send_env`): this process's
//! variables as `NAME=value`, the way an `ssh -S` client sends the ones its `SendEnv` names.
//! conn does not read ssh_config, so it offers them all and leaves the choice to the master,
//! which drops every variable its own `SendEnv` does not name (mux.c, `env_permitted`) before
//! anything goes to the server: the same variables reach the server as with ssh itself.

/// At most this many bytes of variables, well inside one mux frame (256 KiB): a larger
/// environment is cut (the variables past the limit are not offered) rather than refused.
const MAX_BYTES: usize = 64 * 1024;
/// The master keeps at most this many (mux.c's `MUX_MAX_ENV_VARS`).
const MAX_VARS: usize = 4096;

/// This process's variables as `NAME=value`, those that are UTF-8 and fit the bounds.
pub(super) fn offered() -> Vec<String> {
    let mut total = 0;
    let mut out = Vec::new();
    for (name, value) in std::env::vars_os() {
        let (Some(name), Some(value)) = (name.to_str(), value.to_str()) else {
            continue; // the protocol's strings are text
        };
        if name.is_empty() || name.contains('=') || out.len() >= MAX_VARS {
            continue;
        }
        let entry = format!("{name}={value}");
        if total + entry.len() + 4 > MAX_BYTES {
            tracing::debug!("environment past {MAX_BYTES} bytes not offered to the ssh master");
            break;
        }
        total += entry.len() + 4;
        out.push(entry);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_environment_is_offered_as_name_value_within_bounds() {
        let offered = super::offered();
        let path = std::env::var("PATH").expect("tests run with a PATH");
        assert!(offered.contains(&format!("PATH={path}")), "{offered:?}");
        assert!(offered.iter().map(|e| e.len() + 4).sum::<usize>() <= super::MAX_BYTES);
        assert!(
            offered
                .iter()
                .all(|e| e.split_once('=').is_some_and(|(n, _)| !n.is_empty()))
        );
    }
}
