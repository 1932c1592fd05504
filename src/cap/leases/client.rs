//! The client side of `leases`: typed calls on [`Client`], and the path a session means.

use crate::client::{Client, ClientError};
use crate::proto::leases::{Lease, Request as Q, Response as A};
use crate::proto::{Id16, Response};
use std::path::Path;

/// A reservation's answer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Reserved {
    pub granted: bool,
    pub lease: Option<Box<Lease>>,
    pub conflicts: Vec<Lease>,
}

impl Client {
    pub async fn reserve_files(
        &self,
        paths: Vec<String>,
        exclusive: Option<bool>,
        ttl_s: Option<u64>,
        reason: &str,
    ) -> Result<Reserved, ClientError> {
        let q = Q::Reserve {
            paths,
            exclusive,
            ttl_s,
            reason: reason.to_string(),
        };
        self.call(q, |r| match r {
            Response::Leases(A::Reserve {
                granted,
                lease,
                conflicts,
            }) => Ok(Reserved {
                granted,
                lease,
                conflicts,
            }),
            r => Err(r),
        })
        .await
    }

    pub async fn release_files(
        &self,
        paths: Vec<String>,
        lease_id: Option<Id16>,
    ) -> Result<Vec<Id16>, ClientError> {
        self.call(Q::Release { paths, lease_id }, |r| match r {
            Response::Leases(A::Release { released }) => Ok(released),
            r => Err(r),
        })
        .await
    }

    pub async fn list_reservations(&self, path: Option<String>) -> Result<Vec<Lease>, ClientError> {
        self.call(Q::List { path }, |r| match r {
            Response::Leases(A::List { leases }) => Ok(leases),
            r => Err(r),
        })
        .await
    }
}

/// The directory paths are relative to: the git work tree holding `cwd`, else `cwd`.
pub fn root_of(cwd: &Path) -> &Path {
    cwd.ancestors()
        .find(|d| d.join(".git").exists())
        .unwrap_or(cwd)
}

/// A path as leases name it: relative to the project root of `cwd` when under it, so
/// sessions in the same project name a file the same way.
pub fn lease_path(cwd: &Path, p: &str) -> String {
    let path = Path::new(p);
    let root = root_of(cwd);
    let rel = if path.is_absolute() {
        path.strip_prefix(root).unwrap_or(path).to_path_buf()
    } else {
        let abs = cwd.join(path);
        abs.strip_prefix(root)
            .map(|r| r.to_path_buf())
            .unwrap_or(abs)
    };
    super::glob::normalize(&rel.to_string_lossy())
}

/// One line for a lease.
pub fn line(l: &Lease) -> String {
    format!(
        "{} {} by {} ({}){} until {}: {}",
        l.id.hex(),
        if l.exclusive { "exclusive" } else { "shared" },
        l.holder,
        l.member_name,
        if l.reason.is_empty() {
            String::new()
        } else {
            format!(" \"{}\"", l.reason)
        },
        crate::util::rfc3339(l.expires_at_ms),
        l.paths.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_paths_are_relative_to_the_project_root_whether_given_absolute_or_relative() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join(".git")).unwrap();
        std::fs::create_dir_all(d.path().join("src/cap")).unwrap();
        let cwd = d.path().join("src");
        assert_eq!(lease_path(&cwd, "cap/mod.rs"), "src/cap/mod.rs");
        let abs = d.path().join("README.md");
        assert_eq!(lease_path(&cwd, &abs.to_string_lossy()), "README.md");
        assert_eq!(lease_path(&cwd, "**/*.rs"), "src/**/*.rs");
    }
}
