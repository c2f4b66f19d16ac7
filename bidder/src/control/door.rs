//! One listener's connection slots. The admin and notice listeners each have a
//! [`Door`], so idle or flooding clients of one never hold the slots of the other; the
//! notice door also caps the connections of any one source address.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::TokioTimer;

use crate::limits::MAX_ADMIN_REQUEST_HEAD_BYTES;
use crate::metrics::PromText;

/// Which listener a connection came in on; it decides the routes it may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Listener {
    /// `/metrics`, health, readiness, `/reload`, `/campaign/{id}/resume`.
    Admin,
    /// `/notice/{win,bill,loss}` only.
    Notice,
}

impl Listener {
    fn name(self) -> &'static str {
        match self {
            Listener::Admin => "admin",
            Listener::Notice => "notice",
        }
    }
}

/// Why a connection was refused at the door.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Shed {
    /// Every slot of the listener was taken.
    Full,
    /// Its source address held its share already.
    PerSource,
}

/// A listener's bounds and the connections it holds. The control thread alone uses
/// it, so plain cells suffice.
pub(super) struct Door {
    listener: Listener,
    max_connections: u32,
    /// `None` on the admin listener (few, trusted clients).
    max_per_source: Option<u32>,
    open: Cell<u32>,
    shed: [Cell<u64>; 2],
    /// Open connections by source; an entry leaves when its count reaches zero, so the
    /// map holds at most `max_connections` entries.
    per_source: RefCell<HashMap<IpAddr, u32>>,
    /// The HTTP settings of this listener's connections (its head timeout).
    pub http: http1::Builder,
}

impl Door {
    pub(super) fn new(
        listener: Listener,
        max_connections: u32,
        max_per_source: Option<u32>,
        header_read_timeout_ms: u64,
    ) -> Door {
        let mut http = http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(Duration::from_millis(header_read_timeout_ms))
            .max_buf_size(MAX_ADMIN_REQUEST_HEAD_BYTES);
        Door {
            listener,
            max_connections,
            max_per_source,
            open: Cell::new(0),
            shed: Default::default(),
            per_source: RefCell::new(HashMap::new()),
            http,
        }
    }

    pub(super) fn open(&self) -> u32 {
        self.open.get()
    }

    /// Takes a slot for a connection from `source`, or says why not (and counts it).
    pub(super) fn admit(&self, source: IpAddr) -> Result<(), Shed> {
        let refused = if self.open.get() >= self.max_connections {
            Some(Shed::Full)
        } else {
            let mut per_source = self.per_source.borrow_mut();
            let held = per_source.entry(source).or_insert(0);
            if self.max_per_source.is_some_and(|cap| *held >= cap) {
                Some(Shed::PerSource)
            } else {
                *held += 1;
                None
            }
        };
        if let Some(why) = refused {
            let counter = &self.shed[why as usize];
            counter.set(counter.get() + 1);
            return Err(why);
        }
        self.open.set(self.open.get() + 1);
        Ok(())
    }

    /// Frees the slot [`Door::admit`] gave `source`.
    pub(super) fn leave(&self, source: IpAddr) {
        assert!(self.open.get() > 0, "a slot freed twice");
        self.open.set(self.open.get() - 1);
        let mut per_source = self.per_source.borrow_mut();
        if let Some(held) = per_source.get_mut(&source) {
            *held -= 1;
            if *held == 0 {
                per_source.remove(&source);
            }
        }
    }

    /// This listener's connection counters for the scrape.
    pub(super) fn collect(&self, out: &mut PromText) {
        let listener = self.listener.name();
        out.gauge(
            "bidder_control_connections_open",
            "Connections the control thread holds, by listener.",
            &[("listener", listener)],
            i64::from(self.open.get()),
        );
        for (why, reason) in [(Shed::Full, "full"), (Shed::PerSource, "per_source")] {
            out.counter(
                "bidder_control_connections_shed_total",
                "Control connections refused with 503: every slot of the listener taken (full) or the source's share taken (per_source).",
                &[("listener", listener), ("reason", reason)],
                self.shed[why as usize].get(),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_gets_its_share_and_the_listener_its_total() {
        let door = Door::new(Listener::Notice, 3, Some(2), 1_000);
        let (a, b, c) = (
            IpAddr::from([10, 0, 0, 1]),
            IpAddr::from([10, 0, 0, 2]),
            IpAddr::from([10, 0, 0, 3]),
        );
        assert_eq!(door.admit(a), Ok(()));
        assert_eq!(door.admit(a), Ok(()));
        assert_eq!(door.admit(a), Err(Shed::PerSource));
        assert_eq!(door.admit(b), Ok(()));
        assert_eq!(door.admit(c), Err(Shed::Full));
        door.leave(a);
        assert_eq!(door.admit(c), Ok(()), "a freed slot is anyone's");
        assert_eq!(door.admit(a), Err(Shed::Full));
        for source in [a, b, c] {
            door.leave(source);
        }
        assert_eq!(door.open(), 0);
        assert!(
            door.per_source.borrow().is_empty(),
            "no entry outlives its last connection"
        );
    }

    #[test]
    fn the_admin_door_has_no_per_source_share() {
        let door = Door::new(Listener::Admin, 2, None, 1_000);
        let a = IpAddr::from([127, 0, 0, 1]);
        assert_eq!(door.admit(a), Ok(()));
        assert_eq!(door.admit(a), Ok(()));
        assert_eq!(door.admit(a), Err(Shed::Full));
    }
}
