//! `wsgate console`: the live console over the admin socket (ratatui).
//!
//! The parts: [`app`] (the state and its one `update`), [`input`] (keys to
//! actions), [`filter`] (the `/` syntax), [`window`] (sort, filter and the
//! page), [`rates`] (per-connection rates and the sparklines), [`events`]
//! (the events pane), [`dialog`] (confirmations as data, the commands),
//! [`draw`] (pure rendering).

mod app;
mod dialog;
mod draw;
mod events;
mod filter;
mod input;
mod rates;
#[cfg(test)]
mod testdata;
mod window;
