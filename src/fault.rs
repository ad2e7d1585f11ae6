//! Fault injection for the tests, compiled in only with the cargo feature
//! `fault-injection` (off by default; the shipped binaries have none of it).
//! With it, [`point`] panics when the environment variable BLACKPONY_FAULT
//! names that point, so a test can show what a bug at that moment costs:
//! the mailer's panic hook must turn it into a deferral (exit 75), never a
//! bounce. Without the feature [`point`] is empty and compiles to nothing.

/// A place a test may make panic: `panic-<name>` in BLACKPONY_FAULT. The
/// mailer's points: before-log and at-start (main.rs, both modes),
/// after-rcpt (pipe_client.rs: recipients accepted, before DATA).
#[cfg(feature = "fault-injection")]
pub fn point(name: &str) {
    if let Some(v) = std::env::var_os("BLACKPONY_FAULT") {
        if v.to_str().and_then(|v| v.strip_prefix("panic-")) == Some(name) {
            panic!("fault injected at {name} (BLACKPONY_FAULT)");
        }
    }
}

#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn point(_name: &str) {}
