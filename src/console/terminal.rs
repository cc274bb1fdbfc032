//! Taking and giving back the terminal: raw mode and the alternate screen
//! on the way in; on every way out (quit, error, panic, a signal) raw mode
//! off, the main screen back and the cursor shown.

use std::io::stdout;

use ratatui::crossterm::cursor::Show;
use ratatui::crossterm::event::{self, Event as TermEvent, KeyEventKind};
use ratatui::crossterm::execute;
use ratatui::DefaultTerminal;
use tokio::sync::mpsc;

use super::app::Msg;

/// How often the input thread looks whether the console has gone.
const INPUT_POLL: std::time::Duration = std::time::Duration::from_millis(200);

/// Takes the screen. A panic from here on restores the terminal first
/// (ratatui's hook), then shows the cursor (ours), then reports.
pub fn enter() -> std::io::Result<DefaultTerminal> {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let _ = execute!(stdout(), Show);
        report(info);
    }));
    ratatui::try_init().inspect_err(|_| leave())
}

/// Gives the terminal back; safe to call more than once.
pub fn leave() {
    ratatui::restore();
    let _ = execute!(stdout(), Show);
}

/// Forwards keys and resizes from a blocking thread into the channel,
/// until the channel closes.
pub fn forward_input(tx: mpsc::Sender<Msg>) {
    std::thread::spawn(move || {
        while !tx.is_closed() {
            match event::poll(INPUT_POLL) {
                Ok(false) => continue,
                Ok(true) => {}
                Err(_) => return,
            }
            let msg = match event::read() {
                Ok(TermEvent::Key(k)) if k.kind != KeyEventKind::Release => Msg::Key(k),
                Ok(TermEvent::Resize(w, h)) => Msg::Resize(w, h),
                Ok(_) => continue,
                Err(_) => return,
            };
            if tx.blocking_send(msg).is_err() {
                return;
            }
        }
    });
}
