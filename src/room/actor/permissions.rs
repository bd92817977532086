//! Who may send what: the one table of role rules. Each client message (and the few cases
//! whose arguments or target change who may send them, such as a hard mute or a final decline)
//! is one [`Row`] naming the roles allowed to send it; `Room::client` checks it before anything
//! else, and a refusal is `forbidden` with nothing changed. `docs/protocol.md` prints this
//! table ([`markdown`]; `tests/suite/protocol_docs.rs` keeps the two equal).
//!
//! Owns only the rule "may this role send this"; it must not look at the room's state beyond
//! the roles of the sender and of a private message's recipient. Rules that depend on state
//! (admission, a breakout being open, a screen share allowed, rate limits) stay with the
//! feature that owns that state.
//!
//! A deployment may take rows away from co-facilitators (`rooms.co_facilitator_withhold`,
//! checked at start-up by [`co_facilitator_withheld`]), never give them more than this table.
//! Withholding a row also withholds the rows that do the same in bulk or by another road
//! ([`IMPLIED`]): a co-facilitator who may not open breakouts may not open the saved partner
//! breakouts either.
//!
//! Adding a message: add its row to [`TABLE`], then run `cargo test --test suite protocol_docs::` and
//! paste the table it prints into `docs/protocol.md`. A message without a row is refused to
//! everyone, and the unit test below fails.

use crate::auth::Role;
use crate::room::ParticipantId;
use crate::signal::protocol::ClientMessage;

use Role::{CoFacilitator as C, FamilyGuest as G, Observer as O, Participant as P, PeerSupport as S, Therapist as T};

/// Every role, family guests included.
const ANYONE: &[Role] = &[T, C, S, P, O, G];
/// The group and its staff: everyone but family guests, who only ever see their family space.
const MEMBERS: &[Role] = &[T, C, S, P, O];
/// Those who run the group: a therapist and a co-facilitator.
const STAFF: &[Role] = &[T, C];
/// The therapist's decisions: irreversible, or about what only a clinician may see.
const THERAPIST: &[Role] = &[T];
/// Those who take part: vote, take turns, share milestones, answer check-ins.
const TAKING_PART: &[Role] = &[S, P];

/// One rule: who may send `action`.
#[derive(Debug, Clone, Copy)]
pub struct Row {
    /// The message's `type`, or the `type` and the case in brackets.
    pub action: &'static str,
    pub roles: &'static [Role],
}

const fn row(action: &'static str, roles: &'static [Role]) -> Row {
    Row { action, roles }
}

/// The permission table, in the protocol's order.
pub const TABLE: &[Row] = &[
    row("join", ANYONE),
    row("leave", ANYONE),
    row("offer", ANYONE),
    row("answer", ANYONE),
    row("iceCandidate", ANYONE),
    row("setVideoPreference", ANYONE),
    row("ping", ANYONE),
    row("setMute", ANYONE),
    row("raiseHand", ANYONE),
    row("lowerHand", ANYONE),
    row("lowerHand (another's)", STAFF),
    row("admit", STAFF),
    row("admitAll", STAFF),
    row("decline", STAFF),
    row("decline (final)", THERAPIST),
    row("mute", STAFF),
    row("mute (hard)", THERAPIST),
    row("unmute", THERAPIST),
    row("muteAll", STAFF),
    row("muteAll (hard)", THERAPIST),
    row("remove", THERAPIST),
    row("lockRoom", THERAPIST),
    row("setWaitingRoom", THERAPIST),
    row("spotlight", STAFF),
    row("endSession", THERAPIST),
    row("setWelcome", THERAPIST),
    row("createBreakout", STAFF),
    row("deleteBreakout", STAFF),
    row("assignBreakout", STAFF),
    row("autoAssignBreakouts", STAFF),
    row("openBreakouts", STAFF),
    row("broadcastToBreakouts", STAFF),
    row("closeBreakouts", STAFF),
    row("goToBreakout", MEMBERS),
    row("askForHelp", MEMBERS),
    row("screenShare", MEMBERS),
    row("allowScreenShare", THERAPIST),
    row("createPoll", THERAPIST),
    row("vote", TAKING_PART),
    row("closePoll", THERAPIST),
    row("resealPoll", THERAPIST),
    row("sharePollResults", THERAPIST),
    row("setCelebrationPreferences", MEMBERS),
    row("getCelebrationPreferences", MEMBERS),
    row("celebrate", THERAPIST),
    row("shareMilestone", TAKING_PART),
    row("approveMilestone", THERAPIST),
    row("declineMilestone", THERAPIST),
    row("congratulate", MEMBERS),
    row("getMilestoneHistory", MEMBERS),
    row("getMilestoneHistory (another's or the group's)", THERAPIST),
    row("chat", ANYONE),
    row("chat (private)", MEMBERS),
    row("chat (private, to a therapist)", ANYONE),
    row("chat (private, to a family guest)", THERAPIST),
    row("setChatSettings", THERAPIST),
    row("deleteChatMessage", THERAPIST),
    row("requestSupport", &[S, P, O, G]),
    row("openPrivateRoom", STAFF),
    row("closePrivateRoom", STAFF),
    row("acknowledgeSupport", STAFF),
    row("resolveSupport", THERAPIST),
    row("routeSupport", THERAPIST),
    row("openFamilySpace", THERAPIST),
    row("closeFamilySpace", THERAPIST),
    row("startCheckIn", THERAPIST),
    row("answerCheckIn", &[S, P, O]),
    row("closeCheckIn", THERAPIST),
    row("setE2ee", THERAPIST),
    row("e2eeHello", ANYONE),
    row("e2eeKeyBundle", THERAPIST),
    row("giveFloor", STAFF),
    row("startRound", STAFF),
    row("passTurn", MEMBERS),
    row("nextTurn", STAFF),
    row("endRound", STAFF),
    row("setAgenda", THERAPIST),
    row("startSegment", THERAPIST),
    row("extendSegment", THERAPIST),
    row("endSegment", THERAPIST),
    row("saveAgendaTemplate", THERAPIST),
    row("getAgendaTemplates", THERAPIST),
    row("setAgreement", THERAPIST),
    row("acceptAgreement", ANYONE),
    row("savePartners", THERAPIST),
    row("openPartnerBreakouts", STAFF),
];

/// The row `msg` from `from` falls under. `role_of` tells the role of someone in the room (a
/// private message's recipient), `None` for someone who is not.
pub fn action(msg: &ClientMessage, from: &ParticipantId, role_of: impl Fn(&ParticipantId) -> Option<Role>) -> &'static str {
    match msg {
        ClientMessage::LowerHand { participant_id: Some(p) } if p != from => "lowerHand (another's)",
        ClientMessage::Decline { r#final: true, .. } => "decline (final)",
        ClientMessage::Mute { hard: true, .. } => "mute (hard)",
        ClientMessage::MuteAll { hard: true, .. } => "muteAll (hard)",
        ClientMessage::GetMilestoneHistory { participant_id, group } if *group || participant_id.as_ref().is_some_and(|p| p != from) => {
            "getMilestoneHistory (another's or the group's)"
        }
        ClientMessage::Chat { to: Some(to), .. } => match role_of(to) {
            Some(Role::Therapist) => "chat (private, to a therapist)",
            Some(Role::FamilyGuest) => "chat (private, to a family guest)",
            _ => "chat (private)",
        },
        other => other.kind(),
    }
}

/// Whether `role` may send what falls under `action`, with the co-facilitator rows this
/// deployment withholds. An action without a row is refused to everyone.
pub fn allows(action: &str, role: Role, withheld: &[&'static str]) -> bool {
    if role == Role::CoFacilitator && withheld.contains(&action) {
        return false;
    }
    TABLE.iter().find(|r| r.action == action).is_some_and(|r| r.roles.contains(&role))
}

/// The rows `role` may send, with the co-facilitator rows this deployment withholds: what
/// `admitted` tells a page, so it shows only the controls that work.
pub fn granted(role: Role, withheld: &[&'static str]) -> Vec<String> {
    TABLE.iter().filter(|r| allows(r.action, role, withheld)).map(|r| r.action.to_string()).collect()
}

/// Rows that do what another row does, in bulk or by another road: withholding the first
/// withholds these too, or a deployment's "no" would have a side door.
pub const IMPLIED: &[(&str, &[&str])] = &[
    ("admit", &["admitAll"]),
    ("mute", &["muteAll"]),
    ("assignBreakout", &["autoAssignBreakouts"]),
    ("openBreakouts", &["openPartnerBreakouts"]),
];

/// Checks `rooms.co_facilitator_withhold`: every entry must be a row co-facilitators have in
/// [`TABLE`] (a deployment narrows their rights; it cannot widen them or name a message that
/// does not exist). The result adds the rows each entry implies ([`IMPLIED`]).
pub fn co_facilitator_withheld(names: &[String]) -> Result<Vec<&'static str>, String> {
    let mut withheld = Vec::new();
    for name in names {
        let row = TABLE.iter().find(|r| r.action == name && r.roles.contains(&Role::CoFacilitator)).ok_or_else(|| {
            format!("rooms.co_facilitator_withhold: `{name}` is not something a co-facilitator may do (see the permission table in docs/protocol.md)")
        })?;
        let implied = IMPLIED.iter().filter(|(by, _)| *by == row.action).flat_map(|(_, rows)| rows.iter().copied());
        for action in std::iter::once(row.action).chain(implied) {
            if !withheld.contains(&action) {
                withheld.push(action);
            }
        }
    }
    Ok(withheld)
}

/// The table as `docs/protocol.md` prints it: one line per row, one column per role.
pub fn markdown() -> String {
    let mut s = String::from("| message |");
    for r in Role::ALL {
        s.push_str(&format!(" {} |", r.as_str()));
    }
    s.push_str("\n|---|");
    s.push_str(&"---|".repeat(Role::ALL.len()));
    s.push('\n');
    for row in TABLE {
        match row.action.split_once(' ') {
            Some((base, case)) => s.push_str(&format!("| `{base}` {case} |")),
            None => s.push_str(&format!("| `{}` |", row.action)),
        }
        for r in Role::ALL {
            s.push_str(if row.roles.contains(&r) { " yes |" } else { " no |" });
        }
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_client_message_has_a_row_and_every_row_is_unique() {
        for t in ClientMessage::TYPES {
            assert!(TABLE.iter().any(|r| r.action == *t), "`{t}` has no row in the permission table");
        }
        for (i, r) in TABLE.iter().enumerate() {
            assert!(!TABLE[..i].iter().any(|o| o.action == r.action), "`{}` has two rows", r.action);
            let base = r.action.split(' ').next().unwrap_or_default();
            assert!(ClientMessage::TYPES.contains(&base), "`{}` is no client message", r.action);
        }
    }

    /// The bounds: what a co-facilitator may never do, whatever a deployment says.
    #[test]
    fn a_co_facilitator_never_takes_the_therapists_decisions() {
        for never in [
            "remove",
            "decline (final)",
            "endSession",
            "lockRoom",
            "mute (hard)",
            "muteAll (hard)",
            "unmute",
            "createPoll",
            "startCheckIn",
            "getMilestoneHistory (another's or the group's)",
            "openFamilySpace",
            "savePartners",
        ] {
            assert!(!allows(never, Role::CoFacilitator, &[]), "{never}");
        }
        for may in [
            "admit",
            "decline",
            "mute",
            "lowerHand (another's)",
            "giveFloor",
            "startRound",
            "openBreakouts",
            "openPartnerBreakouts",
            "openPrivateRoom",
        ] {
            assert!(allows(may, Role::CoFacilitator, &[]), "{may}");
        }
        let withheld = co_facilitator_withheld(&["openBreakouts".into()]).unwrap();
        assert!(!allows("openBreakouts", Role::CoFacilitator, &withheld));
        assert!(!allows("openPartnerBreakouts", Role::CoFacilitator, &withheld), "no side door");
        assert!(allows("openBreakouts", Role::Therapist, &withheld), "only co-facilitators lose it");
        assert!(allows("openPartnerBreakouts", Role::Therapist, &withheld));
        assert!(allows("closeBreakouts", Role::CoFacilitator, &withheld), "nothing else goes with it");
        let withheld = co_facilitator_withheld(&["admit".into(), "mute".into(), "admitAll".into()]).unwrap();
        assert_eq!(withheld, ["admit", "admitAll", "mute", "muteAll"]);
        let co = granted(Role::CoFacilitator, &withheld);
        assert!(!co.iter().any(|a| a == "admitAll" || a == "mute") && co.iter().any(|a| a == "openBreakouts"), "{co:?}");
        assert!(granted(Role::Therapist, &withheld).iter().any(|a| a == "remove"));
        assert!(!granted(Role::Participant, &[]).iter().any(|a| a == "remove" || a == "mute"));
        assert!(co_facilitator_withheld(&["remove".into()]).is_err(), "not theirs to lose");
        assert!(co_facilitator_withheld(&["noSuchMessage".into()]).is_err());
    }

    /// Each implied row exists, is a co-facilitator's, and is implied by one of theirs: an
    /// implication to a row they never had, or from a row that was renamed, would be a typo.
    #[test]
    fn implied_rows_are_co_facilitators_rows() {
        let theirs = |a: &str| TABLE.iter().any(|r| r.action == a && r.roles.contains(&Role::CoFacilitator));
        for (by, rows) in IMPLIED {
            assert!(theirs(by), "{by}");
            for row in *rows {
                assert!(theirs(row), "{row}");
            }
        }
    }
}
