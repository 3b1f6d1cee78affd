//! The daily byte budget of all links (`link.daily_budget_bytes`): once this UTC
//! day's bytes are spent, only control and presence frames go; bulk waits for the
//! next day.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

const DAY_MS: u64 = 86_400_000;

/// Bytes sent today, against a limit.
#[derive(Debug)]
pub struct Budget {
    limit: u64,
    spent: Mutex<(u64, u64)>,
}

fn today() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64 / DAY_MS)
}

impl Budget {
    /// A budget of `limit` bytes a day; 0 = none.
    pub fn new(limit: u64) -> Self {
        Self { limit, spent: Mutex::new((today(), 0)) }
    }

    /// `n` more bytes went on a line.
    pub fn spend(&self, n: u64) {
        let mut spent = self.spent.lock().unwrap_or_else(|p| p.into_inner());
        let day = today();
        if spent.0 != day {
            *spent = (day, 0);
        }
        spent.1 += n;
    }

    /// Whether today's budget is spent (never, without a limit).
    pub fn exhausted(&self) -> bool {
        if self.limit == 0 {
            return false;
        }
        let spent = self.spent.lock().unwrap_or_else(|p| p.into_inner());
        spent.0 == today() && spent.1 >= self.limit
    }
}
