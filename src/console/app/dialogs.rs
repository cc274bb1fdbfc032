//! What the dialogs' keys do (filter, evict, evict matching, reload,
//! drain) and what the command connection's answers change.

use std::collections::HashSet;

use wsgate_admin_proto::Eviction;

use super::{App, Banner, Drain, BANNER_TICKS};
use crate::console::dialog::{reload_summary, Cmd, Dialog, Outcome};
use crate::console::events::Tone;
use crate::console::filter::Query;

impl App {
    pub(super) fn evict_matching(&mut self) -> Vec<Cmd> {
        let q = &self.spec.query;
        if !q.words.is_empty() {
            self.say(
                Tone::Bad,
                "E sends the filter to the daemon: use selectors only (user: ip: route: topic: idle> age> queue>), no free text",
            );
        } else if q.filter.is_empty() {
            self.say(
                Tone::Bad,
                "E evicts what the filter selects: an empty filter is refused (set one with /)",
            );
        } else {
            let filter = q.filter.clone();
            self.dialog = Some(Dialog::EvictMatching {
                filter: filter.clone(),
                text: self.filter_text.clone(),
                count: None,
                typed: String::new(),
            });
            return vec![Cmd::EvictPreview(filter)];
        }
        Vec::new()
    }

    pub(super) fn cancel(&mut self) -> Vec<Cmd> {
        match &mut self.dialog {
            Some(Dialog::Evict { typing, .. }) if *typing => *typing = false,
            // Esc in the filter prompt clears the filter.
            Some(Dialog::Filter { .. }) => return self.apply_filter(String::new()),
            _ => self.dialog = None,
        }
        Vec::new()
    }

    pub(super) fn submit(&mut self) -> Vec<Cmd> {
        match self.dialog.take() {
            Some(Dialog::Filter { input, .. }) => return self.apply_filter(input),
            // Enter ends the reason; `y` still confirms.
            Some(Dialog::Evict {
                id,
                user,
                ip,
                reason,
                typing: true,
            }) => {
                self.dialog = Some(Dialog::Evict {
                    id,
                    user,
                    ip,
                    reason,
                    typing: false,
                })
            }
            Some(Dialog::EvictMatching {
                filter,
                count: Some(n),
                typed,
                text,
            }) => {
                if typed.trim() == n.to_string() || typed.trim() == "yes" {
                    self.say(Tone::Normal, &format!("evicting {n} connection(s)…"));
                    return vec![Cmd::Evict(Eviction::matching(filter))];
                }
                self.dialog = Some(Dialog::EvictMatching {
                    filter,
                    text,
                    count: Some(n),
                    typed: String::new(),
                });
            }
            Some(Dialog::Drain { typed }) if typed.trim() == "drain" => {
                self.drain = Drain::Following;
                self.say(Tone::Warn, "drain requested");
                return vec![Cmd::Drain];
            }
            Some(Dialog::Drain { .. }) => {
                self.dialog = Some(Dialog::Drain {
                    typed: String::new(),
                })
            }
            other => self.dialog = other,
        }
        Vec::new()
    }

    pub(super) fn apply_filter(&mut self, text: String) -> Vec<Cmd> {
        match Query::parse(&text) {
            Ok(query) => {
                self.dialog = None;
                self.filter_text = text;
                self.spec.query = query;
                self.members.clear();
                let mut cmds: Vec<Cmd> = self.ask_members_and_refresh();
                cmds.extend(self.reordered());
                cmds
            }
            Err(e) => {
                self.dialog = Some(Dialog::Filter {
                    input: text,
                    error: Some(e),
                });
                Vec::new()
            }
        }
    }

    pub(super) fn yes(&mut self) -> Vec<Cmd> {
        match &self.dialog {
            Some(Dialog::Evict { .. }) => self.yes_evict(),
            Some(Dialog::Reload { preview: Some(_) }) => {
                self.dialog = None;
                self.say(Tone::Normal, "reloading…");
                vec![Cmd::Reload { dry_run: false }]
            }
            _ => Vec::new(),
        }
    }

    pub(super) fn yes_evict(&mut self) -> Vec<Cmd> {
        let Some(Dialog::Evict { id, reason, .. }) = self.dialog.take() else {
            return Vec::new();
        };
        let mut which = Eviction::conn(id);
        if !reason.trim().is_empty() {
            which = which.with_reason(reason.trim());
        }
        self.say(Tone::Normal, &format!("evicting connection {id}…"));
        vec![Cmd::Evict(which)]
    }

    pub(super) fn outcome(&mut self, outcome: Outcome) -> Vec<Cmd> {
        match outcome {
            Outcome::Detail(Ok(d)) if Some(d.conn.row.id) == self.selected => self.detail = Some(d),
            Outcome::Detail(_) => {}
            Outcome::Members(topic, Ok(ids)) => {
                self.members
                    .insert(topic, ids.into_iter().collect::<HashSet<_>>());
                return self.refresh();
            }
            Outcome::Members(_, Err(e)) => self.say(Tone::Bad, &e),
            Outcome::Preview(Ok(n)) => match &mut self.dialog {
                Some(Dialog::EvictMatching { .. }) if n == 0 => {
                    self.dialog = None;
                    self.say(Tone::Normal, "no connection matches the filter");
                }
                Some(Dialog::EvictMatching { count, .. }) => *count = Some(n),
                _ => {}
            },
            Outcome::Evicted(Ok(r)) => {
                let ids: Vec<String> = r.ids.iter().map(u64::to_string).collect();
                let text = format!("evicted {} connection(s): {}", r.evicted, ids.join(" "));
                self.say(Tone::Normal, &text);
            }
            Outcome::Reload(Ok(r)) if r.dry_run => {
                if let Some(Dialog::Reload { preview }) = &mut self.dialog {
                    *preview = Some(r);
                }
            }
            Outcome::Reload(Ok(r)) => {
                let mut lines = vec!["reloaded".to_string()];
                lines.extend(reload_summary(&r));
                self.banner(Tone::Normal, lines);
            }
            Outcome::Drain(Ok(())) => self.say(Tone::Warn, "draining"),
            Outcome::DrainTimeout(Ok(t)) => self.drain_timeout_s = t,
            // Only the time left is missing.
            Outcome::DrainTimeout(Err(_)) => {}
            Outcome::Cluster(answer) => self.cluster_answered(answer),
            Outcome::Preview(Err(e)) | Outcome::Evicted(Err(e)) | Outcome::Drain(Err(e)) => {
                self.dialog = None;
                self.say(Tone::Bad, &e);
            }
            Outcome::Reload(Err(e)) => {
                self.dialog = None;
                let mut lines = vec!["reload refused, nothing changed:".to_string()];
                lines.extend(e.lines().map(str::to_string));
                self.banner(Tone::Bad, lines);
            }
        }
        Vec::new()
    }

    pub(super) fn say(&mut self, tone: Tone, text: &str) {
        self.banner(tone, vec![text.to_string()]);
    }

    pub(super) fn banner(&mut self, tone: Tone, lines: Vec<String>) {
        let ttl = (tone == Tone::Normal).then_some(BANNER_TICKS);
        self.banner = Some(Banner { tone, lines, ttl });
    }
}
