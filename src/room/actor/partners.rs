//! Accountability partners: members a program pairs (or groups in threes and fours) to check in
//! on each other week after week. A therapist saves the room's partner groups (participant ids),
//! and in a later session opens breakouts with exactly those groups in one action.
//!
//! Pairings are personal: a member is told only who their own partners are (`yourPartners`);
//! the groups go to therapists only. Saved groups are kept in the store per room, sealed like
//! agenda templates, and read back when the room starts (the room asks, the task reads); a
//! therapist's save that lands before that read wins over it.
//!
//! Owns the groups and the rule that turns them into breakouts for whoever is present (a
//! member whose partners are all absent joins another group or stays in the main room, as the
//! therapist chose). Who is present, who may save, and the breakouts themselves are the room's.

use crate::room::ParticipantId;
use crate::signal::protocol::AbsentPartners;

/// Largest partner group, and most groups a room may save.
pub(super) const MAX_GROUP: usize = 6;
pub(super) const MAX_GROUPS: usize = 25;

#[derive(Debug, Default)]
pub(super) struct Partners {
    groups: Vec<Vec<ParticipantId>>,
    /// The groups are the room's own now (read from the store, or saved by a therapist): a
    /// store read that arrives later is stale.
    settled: bool,
}

/// Whether `groups` may be saved; the message a therapist reads otherwise.
pub(super) fn check(groups: &[Vec<ParticipantId>]) -> Result<(), String> {
    if groups.len() > MAX_GROUPS {
        return Err(format!("at most {MAX_GROUPS} partner groups"));
    }
    let mut seen = std::collections::HashSet::new();
    for g in groups {
        if g.len() < 2 || g.len() > MAX_GROUP {
            return Err(format!("a partner group has 2 to {MAX_GROUP} members"));
        }
        if !g.iter().all(|p| crate::room::valid_participant_id(p.as_str())) {
            return Err("a partner group holds participant ids".into());
        }
        if let Some(p) = g.iter().find(|p| !seen.insert(*p)) {
            return Err(format!("{p} is in more than one partner group"));
        }
    }
    Ok(())
}

impl Partners {
    pub(super) fn groups(&self) -> &[Vec<ParticipantId>] {
        &self.groups
    }

    /// A therapist's save (checked with [`check`]).
    pub(super) fn set(&mut self, groups: Vec<Vec<ParticipantId>>) {
        self.groups = groups;
        self.settled = true;
    }

    /// The groups read from the store; `false` (and nothing changes) when they are stale or
    /// unreadable.
    pub(super) fn loaded(&mut self, groups: Vec<Vec<ParticipantId>>) -> bool {
        if self.settled || check(&groups).is_err() {
            return false;
        }
        self.set(groups);
        true
    }

    /// The others in `id`'s group (empty when they have none).
    pub(super) fn of(&self, id: &ParticipantId) -> Vec<ParticipantId> {
        self.groups.iter().find(|g| g.contains(id)).map(|g| g.iter().filter(|p| *p != id).cloned().collect()).unwrap_or_default()
    }

    /// The breakout groups for the members `present`: each saved group's present members;
    /// someone whose partners are all absent joins the smallest group (or, when no group has
    /// two present, the others in the same situation), or stays in the main room. Anyone
    /// present in no group stays in the main room.
    pub(super) fn plan(&self, present: &[ParticipantId], absent: AbsentPartners) -> Vec<Vec<ParticipantId>> {
        let mut groups = Vec::new();
        let mut alone = Vec::new();
        for g in &self.groups {
            let here: Vec<_> = g.iter().filter(|p| present.contains(p)).cloned().collect();
            match here.len() {
                0 => {}
                1 => alone.extend(here),
                _ => groups.push(here),
            }
        }
        if absent == AbsentPartners::StayInMain {
            return groups;
        }
        if groups.is_empty() {
            if alone.len() >= 2 {
                groups.push(alone);
            }
            return groups;
        }
        for p in alone {
            if let Some(smallest) = groups.iter_mut().min_by_key(|g| g.len()) {
                smallest.push(p);
            }
        }
        groups
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> ParticipantId {
        ParticipantId::from_trusted(s)
    }

    fn ids(v: &[&str]) -> Vec<ParticipantId> {
        v.iter().map(|s| p(s)).collect()
    }

    #[test]
    fn groups_are_checked_and_each_member_sees_only_their_own() {
        assert!(check(&[ids(&["a"])]).is_err(), "a group of one");
        assert!(check(&[ids(&["a", "b"]), ids(&["b", "c"])]).is_err(), "someone twice");
        assert!(check(&[ids(&["a", "b", "c", "d", "e", "f", "g"])]).is_err(), "too large");
        assert!(check(&[ids(&["a", "b c"])]).is_err(), "not an id");
        let mut partners = Partners::default();
        partners.set(vec![ids(&["a", "b"]), ids(&["c", "d", "e"])]);
        assert_eq!(partners.of(&p("d")), ids(&["c", "e"]));
        assert_eq!(partners.of(&p("z")), Vec::<ParticipantId>::new());
        assert!(!partners.loaded(vec![ids(&["x", "y"])]), "a save wins over a late store read");
        assert_eq!(partners.groups().len(), 2);
        let mut fresh = Partners::default();
        assert!(!fresh.loaded(vec![ids(&["x"])]), "an unreadable stored plan is refused");
        assert!(fresh.loaded(vec![ids(&["x", "y"])]));
    }

    #[test]
    fn absent_partners_join_another_group_or_stay_in_the_main_room() {
        let mut partners = Partners::default();
        partners.set(vec![ids(&["a", "b"]), ids(&["c", "d", "e"]), ids(&["f", "g"]), ids(&["h", "i"])]);
        // g and i are absent; nobody paired "z".
        let present = ids(&["z", "a", "b", "c", "d", "e", "f", "h"]);
        assert_eq!(partners.plan(&present, AbsentPartners::StayInMain), vec![ids(&["a", "b"]), ids(&["c", "d", "e"])]);
        assert_eq!(
            partners.plan(&present, AbsentPartners::JoinAnother),
            vec![ids(&["a", "b", "f", "h"]), ids(&["c", "d", "e"])],
            "each joins the smallest group at the time"
        );
        // No group has two present: those alone make one group, and one alone stays put.
        assert_eq!(partners.plan(&ids(&["a", "f", "h"]), AbsentPartners::JoinAnother), vec![ids(&["a", "f", "h"])]);
        assert!(partners.plan(&ids(&["a"]), AbsentPartners::JoinAnother).is_empty());
        assert!(partners.plan(&ids(&["z"]), AbsentPartners::StayInMain).is_empty());
    }
}
