//! One line per training session in the run folder's `sessions.jsonl`: the command, the device
//! and the machine, so that a model card can say exactly how its weights were made.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// A training session (a `ddpm train` invocation that trained at least one step).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// The command line, the program named `ddpm`.
    pub command: Vec<String>,
    /// The step it started from (0 for a new run).
    pub from_step: usize,
    /// The backend and device, e.g. `cpu (flex)` or the GPU adapter's name.
    pub device: String,
    /// The CPU model, where the system says (Linux's `/proc/cpuinfo`).
    pub cpu: Option<String>,
    /// Threads the machine offers.
    pub cpu_threads: usize,
    /// When it started, seconds since the Unix epoch.
    pub started_unix: u64,
}

impl Session {
    /// This process's session, starting at `from_step` on `device`.
    pub fn current(from_step: usize, device: &str) -> Self {
        Self {
            command: command_line(),
            from_step,
            device: device.into(),
            cpu: cpu_model(),
            cpu_threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            started_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        }
    }

    /// Appends this session to `path`.
    pub fn append_to(&self, path: &Path) -> Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("{}: cannot open", path.display()))?;
        writeln!(file, "{}", serde_json::to_string(self)?)
            .with_context(|| format!("{}: cannot write", path.display()))
    }
}

/// This process's command line as a card records it: the program named `ddpm`, and absolute
/// paths made relative to the working directory (or cut to `…/` and their last part outside
/// it), so that a card shipped with a model names no folder of the machine that made it.
pub fn command_line() -> Vec<String> {
    let cwd = std::env::current_dir().ok();
    std::iter::once("ddpm".to_string())
        .chain(
            std::env::args()
                .skip(1)
                .map(|a| portable(&a, cwd.as_deref())),
        )
        .collect()
}

/// The file or folder `path` as a card or report names it: made portable as [`command_line`]
/// says, against this process's working folder.
pub fn portable_path(path: &Path) -> String {
    let cwd = std::env::current_dir().ok();
    portable(&path.display().to_string(), cwd.as_deref())
}

/// `arg` (a path, `--flag=PATH` or `key=PATH`) with an absolute path made portable as
/// [`command_line`] says; anything else unchanged.
pub fn portable(arg: &str, cwd: Option<&Path>) -> String {
    let (prefix, value) = match arg.split_once('=') {
        Some((key, value)) if value.starts_with('/') => (format!("{key}="), value),
        _ => (String::new(), arg),
    };
    let path = Path::new(value);
    if !path.is_absolute() {
        return arg.to_string();
    }
    let shown = match cwd.and_then(|c| path.strip_prefix(c).ok()) {
        Some(rel) if rel.as_os_str().is_empty() => ".".to_string(),
        Some(rel) => rel.display().to_string(),
        None => path.file_name().map_or_else(
            || value.to_string(),
            |name| format!("…/{}", name.to_string_lossy()),
        ),
    };
    format!("{prefix}{shown}")
}

/// The sessions recorded in `path` that trained steps up to `step` (none when the file is
/// missing; unreadable lines are skipped: the file is provenance, not state).
pub fn sessions_until(path: &Path, step: usize) -> Vec<Session> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| serde_json::from_str::<Session>(line).ok())
        .filter(|s| s.from_step < step)
        .collect()
}

fn cpu_model() -> Option<String> {
    let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    text.lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, name)| name.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_round_trip_and_only_those_before_a_step_count() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sessions.jsonl");
        assert!(sessions_until(&path, 10).is_empty());
        let first = Session::current(0, "cpu (flex)");
        let second = Session {
            from_step: 8,
            ..first.clone()
        };
        first.append_to(&path).expect("append");
        second.append_to(&path).expect("append");
        assert_eq!(first.command.first().map(String::as_str), Some("ddpm"));
        assert!(first.cpu_threads >= 1);
        assert_eq!(sessions_until(&path, 10), vec![first.clone(), second]);
        assert_eq!(sessions_until(&path, 8), vec![first]);
    }

    #[test]
    fn absolute_paths_become_relative_or_lose_their_folders() {
        let cwd = Some(Path::new("/home/me/ddpm-rs"));
        let cases = [
            ("/home/me/ddpm-rs/runs/emoji", "runs/emoji"),
            ("/home/me/ddpm-rs", "."),
            ("/srv/runs/emoji-d16", "…/emoji-d16"),
            ("--init=/srv/models/m.bpk", "--init=…/m.bpk"),
            ("data.source=/home/me/ddpm-rs/data/x", "data.source=data/x"),
            ("runs/mnist", "runs/mnist"),
            ("model.dim=16", "model.dim=16"),
            ("--steps", "--steps"),
        ];
        for (arg, shown) in cases {
            assert_eq!(portable(arg, cwd), shown, "{arg}");
        }
        assert_eq!(portable("/srv/runs/x", None), "…/x");
    }
}
