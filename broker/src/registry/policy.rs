//! Operator policy from `policies/*.toml`: named assurance levels, their acr values, and which
//! authentication facts reach them. The code knows facts; only the policy names levels.

use super::{FileError, line_of};
use serde::Deserialize;
use serde_spanned::Spanned;
use std::path::{Path, PathBuf};

/// One assurance level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Level {
    pub name: String,
    /// The `acr` value put in ID tokens and accepted in `acr_values`.
    pub acr: String,
    pub requires: Requirements,
}

/// What a session's facts must show to reach a level. Every set field must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Requirements {
    /// The authentication method must be one of these (empty: any).
    pub methods: Vec<String>,
    /// The key is held in hardware (a card, a device-bound authenticator).
    pub hardware_key: bool,
    /// The holder proved knowledge of a PIN or passed user verification.
    pub user_verified: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicyFile {
    #[serde(default)]
    levels: Vec<Spanned<RawLevel>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLevel {
    name: String,
    acr: String,
    #[serde(default)]
    requires: Requirements,
}

/// Methods the broker implements; a policy naming another is refused.
pub const KNOWN_METHODS: &[&str] = &["jpki_user_auth", "jpki_signature"];

/// The validated policy set. Levels are in file order, lowest first.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub levels: Vec<Level>,
    pub sources: Vec<PathBuf>,
}

impl Policy {
    pub fn load_dir(dir: &Path) -> Result<Policy, FileError> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| FileError {
                file: dir.to_path_buf(),
                line: 0,
                reason: format!("cannot read the policy directory: {e}"),
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        let mut policy = Policy::default();
        for f in &files {
            let text = std::fs::read_to_string(f).map_err(|e| FileError {
                file: f.clone(),
                line: 0,
                reason: format!("cannot read: {e}"),
            })?;
            policy.add_file(f, &text)?;
        }
        if policy.levels.is_empty() {
            return Err(FileError {
                file: dir.to_path_buf(),
                line: 0,
                reason: "no [[levels]] defined in any policy file".into(),
            });
        }
        policy.sources = files;
        Ok(policy)
    }

    pub fn add_file(&mut self, file: &Path, text: &str) -> Result<(), FileError> {
        let raw: RawPolicyFile = toml::from_str(text).map_err(|e| FileError {
            file: file.to_path_buf(),
            line: e.span().map(|s| line_of(text, s.start)).unwrap_or(1),
            reason: e.message().trim().to_string(),
        })?;
        for l in raw.levels {
            let line = line_of(text, l.span().start);
            let l = l.into_inner();
            let err = |reason: String| FileError {
                file: file.to_path_buf(),
                line,
                reason,
            };
            if l.name.is_empty() || l.acr.is_empty() {
                return Err(err("a level needs a non-empty name and acr".into()));
            }
            if self
                .levels
                .iter()
                .any(|x| x.name == l.name || x.acr == l.acr)
            {
                return Err(err(format!(
                    "level `{}` (acr `{}`) is defined twice",
                    l.name, l.acr
                )));
            }
            for m in &l.requires.methods {
                if !KNOWN_METHODS.contains(&m.as_str()) {
                    return Err(err(format!(
                        "level `{}` names unknown method `{m}` (known: {})",
                        l.name,
                        KNOWN_METHODS.join(", ")
                    )));
                }
            }
            self.levels.push(Level {
                name: l.name,
                acr: l.acr,
                requires: l.requires,
            });
        }
        Ok(())
    }

    pub fn acr_values(&self) -> Vec<&str> {
        self.levels.iter().map(|l| l.acr.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_policy_loads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
        let p = Policy::load_dir(&dir).unwrap();
        assert!(p.levels.len() >= 2);
    }

    #[test]
    fn unknown_method_is_refused_with_line() {
        let mut p = Policy::default();
        let text = "[[levels]]\nname = \"a\"\nacr = \"a\"\n\n[[levels]]\nname = \"b\"\nacr = \"b\"\nrequires = { methods = [\"sms\"] }\n";
        let e = p.add_file(Path::new("p.toml"), text).unwrap_err();
        // The line of the offending level's [[levels]] header.
        assert_eq!(e.line, 5, "{e}");
        assert!(e.reason.contains("unknown method `sms`"), "{e}");
    }
}
