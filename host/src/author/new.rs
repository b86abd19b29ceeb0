//! `switchyard policy new DIR [--name NAME]`: a policy crate that builds on its own.

use std::path::{Path, PathBuf};

use super::files::{crate_files, type_name};
use super::AuthorError;

/// What [`new_crate`] made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCrate {
    /// The crate's folder.
    pub dir: PathBuf,
    /// The package name, also the policy's name as the hub reports it.
    pub name: String,
    /// The policy's Rust type in `src/lib.rs`.
    pub type_name: String,
    /// The files written, relative to `dir`.
    pub files: Vec<&'static str>,
}

/// Names cargo refuses for a package or that would shadow a crate the policy needs.
const RESERVED: &[&str] = &[
    "std",
    "core",
    "alloc",
    "proc_macro",
    "proc-macro",
    "test",
    "switchyard-policy-sdk",
    "switchyard_policy_sdk",
];

/// Rust keywords, which cargo refuses as package names.
const KEYWORDS: &[&str] = &[
    "as", "async", "await", "break", "const", "continue", "crate", "dyn", "else", "enum", "extern",
    "false", "fn", "for", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub",
    "ref", "return", "self", "static", "struct", "super", "trait", "true", "type", "unsafe", "use",
    "where", "while", "abstract", "become", "box", "do", "final", "gen", "macro", "override",
    "priv", "try", "typeof", "unsized", "virtual", "yield",
];

/// The longest name accepted: the hub refuses a policy name over 64 bytes.
const MAX_NAME_LEN: usize = 64;

/// Accepts a name that is at once a cargo package name, a Rust identifier once `-` becomes `_`,
/// and a policy name the hub reports as it is.
pub fn validate_name(name: &str) -> Result<(), AuthorError> {
    let invalid = |why| AuthorError::InvalidName {
        name: name.to_string(),
        why,
    };
    if name.is_empty() {
        return Err(invalid("it is empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(invalid("it is longer than 64 characters"));
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(invalid("it does not start with a lowercase letter"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    {
        return Err(invalid(
            "it has a character other than a-z, 0-9, `-` and `_`",
        ));
    }
    if RESERVED.contains(&name) {
        return Err(invalid("it is the name of a crate the policy builds with"));
    }
    if KEYWORDS.contains(&name) {
        return Err(invalid("it is a Rust keyword"));
    }
    Ok(())
}

/// Writes a new policy crate into `dir`, which must be missing or empty. Its name is `name`, or
/// else the folder's name. Nothing is written unless the name is valid and the folder usable.
pub fn new_crate(dir: &Path, name: Option<&str>) -> Result<NewCrate, AuthorError> {
    let name = match name {
        Some(name) => name.to_string(),
        None => folder_name(dir)?,
    };
    validate_name(&name)?;
    check_empty(dir)?;

    let mut written = Vec::new();
    for file in crate_files(&name) {
        let path = dir.join(file.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| AuthorError::Io {
                what: "create the folder",
                path: parent.to_path_buf(),
                source,
            })?;
        }
        std::fs::write(&path, file.contents).map_err(|source| AuthorError::Io {
            what: "write",
            path: path.clone(),
            source,
        })?;
        written.push(file.path);
    }
    Ok(NewCrate {
        dir: dir.to_path_buf(),
        type_name: type_name(&name),
        name,
        files: written,
    })
}

/// The folder's last component, when it is a valid name; else an error that says to pass one.
fn folder_name(dir: &Path) -> Result<String, AuthorError> {
    let absolute = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let name = absolute
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| AuthorError::NoNameFromFolder(dir.to_path_buf()))?;
    validate_name(name).map_err(|_| AuthorError::NoNameFromFolder(dir.to_path_buf()))?;
    Ok(name.to_string())
}

/// A folder that is missing (it is created) or empty is fine; anything else is refused, so no
/// file of the author's is ever overwritten.
fn check_empty(dir: &Path) -> Result<(), AuthorError> {
    match std::fs::metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(AuthorError::Io {
            what: "look at",
            path: dir.to_path_buf(),
            source,
        }),
        Ok(meta) if !meta.is_dir() => Err(AuthorError::NotAFolder(dir.to_path_buf())),
        Ok(_) => {
            let mut entries = std::fs::read_dir(dir).map_err(|source| AuthorError::Io {
                what: "list",
                path: dir.to_path_buf(),
                source,
            })?;
            match entries.next() {
                None => Ok(()),
                Some(_) => Err(AuthorError::NotEmpty(dir.to_path_buf())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::TempDir;

    #[test]
    fn names_are_validated_with_the_reason() {
        for good in ["fifo", "my-fifo", "a_b2", &"x".repeat(64)] {
            validate_name(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for (bad, why) in [
            ("", "empty"),
            ("My", "lowercase letter"),
            ("1fifo", "lowercase letter"),
            ("-x", "lowercase letter"),
            ("fi fo", "a-z, 0-9"),
            ("fifo.wasm", "a-z, 0-9"),
            ("fïfo", "a-z, 0-9"),
            ("test", "crate the policy builds with"),
            ("switchyard-policy-sdk", "crate the policy builds with"),
            ("loop", "keyword"),
            (&"x".repeat(65), "longer than 64"),
        ] {
            let err = validate_name(bad).expect_err(bad).to_string();
            assert!(err.contains(why), "{bad}: {err}");
            assert!(err.contains(&format!("`{bad}`")), "{err}");
        }
    }

    #[test]
    fn writes_a_crate_into_a_missing_or_empty_folder_only() {
        let tmp = TempDir::new("policy-new");
        std::fs::create_dir_all(&tmp.0).unwrap();
        let dir = tmp.0.join("my-fifo");
        let made = new_crate(&dir, None).expect("a new folder");
        assert_eq!(made.name, "my-fifo");
        assert_eq!(made.type_name, "MyFifo");
        for file in &made.files {
            assert!(dir.join(file).is_file(), "{file}");
        }
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        assert!(manifest.contains("name = \"my-fifo\""));

        // Not empty now: refused, and nothing is touched.
        let err = new_crate(&dir, Some("other")).unwrap_err();
        assert!(matches!(err, AuthorError::NotEmpty(_)), "{err}");
        assert_eq!(
            std::fs::read_to_string(dir.join("Cargo.toml")).unwrap(),
            manifest
        );

        // An empty folder that exists is fine; --name wins over the folder's name.
        let empty = tmp.0.join("Empty Folder");
        std::fs::create_dir(&empty).unwrap();
        assert!(matches!(
            new_crate(&empty, None),
            Err(AuthorError::NoNameFromFolder(_))
        ));
        assert_eq!(new_crate(&empty, Some("fair2")).unwrap().name, "fair2");

        // A file is not a folder; an invalid name writes nothing.
        let file = tmp.0.join("file");
        std::fs::write(&file, "x").unwrap();
        assert!(matches!(
            new_crate(&file, Some("x")),
            Err(AuthorError::NotAFolder(_))
        ));
        let untouched = tmp.0.join("untouched");
        assert!(new_crate(&untouched, Some("Bad")).is_err());
        assert!(!untouched.exists());
    }
}
