//! Milestone celebrations: preferences, a therapist's celebration, participants'
//! proposals, congratulations and history.
//!
//! The one rule that matters most: a celebration goes to the audience the celebrated participant
//! chose, never wider. `group` is everyone in their space (main room or breakout) plus the
//! therapists; `therapistOnly`, or style `none`, is the participant and the therapists. The
//! default, until a participant chooses, is `therapistOnly`. Congratulations go back to exactly
//! the people who received the celebration.
//!
//! Preferences and history live in the store, which the room never waits on: one store task per
//! room runs the reads and writes in the order queued (so a history read sees every earlier
//! celebration). When a celebration needs preferences this room has not seen yet, the task
//! loads them and re-queues the request behind the load; the room handles it again, now
//! knowing the preferences.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::warn;

use super::{Effect, Outbox, Room, RoomCommand};
use crate::auth::Role;
use crate::badge;
use crate::room::ParticipantId;
use crate::signal::protocol::{
    CelebrationAudience, CelebrationId, CelebrationPreferences, CelebrationStyle, ClientMessage, ErrorCode, Milestone, MilestoneEntry,
    MilestoneKind, ProposalId, ServerMessage,
};
use crate::store::{MilestoneQuery, Store};

/// Longest label (what a custom milestone is), in characters.
const LABEL_MAX: usize = 40;
/// Longest note with a celebration or a shared milestone.
const NOTE_MAX: usize = 280;
/// Longest message with a congratulation.
const CONGRATULATION_MAX: usize = 140;
const VALUE_MAX: u32 = 100_000;
/// Congratulations one person may send per window.
pub(super) const CONGRATULATIONS_PER_WINDOW: usize = 5;
const CONGRATULATION_WINDOW: Duration = Duration::from_secs(10);
/// Shared milestones one participant may have waiting at once.
const PENDING_PER_PARTICIPANT: usize = 3;
/// Recent celebrations remembered for congratulations (older ones are in the store only).
const RECENT_CELEBRATIONS: usize = 64;

/// Preferences as this room knows them; `chosen: false` are the defaults.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Prefs {
    prefs: CelebrationPreferences,
    chosen: bool,
}

struct Proposal {
    participant: ParticipantId,
    milestone: Milestone,
    message: Option<String>,
}

/// A recent celebration: who it was for and exactly who received it.
struct Recent {
    participant: ParticipantId,
    audience: HashSet<ParticipantId>,
}

/// Store work, done in order by the room's store task.
#[derive(Debug)]
pub(super) enum Job {
    SavePrefs(ParticipantId, CelebrationPreferences),
    /// Load `who`'s preferences, then hand `msg` from `from` back to the room.
    LoadPrefs {
        who: ParticipantId,
        from: ParticipantId,
        msg: ClientMessage,
    },
    Record {
        room: String,
        entry: MilestoneEntry,
    },
    /// Read a history; the reply goes to `to`'s outbox as it is when the job is queued.
    History {
        query: MilestoneQuery,
        to: ParticipantId,
        participant_id: Option<ParticipantId>,
        group: bool,
    },
}

impl Job {
    /// Whose outbox the job's reply goes to, if it has one.
    pub(super) fn reply_to(&self) -> Option<&ParticipantId> {
        match self {
            Job::History { to, .. } => Some(to),
            _ => None,
        }
    }
}

/// Preferences as the room knows them, shared with the store task, which fills it on a miss.
pub(super) type SharedPrefs = Arc<Mutex<HashMap<ParticipantId, Prefs>>>;

/// The queue of the room's milestone store task: a job, and the outbox for its reply.
pub(super) type StoreJobs = mpsc::UnboundedSender<(Job, Option<Outbox>)>;

#[derive(Default)]
pub(super) struct Milestones {
    /// Shared with the store task, which fills it on a miss. A std mutex: it is never held
    /// across an `.await`, only for a map lookup or insert.
    prefs: SharedPrefs,
    proposals: HashMap<ProposalId, Proposal>,
    recent: HashMap<CelebrationId, Recent>,
    recent_order: VecDeque<CelebrationId>,
    /// When each person's recent congratulations were sent.
    congratulations: HashMap<ParticipantId, VecDeque<Instant>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Milestones {
    /// Preferences people chose (not the defaults), for the room's shared state.
    pub(super) fn chosen_prefs(&self) -> std::collections::BTreeMap<ParticipantId, CelebrationPreferences> {
        lock(&self.prefs).iter().filter(|(_, p)| p.chosen).map(|(id, p)| (id.clone(), p.prefs)).collect()
    }

    fn known_prefs(&self, who: &ParticipantId) -> Option<Prefs> {
        lock(&self.prefs).get(who).copied()
    }

    fn remember(&mut self, id: CelebrationId, recent: Recent) {
        self.recent.insert(id.clone(), recent);
        self.recent_order.push_back(id);
        while self.recent_order.len() > RECENT_CELEBRATIONS {
            if let Some(old) = self.recent_order.pop_front() {
                self.recent.remove(&old);
            }
        }
    }

    /// Counts a congratulation against `from`'s window; `false` when over the limit.
    fn allow_congratulation(&mut self, from: &ParticipantId, now: Instant) -> bool {
        let sent = self.congratulations.entry(from.clone()).or_default();
        while sent.front().is_some_and(|t| now.duration_since(*t) >= CONGRATULATION_WINDOW) {
            sent.pop_front();
        }
        if sent.len() >= CONGRATULATIONS_PER_WINDOW {
            return false;
        }
        sent.push_back(now);
        true
    }
}

/// The room's milestone store task (run by the room task): jobs are done in the order queued.
pub(super) fn spawn_store_task(store: Store, prefs: SharedPrefs, me: mpsc::WeakSender<RoomCommand>) -> StoreJobs {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Job, Option<Outbox>)>();
    tokio::spawn(async move {
        // Ends once the room is gone and every queued job is done.
        while let Some((job, reply_to)) = rx.recv().await {
            match job {
                Job::SavePrefs(who, p) => {
                    if let Err(e) = store.set_celebration_prefs(who.as_str(), p).await {
                        warn!(error = %e, "celebration preferences not saved");
                    }
                }
                Job::LoadPrefs { who, from, msg } => {
                    let loaded = match store.celebration_prefs(who.as_str()).await {
                        Ok(Some(p)) => Prefs { prefs: p, chosen: true },
                        Ok(None) => Prefs::default(),
                        Err(e) => {
                            // The defaults are the narrowest audience: safe to celebrate with.
                            warn!(error = %e, "celebration preferences not loaded; using the defaults");
                            Prefs::default()
                        }
                    };
                    // Never over a value set meanwhile in this room: that one is newer.
                    lock(&prefs).entry(who).or_insert(loaded);
                    if let Some(room) = me.upgrade() {
                        let _ = room.send(RoomCommand::Client { from, msg }).await;
                    }
                }
                Job::Record { room, entry } => {
                    if let Err(e) = store.record_milestone(&room, &entry).await {
                        warn!(error = %e, "milestone not recorded");
                    }
                }
                Job::History { query, participant_id, group, .. } => {
                    let Some(to) = reply_to else { continue };
                    let reply = match store.milestone_history(query).await {
                        Ok(entries) => ServerMessage::MilestoneHistory { participant_id, group, entries },
                        Err(e) => {
                            warn!(error = %e, "milestone history not read");
                            ServerMessage::Error { code: ErrorCode::Internal, message: "milestone history is unavailable right now".into() }
                        }
                    };
                    let _ = to.try_send(reply);
                }
            }
        }
    });
    tx
}

/// Trims optional text; `None` when empty. Refuses control characters and text over `max`.
fn clean(text: &Option<String>, max: usize, field: &str) -> Result<Option<String>, String> {
    let Some(t) = text.as_deref().map(str::trim).filter(|t| !t.is_empty()) else { return Ok(None) };
    if t.chars().count() > max {
        return Err(format!("`{field}` must be at most {max} characters"));
    }
    if t.chars().any(char::is_control) {
        return Err(format!("`{field}` must not contain control characters"));
    }
    Ok(Some(t.to_string()))
}

fn milestone_from(kind: MilestoneKind, value: Option<u32>, label: &Option<String>) -> Result<Milestone, String> {
    let label = clean(label, LABEL_MAX, "label")?;
    match (kind, value) {
        (MilestoneKind::DaysSober | MilestoneKind::SessionsAttended, None | Some(0)) => {
            return Err("`value` (at least 1) is required for this kind of milestone".into());
        }
        (_, Some(v)) if v > VALUE_MAX => return Err(format!("`value` must be at most {VALUE_MAX}")),
        _ => {}
    }
    if kind == MilestoneKind::Custom && label.is_none() {
        return Err("a custom milestone needs a `label`".into());
    }
    Ok(Milestone { kind, value: value.filter(|v| *v > 0), label })
}

impl Room {
    pub(super) fn on_milestone(&mut self, from: &ParticipantId, msg: ClientMessage) {
        let Some(sender) = self.members.get(from) else { return };
        let role = sender.info.role;
        let sender_name = sender.info.name.clone();
        match &msg {
            ClientMessage::SetCelebrationPreferences { style, audience } => {
                let prefs = CelebrationPreferences { style: *style, audience: *audience };
                lock(&self.milestones.prefs).insert(from.clone(), Prefs { prefs, chosen: true });
                self.queue_store_job(Job::SavePrefs(from.clone(), prefs));
                self.send_to(from, ServerMessage::CelebrationPreferences { style: *style, audience: *audience, chosen: true });
            }
            ClientMessage::GetCelebrationPreferences => {
                let Some(p) = self.prefs_or_load(from, from, &msg) else { return };
                let (style, audience) = (p.prefs.style, p.prefs.audience);
                self.send_to(from, ServerMessage::CelebrationPreferences { style, audience, chosen: p.chosen });
            }
            ClientMessage::Celebrate { participant_id, kind, value, label, message } => {
                let parsed = milestone_from(*kind, *value, label).and_then(|m| Ok((m, clean(message, NOTE_MAX, "message")?)));
                let (milestone, note) = match parsed {
                    Ok(ok) => ok,
                    Err(e) => return self.error(from, ErrorCode::InvalidField, e),
                };
                if !self.celebratable(participant_id) {
                    return self.error(from, ErrorCode::UnknownParticipant, "no participant with that id is in the session");
                }
                let Some(p) = self.prefs_or_load(participant_id, from, &msg) else { return };
                self.celebrate(participant_id, milestone, note, p.prefs);
                self.audit(from, "celebrate", Some(participant_id));
            }
            ClientMessage::ShareMilestone { kind, value, label, message } => {
                let parsed = milestone_from(*kind, *value, label).and_then(|m| Ok((m, clean(message, NOTE_MAX, "message")?)));
                let (milestone, note) = match parsed {
                    Ok(ok) => ok,
                    Err(e) => return self.error(from, ErrorCode::InvalidField, e),
                };
                let therapists = self.therapists();
                if therapists.is_empty() {
                    return self.error(from, ErrorCode::NoTherapist, "no therapist is here to see it yet; share it when they are");
                }
                let members = &self.members;
                self.milestones.proposals.retain(|_, p| members.contains_key(&p.participant));
                let pending = self.milestones.proposals.values().filter(|p| &p.participant == from).count();
                if pending >= PENDING_PER_PARTICIPANT {
                    return self.error(from, ErrorCode::RateLimited, "your therapist has not seen your last milestones yet");
                }
                if !self.alerts.allow(from, super::alerts::Alert::ShareMilestone, self.now.at) {
                    return self.error(from, ErrorCode::RateLimited, super::alerts::refusal(super::alerts::Alert::ShareMilestone));
                }
                let proposal_id = ProposalId::random();
                let proposed = ServerMessage::MilestoneProposed {
                    proposal_id: proposal_id.clone(),
                    participant_id: from.clone(),
                    name: sender_name,
                    milestone: milestone.clone(),
                    message: note.clone(),
                };
                self.milestones.proposals.insert(proposal_id, Proposal { participant: from.clone(), milestone, message: note });
                for t in therapists {
                    self.send_to(&t, proposed.clone());
                }
                self.send_to(from, proposed);
            }
            ClientMessage::ApproveMilestone { proposal_id } => {
                let Some(who) = self.milestones.proposals.get(proposal_id).map(|p| p.participant.clone()) else {
                    return self.error(from, ErrorCode::UnknownMilestone, "no shared milestone with that id is waiting");
                };
                if !self.celebratable(&who) {
                    self.milestones.proposals.remove(proposal_id);
                    self.resolve_proposal(proposal_id, &who, false);
                    return self.error(from, ErrorCode::UnknownParticipant, "they are no longer in the session");
                }
                let Some(p) = self.prefs_or_load(&who, from, &msg) else { return };
                let Some(proposal) = self.milestones.proposals.remove(proposal_id) else { return };
                self.resolve_proposal(proposal_id, &who, true);
                self.celebrate(&who, proposal.milestone, proposal.message, p.prefs);
                self.audit(from, "approve_milestone", Some(&who));
            }
            ClientMessage::DeclineMilestone { proposal_id } => {
                let Some(proposal) = self.milestones.proposals.remove(proposal_id) else {
                    return self.error(from, ErrorCode::UnknownMilestone, "no shared milestone with that id is waiting");
                };
                self.resolve_proposal(proposal_id, &proposal.participant, false);
                self.audit(from, "decline_milestone", Some(&proposal.participant));
            }
            ClientMessage::Congratulate { celebration_id, reaction, message } => {
                let note = match clean(message, CONGRATULATION_MAX, "message") {
                    Ok(n) => n,
                    Err(e) => return self.error(from, ErrorCode::InvalidField, e),
                };
                // Only someone who was shown the celebration may answer it; to anyone else it
                // does not exist.
                let Some(recent) = self.milestones.recent.get(celebration_id).filter(|r| r.audience.contains(from)) else {
                    return self.error(from, ErrorCode::UnknownMilestone, "no recent celebration with that id was shown to you");
                };
                if &recent.participant == from {
                    return self.error(from, ErrorCode::Forbidden, "you cannot congratulate yourself");
                }
                let audience: Vec<ParticipantId> = recent.audience.iter().cloned().collect();
                if !self.milestones.allow_congratulation(from, self.now.at) {
                    let (n, secs) = (CONGRATULATIONS_PER_WINDOW, CONGRATULATION_WINDOW.as_secs());
                    return self.error(from, ErrorCode::RateLimited, format!("at most {n} congratulations every {secs} seconds"));
                }
                let out = ServerMessage::Congratulation {
                    celebration_id: celebration_id.clone(),
                    from: from.clone(),
                    from_name: sender_name,
                    reaction: *reaction,
                    message: note,
                };
                for id in audience {
                    self.send_to(&id, out.clone());
                }
            }
            ClientMessage::GetMilestoneHistory { participant_id, group } => {
                let therapist = role == Role::Therapist;
                let room = self.id.to_string();
                let (query, participant_id) = if *group {
                    if !therapist {
                        return self.error(from, ErrorCode::Forbidden, "only a therapist can see the group's milestones");
                    }
                    (MilestoneQuery::Room(room), None)
                } else {
                    let who = participant_id.clone().unwrap_or_else(|| from.clone());
                    if &who == from {
                        // One's own timeline, from every group.
                        (MilestoneQuery::Participant { participant: who.to_string(), room: None }, Some(who))
                    } else if therapist {
                        // Someone else's, as far as this group goes.
                        (MilestoneQuery::Participant { participant: who.to_string(), room: Some(room) }, Some(who))
                    } else {
                        return self.error(from, ErrorCode::Forbidden, "you can see only your own milestones");
                    }
                };
                let to = from.clone();
                if !self.has_store {
                    self.send_to(from, ServerMessage::MilestoneHistory { participant_id, group: *group, entries: Vec::new() });
                    return;
                }
                self.queue_store_job(Job::History { query, to, participant_id, group: *group });
            }
            _ => {}
        }
    }

    /// Only admitted participants (peer-support staff among them; not staff, observers or
    /// guests) have milestones celebrated.
    fn celebratable(&self, id: &ParticipantId) -> bool {
        self.members.get(id).is_some_and(|m| m.admitted && m.info.role.takes_part())
    }

    fn queue_store_job(&mut self, job: Job) {
        if self.has_store {
            self.out.push(Effect::Milestone(job));
        }
    }

    /// The preferences map the store task fills (see [`spawn_store_task`]).
    pub(super) fn milestone_prefs(&self) -> SharedPrefs {
        self.milestones.prefs.clone()
    }

    /// A preference chosen on this room's previous node: known here at once, and written to
    /// this node's store so it is remembered here too.
    pub(super) fn restore_prefs(&mut self, who: ParticipantId, prefs: CelebrationPreferences) {
        lock(&self.milestones.prefs).insert(who.clone(), Prefs { prefs, chosen: true });
        self.queue_store_job(Job::SavePrefs(who, prefs));
    }

    /// `who`'s preferences if this room knows them. Otherwise the store task loads them and
    /// hands `msg` (from `from`) back to the room afterwards, and this returns `None`.
    fn prefs_or_load(&mut self, who: &ParticipantId, from: &ParticipantId, msg: &ClientMessage) -> Option<Prefs> {
        if let Some(p) = self.milestones.known_prefs(who) {
            return Some(p);
        }
        if !self.has_store {
            return Some(*lock(&self.milestones.prefs).entry(who.clone()).or_default());
        }
        self.queue_store_job(Job::LoadPrefs { who: who.clone(), from: from.clone(), msg: msg.clone() });
        None
    }

    fn resolve_proposal(&mut self, proposal_id: &ProposalId, proposer: &ParticipantId, approved: bool) {
        let msg = ServerMessage::MilestoneProposalResolved { proposal_id: proposal_id.clone(), approved };
        let mut to = self.therapists();
        to.push(proposer.clone());
        for id in to {
            self.send_to(&id, msg.clone());
        }
    }

    /// Sends the celebration to the audience `prefs` allow, never wider, and records it.
    fn celebrate(&mut self, who: &ParticipantId, milestone: Milestone, message: Option<String>, prefs: CelebrationPreferences) {
        let Some(name) = self.members.get(who).map(|m| m.info.name.clone()) else { return };
        let to_group = prefs.style != CelebrationStyle::None && prefs.audience == CelebrationAudience::Group;
        let mut audience = vec![who.clone()];
        let mut seen: HashSet<ParticipantId> = audience.iter().cloned().collect();
        // Family guests never see the group's celebrations, even a sponsor's in their space.
        let space = if to_group { self.space_of(who) } else { Vec::new() };
        let space: Vec<_> = space.into_iter().filter(|p| self.members.get(p).is_some_and(|m| m.info.role != Role::FamilyGuest)).collect();
        for id in self.therapists().into_iter().chain(space) {
            if seen.insert(id.clone()) {
                audience.push(id);
            }
        }
        let celebration_id = CelebrationId::random();
        let out = ServerMessage::Celebration {
            celebration_id: celebration_id.clone(),
            participant_id: who.clone(),
            name,
            milestone: milestone.clone(),
            message,
            style: prefs.style,
            audience: if to_group { CelebrationAudience::Group } else { CelebrationAudience::TherapistOnly },
            badge_svg: badge::svg(&milestone),
        };
        for id in &audience {
            self.send_to(id, out.clone());
        }
        self.milestones.remember(celebration_id.clone(), Recent { participant: who.clone(), audience: seen });
        let entry = MilestoneEntry { celebration_id, participant_id: who.clone(), milestone, at_ms: self.now.unix_ms };
        self.queue_store_job(Job::Record { room: self.id.to_string(), entry });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milestones_are_validated() {
        let label = |s: &str| Some(s.to_string());
        assert!(milestone_from(MilestoneKind::DaysSober, Some(30), &None).is_ok());
        assert!(milestone_from(MilestoneKind::DaysSober, None, &None).is_err());
        assert!(milestone_from(MilestoneKind::SessionsAttended, Some(0), &None).is_err());
        assert!(milestone_from(MilestoneKind::ProgramCompletion, None, &None).is_ok());
        assert!(milestone_from(MilestoneKind::Custom, None, &None).is_err());
        assert!(milestone_from(MilestoneKind::Custom, None, &label("   ")).is_err());
        assert_eq!(milestone_from(MilestoneKind::Custom, None, &label(" First talk ")).unwrap().label.as_deref(), Some("First talk"));
        assert!(milestone_from(MilestoneKind::Custom, None, &label(&"x".repeat(41))).is_err());
        assert!(milestone_from(MilestoneKind::Custom, None, &label("a\u{0}b")).is_err());
        assert!(milestone_from(MilestoneKind::DaysSober, Some(VALUE_MAX + 1), &None).is_err());
    }

    #[test]
    fn congratulations_are_limited_per_window() {
        let mut m = Milestones::default();
        let (a, b) = (ParticipantId::from_trusted("a"), ParticipantId::from_trusted("b"));
        let t0 = Instant::now();
        for _ in 0..CONGRATULATIONS_PER_WINDOW {
            assert!(m.allow_congratulation(&a, t0));
        }
        assert!(!m.allow_congratulation(&a, t0 + Duration::from_secs(9)));
        assert!(m.allow_congratulation(&b, t0), "per sender");
        assert!(m.allow_congratulation(&a, t0 + CONGRATULATION_WINDOW));
    }
}
