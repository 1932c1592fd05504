//! `claudemesh service install|uninstall`: the broker as a hardened systemd service on a
//! VPS. Owns the unit text (systemd/claudemesh.service is its default rendering, checked by
//! a test) and the steps to put it in place: copy the binary out of home directories the
//! service cannot see, write the unit, verify it, enable and start it, wait for /health.

use std::path::{Path, PathBuf};
use std::process::Command;

pub const UNIT_NAME: &str = "claudemesh.service";
pub const DEFAULT_EXE: &str = "/usr/local/bin/claudemesh";
pub const DEFAULT_DATA_DIR: &str = "/var/lib/claudemesh";

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("cannot write {0}: {1} (run as root?)")]
    Write(String, std::io::Error),
    #[error("cannot copy {0} to {1}: {2} (run as root?)")]
    Copy(String, String, std::io::Error),
    #[error("`{0}` failed: {1}")]
    Command(String, String),
    #[error("{0}")]
    Invalid(String),
}

/// What the unit runs.
#[derive(Debug, Clone)]
pub struct UnitOptions {
    pub exe: PathBuf,
    pub listen: String,
    pub public_url: Option<String>,
    pub data_dir: PathBuf,
}

impl Default for UnitOptions {
    fn default() -> Self {
        UnitOptions {
            exe: DEFAULT_EXE.into(),
            listen: "0.0.0.0:7900".into(),
            public_url: None,
            data_dir: DEFAULT_DATA_DIR.into(),
        }
    }
}

/// `--listen` when none is given: behind a TLS proxy (https public URL) only the proxy on
/// this host needs to reach the broker.
pub fn default_listen(public_url: Option<&str>) -> &'static str {
    if public_url.is_some_and(|u| u.starts_with("https://")) {
        "127.0.0.1:7900"
    } else {
        "0.0.0.0:7900"
    }
}

/// The unit file.
pub fn unit(o: &UnitOptions) -> String {
    let mut exec = format!(
        "{} serve --listen {} --data-dir {}",
        o.exe.display(),
        o.listen,
        o.data_dir.display()
    );
    if let Some(u) = &o.public_url {
        exec.push_str(&format!(" --public-url {u}"));
    }
    // systemd creates /var/lib/<name> owned by the dynamic user (`plan` checks the prefix).
    let state_dir = o
        .data_dir
        .strip_prefix("/var/lib")
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let storage = format!("StateDirectory={state_dir}\nStateDirectoryMode=0700\n");
    format!(
        "# claudemesh broker as a systemd service (written by `claudemesh service install`).\n\
# Logs: journalctl -u claudemesh. Operator commands (mesh create, invite) run as root on\n\
# this host and find the broker through the admin socket in the data directory.\n\
[Unit]\n\
Description=claudemesh broker\n\
After=network-online.target\n\
Wants=network-online.target\n\
\n\
[Service]\n\
Type=simple\n\
ExecStart={exec}\n\
Restart=on-failure\n\
RestartSec=2\n\
DynamicUser=yes\n\
{storage}\
UMask=0077\n\
NoNewPrivileges=yes\n\
ProtectSystem=strict\n\
ProtectHome=yes\n\
PrivateTmp=yes\n\
PrivateDevices=yes\n\
ProtectKernelTunables=yes\n\
ProtectKernelModules=yes\n\
ProtectControlGroups=yes\n\
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX\n\
RestrictNamespaces=yes\n\
LockPersonality=yes\n\
MemoryDenyWriteExecute=yes\n\
SystemCallArchitectures=native\n\
LimitNOFILE=65536\n\
TimeoutStopSec=15\n\
\n\
[Install]\n\
WantedBy=multi-user.target\n"
    )
}

/// One step of an install, done or (dry run) only described.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Copy(PathBuf, PathBuf),
    WriteUnit(PathBuf),
    Remove(PathBuf),
    Run(Vec<String>),
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::Copy(a, b) => write!(f, "copy {} to {}", a.display(), b.display()),
            Step::WriteUnit(p) => write!(f, "write {}", p.display()),
            Step::Remove(p) => write!(f, "remove {}", p.display()),
            Step::Run(cmd) => write!(f, "run `{}`", cmd.join(" ")),
        }
    }
}

/// Home directories and temporary directories are invisible to the service
/// (ProtectHome=yes, PrivateTmp=yes).
pub fn hidden_from_service(p: &Path) -> bool {
    ["/home", "/root", "/run/user", "/tmp", "/var/tmp"]
        .iter()
        .any(|d| p.starts_with(d))
}

/// Characters systemd would interpret in ExecStart (quoting, specifiers, variables) or
/// that split arguments.
fn unit_safe(s: &str) -> bool {
    !s.is_empty()
        && !s.chars().any(|c| {
            c.is_whitespace() || c.is_control() || matches!(c, '%' | '$' | '"' | '\'' | '\\' | ';')
        })
}

/// The steps to install: where the binary must live, the unit, the systemctl calls.
/// `current` is this binary; `exe` an explicit path for ExecStart.
pub fn plan(
    o: &mut UnitOptions,
    current: &Path,
    exe: Option<PathBuf>,
    unit_dir: &Path,
    start: bool,
) -> Result<Vec<Step>, ServiceError> {
    if let Some(u) = &o.public_url {
        if !(u.starts_with("http://") || u.starts_with("https://"))
            || u.contains(char::is_whitespace)
        {
            return Err(ServiceError::Invalid(format!(
                "--public-url must be an http:// or https:// URL, got '{u}'"
            )));
        }
    }
    let state =
        o.data_dir.strip_prefix("/var/lib").ok().filter(|p| {
            !p.as_os_str().is_empty() && !p.components().any(|c| c.as_os_str() == "..")
        });
    if state.is_none() {
        return Err(ServiceError::Invalid(format!(
            "--data-dir must be a directory under /var/lib (systemd creates it for the service's dynamic user), got '{}'",
            o.data_dir.display()
        )));
    }
    if let Some(u) = &o.public_url {
        if !unit_safe(u) {
            return Err(ServiceError::Invalid(format!(
                "--public-url '{u}' has characters a unit file cannot carry (spaces, %, $, quotes)"
            )));
        }
    }
    if !unit_safe(&o.data_dir.display().to_string()) {
        return Err(ServiceError::Invalid(format!(
            "--data-dir '{}' has characters a unit file cannot carry",
            o.data_dir.display()
        )));
    }
    if o.listen.parse::<std::net::SocketAddr>().is_err() {
        return Err(ServiceError::Invalid(format!(
            "--listen must be an address like 0.0.0.0:7900, got '{}'",
            o.listen
        )));
    }
    let mut steps = Vec::new();
    o.exe = match exe {
        Some(e) => e,
        None if hidden_from_service(current) => {
            steps.push(Step::Copy(current.to_path_buf(), DEFAULT_EXE.into()));
            DEFAULT_EXE.into()
        }
        None => current.to_path_buf(),
    };
    if !o.exe.is_absolute() || !unit_safe(&o.exe.display().to_string()) {
        return Err(ServiceError::Invalid(format!(
            "the binary path '{}' must be absolute, without spaces, %, $ or quotes",
            o.exe.display()
        )));
    }
    // An explicit --exe in such a directory is the user's call (`service install` warns).

    steps.push(Step::WriteUnit(unit_dir.join(UNIT_NAME)));
    if start {
        steps.push(Step::Run(vec!["systemctl".into(), "daemon-reload".into()]));
        steps.push(Step::Run(vec![
            "systemctl".into(),
            "enable".into(),
            "--now".into(),
            UNIT_NAME.into(),
        ]));
    }
    Ok(steps)
}

fn run(cmd: &[String]) -> Result<(), ServiceError> {
    let out = Command::new(&cmd[0])
        .args(&cmd[1..])
        .output()
        .map_err(|e| ServiceError::Command(cmd.join(" "), e.to_string()))?;
    if !out.status.success() {
        return Err(ServiceError::Command(
            cmd.join(" "),
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    Ok(())
}

/// Carry the steps out.
pub fn apply(steps: &[Step], o: &UnitOptions) -> Result<(), ServiceError> {
    for s in steps {
        match s {
            Step::Copy(from, to) => {
                if let Some(d) = to.parent() {
                    std::fs::create_dir_all(d)
                        .map_err(|e| ServiceError::Write(d.display().to_string(), e))?;
                }
                // Copy beside, then rename: a running old binary is never half-written.
                let tmp = to.with_extension("new");
                std::fs::copy(from, &tmp).map_err(|e| {
                    ServiceError::Copy(from.display().to_string(), to.display().to_string(), e)
                })?;
                // The service's dynamic user must be able to run it, whatever the source mode.
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))
                    .map_err(|e| ServiceError::Write(tmp.display().to_string(), e))?;
                std::fs::rename(&tmp, to)
                    .map_err(|e| ServiceError::Write(to.display().to_string(), e))?;
            }
            Step::WriteUnit(p) => {
                if let Some(d) = p.parent() {
                    std::fs::create_dir_all(d)
                        .map_err(|e| ServiceError::Write(d.display().to_string(), e))?;
                }
                std::fs::write(p, unit(o))
                    .map_err(|e| ServiceError::Write(p.display().to_string(), e))?;
            }
            Step::Remove(p) => match std::fs::remove_file(p) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(ServiceError::Write(p.display().to_string(), e))
                }
                _ => {}
            },
            Step::Run(cmd) => run(cmd)?,
        }
    }
    Ok(())
}

/// `systemd-analyze verify` on a unit file, when systemd-analyze exists: `None` when it
/// does not, else its verdict (warnings included).
pub fn verify(unit_file: &Path) -> Option<Result<(), String>> {
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(unit_file)
        .output()
        .ok()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(if out.status.success() && text.trim().is_empty() {
        Ok(())
    } else {
        Err(text.trim().to_string())
    })
}

/// The steps to remove the service (the data directory is kept).
pub fn uninstall_plan(unit_dir: &Path) -> Vec<Step> {
    vec![
        Step::Run(vec![
            "systemctl".into(),
            "disable".into(),
            "--now".into(),
            UNIT_NAME.into(),
        ]),
        Step::Remove(unit_dir.join(UNIT_NAME)),
        Step::Run(vec!["systemctl".into(), "daemon-reload".into()]),
    ]
}

/// Remove the service: a unit systemd does not know (already stopped, never loaded) is
/// still removed; the first error is reported after every step was tried.
pub fn uninstall(unit_dir: &Path) -> Result<(), ServiceError> {
    let mut first = None;
    for step in uninstall_plan(unit_dir) {
        if let Err(e) = apply(std::slice::from_ref(&step), &UnitOptions::default()) {
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checked_in_unit_file_is_the_default_rendering() {
        let shipped = include_str!("../systemd/claudemesh.service");
        assert_eq!(
            shipped,
            unit(&UnitOptions::default()),
            "regenerate systemd/claudemesh.service from service::unit"
        );
    }

    #[test]
    fn a_binary_in_a_home_directory_is_copied_to_usr_local_bin() {
        let mut o = UnitOptions {
            public_url: Some("https://mesh.example.com".into()),
            ..Default::default()
        };
        o.listen = default_listen(o.public_url.as_deref()).into();
        let steps = plan(
            &mut o,
            Path::new("/root/claudemesh"),
            None,
            Path::new("/etc/systemd/system"),
            true,
        )
        .unwrap();
        assert_eq!(
            steps[0],
            Step::Copy("/root/claudemesh".into(), DEFAULT_EXE.into())
        );
        let u = unit(&o);
        assert!(u.contains("ExecStart=/usr/local/bin/claudemesh serve --listen 127.0.0.1:7900 --data-dir /var/lib/claudemesh --public-url https://mesh.example.com"), "{u}");
        assert!(u.contains("StateDirectory=claudemesh\n"));
        assert!(steps.contains(&Step::Run(vec![
            "systemctl".into(),
            "enable".into(),
            "--now".into(),
            UNIT_NAME.into()
        ])));
    }

    #[test]
    fn bad_options_are_refused() {
        let mut o = UnitOptions {
            public_url: Some("mesh.example.com".into()),
            ..Default::default()
        };
        assert!(plan(
            &mut o,
            Path::new("/usr/bin/claudemesh"),
            None,
            Path::new("/x"),
            false
        )
        .is_err());
        let mut o = UnitOptions {
            data_dir: "rel/dir".into(),
            ..Default::default()
        };
        assert!(plan(
            &mut o,
            Path::new("/usr/bin/claudemesh"),
            None,
            Path::new("/x"),
            false
        )
        .is_err());
        let mut o = UnitOptions {
            listen: "nonsense".into(),
            ..Default::default()
        };
        assert!(plan(
            &mut o,
            Path::new("/usr/bin/claudemesh"),
            None,
            Path::new("/x"),
            false
        )
        .is_err());
        let mut o = UnitOptions::default();
        assert!(plan(
            &mut o,
            Path::new("/usr/bin/claudemesh"),
            Some("relative/claudemesh".into()),
            Path::new("/x"),
            false
        )
        .is_err());
        let mut o = UnitOptions::default();
        assert!(plan(
            &mut o,
            Path::new("/usr/bin/claude mesh"),
            None,
            Path::new("/x"),
            false
        )
        .is_err());
        let mut o = UnitOptions {
            public_url: Some("https://x/%h".into()),
            ..Default::default()
        };
        assert!(plan(
            &mut o,
            Path::new("/usr/bin/claudemesh"),
            None,
            Path::new("/x"),
            false
        )
        .is_err());
    }

    #[test]
    fn the_data_dir_must_be_a_state_directory_under_var_lib() {
        for bad in ["/srv/claudemesh", "/var/lib", "/var/lib/../etc"] {
            let mut o = UnitOptions {
                data_dir: bad.into(),
                ..Default::default()
            };
            assert!(
                plan(
                    &mut o,
                    Path::new("/usr/bin/claudemesh"),
                    None,
                    Path::new("/x"),
                    false
                )
                .is_err(),
                "{bad}"
            );
        }
        let mut o = UnitOptions {
            data_dir: "/var/lib/mesh-a".into(),
            ..Default::default()
        };
        plan(
            &mut o,
            Path::new("/usr/bin/claudemesh"),
            None,
            Path::new("/x"),
            false,
        )
        .unwrap();
        assert!(unit(&o).contains("StateDirectory=mesh-a\n"));
    }
}
