//! Lanes: independent queues of transactions to one destination, so that a large
//! transaction of one kind never holds back a small one of another. Each lane has at
//! most one stored transaction in flight per destination; the sender runs one task
//! per lane. Presence (and consent) go in [`Lane::Presence`]; feed traffic, which
//! may be hundreds of kilobytes, in [`Lane::Bulk`]. On a 240 B/s line a 200 KB feed
//! transaction takes a quarter of an hour: with one lane, presence would wait behind it.

/// One lane of transactions to a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Lane {
    /// Presence, consent, subscriptions, reminders: small and urgent.
    Presence,
    /// Feed items and whatever else is large and can wait.
    Bulk,
}

impl Lane {
    /// Every lane, most urgent first.
    pub const ALL: [Lane; 2] = [Lane::Presence, Lane::Bulk];

    /// The lane an EDU type travels in when its family does not say otherwise:
    /// `tidings.feed_*` is bulk, everything else presence.
    pub fn of_edu_type(edu_type: &str) -> Lane {
        if edu_type.starts_with("tidings.feed_") { Lane::Bulk } else { Lane::Presence }
    }

    /// The number stored in the database.
    pub fn index(self) -> i64 {
        match self {
            Lane::Presence => 0,
            Lane::Bulk => 1,
        }
    }

    /// The lane of a stored number (unknown numbers are bulk: they can wait).
    pub fn from_index(i: i64) -> Lane {
        if i == 0 { Lane::Presence } else { Lane::Bulk }
    }

    /// Its name in logs.
    pub fn name(self) -> &'static str {
        match self {
            Lane::Presence => "presence",
            Lane::Bulk => "bulk",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feed_edus_are_bulk_and_the_rest_presence() {
        assert_eq!(Lane::of_edu_type("tidings.feed_items"), Lane::Bulk);
        assert_eq!(Lane::of_edu_type("m.presence"), Lane::Presence);
        assert_eq!(Lane::of_edu_type("tidings.presence_invite"), Lane::Presence);
        for lane in Lane::ALL {
            assert_eq!(Lane::from_index(lane.index()), lane);
        }
    }
}
