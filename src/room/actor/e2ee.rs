//! End-to-end encryption keys, relayed blind: the room passes the clients' key messages on
//! without being able to read them (see docs/threat-model.md).
//!
//! Owns, in memory only, each connection's latest `e2eeHello` (public keys), who the key
//! leader is, and who was last told what. It never holds a key that opens anything: the
//! bundles and wraps it relays are opaque base64url, size-checked and rate-limited. Nothing of
//! it goes into the room's snapshot, the store or the logs (tests check the snapshot).
//! Must not decide policy (the room's `e2ee` setting is the room's, and `setE2ee` is handled
//! there): it sees the members through [`Cx`] and sends through it; its core methods take the
//! members as [`MemberView`]s and return the messages, so they are unit-tested on their own.
//!
//! Rules: only therapists sign with an identity key; the leader is the first admitted
//! therapist (in join order) that sent one; only the leader may send key bundles
//! (`forbidden` otherwise), and each member receives only its own wrap.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

use super::{Cx, Member};
use crate::auth::Role;
use crate::room::ParticipantId;
use crate::signal::protocol::{
    is_e2ee_blob, ClientMessage, E2eeMember, E2eeSpace, E2eeWrap, ErrorCode, ServerMessage, MAX_E2EE_BUNDLE_CHARS, MAX_E2EE_KEY_CHARS,
};

/// Hellos one participant may send per [`WINDOW`] (one per connection is normal).
const HELLOS_PER_WINDOW: usize = 10;
/// Bundles the leader may send per [`WINDOW`]: one per space per membership change, and
/// opening ten breakouts at once re-keys eleven spaces.
const BUNDLES_PER_WINDOW: usize = 120;
const WINDOW: Duration = Duration::from_secs(60);
const MAX_SPACE_CHARS: usize = 64;

/// What the room tells this module about one member, in join order.
pub(super) struct MemberView<'a> {
    pub id: &'a ParticipantId,
    pub name: &'a str,
    pub role: Role,
    pub admitted: bool,
    /// `None`: the main room.
    pub space: Option<&'a str>,
}

/// Messages to send, each to one participant.
pub(super) type Out = Vec<(ParticipantId, ServerMessage)>;

/// Why a message was refused; nothing changed.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Refusal {
    pub code: ErrorCode,
    pub message: &'static str,
}

fn refuse<T>(code: ErrorCode, message: &'static str) -> Result<T, Refusal> {
    Err(Refusal { code, message })
}

#[derive(Clone)]
struct Hello {
    ecdh_pub: String,
    identity_key: Option<String>,
    identity_sig: Option<String>,
}

#[derive(Default)]
pub(super) struct E2eeKeys {
    hellos: HashMap<ParticipantId, Hello>,
    /// The leader and the key it announced, as last told.
    leader: Option<(ParticipantId, String)>,
    /// Who has been told the current leader.
    told_leader: HashSet<ParticipantId>,
    /// Therapists who have every hello and the current spaces.
    caught_up: HashSet<ParticipantId>,
    spaces: Vec<E2eeSpace>,
    sent: HashMap<(ParticipantId, bool), VecDeque<Instant>>,
}

const MAIN: &str = "main";

impl E2eeKeys {
    /// A connection (re)joined: what it was told belongs to its old connection.
    pub(super) fn joined(&mut self, id: &ParticipantId) {
        self.hellos.remove(id);
        self.told_leader.remove(id);
        self.caught_up.remove(id);
    }

    /// The room stopped encrypting: forget everything.
    pub(super) fn reset(&mut self) {
        *self = Self::default();
    }

    fn allow(&mut self, from: &ParticipantId, bundle: bool, now: Instant) -> bool {
        let max = if bundle { BUNDLES_PER_WINDOW } else { HELLOS_PER_WINDOW };
        self.sent.retain(|_, t| t.back().is_some_and(|t| now.duration_since(*t) < WINDOW));
        let times = self.sent.entry((from.clone(), bundle)).or_default();
        while times.front().is_some_and(|t| now.duration_since(*t) >= WINDOW) {
            times.pop_front();
        }
        if times.len() >= max {
            return false;
        }
        times.push_back(now);
        true
    }

    /// `e2eeHello` from `from`: remembered, and relayed to every therapist present.
    pub(super) fn hello(
        &mut self,
        from: &MemberView,
        ecdh_pub: String,
        identity_key: Option<String>,
        identity_sig: Option<String>,
        members: &[MemberView],
        now: Instant,
    ) -> Result<Out, Refusal> {
        if !is_e2ee_blob(&ecdh_pub, MAX_E2EE_KEY_CHARS)
            || identity_key.as_deref().is_some_and(|k| !is_e2ee_blob(k, MAX_E2EE_KEY_CHARS))
            || identity_sig.as_deref().is_some_and(|k| !is_e2ee_blob(k, MAX_E2EE_KEY_CHARS))
            || identity_key.is_some() != identity_sig.is_some()
        {
            return refuse(ErrorCode::InvalidE2ee, "keys must be base64url of at most 256 characters, an identity key with its signature");
        }
        if identity_key.is_some() && from.role != Role::Therapist {
            return refuse(ErrorCode::Forbidden, "only therapists sign with an identity key");
        }
        if !self.allow(from.id, false, now) {
            return refuse(ErrorCode::RateLimited, "too many key announcements; wait a minute");
        }
        let hello = Hello { ecdh_pub, identity_key, identity_sig };
        self.hellos.insert(from.id.clone(), hello.clone());
        let msg = peer_key(from.id, &hello);
        Ok(members.iter().filter(|m| m.role == Role::Therapist && m.id != from.id).map(|m| (m.id.clone(), msg.clone())).collect())
    }

    /// `e2eeKeyBundle` from `from`: each listed member present gets its own wrap, nobody else
    /// anything.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn bundle(
        &mut self,
        from: &MemberView,
        space: String,
        epoch: u32,
        bundle: String,
        signature: String,
        wraps: Vec<E2eeWrap>,
        members: &[MemberView],
        now: Instant,
    ) -> Result<Out, Refusal> {
        if from.role != Role::Therapist {
            return refuse(ErrorCode::Forbidden, "only therapists send key bundles");
        }
        if self.leader.as_ref().map(|(id, _)| id) != Some(from.id) {
            return refuse(ErrorCode::Forbidden, "only the key leader (the first therapist with an identity key) sends key bundles");
        }
        if space.is_empty()
            || space.chars().count() > MAX_SPACE_CHARS
            || !is_e2ee_blob(&bundle, MAX_E2EE_BUNDLE_CHARS)
            || !is_e2ee_blob(&signature, MAX_E2EE_KEY_CHARS)
            || wraps.len() > members.len()
            || wraps.iter().any(|w| !is_e2ee_blob(&w.wrap, MAX_E2EE_KEY_CHARS))
        {
            return refuse(
                ErrorCode::InvalidE2ee,
                "a bundle needs a space, base64url blobs within their limits and at most one wrap per member",
            );
        }
        let mut seen = HashSet::new();
        if !wraps.iter().all(|w| seen.insert(&w.participant_id)) {
            return refuse(ErrorCode::InvalidE2ee, "one wrap per member");
        }
        if !self.spaces.iter().any(|s| s.space == space) {
            return refuse(ErrorCode::InvalidE2ee, "no such space");
        }
        if !self.allow(from.id, true, now) {
            return refuse(ErrorCode::RateLimited, "too many key bundles; wait a minute");
        }
        let present: HashSet<&ParticipantId> = members.iter().filter(|m| m.admitted).map(|m| m.id).collect();
        Ok(wraps
            .into_iter()
            .filter(|w| present.contains(&w.participant_id) && &w.participant_id != from.id)
            .map(|w| {
                let msg = ServerMessage::E2eeKeys {
                    from: from.id.clone(),
                    space: space.clone(),
                    epoch,
                    bundle: bundle.clone(),
                    signature: signature.clone(),
                    wrap: w.wrap,
                };
                (w.participant_id, msg)
            })
            .collect())
    }

    /// After every change in the room: forget who left, name the leader to whoever has not
    /// heard it, catch new therapists up, and tell therapists when who is where changed.
    pub(super) fn sync(&mut self, members: &[MemberView]) -> Out {
        let present: HashSet<&ParticipantId> = members.iter().map(|m| m.id).collect();
        self.hellos.retain(|id, _| present.contains(id));
        self.told_leader.retain(|id| present.contains(id));
        self.caught_up.retain(|id| present.contains(id));
        let mut out = Out::new();

        let leader = members
            .iter()
            .filter(|m| m.admitted && m.role == Role::Therapist)
            .find_map(|m| self.hellos.get(m.id).filter(|h| h.identity_key.is_some()).map(|h| (m.id.clone(), h.clone())));
        let now_leader = leader.as_ref().map(|(id, h)| (id.clone(), h.ecdh_pub.clone()));
        if now_leader != self.leader {
            self.leader = now_leader;
            self.told_leader.clear();
        }
        let leader_msg = match &leader {
            Some((id, h)) => ServerMessage::E2eeLeader {
                participant_id: Some(id.clone()),
                identity_key: h.identity_key.clone(),
                ecdh_pub: Some(h.ecdh_pub.clone()),
                identity_sig: h.identity_sig.clone(),
            },
            None => ServerMessage::E2eeLeader { participant_id: None, identity_key: None, ecdh_pub: None, identity_sig: None },
        };
        for m in members {
            if self.told_leader.insert(m.id.clone()) {
                out.push((m.id.clone(), leader_msg.clone()));
            }
        }

        let spaces = spaces_of(members);
        let changed = spaces != self.spaces;
        self.spaces = spaces;
        for m in members.iter().filter(|m| m.role == Role::Therapist) {
            let new = self.caught_up.insert(m.id.clone());
            if new {
                for (id, h) in &self.hellos {
                    if id != m.id {
                        out.push((m.id.clone(), peer_key(id, h)));
                    }
                }
            }
            if (new || changed) && m.admitted {
                out.push((m.id.clone(), ServerMessage::E2eeSpaces { spaces: self.spaces.clone() }));
            }
        }
        out
    }
}

fn peer_key(id: &ParticipantId, h: &Hello) -> ServerMessage {
    ServerMessage::E2eePeerKey {
        participant_id: id.clone(),
        ecdh_pub: h.ecdh_pub.clone(),
        identity_key: h.identity_key.clone(),
        identity_sig: h.identity_sig.clone(),
    }
}

/// Admitted members by space: the main room first, then the others by id, members in join order.
fn spaces_of(members: &[MemberView]) -> Vec<E2eeSpace> {
    let mut spaces: Vec<E2eeSpace> = vec![E2eeSpace { space: MAIN.into(), members: Vec::new() }];
    for m in members.iter().filter(|m| m.admitted) {
        let name = m.space.unwrap_or(MAIN);
        let member = E2eeMember { id: m.id.clone(), name: m.name.to_string(), role: m.role };
        match spaces.iter_mut().find(|s| s.space == name) {
            Some(s) => s.members.push(member),
            None => spaces.push(E2eeSpace { space: name.to_string(), members: vec![member] }),
        }
    }
    spaces[1..].sort_by(|a, b| a.space.cmp(&b.space));
    spaces
}

/// The room's members as this module sees them, in join order.
fn views_of<'a>(order: &'a [ParticipantId], members: &'a HashMap<ParticipantId, Member>) -> Vec<MemberView<'a>> {
    order
        .iter()
        .filter_map(|id| members.get(id))
        .map(|m| MemberView { id: &m.info.id, name: &m.info.name, role: m.info.role, admitted: m.admitted, space: m.space.as_deref() })
        .collect()
}

impl E2eeKeys {
    /// `e2eeHello` or `e2eeKeyBundle` from `from` in an encrypted room (hellos also from the
    /// waiting room: the leader can wrap a key the moment someone is admitted).
    pub(super) fn on_message(&mut self, cx: &mut Cx, from: &ParticipantId, msg: ClientMessage) {
        let views = views_of(cx.order, cx.members);
        let Some(me) = views.iter().find(|v| v.id == from) else { return };
        let result = match msg {
            ClientMessage::E2eeHello { ecdh_pub, identity_key, identity_sig } => {
                self.hello(me, ecdh_pub, identity_key, identity_sig, &views, cx.now.at)
            }
            ClientMessage::E2eeKeyBundle { space, epoch, bundle, signature, wraps } if me.admitted => {
                self.bundle(me, space, epoch, bundle, signature, wraps, &views, cx.now.at)
            }
            ClientMessage::E2eeKeyBundle { .. } => {
                Err(Refusal { code: ErrorCode::NotAdmitted, message: "you are in the waiting room; the therapist will let you in" })
            }
            _ => return,
        };
        match result {
            Ok(out) => {
                for (to, m) in out {
                    cx.send(&to, m);
                }
            }
            Err(refusal) => cx.error(from, refusal.code, refusal.message),
        }
    }

    /// After every input of an encrypted room (see [`E2eeKeys::sync`]).
    pub(super) fn after_input(&mut self, cx: &mut Cx) {
        for (to, m) in self.sync(&views_of(cx.order, cx.members)) {
            cx.send(&to, m);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> ParticipantId {
        ParticipantId::from_trusted(s)
    }

    struct M {
        id: ParticipantId,
        role: Role,
        admitted: bool,
        space: Option<&'static str>,
    }

    fn views(ms: &[M]) -> Vec<MemberView<'_>> {
        ms.iter().map(|m| MemberView { id: &m.id, name: "n", role: m.role, admitted: m.admitted, space: m.space }).collect()
    }

    fn group() -> Vec<M> {
        vec![
            M { id: id("t"), role: Role::Therapist, admitted: true, space: None },
            M { id: id("p1"), role: Role::Participant, admitted: true, space: None },
            M { id: id("p2"), role: Role::Participant, admitted: true, space: Some("b1") },
            M { id: id("w"), role: Role::Participant, admitted: false, space: None },
        ]
    }

    fn to(out: &Out, who: &str) -> Vec<ServerMessage> {
        out.iter().filter(|(p, _)| p.as_str() == who).map(|(_, m)| m.clone()).collect()
    }

    fn setup() -> (E2eeKeys, Vec<M>, Instant) {
        let mut k = E2eeKeys::default();
        let ms = group();
        let now = Instant::now();
        let v = views(&ms);
        k.hello(&v[0], "TPUB".into(), Some("TID".into()), Some("TSIG".into()), &v, now).expect("therapist hello");
        for i in 1..4 {
            k.hello(&v[i], format!("PUB{i}"), None, None, &v, now).expect("hello");
        }
        (k, ms, now)
    }

    #[test]
    fn the_first_admitted_therapist_with_an_identity_key_leads_and_everyone_hears_it() {
        let (mut k, ms, _) = setup();
        let v = views(&ms);
        let out = k.sync(&v);
        for who in ["t", "p1", "p2", "w"] {
            assert!(
                to(&out, who).iter().any(|m| matches!(m, ServerMessage::E2eeLeader { participant_id: Some(p), .. } if p.as_str() == "t")),
                "{who} hears the leader"
            );
        }
        // The therapist learns every member's key (including the one still waiting) and the spaces.
        let t = to(&out, "t");
        assert_eq!(t.iter().filter(|m| matches!(m, ServerMessage::E2eePeerKey { .. })).count(), 3);
        let spaces = t.iter().find_map(|m| match m {
            ServerMessage::E2eeSpaces { spaces } => Some(spaces.clone()),
            _ => None,
        });
        let spaces = spaces.expect("spaces told");
        assert_eq!(spaces.iter().map(|s| s.space.as_str()).collect::<Vec<_>>(), ["main", "b1"]);
        assert_eq!(spaces[0].members.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(), ["t", "p1"], "waiting people hold no key");
        // Nothing new: nothing sent.
        assert!(k.sync(&v).is_empty());
    }

    #[test]
    fn only_the_leader_sends_bundles_and_each_member_gets_only_its_own_wrap() {
        let (mut k, ms, now) = setup();
        let v = views(&ms);
        k.sync(&v);
        let wraps = vec![
            E2eeWrap { participant_id: id("p1"), wrap: "W1".into() },
            E2eeWrap { participant_id: id("w"), wrap: "WW".into() },
            E2eeWrap { participant_id: id("ghost"), wrap: "WG".into() },
        ];
        let refused = k.bundle(&v[1], "main".into(), 1, "B".into(), "S".into(), wraps.clone(), &v, now);
        assert_eq!(refused.unwrap_err().code, ErrorCode::Forbidden, "a participant may not send a bundle");
        let out = k.bundle(&v[0], "main".into(), 1, "B".into(), "S".into(), wraps, &v, now).expect("the leader's bundle");
        assert_eq!(out.len(), 1, "only admitted members present get a wrap: {out:?}");
        match &out[0] {
            (p, ServerMessage::E2eeKeys { wrap, from, .. }) => {
                assert_eq!((p.as_str(), wrap.as_str(), from.as_str()), ("p1", "W1", "t"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn bad_blobs_and_unknown_spaces_are_refused() {
        let (mut k, ms, now) = setup();
        let v = views(&ms);
        k.sync(&v);
        let bad = |k: &mut E2eeKeys, space: &str, bundle: &str| {
            k.bundle(&v[0], space.into(), 1, bundle.into(), "S".into(), vec![], &v, now).unwrap_err().code
        };
        assert_eq!(bad(&mut k, "nowhere", "B"), ErrorCode::InvalidE2ee);
        assert_eq!(bad(&mut k, "main", "not base64!"), ErrorCode::InvalidE2ee);
        assert_eq!(bad(&mut k, "main", &"A".repeat(MAX_E2EE_BUNDLE_CHARS + 1)), ErrorCode::InvalidE2ee);
        let e = k.hello(&v[1], "PUB".into(), Some("ID".into()), Some("SIG".into()), &v, now).unwrap_err();
        assert_eq!(e.code, ErrorCode::Forbidden, "participants have no identity key");
        let e = k.hello(&v[1], "x y".into(), None, None, &v, now).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidE2ee);
    }

    #[test]
    fn hellos_are_rate_limited() {
        let (mut k, ms, now) = setup();
        let v = views(&ms);
        for _ in 1..HELLOS_PER_WINDOW {
            k.hello(&v[1], "PUB".into(), None, None, &v, now).expect("within the limit");
        }
        assert_eq!(k.hello(&v[1], "PUB".into(), None, None, &v, now).unwrap_err().code, ErrorCode::RateLimited);
        assert!(k.hello(&v[1], "PUB".into(), None, None, &v, now + WINDOW).is_ok(), "the window slides");
    }

    #[test]
    fn a_move_tells_the_therapists_and_a_leaving_leader_is_replaced() {
        let (mut k, mut ms, now) = setup();
        k.sync(&views(&ms));
        ms[1].space = Some("b1");
        let out = k.sync(&views(&ms));
        assert!(to(&out, "t").iter().any(|m| matches!(m, ServerMessage::E2eeSpaces { .. })));
        assert!(to(&out, "p1").is_empty(), "participants never see who is where through this");
        // A second therapist; the first leaves: the second leads, everyone is told.
        ms.push(M { id: id("t2"), role: Role::Therapist, admitted: true, space: None });
        let v = views(&ms);
        k.hello(&v[4], "T2PUB".into(), Some("T2ID".into()), Some("T2SIG".into()), &v, now).expect("hello");
        k.sync(&v);
        ms.remove(0);
        let out = k.sync(&views(&ms));
        for who in ["p1", "p2", "t2"] {
            assert!(
                to(&out, who).iter().any(|m| matches!(m, ServerMessage::E2eeLeader { participant_id: Some(p), .. } if p.as_str() == "t2")),
                "{who} hears the new leader"
            );
        }
    }
}
