//! External tools some tests need: skipped loudly on a developer's machine without
//! them, a failure in CI (`CI=true`).

use std::path::PathBuf;

/// The path of `name` on PATH, or `None` (after a loud message) when it is missing
/// outside CI. Panics when it is missing and `CI=true`.
pub fn require(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    });
    if found.is_none() {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true");
        assert!(!ci, "{name} is required in CI but is not installed");
        eprintln!("\n!!!! SKIPPED: {name} is not installed; install mosquitto-clients to run this test !!!!\n");
    }
    found
}
