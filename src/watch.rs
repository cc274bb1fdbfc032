//! Reload on edit: watch the config file's directory (editors and config
//! management replace files by rename, which a watch on the file itself
//! would lose), wait for a burst of events to settle, then reload.
//!
//! The certificate and key files of the TLS listeners in force at start are
//! watched the same way (a renewal in place reloads). Other files the
//! config only refers to (`keys_file`, `tokens_file`, `secret_file`) are
//! read again on every reload but do not trigger one: send SIGHUP (or
//! `wsgate ctl reload`) after changing them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::event::ModifyKind;
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::control::{Control, Sender};

/// Watches the directory of `file` (the config) and of each of `also`
/// (certificate and key files, which certbot and cert-manager renew in
/// place); a change to any of them reloads. The watch lasts as long as the
/// returned watcher.
pub fn watch(
    file: &Path,
    also: &[PathBuf],
    debounce: Duration,
    tx: Sender,
) -> notify::Result<RecommendedWatcher> {
    let absolute = |f: &Path| std::path::absolute(f).unwrap_or_else(|_| f.to_path_buf());
    // (directory, file name) of every watched file.
    let files: Vec<(PathBuf, std::ffi::OsString)> = std::iter::once(file)
        .chain(also.iter().map(PathBuf::as_path))
        .map(|f| {
            let f = absolute(f);
            let dir = f
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from("."));
            (
                dir,
                f.file_name().map(|n| n.to_os_string()).unwrap_or_default(),
            )
        })
        .collect();
    let mut dirs: Vec<PathBuf> = files.iter().map(|(d, _)| d.clone()).collect();
    dirs.sort();
    dirs.dedup();
    // A one-slot channel: events that arrive while one is pending coalesce.
    let (seen_tx, mut seen) = mpsc::channel::<()>(1);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        // Reading a file (our own reload does) is not a change, and
        // neither is its access time moving.
        if matches!(
            event.kind,
            EventKind::Access(_) | EventKind::Modify(ModifyKind::Metadata(_))
        ) {
            return;
        }
        // Only the config file counts (by name, so a rename over it is
        // seen), and `..data`-style entries, which is how Kubernetes swaps
        // a mounted ConfigMap. Anything else in the directory (a log file,
        // say) is not a reason to reload.
        let relevant = event.paths.iter().any(|p| {
            let (Some(dir), Some(n)) = (p.parent(), p.file_name()) else {
                return false;
            };
            n.to_string_lossy().starts_with("..")
                || files
                    .iter()
                    .any(|(d, name)| d == dir && n == name.as_os_str())
        });
        if relevant {
            let _ = seen_tx.try_send(());
        }
    })?;
    for dir in &dirs {
        watcher.watch(dir, RecursiveMode::NonRecursive)?;
        tracing::info!(dir = %dir.display(), "watching for changes");
    }
    tokio::spawn(async move {
        while seen.recv().await.is_some() {
            // Wait until the directory is quiet for `debounce`.
            while let Ok(Some(())) = tokio::time::timeout(debounce, seen.recv()).await {}
            let reload = Control::Reload {
                origin: "file change",
                dry_run: false,
                reply: None,
            };
            if tx.send(reload).await.is_err() {
                break;
            }
        }
    });
    Ok(watcher)
}
