//! Reload on edit: watch the config file's directory (editors and config
//! management replace files by rename, which a watch on the file itself
//! would lose), wait for a burst of events to settle, then reload.
//!
//! Files the config only refers to (`keys_file`, `tokens_file`,
//! `secret_file`) are read again on every reload but do not trigger one:
//! send SIGHUP (or `wsgate ctl reload`) after changing them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::event::ModifyKind;
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::control::{Control, Sender};

/// Watches `file`'s directory; the watch lasts as long as the returned
/// watcher.
pub fn watch(file: &Path, debounce: Duration, tx: Sender) -> notify::Result<RecommendedWatcher> {
    let file: PathBuf = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
    let dir = file
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let name = file
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
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
            p.file_name()
                .is_some_and(|n| n == name.as_os_str() || n.to_string_lossy().starts_with(".."))
        });
        if relevant {
            let _ = seen_tx.try_send(());
        }
    })?;
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    tracing::info!(dir = %dir.display(), "watching the config directory");
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
