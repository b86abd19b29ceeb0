//! Start-time fair queueing over named flows: the tags, the turn order and the global virtual
//! time of one level of the hierarchy. The policy keeps one over tenants and one per tenant over
//! its fairness keys; the crate documentation describes the discipline.

use std::collections::{BTreeMap, BTreeSet};

use crate::VirtualTime;

/// Position in the order flows became active: breaks ties between equal tags, earlier first.
pub(crate) type Activation = u64;

/// One level of start-time fair queueing.
#[derive(Debug, Default)]
pub(crate) struct Sfq {
    /// Active flows (with queued work), and idle flows whose tag is still ahead of the global
    /// virtual time. An idle flow at or behind it would restart at the global virtual time
    /// anyway, so it is forgotten: the map never outgrows the live flows plus the recently
    /// served ones.
    pub(crate) flows: BTreeMap<String, Flow>,
    /// The active flows in the order they get turns: lowest tag first, then earliest activation.
    pub(crate) turns: BTreeMap<(VirtualTime, Activation), String>,
    /// Idle flows still ahead of the global virtual time, by tag: forgotten once it passes them.
    pub(crate) idle: BTreeSet<(VirtualTime, String)>,
    /// The global virtual time: the start tag of the latest charged assignment.
    pub(crate) now: VirtualTime,
    /// The next activation number to hand out; only grows.
    next_activation: Activation,
    /// Charges made so far: numbers each charge, for [`Sfq::correct`].
    charges: u64,
    /// The flow and the charge number of the assignment whose start tag `now` is.
    now_set_by: Option<(String, u64)>,
}

#[derive(Debug)]
pub(crate) struct Flow {
    /// The virtual time the flow's next assignment starts at.
    pub(crate) tag: VirtualTime,
    /// Set while the flow has queued work: its place among equal tags.
    pub(crate) activation: Option<Activation>,
}

impl Sfq {
    /// The flow's tag, active or remembered idle.
    pub(crate) fn tag(&self, name: &str) -> Option<VirtualTime> {
        self.flows.get(name).map(|f| f.tag)
    }

    /// Makes `name` active if it is not: no credit for the time away (its tag is at least the
    /// global virtual time), no escape from a debt (a tag ahead of it is kept).
    pub(crate) fn activate(&mut self, name: &str) {
        let now = self.now;
        let flow = self.flows.entry(name.to_string()).or_insert(Flow {
            tag: now,
            activation: None,
        });
        if flow.activation.is_some() {
            return;
        }
        self.idle.remove(&(flow.tag, name.to_string()));
        flow.tag = flow.tag.max(now);
        let activation = self.next_activation;
        self.next_activation += 1;
        flow.activation = Some(activation);
        self.turns.insert((flow.tag, activation), name.to_string());
    }

    /// Makes `name` idle (it has nothing queued): remembered while its tag is ahead of the
    /// global virtual time (it still owes for its latest turns), forgotten otherwise.
    pub(crate) fn deactivate(&mut self, name: &str) {
        let Some(flow) = self.flows.get_mut(name) else {
            return;
        };
        let Some(activation) = flow.activation.take() else {
            return;
        };
        self.turns.remove(&(flow.tag, activation));
        if flow.tag > self.now {
            self.idle.insert((flow.tag, name.to_string()));
        } else {
            self.flows.remove(name);
        }
    }

    /// Charges one assignment of `name` (an active flow) started at its current tag: the global
    /// virtual time moves to that start, and the tag advances by `cost`.
    ///
    /// Returns the charge's number, which a later [`Sfq::correct`] of it names.
    pub(crate) fn charge(&mut self, name: &str, cost: VirtualTime) -> u64 {
        self.charges += 1;
        let number = self.charges;
        let Some(flow) = self.flows.get_mut(name) else {
            return number;
        };
        if flow.tag >= self.now {
            self.now = flow.tag;
            self.now_set_by = Some((name.to_string(), number));
        }
        let Some(activation) = flow.activation else {
            return number;
        };
        self.turns.remove(&(flow.tag, activation));
        flow.tag = flow.tag.saturating_add(cost);
        self.turns.insert((flow.tag, activation), name.to_string());
        number
    }

    /// Corrects charge number `number` of `name` by `delta` (the real cost minus the
    /// estimate).
    ///
    /// When the global virtual time is the start of a later assignment of the same flow, that
    /// start moves by `delta` too: it was reached through the estimate. Otherwise an
    /// overestimate would leave the virtual time far ahead of every flow, and a newcomer,
    /// which starts there, would wait for all of them to catch up.
    ///
    /// A flow that is active or remembered moves by `delta` (never below zero). A forgotten
    /// flow was caught up by the global virtual time; an extra cost becomes a debt counted from
    /// there (it would restart there anyway), a refund is dropped (idleness earns no credit).
    pub(crate) fn correct(&mut self, name: &str, number: u64, delta: i128) {
        if delta == 0 {
            return;
        }
        let moved = |tag: VirtualTime| {
            if delta > 0 {
                tag.saturating_add(delta.unsigned_abs())
            } else {
                tag.saturating_sub(delta.unsigned_abs())
            }
        };
        if let Some((flow, latest)) = &self.now_set_by {
            if flow == name && number < *latest {
                self.now = moved(self.now);
            }
        }
        let now = self.now;
        match self.flows.get_mut(name) {
            Some(flow) => match flow.activation {
                Some(activation) => {
                    self.turns.remove(&(flow.tag, activation));
                    flow.tag = moved(flow.tag);
                    self.turns.insert((flow.tag, activation), name.to_string());
                }
                None => {
                    self.idle.remove(&(flow.tag, name.to_string()));
                    flow.tag = moved(flow.tag);
                    if flow.tag > now {
                        self.idle.insert((flow.tag, name.to_string()));
                    } else {
                        self.flows.remove(name);
                    }
                }
            },
            None if delta > 0 => {
                let tag = moved(now);
                self.flows.insert(
                    name.to_string(),
                    Flow {
                        tag,
                        activation: None,
                    },
                );
                self.idle.insert((tag, name.to_string()));
            }
            None => {}
        }
        if delta > 0 {
            self.forget_caught_up();
        }
    }

    /// Forgets `name` altogether.
    pub(crate) fn remove(&mut self, name: &str) {
        if let Some(flow) = self.flows.remove(name) {
            if let Some(activation) = flow.activation {
                self.turns.remove(&(flow.tag, activation));
            }
            self.idle.remove(&(flow.tag, name.to_string()));
        }
    }

    /// Forgets idle flows the global virtual time has caught up with.
    pub(crate) fn forget_caught_up(&mut self) {
        while let Some((tag, _)) = self.idle.first() {
            if *tag > self.now {
                break;
            }
            if let Some((_, name)) = self.idle.pop_first() {
                self.flows.remove(&name);
            }
        }
    }

    /// Active flows.
    pub(crate) fn active(&self) -> usize {
        self.turns.len()
    }
}
