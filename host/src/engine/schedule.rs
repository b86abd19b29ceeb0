//! Decision passes: the policy proposes, the host disposes (design principle 3).

use crate::engine::state::EngineState;
use crate::engine::timers::Timer;
use crate::policy::{self, Assignment};
use crate::task::TaskStatus;
use crate::wire::TaskId;

impl EngineState {
    /// One decision pass: the policy proposes, the host checks each proposal against the live
    /// state and applies the valid ones.
    ///
    /// A failed call discards the instance. The pass then replays the live state into a fresh
    /// one and asks again, until it gets an answer: stopping earlier would leave idle agents
    /// beside queued tasks until some unrelated event started another pass. This ends: every
    /// attempt that fails records a failure, and once [`policy::BREAKER_FAILURES`] have
    /// accumulated the next restart switches to the native fallback, which cannot fail, so
    /// `BREAKER_FAILURES + 1` attempts always end with an answer.
    pub(super) fn schedule(&mut self, now: u64) {
        if self.feed.needs_replay() {
            self.replay_policy();
        }
        if !self.feed.has_work() {
            return;
        }
        let started = std::time::Instant::now();
        let mut proposals = self.feed.decide(now);
        self.stats.decision.observe(started.elapsed());
        for _ in 0..policy::BREAKER_FAILURES {
            if !self.feed.needs_replay() {
                break;
            }
            self.replay_policy();
            proposals = self.feed.decide(now);
        }
        let mut refused = 0;
        // Only gathered for a shadow run, which is asked at this same moment.
        let mut applied = self.feed.shadowing().then(Vec::new);
        for proposal in proposals {
            match self.try_assign(proposal, now) {
                Some(handle) => {
                    if let Some(applied) = &mut applied {
                        applied.push((TaskId(proposal.task), handle));
                    }
                }
                None => refused += 1,
            }
        }
        if let Some(applied) = applied {
            self.feed.shadow_pass(now, applied, self.agent_ids.len());
        }
        if refused > 0 {
            tracing::debug!(refused, "refused policy proposals");
            self.feed.record_rejected(refused);
        }
    }

    /// Applies one proposal if [`policy::check_proposal`] allows it against the live state;
    /// the agent's handle if it did.
    fn try_assign(&mut self, proposal: Assignment, now: u64) -> Option<u32> {
        let id = TaskId(proposal.task);
        let agent_id = self.agent_ids.get(proposal.agent as usize).cloned();
        // Interning allocates: only a queued task's needs are worth it (any other proposal is
        // refused before capabilities are looked at).
        let needs = match self.tasks.get(&id) {
            Some(task) if task.status == TaskStatus::Queued => {
                self.feed.intern(&task.needed_capabilities)
            }
            _ => Vec::new(),
        };
        let task = self.tasks.get(&id).map(|task| policy::ProposedTask {
            queued: task.status == TaskStatus::Queued,
            needs: &needs,
        });
        let agent = agent_id.as_ref().map(|agent_id| {
            let agent = &self.agents[agent_id];
            policy::ProposedAgent {
                ready: agent.ready && agent.can_take_work(now),
                capabilities: &agent.capability_handles,
            }
        });
        if let Err(refusal) = policy::check_proposal(task, agent) {
            tracing::trace!(%refusal, task = %id, "refused a proposal");
            self.stats.refused_proposal(refusal);
            return None;
        }
        let agent_id = agent_id.expect("checked above");
        if let Some(task) = self.tasks.get(&id) {
            let waited = now.saturating_sub(task.queued_at);
            self.stats.waited(task.priority, waited);
            self.tally.assigned(waited);
        }
        let task = self.task_mut(id);
        task.assign(&agent_id, now);
        let message = task.assign_message();
        let generation = task.generation;
        if generation > 1 {
            self.stats.reassigned();
        }
        let agent = self.agents.get_mut(&agent_id).expect("checked above");
        let handle = agent.handle;
        agent.hold(id, now);
        agent.touch(&mut self.touched_agents);
        let outbox = agent.connection.as_ref().map(|c| c.outbox.clone());
        self.feed.assigned(id, agent);
        if let Some(outbox) = outbox {
            self.push(&outbox, message);
        }
        self.timers.at(
            now + self.config.acceptance_timeout_ms,
            Timer::Acceptance {
                task: id,
                generation,
            },
        );
        Some(handle)
    }
}
