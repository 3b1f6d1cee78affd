//! One user's presence as a pure state machine: inputs are requests and syncs from
//! devices at given times; [`UserPresence::evaluate`] says what watchers should see
//! at a time, and [`UserPresence::next_deadline`] when that could change by itself.
//! No clock and no I/O here, so every rule is tested with plain numbers.

use std::collections::BTreeMap;

use ruma::presence::PresenceState;

/// A change of only `last_active` smaller than this is not worth telling anyone
/// (Synapse's granularity), and a user is "currently active" for this long after activity.
pub const LAST_ACTIVE_GRANULARITY_MS: u64 = 60_000;

/// The timings the state machine needs.
#[derive(Debug, Clone, Copy)]
pub struct Timings {
    /// A device inactive this long is idle.
    pub idle_after_ms: u64,
    /// A device that has not synced or asked anything for this long is gone.
    pub offline_after_ms: u64,
}

/// What one device has done, as far as presence cares.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceActivity {
    /// Kind reported by the client ("desktop", "mobile", "bot", ...).
    pub kind: Option<String>,
    /// Last request other than /sync (or the start of reported idleness).
    pub last_active_ms: u64,
    /// The device said it has been idle since then.
    pub idle_since_ms: Option<u64>,
    /// /sync requests of this device now waiting.
    pub syncs_in_flight: u32,
    /// Last time the device was heard from at all (request, sync start or end).
    pub last_seen_ms: u64,
}

impl DeviceActivity {
    fn connected(&self, now: u64, t: Timings) -> bool {
        self.syncs_in_flight > 0 || now < self.last_seen_ms.saturating_add(t.offline_after_ms)
    }

    fn idle(&self, now: u64, t: Timings) -> bool {
        self.idle_since_ms.is_some_and(|since| since <= now)
            || now >= self.last_active_ms.saturating_add(t.idle_after_ms)
    }
}

/// A device as watchers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceView {
    /// Device ID.
    pub device_id: String,
    /// Kind, "unknown" when the client never said.
    pub kind: String,
    /// Whether the device is idle.
    pub idle: bool,
}

/// What watchers see of a user at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// online / unavailable / offline.
    pub state: PresenceState,
    /// The user's status text.
    pub status_msg: Option<String>,
    /// When the user was last active (Unix ms), if ever.
    pub last_active_ms: Option<u64>,
    /// Active within the last minute while online.
    pub currently_active: bool,
    /// Connected devices.
    pub devices: Vec<DeviceView>,
}

impl Snapshot {
    /// How a user we never heard of looks: offline, nothing else.
    pub fn offline() -> Self {
        Self {
            state: PresenceState::Offline,
            status_msg: None,
            last_active_ms: None,
            currently_active: false,
            devices: Vec::new(),
        }
    }

    /// Whether going from `self` to `next` is something to tell watchers.
    pub fn differs_from(&self, next: &Snapshot) -> bool {
        let moved = match (self.last_active_ms, next.last_active_ms) {
            (Some(a), Some(b)) => a.abs_diff(b) >= LAST_ACTIVE_GRANULARITY_MS,
            (a, b) => a.is_some() != b.is_some(),
        };
        self.state != next.state
            || self.status_msg != next.status_msg
            || self.currently_active != next.currently_active
            || self.devices != next.devices
            || moved
    }
}

/// State carried over a restart: what the user looked like and until when it holds
/// if no device of theirs shows up.
#[derive(Debug, Clone, PartialEq)]
pub struct CarriedOver {
    /// The state published before the restart.
    pub state: PresenceState,
    /// It lapses at this time (last seen + offline_after).
    pub until_ms: u64,
    /// The devices watchers saw.
    pub devices: Vec<DeviceView>,
}

/// Everything presence knows about one local user.
#[derive(Debug, Clone, Default)]
pub struct UserPresence {
    /// Devices by ID.
    pub devices: BTreeMap<String, DeviceActivity>,
    /// The state set by the last explicit PUT; it wins over `set_presence` on /sync.
    pub explicit: Option<PresenceState>,
    /// The `set_presence` of the latest /sync.
    pub sync_presence: Option<PresenceState>,
    /// Status text (kept while offline, like other servers do).
    pub status_msg: Option<String>,
    /// Last activity of the user as a whole.
    pub last_active_ms: Option<u64>,
    /// Presence restored at start-up until a device reconnects.
    pub carried: Option<CarriedOver>,
}

impl UserPresence {
    fn device(&mut self, device_id: &str) -> &mut DeviceActivity {
        self.devices.entry(device_id.to_owned()).or_default()
    }

    fn mark_active(&mut self, device_id: &str, now: u64) {
        let d = self.device(device_id);
        d.last_active_ms = now;
        d.idle_since_ms = None;
        d.last_seen_ms = d.last_seen_ms.max(now);
        self.last_active_ms = Some(self.last_active_ms.unwrap_or(0).max(now));
        self.carried = None;
    }

    /// Any authenticated request other than /sync: the device is active now.
    pub fn request(&mut self, device_id: &str, now: u64) {
        self.mark_active(device_id, now);
    }

    /// A /sync began. It keeps the device present but does not make it active.
    pub fn sync_started(&mut self, device_id: &str, set_presence: Option<PresenceState>, now: u64) {
        let d = self.device(device_id);
        if d.last_seen_ms == 0 {
            // A device's first sync counts as the start of its activity.
            d.last_active_ms = now;
            self.last_active_ms = Some(self.last_active_ms.unwrap_or(0).max(now));
        }
        let d = self.device(device_id);
        d.syncs_in_flight += 1;
        d.last_seen_ms = now;
        if set_presence.is_some() {
            self.sync_presence = set_presence;
        }
        self.carried = None;
    }

    /// A /sync ended (answered or abandoned).
    pub fn sync_ended(&mut self, device_id: &str, now: u64) {
        if let Some(d) = self.devices.get_mut(device_id) {
            d.syncs_in_flight = d.syncs_in_flight.saturating_sub(1);
            d.last_seen_ms = d.last_seen_ms.max(now);
        }
    }

    /// An explicit PUT of the user's status from `device_id`.
    pub fn set_explicit(&mut self, device_id: &str, state: PresenceState, status_msg: Option<String>, now: u64) {
        self.mark_active(device_id, now);
        self.explicit = Some(state);
        self.status_msg = status_msg;
    }

    /// The device reports it has been idle for `idle_ms` already (0: active again).
    pub fn report_idle(&mut self, device_id: &str, idle_ms: u64, now: u64) {
        if idle_ms == 0 {
            self.mark_active(device_id, now);
            return;
        }
        let since = now.saturating_sub(idle_ms);
        let d = self.device(device_id);
        d.idle_since_ms = Some(since);
        d.last_active_ms = d.last_active_ms.min(since);
        d.last_seen_ms = d.last_seen_ms.max(now);
        self.last_active_ms = self.devices.values().map(|d| d.last_active_ms).max();
    }

    /// The device reports its kind.
    pub fn set_kind(&mut self, device_id: &str, kind: String) {
        self.device(device_id).kind = Some(kind);
    }

    /// The device logged out.
    pub fn forget_device(&mut self, device_id: &str) {
        self.devices.remove(device_id);
    }

    /// Whether any device is connected at `now`.
    pub fn connected(&self, now: u64, t: Timings) -> bool {
        self.devices.values().any(|d| d.connected(now, t))
    }

    /// When everyone has gone: the last sync's `set_presence` and any carried-over
    /// state end. An explicit PUT does not: it holds until the next PUT.
    pub fn expire_if_gone(&mut self, now: u64, t: Timings) {
        if !self.connected(now, t) && self.carried.as_ref().is_none_or(|c| now >= c.until_ms) {
            self.sync_presence = None;
            self.carried = None;
        }
    }

    /// What watchers should see at `now`.
    pub fn evaluate(&self, now: u64, t: Timings) -> Snapshot {
        let connected: Vec<(&String, &DeviceActivity)> =
            self.devices.iter().filter(|(_, d)| d.connected(now, t)).collect();
        let carried = self.carried.as_ref().filter(|c| connected.is_empty() && now < c.until_ms);
        let state = if connected.is_empty() {
            carried.map_or(PresenceState::Offline, |c| c.state.clone())
        } else {
            match (&self.explicit, &self.sync_presence) {
                (Some(PresenceState::Online), _) | (None, None) | (None, Some(PresenceState::Online)) => {
                    if connected.iter().any(|(_, d)| !d.idle(now, t)) {
                        PresenceState::Online
                    } else {
                        PresenceState::Unavailable
                    }
                }
                (Some(s), _) | (None, Some(s)) => s.clone(),
            }
        };
        let currently_active = state == PresenceState::Online
            && self.last_active_ms.is_some_and(|a| now < a.saturating_add(LAST_ACTIVE_GRANULARITY_MS));
        let devices = match carried {
            Some(c) => c.devices.clone(),
            None => connected
                .iter()
                .map(|(id, d)| DeviceView {
                    device_id: (*id).clone(),
                    kind: d.kind.clone().unwrap_or_else(|| "unknown".to_owned()),
                    idle: d.idle(now, t),
                })
                .collect(),
        };
        Snapshot {
            state,
            status_msg: self.status_msg.clone(),
            last_active_ms: self.last_active_ms,
            currently_active,
            devices,
        }
    }

    /// The next time after `now` at which [`Self::evaluate`] could answer differently
    /// without any new input: a device going idle or away, "currently active" lapsing.
    pub fn next_deadline(&self, now: u64, t: Timings) -> Option<u64> {
        let mut times = Vec::new();
        for d in self.devices.values() {
            if !d.connected(now, t) {
                continue;
            }
            if d.syncs_in_flight == 0 {
                times.push(d.last_seen_ms.saturating_add(t.offline_after_ms));
            }
            if !d.idle(now, t) {
                times.push(d.last_active_ms.saturating_add(t.idle_after_ms));
                if let Some(since) = d.idle_since_ms {
                    times.push(since);
                }
            }
        }
        if let Some(a) = self.last_active_ms {
            times.push(a.saturating_add(LAST_ACTIVE_GRANULARITY_MS));
        }
        if let Some(c) = &self.carried {
            times.push(c.until_ms);
        }
        times.into_iter().filter(|&at| at > now).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timings = Timings { idle_after_ms: 300_000, offline_after_ms: 30_000 };
    const START: u64 = 1_000_000;

    #[test]
    fn never_seen_is_offline() {
        let p = UserPresence::default();
        assert_eq!(p.evaluate(START, T).state, PresenceState::Offline);
        assert_eq!(p.next_deadline(START, T), None);
    }

    #[test]
    fn a_request_makes_online_then_idle_then_offline() {
        let mut p = UserPresence::default();
        p.request("D", START);
        let s = p.evaluate(START, T);
        assert_eq!(s.state, PresenceState::Online);
        assert!(s.currently_active);
        // Not syncing: gone after offline_after_ms.
        assert_eq!(p.next_deadline(START, T), Some(START + 30_000));
        assert_eq!(p.evaluate(START + 30_000, T).state, PresenceState::Offline);
    }

    #[test]
    fn syncing_keeps_present_but_not_active() {
        let mut p = UserPresence::default();
        p.request("D", START);
        p.sync_started("D", None, START + 1);
        // Still syncing long after: idle, not offline.
        let later = START + 300_000;
        assert_eq!(p.evaluate(later, T).state, PresenceState::Unavailable);
        p.sync_ended("D", later);
        assert_eq!(p.evaluate(later + 29_999, T).state, PresenceState::Unavailable);
        assert_eq!(p.evaluate(later + 30_000, T).state, PresenceState::Offline);
    }

    #[test]
    fn most_present_device_wins() {
        let mut p = UserPresence::default();
        p.sync_started("PHONE", None, START);
        p.sync_started("DESK", None, START);
        p.report_idle("PHONE", 600_000, START + 10);
        let s = p.evaluate(START + 10, T);
        assert_eq!(s.state, PresenceState::Online, "the desk is active");
        p.report_idle("DESK", 1, START + 20);
        assert_eq!(p.evaluate(START + 20, T).state, PresenceState::Unavailable);
        p.report_idle("DESK", 0, START + 30);
        assert_eq!(p.evaluate(START + 30, T).state, PresenceState::Online);
    }

    #[test]
    fn idle_report_moves_last_active_back() {
        let mut p = UserPresence::default();
        p.sync_started("D", None, START);
        p.request("D", START + 100_000);
        p.report_idle("D", 90_000, START + 100_000);
        assert_eq!(p.last_active_ms, Some(START + 10_000));
        let s = p.evaluate(START + 100_000, T);
        assert_eq!(s.state, PresenceState::Unavailable);
        assert!(s.devices.iter().all(|d| d.idle));
    }

    #[test]
    fn explicit_wins_over_set_presence_until_the_next_put() {
        let mut p = UserPresence::default();
        p.set_explicit("D", PresenceState::Unavailable, Some("lunch".into()), START);
        p.sync_started("D", Some(PresenceState::Online), START + 1);
        let s = p.evaluate(START + 1, T);
        assert_eq!(s.state, PresenceState::Unavailable);
        assert_eq!(s.status_msg.as_deref(), Some("lunch"));
        p.sync_ended("D", START + 2);
        p.expire_if_gone(START + 40_000, T);
        assert_eq!(p.explicit, Some(PresenceState::Unavailable), "an absence does not end it");
        p.sync_started("D", Some(PresenceState::Online), START + 50_000);
        assert_eq!(p.evaluate(START + 50_000, T).state, PresenceState::Unavailable);
        p.set_explicit("D", PresenceState::Online, None, START + 60_000);
        assert_eq!(p.evaluate(START + 60_000, T).state, PresenceState::Online);
    }

    #[test]
    fn set_presence_offline_on_sync_is_respected() {
        let mut p = UserPresence::default();
        p.sync_started("D", Some(PresenceState::Offline), START);
        assert_eq!(p.evaluate(START, T).state, PresenceState::Offline);
    }

    #[test]
    fn small_last_active_moves_are_not_changes() {
        let mut p = UserPresence::default();
        p.request("D", START);
        let a = p.evaluate(START, T);
        p.request("D", START + 59_000);
        let b = p.evaluate(START + 59_000, T);
        assert!(!a.differs_from(&b));
        p.request("D", START + 120_000);
        let c = p.evaluate(START + 120_000, T);
        assert!(a.differs_from(&c));
    }

    #[test]
    fn carried_state_holds_until_it_lapses() {
        let mut p = UserPresence {
            carried: Some(CarriedOver { state: PresenceState::Online, until_ms: START + 5_000, devices: Vec::new() }),
            ..Default::default()
        };
        assert_eq!(p.evaluate(START, T).state, PresenceState::Online);
        assert_eq!(p.next_deadline(START, T), Some(START + 5_000));
        assert_eq!(p.evaluate(START + 5_000, T).state, PresenceState::Offline);
        p.expire_if_gone(START + 5_000, T);
        assert!(p.carried.is_none());
    }

    #[test]
    fn device_kind_is_visible() {
        let mut p = UserPresence::default();
        p.set_kind("D", "mobile".into());
        p.request("D", START);
        let s = p.evaluate(START, T);
        assert_eq!(s.devices, vec![DeviceView { device_id: "D".into(), kind: "mobile".into(), idle: false }]);
    }
}
