//! The sidecar's loop: connect, serve the connection, and when it is lost, back off and connect
//! again, until the sidecar is asked to stop. The task it holds lives in the [`TaskSlot`], which
//! outlives every connection; this loop hands it what the hub and the worker say.

use crate::sidecar::backoff::Backoff;
use crate::sidecar::config::AgentConfig;
use crate::sidecar::link::{HubLink, LinkError};
use crate::sidecar::runner::RunEvent;
use crate::sidecar::slot::TaskSlot;
use crate::sidecar::state::{StateDir, TaskRecord};
use crate::wait::sleep_until;
use crate::wire::agent::{ClientMessage, CloseReason, HubMessage};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};

/// Why a session with the hub ended.
enum End {
    Shutdown,
    Lost(LinkError),
}

/// The sidecar: its configuration, the task slot and the reconnect loop.
pub struct Sidecar {
    config: AgentConfig,
    slot: TaskSlot,
    /// What the slot's runs report.
    events: mpsc::UnboundedReceiver<RunEvent>,
    backoff: Backoff,
}

impl Sidecar {
    /// `record`: the task a previous run of the sidecar left in the state folder.
    pub fn new(config: AgentConfig, state: StateDir, record: Option<TaskRecord>) -> Sidecar {
        let backoff = Backoff::new(config.timing.reconnect_min, config.timing.reconnect_max);
        let (events_tx, events) = mpsc::unbounded_channel();
        let slot = TaskSlot::new(
            config.agent_id.clone(),
            config.worker.clone(),
            state,
            record,
            events_tx,
        );
        Sidecar {
            config,
            slot,
            events,
            backoff,
        }
    }

    /// Connects, serves, reconnects, until `shutdown` resolves.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        tokio::pin!(shutdown);
        let mut delay = Duration::ZERO;
        loop {
            // Between connections a run may finish: its result goes to disk at once.
            let until = Instant::now() + delay;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(until) => break,
                    Some(event) = self.events.recv() => {
                        let _ = self.slot.on_run_event(event, None).await;
                    }
                    _ = shutdown.as_mut() => return self.stop(None).await,
                }
            }
            let connected = tokio::select! {
                connected = HubLink::open(&self.config) => connected,
                _ = shutdown.as_mut() => return self.stop(None).await,
            };
            match connected {
                Ok(link) => {
                    self.backoff.reset();
                    tracing::info!(hub = %self.config.hub_url, agent_id = %self.config.agent_id, "connected to the hub");
                    match self.session(link, &mut shutdown).await {
                        End::Shutdown => return Ok(()),
                        End::Lost(why) => self.log_lost(&why),
                    }
                }
                Err(why) => {
                    tracing::warn!(reason = %why, hub = %self.config.hub_url, "cannot connect to the hub")
                }
            }
            delay = self.backoff.next_delay();
            tracing::info!(delay_ms = delay.as_millis() as u64, "reconnecting");
        }
    }

    fn log_lost(&self, why: &LinkError) {
        if why.close_reason() == Some(CloseReason::Superseded) {
            tracing::warn!(reason = %why, agent_id = %self.config.agent_id,
                "lost the connection to the hub: another connection identified as this agent");
        } else {
            tracing::warn!(reason = %why, "lost the connection to the hub");
        }
    }

    /// Serves one identified connection until it is lost or the sidecar stops.
    async fn session<F: Future<Output = ()>>(
        &mut self,
        mut link: HubLink,
        shutdown: &mut Pin<&mut F>,
    ) -> End {
        if let Err(why) = self.slot.after_identify(&mut link).await {
            return End::Lost(why);
        }
        let timing = self.config.timing;
        let mut ping =
            tokio::time::interval_at(Instant::now() + timing.ping_interval, timing.ping_interval);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut progress = tokio::time::interval_at(
            Instant::now() + timing.progress_interval,
            timing.progress_interval,
        );
        progress.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut pong_deadline: Option<Instant> = None;
        loop {
            let report_deadline = self.slot.report_ack_deadline();
            let result = tokio::select! {
                message = link.next() => match message {
                    Ok(HubMessage::Pong { .. }) => {
                        pong_deadline = None;
                        Ok(())
                    }
                    Ok(message) => self.slot.on_hub_message(message, &mut link).await,
                    Err(why) => Err(why),
                },
                Some(event) = self.events.recv() => self.slot.on_run_event(event, Some(&mut link)).await,
                _ = ping.tick() => {
                    pong_deadline.get_or_insert(Instant::now() + timing.pong_timeout);
                    link.send(&ClientMessage::Ping).await
                }
                _ = sleep_until(pong_deadline) => Err(LinkError::NoPong(timing.pong_timeout)),
                _ = sleep_until(report_deadline) => Err(LinkError::ResultNotAcknowledged),
                _ = progress.tick() => self.slot.send_progress(&mut link).await,
                _ = shutdown.as_mut() => {
                    let _ = self.stop(Some(&mut link)).await;
                    return End::Shutdown;
                }
            };
            if let Err(why) = result {
                return End::Lost(why);
            }
        }
    }

    /// Shutting down: a running worker is killed, and its task stays on disk to be taken up
    /// again (`task_recovering`) at the next start.
    async fn stop(&mut self, link: Option<&mut HubLink>) -> anyhow::Result<()> {
        // A run that finished a moment ago: its result is saved, not run again next time.
        while let Ok(event) = self.events.try_recv() {
            let _ = self.slot.on_run_event(event, None).await;
        }
        self.slot.stop_worker().await;
        if let Some(link) = link {
            link.close().await;
        }
        tracing::info!("switchyard agent stopped");
        Ok(())
    }
}
