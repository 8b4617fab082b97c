//! Supervision: an agent that crashes, overruns its time budget or exits mid-turn is cut off
//! and, by its workflow's policy, restarted with backoff, given up on, or escalated.

use std::time::Duration;

use web_time::Instant;

use hearth_api::agents::{AgentState, FaultKind, TranscriptEvent};
use hearth_api::llm_service::LlmService;

use super::{Hub, RunError};
use crate::bus::BusError;
use crate::hub_messages::ToAgent;
use hearth_api::workflow::OnFault;

/// How long past an agent's time budget the hub faults it itself: a module agent reads the
/// clock between slices of its instructions and reports first, and its worker then ends.
const BUDGET_BACKSTOP: Duration = Duration::from_millis(1000);

impl<L: LlmService + ?Sized> Hub<'_, L> {
    /// Faults agents past their wall-clock budget (a module agent checks its own first and
    /// stops; this is the backstop) and agents whose worker exited mid-turn.
    pub(super) fn check_workers(&mut self) -> Result<(), RunError> {
        // A worker that reports its own fault exits right after: what it sent before it exited
        // must be read before its exit is taken for a crash. So which workers have exited is
        // noted first (with how many restarts each agent had, which tells its workers apart),
        // then the bus drained; a worker that exits after the note is seen next time.
        let finished: Vec<Option<u32>> = (self.slots.iter())
            .map(|s| s.worker.as_ref().is_none_or(|w| w.is_finished()).then_some(s.restarts))
            .collect();
        if self.slots.iter().zip(&finished).any(|(s, done)| done.is_some() && s.working.is_some()) {
            loop {
                match self.bus.recv(Some(Duration::ZERO)) {
                    Ok((agent, bytes)) => self.receive(agent, &bytes)?,
                    Err(BusError::Timeout(_)) | Err(BusError::Closed { .. }) => break,
                    Err(e) => return Err(e.into()),
                }
            }
        }
        let now = Instant::now();
        for (agent, &done) in finished.iter().enumerate() {
            let slot = &self.slots[agent];
            let Some(w) = &slot.working else { continue };
            if !w.waiting_llm && now >= w.deadline + BUDGET_BACKSTOP {
                let ms = self.workflow.agents[agent].time_budget_ms;
                self.fault(agent, FaultKind::TimeBudget, crate::module::time_budget_detail(ms))?;
            } else if done == Some(slot.restarts) {
                let why = slot.worker.as_ref().and_then(|w| w.failure()).map(|e| format!(": {e}")).unwrap_or_default();
                self.fault(agent, FaultKind::Crash, format!("its worker exited in the middle of a turn{why}"))?;
            }
        }
        Ok(())
    }

    /// Applies `agent`'s policy to a fault in its current turn.
    pub(super) fn fault(&mut self, agent: usize, kind: FaultKind, detail: String) -> Result<(), RunError> {
        let step = self.step;
        let name = self.name(agent);
        let supervision = self.workflow.agents[agent].supervision;
        let slot = &mut self.slots[agent];
        let Some(w) = slot.working.take() else { return Ok(()) };
        self.summary.faults += 1;
        self.llm_queue.retain(|(a, _)| *a != agent);
        slot.events.push(TranscriptEvent::Fault {
            step,
            agent: name.clone(),
            turn: w.turn.turn,
            attempt: w.attempt,
            kind,
            detail: detail.clone(),
        });
        self.host.agent_state(agent, AgentState::Faulted);
        // Cut the worker off. A worker that shares the runtime's memory cannot be killed
        // safely (it may hold a lock): a stuck one is left behind, deaf (its bus end is
        // closed), and module agents cannot be stuck past their fuel anyway.
        self.bus.disconnect(agent);
        if let Some(worker) = slot.worker.take().filter(|w| !w.is_finished()) {
            slot.cut_off.push(worker);
        }
        // Once no worker of this agent can run any more, what a dead one held in the middle
        // of a send or a receive is given back.
        slot.cut_off.retain(|w| !w.is_finished());
        if slot.cut_off.is_empty() {
            self.bus.reclaim(agent);
        }
        match supervision.on_fault {
            OnFault::Restart if slot.restarts < supervision.max_restarts => {
                let backoff_ms = supervision.backoff_ms << slot.restarts.min(16);
                slot.restarts += 1;
                self.summary.restarts += 1;
                slot.events.push(TranscriptEvent::Restart {
                    step,
                    agent: name.clone(),
                    attempt: w.attempt + 1,
                    backoff_ms,
                });
                self.host.backoff(Duration::from_millis(backoff_ms));
                let port = self.bus.reconnect(agent)?;
                let worker = self
                    .host
                    .spawn_agent(agent, slot.program.clone(), port, self.options.jitter)
                    .map_err(|reason| RunError::Spawn { agent: name.clone(), reason })?;
                slot.worker = Some(worker);
                self.host.agent_state(agent, AgentState::Restarted);
                self.start(agent, w.turn, w.attempt + 1)
            }
            OnFault::Escalate => {
                slot.events.push(TranscriptEvent::Escalated { step, agent: name.clone() });
                Err(RunError::Escalated { agent: name, kind, detail })
            }
            OnFault::Restart | OnFault::GiveUp => {
                slot.gave_up = true;
                slot.events.push(TranscriptEvent::GaveUp { step, agent: name });
                self.host.agent_state(agent, AgentState::GaveUp);
                self.next_turn(agent)
            }
        }
    }

    /// Tells every worker to stop and waits (a little) for those that can.
    pub(super) async fn stop(&mut self) {
        for agent in 0..self.slots.len() {
            let _ = self.send(agent, &ToAgent::Stop);
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while self.slots.iter().flat_map(|s| &s.worker).any(|w| !w.is_finished()) && Instant::now() < deadline {
            self.host.backoff(Duration::from_millis(5));
            self.host.idle().await;
        }
        for agent in 0..self.slots.len() {
            self.slots[agent].worker = None;
            self.host.agent_state(agent, AgentState::Idle);
        }
    }
}
