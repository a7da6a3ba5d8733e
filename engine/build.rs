//! Embeds the git revision the engine is built from (`GRISTMILL_GIT_REVISION`, shown by
//! `--version` on every binary): `git rev-parse --short HEAD`, or "unknown" outside a
//! checkout. It re-runs only when `HEAD` itself changes (a checkout of another branch), not
//! on every commit, which would rebuild the engine and every binary linked with it; set
//! `GRISTMILL_GIT_REVISION` to override it (e.g. in a release build).

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=GRISTMILL_GIT_REVISION");
    let revision = std::env::var("GRISTMILL_GIT_REVISION")
        .ok()
        .filter(|r| !r.trim().is_empty())
        .or_else(|| git(&["rev-parse", "--short", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_owned());
    // In a worktree `.git` is a file; ask git where this checkout's HEAD is.
    if let Some(head) = git(&["rev-parse", "--git-path", "HEAD"]) {
        // Relative paths are relative to the package directory, as cargo reads them.
        let head = std::path::Path::new(&head);
        if head.exists() {
            println!("cargo:rerun-if-changed={}", head.display());
        }
    }
    println!("cargo:rustc-env=GRISTMILL_GIT_REVISION={revision}");
}

fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    (output.status.success() && !text.trim().is_empty()).then(|| text.trim().to_owned())
}
