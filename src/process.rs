//! Process-wide protections both programs take at start.

/// No core dumps: a dump of either program would hold its private keys and
/// the session keys of every connection it was serving (SECURITY.md 4).
/// Lowering a limit always succeeds for an unprivileged process too; a
/// failure is logged, not fatal.
pub fn no_core_dumps() {
    if let Err(e) = rlimit::setrlimit(rlimit::Resource::CORE, 0, 0) {
        log::warn!("cannot turn core dumps off: {e}");
    }
}
