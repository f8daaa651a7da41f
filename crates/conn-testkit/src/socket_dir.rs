//! A socket directory for a test: short and private, as conn-lease demands.

/// A fresh directory for control sockets: in /tmp, so that its paths stay well under the Unix
/// socket path limit, and mode 0700, as conn-lease demands of a socket root that exists.
pub fn socket_dir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new()
        .prefix("cs")
        .tempdir_in("/tmp")
        .expect("a temporary directory in /tmp");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
        .expect("mode 0700 on a directory of our own");
    dir
}
