//! What an answer depends on, to know which changes touch it. Pure.

use badgepulse_contract::changes::Change;

/// The data an answer reads: events of `org` (`None`: of any org) with
/// `occurred_at` in `[from, to)`. A change notice that touches it may
/// change the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reach {
    org: Option<String>,
    from: u32,
    to: u32,
}

impl Reach {
    /// Events of `org` in `[from, to)`.
    pub fn span(org: Option<&str>, from: u32, to: u32) -> Reach {
        Reach {
            org: org.map(str::to_owned),
            from,
            to,
        }
    }

    /// Every event of `org`, whenever it occurred.
    pub fn all_time(org: Option<&str>) -> Reach {
        Reach::span(org, 0, u32::MAX)
    }

    pub fn touched_by(&self, change: &Change) -> bool {
        change.touches(self.org.as_deref(), self.from, self.to)
    }
}
