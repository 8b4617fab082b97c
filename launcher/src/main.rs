//! `hearth`: serves the Hearth app on loopback, and runs the engine from the command line.
//! Each command is a file in `cli/`.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    quiet_display_probe();
    cli::main()
}

/// Mesa's Vulkan drivers probe for a Wayland display when an adapter is opened, and without
/// `XDG_RUNTIME_DIR` (a server, a container, CI) print "error: XDG_RUNTIME_DIR is invalid or
/// not set" for it, although no display is needed. Give them a private one, as a login
/// session would. Runs first in `main`, before any other thread exists.
fn quiet_display_probe() {
    #[cfg(unix)]
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt};
        let uid = std::fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(0);
        let dir = std::env::temp_dir().join(format!("hearth-runtime-{uid}"));
        // Made now or by an earlier run; used only if it is this user's and private.
        let _ = std::fs::DirBuilder::new().mode(0o700).create(&dir);
        let ours = std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir() && m.uid() == uid && m.mode() & 0o077 == 0);
        if ours {
            // SAFETY: no other thread has started yet.
            unsafe { std::env::set_var("XDG_RUNTIME_DIR", &dir) };
        }
    }
}
