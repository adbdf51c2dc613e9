//! Sets `BADGEPULSE_COMMIT` for `badgepulse_build_info` (src/metrics.rs):
//! the variable of the same name at build time if set (a Docker build
//! passes it as a build argument), else `git rev-parse HEAD`, else
//! `unknown` (no `.git`, as in a Docker build context, or no git).

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    (out.status.success() && !text.trim().is_empty()).then(|| text.trim().to_owned())
}

fn main() {
    println!("cargo:rerun-if-env-changed=BADGEPULSE_COMMIT");
    let commit = match std::env::var("BADGEPULSE_COMMIT") {
        Ok(c) if !c.trim().is_empty() => c.trim().to_owned(),
        _ => {
            // Build again when HEAD moves: HEAD itself, the branch it
            // names (in the common dir of a worktree) and the packed refs.
            // A path that does not exist would make cargo run this again
            // on every build.
            let mut watched = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
            watched.extend(git(&["symbolic-ref", "-q", "HEAD"]));
            for path in watched {
                if let Some(p) = git(&["rev-parse", "--git-path", &path]) {
                    if Path::new(&p).exists() {
                        println!("cargo:rerun-if-changed={p}");
                    }
                }
            }
            git(&["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".into())
        }
    };
    println!("cargo:rustc-env=BADGEPULSE_COMMIT={commit}");
}
