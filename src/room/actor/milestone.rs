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
//!
//! [`Milestones`] holds all of it (preferences as known here, proposals waiting, recent
//! celebrations and their audiences, the congratulation limit) and handles the messages with
//! the room's context (`Cx`); sharing a milestone counts against the room's [`Alerts`].

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::warn;

use super::alerts::{Alert, Alerts};
use super::{Cx, Effect, Outbox, RoomCommand, RoomInput};
use crate::auth::Role;
use crate::badge;
use crate::room::ParticipantId;
use crate::signal::protocol::{
    CelebrationAudience, CelebrationId, CelebrationPreferences, CelebrationStyle, ClientMessage, ErrorCode, Milestone, MilestoneEntry,
    MilestoneKind, ProposalId, ServerMessage, Text,
};
use crate::store::{MilestoneQuery, Store};

/// Longest label (what a custom milestone is), in characters.
pub(super) const LABEL_MAX: usize = 40;
/// Longest note with a celebration or a shared milestone.
pub(super) const NOTE_MAX: usize = 280;
/// Longest message with a congratulation.
pub(super) const CONGRATULATION_MAX: usize = 140;
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
    message: Option<Text>,
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
    /// Whether this node keeps a store (preferences and history live there).
    has_store: bool,
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
    pub(super) fn new(has_store: bool) -> Self {
        Self { has_store, ..Self::default() }
    }

    pub(super) fn has_store(&self) -> bool {
        self.has_store
    }

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
                        let _ = room.send(RoomInput::Client { from, msg }.into()).await;
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

/// A note with a celebration, a shared milestone or a congratulation: plain, cleaned like any
/// text, or sealed (its form checked by `sealed.rs`), relayed as it is.
fn clean_note(text: &Option<Text>, max: usize) -> Result<Option<Text>, String> {
    match text {
        Some(Text::Plain(plain)) => Ok(clean(&Some(plain.clone()), max, "message")?.map(Text::Plain)),
        sealed => Ok(sealed.clone()),
    }
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

impl Milestones {
    pub(super) fn on_message(&mut self, cx: &mut Cx, alerts: &mut Alerts, from: &ParticipantId, msg: ClientMessage) {
        let Some(sender) = cx.members.get(from) else { return };
        let role = sender.info.role;
        let sender_name = sender.info.name.clone();
        // Who may celebrate, share and approve is the permission table's (checked before this).
        match &msg {
            ClientMessage::SetCelebrationPreferences { style, audience } => {
                let prefs = CelebrationPreferences { style: *style, audience: *audience };
                lock(&self.prefs).insert(from.clone(), Prefs { prefs, chosen: true });
                self.queue_store_job(cx, Job::SavePrefs(from.clone(), prefs));
                cx.send(from, ServerMessage::CelebrationPreferences { style: *style, audience: *audience, chosen: true });
            }
            ClientMessage::GetCelebrationPreferences => {
                let Some(p) = self.prefs_or_load(cx, from, from, &msg) else { return };
                let (style, audience) = (p.prefs.style, p.prefs.audience);
                cx.send(from, ServerMessage::CelebrationPreferences { style, audience, chosen: p.chosen });
            }
            ClientMessage::Celebrate { participant_id, kind, value, label, message } => {
                let parsed = milestone_from(*kind, *value, label).and_then(|m| Ok((m, clean_note(message, NOTE_MAX)?)));
                let (milestone, note) = match parsed {
                    Ok(ok) => ok,
                    Err(e) => return cx.error(from, ErrorCode::InvalidField, e),
                };
                if !Self::celebratable(cx, participant_id) {
                    return cx.error(from, ErrorCode::UnknownParticipant, "no participant with that id is in the session");
                }
                let Some(p) = self.prefs_or_load(cx, participant_id, from, &msg) else { return };
                self.celebrate(cx, participant_id, milestone, note, p.prefs);
                cx.audit(from, "celebrate", Some(participant_id));
            }
            ClientMessage::ShareMilestone { kind, value, label, message } => {
                let parsed = milestone_from(*kind, *value, label).and_then(|m| Ok((m, clean_note(message, NOTE_MAX)?)));
                let (milestone, note) = match parsed {
                    Ok(ok) => ok,
                    Err(e) => return cx.error(from, ErrorCode::InvalidField, e),
                };
                let therapists = cx.therapists();
                if therapists.is_empty() {
                    return cx.error(from, ErrorCode::NoTherapist, "no therapist is here to see it yet; share it when they are");
                }
                let members = cx.members;
                self.proposals.retain(|_, p| members.contains_key(&p.participant));
                let pending = self.proposals.values().filter(|p| &p.participant == from).count();
                if pending >= PENDING_PER_PARTICIPANT {
                    return cx.error(from, ErrorCode::RateLimited, "your therapist has not seen your last milestones yet");
                }
                if !alerts.permit(cx, from, Alert::ShareMilestone) {
                    return;
                }
                let proposal_id = ProposalId::random();
                let proposed = ServerMessage::MilestoneProposed {
                    proposal_id: proposal_id.clone(),
                    participant_id: from.clone(),
                    name: sender_name,
                    milestone: milestone.clone(),
                    message: note.clone(),
                };
                self.proposals.insert(proposal_id, Proposal { participant: from.clone(), milestone, message: note });
                for t in therapists {
                    cx.send(&t, proposed.clone());
                }
                cx.send(from, proposed);
            }
            ClientMessage::ApproveMilestone { proposal_id } => {
                let Some(who) = self.proposals.get(proposal_id).map(|p| p.participant.clone()) else {
                    return cx.error(from, ErrorCode::UnknownMilestone, "no shared milestone with that id is waiting");
                };
                if !Self::celebratable(cx, &who) {
                    self.proposals.remove(proposal_id);
                    Self::resolve_proposal(cx, proposal_id, &who, false);
                    return cx.error(from, ErrorCode::UnknownParticipant, "they are no longer in the session");
                }
                let Some(p) = self.prefs_or_load(cx, &who, from, &msg) else { return };
                let Some(proposal) = self.proposals.remove(proposal_id) else { return };
                Self::resolve_proposal(cx, proposal_id, &who, true);
                self.celebrate(cx, &who, proposal.milestone, proposal.message, p.prefs);
                cx.audit(from, "approve_milestone", Some(&who));
            }
            ClientMessage::DeclineMilestone { proposal_id } => {
                let Some(proposal) = self.proposals.remove(proposal_id) else {
                    return cx.error(from, ErrorCode::UnknownMilestone, "no shared milestone with that id is waiting");
                };
                Self::resolve_proposal(cx, proposal_id, &proposal.participant, false);
                cx.audit(from, "decline_milestone", Some(&proposal.participant));
            }
            ClientMessage::Congratulate { celebration_id, reaction, message } => {
                let note = match clean_note(message, CONGRATULATION_MAX) {
                    Ok(n) => n,
                    Err(e) => return cx.error(from, ErrorCode::InvalidField, e),
                };
                // Only someone who was shown the celebration may answer it; to anyone else it
                // does not exist.
                let Some(recent) = self.recent.get(celebration_id).filter(|r| r.audience.contains(from)) else {
                    return cx.error(from, ErrorCode::UnknownMilestone, "no recent celebration with that id was shown to you");
                };
                if &recent.participant == from {
                    return cx.error(from, ErrorCode::Forbidden, "you cannot congratulate yourself");
                }
                let audience: Vec<ParticipantId> = recent.audience.iter().cloned().collect();
                if !self.allow_congratulation(from, cx.now.at) {
                    let (n, secs) = (CONGRATULATIONS_PER_WINDOW, CONGRATULATION_WINDOW.as_secs());
                    return cx.error(from, ErrorCode::RateLimited, format!("at most {n} congratulations every {secs} seconds"));
                }
                let out = ServerMessage::Congratulation {
                    celebration_id: celebration_id.clone(),
                    from: from.clone(),
                    from_name: sender_name,
                    reaction: *reaction,
                    message: note,
                };
                for id in audience {
                    cx.send(&id, out.clone());
                }
            }
            ClientMessage::GetMilestoneHistory { participant_id, group } => {
                let therapist = role == Role::Therapist;
                let room = cx.room.to_string();
                let (query, participant_id) = if *group {
                    if !therapist {
                        return cx.error(from, ErrorCode::Forbidden, "only a therapist can see the group's milestones");
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
                        return cx.error(from, ErrorCode::Forbidden, "you can see only your own milestones");
                    }
                };
                let to = from.clone();
                if !self.has_store {
                    cx.send(from, ServerMessage::MilestoneHistory { participant_id, group: *group, entries: Vec::new() });
                    return;
                }
                self.queue_store_job(cx, Job::History { query, to, participant_id, group: *group });
            }
            _ => {}
        }
    }

    /// Only admitted members who take part (participants and peer-support staff; not staff,
    /// observers or family guests) have milestones celebrated.
    fn celebratable(cx: &Cx, id: &ParticipantId) -> bool {
        cx.members.get(id).is_some_and(|m| m.admitted && m.info.role.takes_part())
    }

    fn queue_store_job(&self, cx: &mut Cx, job: Job) {
        if self.has_store {
            cx.out.push(Effect::Milestone(job));
        }
    }

    /// The preferences map the store task fills (see [`spawn_store_task`]).
    pub(super) fn shared_prefs(&self) -> SharedPrefs {
        self.prefs.clone()
    }

    /// A preference chosen on this room's previous node: known here at once, and written to
    /// this node's store so it is remembered here too.
    pub(super) fn restore_prefs(&mut self, cx: &mut Cx, who: ParticipantId, prefs: CelebrationPreferences) {
        lock(&self.prefs).insert(who.clone(), Prefs { prefs, chosen: true });
        self.queue_store_job(cx, Job::SavePrefs(who, prefs));
    }

    /// `who`'s preferences if this room knows them. Otherwise the store task loads them and
    /// hands `msg` (from `from`) back to the room afterwards, and this returns `None`.
    fn prefs_or_load(&self, cx: &mut Cx, who: &ParticipantId, from: &ParticipantId, msg: &ClientMessage) -> Option<Prefs> {
        if let Some(p) = self.known_prefs(who) {
            return Some(p);
        }
        if !self.has_store {
            return Some(*lock(&self.prefs).entry(who.clone()).or_default());
        }
        self.queue_store_job(cx, Job::LoadPrefs { who: who.clone(), from: from.clone(), msg: msg.clone() });
        None
    }

    fn resolve_proposal(cx: &mut Cx, proposal_id: &ProposalId, proposer: &ParticipantId, approved: bool) {
        let msg = ServerMessage::MilestoneProposalResolved { proposal_id: proposal_id.clone(), approved };
        let mut to = cx.therapists();
        to.push(proposer.clone());
        for id in to {
            cx.send(&id, msg.clone());
        }
    }

    /// Sends the celebration to the audience `prefs` allow, never wider, and records it.
    fn celebrate(&mut self, cx: &mut Cx, who: &ParticipantId, milestone: Milestone, message: Option<Text>, prefs: CelebrationPreferences) {
        let Some(name) = cx.members.get(who).map(|m| m.info.name.clone()) else { return };
        let to_group = prefs.style != CelebrationStyle::None && prefs.audience == CelebrationAudience::Group;
        let mut audience = vec![who.clone()];
        let mut seen: HashSet<ParticipantId> = audience.iter().cloned().collect();
        let space = if to_group { cx.space_of(who) } else { Vec::new() };
        // Family guests never see the group's celebrations, even their sponsor's.
        let space: Vec<_> = space.into_iter().filter(|p| cx.members.get(p).is_some_and(|m| m.info.role != Role::FamilyGuest)).collect();
        for id in cx.therapists().into_iter().chain(space) {
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
            cx.send(id, out.clone());
        }
        self.remember(celebration_id.clone(), Recent { participant: who.clone(), audience: seen });
        let entry = MilestoneEntry { celebration_id, participant_id: who.clone(), milestone, at_ms: cx.now.unix_ms };
        self.queue_store_job(cx, Job::Record { room: cx.room.to_string(), entry });
    }
}

#[cfg(test)]
mod tests {
    use super::super::World;
    use super::*;
    use crate::signal::protocol::Reaction;

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

    fn celebrate(who: &ParticipantId) -> ClientMessage {
        ClientMessage::Celebrate {
            participant_id: who.clone(),
            kind: MilestoneKind::DaysSober,
            value: Some(30),
            label: None,
            message: None,
        }
    }

    /// Who a celebration went to, read from what each member was sent.
    fn celebration_to(w: &World, ids: &[&ParticipantId]) -> (Option<CelebrationId>, Vec<ParticipantId>) {
        let mut id = None;
        let mut to = Vec::new();
        for p in ids {
            for m in w.sent_to(p) {
                if let ServerMessage::Celebration { celebration_id, .. } = m {
                    id = Some(celebration_id);
                    to.push((*p).clone());
                }
            }
        }
        (id, to)
    }

    /// A celebration reaches the audience its participant chose and never wider (the default
    /// is the therapists only); only those who saw it may congratulate, and back to them.
    #[test]
    fn a_celebration_and_its_congratulations_stay_within_the_chosen_audience() {
        let mut w = World::new();
        let t = w.admit("t", Role::Therapist, None);
        let p1 = w.admit("p1", Role::Participant, None);
        let p2 = w.admit("p2", Role::Participant, None);
        let away = w.admit("p3", Role::Participant, Some("b1"));
        let everyone = [&t, &p1, &p2, &away];
        let mut m = Milestones::new(false);
        let mut alerts = Alerts::default();

        m.on_message(&mut w.cx(), &mut alerts, &t, celebrate(&p1));
        assert_eq!(celebration_to(&w, &everyone).1, vec![t.clone(), p1.clone()], "the default: therapists only");
        w.take();

        // That a participant does not celebrate others is the permission table's (model tests).
        let group = ClientMessage::SetCelebrationPreferences { style: CelebrationStyle::Big, audience: CelebrationAudience::Group };
        m.on_message(&mut w.cx(), &mut alerts, &p1, group);
        w.take();
        m.on_message(&mut w.cx(), &mut alerts, &t, celebrate(&p1));
        let (id, to) = celebration_to(&w, &everyone);
        assert_eq!(to, vec![t.clone(), p1.clone(), p2.clone()], "the group is p1's space, not another breakout");
        let id = id.expect("celebrated");
        w.take();

        let congratulate =
            |id: &CelebrationId| ClientMessage::Congratulate { celebration_id: id.clone(), reaction: Reaction::Clap, message: None };
        m.on_message(&mut w.cx(), &mut alerts, &away, congratulate(&id));
        assert_eq!(w.errors_to(&away), vec![ErrorCode::UnknownMilestone], "not shown to them: it does not exist");
        w.take();
        m.on_message(&mut w.cx(), &mut alerts, &p1, congratulate(&id));
        assert_eq!(w.errors_to(&p1), vec![ErrorCode::Forbidden]);
        w.take();
        m.on_message(&mut w.cx(), &mut alerts, &p2, congratulate(&id));
        for p in everyone {
            let got = w.sent_to(p).iter().any(|m| matches!(m, ServerMessage::Congratulation { .. }));
            assert_eq!(got, p != &away, "{p}");
        }
    }

    /// With a store, preferences this room has not seen are loaded first: nothing goes out
    /// until the store task hands the request back.
    #[test]
    fn unknown_preferences_are_loaded_before_celebrating() {
        let mut w = World::new();
        let t = w.admit("t", Role::Therapist, None);
        let p = w.admit("p", Role::Participant, None);
        let mut m = Milestones::new(true);
        m.on_message(&mut w.cx(), &mut Alerts::default(), &t, celebrate(&p));
        match &w.take()[..] {
            [Effect::Milestone(Job::LoadPrefs { who, from, .. })] => assert_eq!((who, from), (&p, &t)),
            other => panic!("only the load: {other:?}"),
        }
        // The store task found nothing saved: the defaults, and the request again.
        lock(&m.prefs).entry(p.clone()).or_default();
        m.on_message(&mut w.cx(), &mut Alerts::default(), &t, celebrate(&p));
        assert_eq!(celebration_to(&w, &[&t, &p]).1, vec![t.clone(), p.clone()]);
        assert!(w.take().iter().any(|e| matches!(e, Effect::Milestone(Job::Record { .. }))), "recorded in the store");
    }
}
