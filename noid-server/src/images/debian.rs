//! A Debian userland as an image: `mmdebstrap` installs a suite (minbase, plus the packages
//! asked for) from a Debian mirror into a directory, which becomes the image's root.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use super::store::{io, ImageError};

/// The mirror images are installed from.
pub const MIRROR: &str = "http://deb.debian.org/debian";

/// What to install.
#[derive(Debug, Clone)]
pub struct Recipe {
    pub suite: String,
    pub packages: Vec<String>,
}

impl Recipe {
    /// Checks the names before they reach a command line.
    pub fn validate(&self) -> Result<(), ImageError> {
        let ok_suite = !self.suite.is_empty()
            && self.suite.len() <= 32
            && self
                .suite
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !ok_suite {
            return Err(ImageError::Invalid(format!(
                "{:?} is not a Debian suite name (e.g. bookworm, trixie)",
                noid::names::shorten(&self.suite)
            )));
        }
        for p in &self.packages {
            let ok = !p.is_empty()
                && p.len() <= 128
                && p.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b));
            if !ok {
                return Err(ImageError::Invalid(format!(
                    "{:?} is not a Debian package name",
                    noid::names::shorten(p)
                )));
            }
        }
        Ok(())
    }

    /// How the image's manifest names its source.
    pub fn describe(&self) -> String {
        let mut s = format!("debian {}", self.suite);
        for p in &self.packages {
            s.push_str(&format!(" +{p}"));
        }
        s
    }
}

/// Installs `recipe` into `root` (which must not exist yet); `progress` hears mmdebstrap's
/// own progress lines.
pub fn install(
    recipe: &Recipe,
    root: &Path,
    progress: &(dyn Fn(String) + Sync),
) -> Result<(), ImageError> {
    recipe.validate()?;
    let mut cmd = Command::new("mmdebstrap");
    cmd.args(["--variant=minbase", "--mode=root", "--format=directory"]);
    if !recipe.packages.is_empty() {
        cmd.arg(format!("--include={}", recipe.packages.join(",")));
    }
    cmd.arg(&recipe.suite)
        .arg(root)
        .arg(MIRROR)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(io("running mmdebstrap (install the mmdebstrap package)"))?;
    let mut errors = Vec::new();
    if let Some(stderr) = child.stderr.take() {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.starts_with("E:") || line.contains("Unable to locate package") {
                errors.push(line.trim_start_matches("E:").trim().to_string());
            }
            progress(line);
        }
    }
    let status = child.wait().map_err(io("waiting for mmdebstrap"))?;
    if !status.success() {
        let why = errors
            .iter()
            .find(|e| e.contains("Unable to locate package"))
            .or_else(|| errors.iter().find(|e| e.contains("Release")))
            .or(errors.first())
            .cloned()
            .unwrap_or_else(|| format!("mmdebstrap failed ({status})"));
        return Err(ImageError::Invalid(format!(
            "installing {}: {why}",
            recipe.describe()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_before_any_command() {
        let r = |suite: &str, packages: &[&str]| Recipe {
            suite: suite.into(),
            packages: packages.iter().map(|p| p.to_string()).collect(),
        };
        assert!(r("bookworm", &["python3", "g++", "libc6-dev"])
            .validate()
            .is_ok());
        assert!(r("", &[]).validate().is_err());
        assert!(r("bookworm; rm -rf /", &[]).validate().is_err());
        assert!(r("bookworm", &["--option"]).validate().is_err());
        assert!(r("bookworm", &["a,b"]).validate().is_err());
        assert_eq!(
            r("bookworm", &["python3", "git"]).describe(),
            "debian bookworm +python3 +git"
        );
    }
}
