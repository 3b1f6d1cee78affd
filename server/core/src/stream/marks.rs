//! Change marks: per key (a user, say), the newest stream position at which
//! something of one kind changed for it, so a `/sync` source can tell without the
//! database that nothing of its kind lies past a token.
//!
//! A woken long poll asks every source for its range; most have nothing in it (a
//! new room message changes no account data, no to-device queue, no device list).
//! Each such "nothing" used to be a query on the reader pool. A source whose writes
//! raise a mark answers "nothing" at once when the mark is at or below the token.
//!
//! The rule that keeps this exact: a write raises the mark for its position
//! *before* that position becomes visible (in the write itself, on the writer
//! thread, or in an after-commit step; never after the position is released). Then
//! any sync whose range holds the position sees the mark above its token. A raise
//! for a write that then fails only costs one needless query. Keys never raised
//! since start-up answer the visible position at start-up: anything at or below it
//! may have changed.

use std::collections::HashMap;
use std::sync::Mutex;

/// Marks of one kind.
#[derive(Debug)]
pub struct Marks {
    start: u64,
    newest: Mutex<HashMap<String, u64>>,
}

impl Marks {
    /// Marks for a server whose visible position at start-up is `start`.
    pub fn new(start: u64) -> Self {
        Self { start, newest: Mutex::new(HashMap::new()) }
    }

    /// Something of this kind for `key` changes at `pos`; call before `pos` is visible.
    pub fn raise(&self, key: &str, pos: u64) {
        let mut newest = self.newest.lock().unwrap_or_else(|p| p.into_inner());
        match newest.get_mut(key) {
            Some(mark) => *mark = (*mark).max(pos),
            None => {
                newest.insert(key.to_owned(), pos.max(self.start));
            }
        }
    }

    /// The newest position at which something of this kind may have changed for `key`.
    pub fn newest(&self, key: &str) -> u64 {
        let newest = self.newest.lock().unwrap_or_else(|p| p.into_inner());
        newest.get(key).copied().unwrap_or(self.start)
    }

    /// Whether something of this kind may have changed for `key` after `since`.
    pub fn changed_after(&self, key: &str, since: u64) -> bool {
        self.newest(key) > since
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_answer_the_start_and_marks_only_rise() {
        let m = Marks::new(10);
        assert!(m.changed_after("@a:x", 9) && !m.changed_after("@a:x", 10));
        m.raise("@a:x", 15);
        m.raise("@a:x", 12);
        assert_eq!(m.newest("@a:x"), 15);
        assert!(m.changed_after("@a:x", 14) && !m.changed_after("@a:x", 15));
        m.raise("@b:x", 3);
        assert_eq!(m.newest("@b:x"), 10, "never below the start");
    }
}
