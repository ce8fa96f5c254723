//! The supervisor's commands: what each request from D-Bus, the transition applier, the
//! jobs actor and the control channels does. Held back while a reload is applied (those
//! that change a service's state) or while frozen for a live re-exec (all).

use std::sync::Arc;

use super::Command;
use super::actor::{SignalAction, Supervisor};
use super::batch::BatchKind;
use super::unit::{Phase, Unit, Waiter};
use crate::events::now_usec;
use crate::store::Desired;

impl Supervisor {
    pub(super) fn handle_command(&mut self, command: Command) {
        if (self.reloading && changes_state(&command))
            || (self.frozen && !matches!(command, Command::Thaw(_)))
        {
            self.deferred.push_back(command);
            return;
        }
        match command {
            Command::Start(name, by, reply) => match self.check_served(&name) {
                Ok(()) => {
                    // A start by hand clears the start limit, like `systemctl reset-failed`.
                    if let Some(unit) = self.units.get_mut(&name) {
                        unit.restarts = Default::default();
                    }
                    self.record_desired(&name, Desired::Started, &by);
                    self.start_unit(&name, Waiter::Reply(reply));
                }
                Err(err) => drop(reply.send(Err(err))),
            },
            Command::Stop(name, by, reply) => match self.check_exists(&name) {
                Ok(()) => {
                    self.record_desired(&name, Desired::Stopped, &by);
                    self.stop_unit(&name, Waiter::Reply(reply))
                }
                Err(err) => drop(reply.send(Err(err))),
            },
            Command::Restart(name, by, reply) => match self.check_served(&name) {
                Ok(()) => {
                    self.record_desired(&name, Desired::Started, &by);
                    self.restart_unit(&name, reply)
                }
                Err(err) => drop(reply.send(Err(err))),
            },
            Command::Revert(name, reply) => {
                let result = self.check_exists(&name);
                if result.is_ok() {
                    self.revert_desired(&name);
                }
                let _ = reply.send(result);
            }
            Command::Pause(name, reply) => self.signal_command(&name, SignalAction::Pause, reply),
            Command::Resume(name, reply) => self.signal_command(&name, SignalAction::Resume, reply),
            Command::Kill(name, signal, reply) => {
                self.signal_command(&name, SignalAction::Kill(signal), reply)
            }
            Command::Exists(name, reply) => drop(reply.send(self.check_exists(&name))),
            Command::Served(name, reply) => drop(reply.send(self.check_served(&name))),
            Command::List(reply) => drop(reply.send(self.list())),
            Command::Ping(reply) => drop(reply.send(())),
            Command::BeginReload(reply) => {
                self.reloading = true;
                let _ = reply.send(());
            }
            Command::EndReload(reply) => {
                self.reloading = false;
                let _ = reply.send(());
                while let Some(command) = self.deferred.pop_front() {
                    self.handle_command(command);
                }
            }
            Command::SetPlacement {
                host,
                groups,
                reply,
            } => {
                self.host = host;
                self.groups = groups;
                let _ = reply.send(());
            }
            Command::Define {
                name,
                spec,
                served,
                reply,
            } => {
                if !self.units.contains_key(&name) {
                    let unenforced = self.settings.cgroups.unenforceable(&spec.cgroup_limits);
                    let mut unit = Unit::new(name.clone(), spec, served);
                    unit.unenforced = unenforced.iter().map(ToString::to_string).collect();
                    unit.desired = self.desired_unclaimed.remove(&name);
                    if let Some(state) = self.inherited.remove(&name) {
                        self.restore(&mut unit, state);
                    }
                    unit.published = Arc::new(unit.snapshot(now_usec()));
                    unit.status_tx.send_replace(unit.published.clone());
                    self.summary.add(unit.published.active);
                    self.summary_tx.send_replace(self.summary.clone());
                    // A run taken over by a re-exec gets its watchdog and checks again, and
                    // is named to the fence, which `resync`s to what this image named.
                    let resumed = unit.taken_over && matches!(unit.phase, Phase::Running { .. });
                    if let (true, Some(fence)) = (unit.taken_over, &self.settings.fence) {
                        fence.set(&name, unit.fence_targets());
                    }
                    self.units.insert(name.clone(), Box::new(unit));
                    if resumed {
                        self.now_running(&name);
                    }
                }
                let _ = reply.send(());
            }
            Command::Redefine { name, spec, reply } => {
                let mut health_changed = false;
                if let Some(unit) = self.units.get_mut(&name) {
                    let limits = unit.spec.cgroup_limits != spec.cgroup_limits;
                    health_changed = unit.spec.health != spec.health;
                    unit.spec = spec;
                    if limits {
                        self.limits_changed(&name);
                    }
                }
                if health_changed {
                    self.health_redefined(&name);
                }
                self.publish(&name);
                let _ = reply.send(());
            }
            Command::SetMethodCaller(methods) => self.methods = Some(methods),
            Command::SetServed {
                names,
                served,
                reply,
            } => {
                for name in &names {
                    let Some(unit) = self.units.get_mut(name) else {
                        continue;
                    };
                    let changed = std::mem::replace(&mut unit.served, served) != served;
                    // Checks run only where the service is served.
                    match (changed, served) {
                        (true, true) => self.schedule_health(name),
                        (true, false) => self.cancel_health(name),
                        _ => {}
                    }
                    self.publish(name);
                }
                let _ = reply.send(());
            }
            Command::StartBatch(names, reply) => self.begin_batch(BatchKind::Start, names, reply),
            Command::StopBatch(names, reply) => self.begin_batch(BatchKind::Stop, names, reply),
            Command::WantedAtStart(names, reply) => drop(reply.send(self.wanted_at_start(names))),
            Command::Freeze(reply) => drop(reply.send(self.freeze())),
            Command::Thaw(reply) => {
                self.thaw();
                let _ = reply.send(());
                if !self.reloading {
                    while let Some(command) = self.deferred.pop_front() {
                        self.handle_command(command);
                    }
                }
            }
            Command::ShuttingDown(reply) => {
                self.shutting_down = true;
                let _ = reply.send(());
            }
            Command::SettleRecovered(reply) => {
                self.settle_recovered();
                let _ = reply.send(());
            }
            Command::RunningAmong(names, reply) => {
                let running = names
                    .into_iter()
                    .filter(|n| self.units.get(n).is_some_and(|u| u.run().is_some()))
                    .collect();
                let _ = reply.send(running);
            }
            Command::KillGroup(group, reply) => {
                self.kill_group(&group);
                let _ = reply.send(());
            }
            Command::Undefine(names, reply) => {
                for name in names {
                    self.undefine(&name);
                }
                let _ = reply.send(());
            }
            Command::Spec(name, reply) => {
                let spec = self
                    .check_served(&name)
                    .map(|()| self.units[&name].spec.clone());
                let _ = reply.send(spec);
            }
            Command::Subscribe(name, reply) => {
                let _ = reply.send(self.units.get(&name).map(|u| u.status_tx.subscribe()));
            }
            Command::Jobs(update) => self.jobs_changed(update),
            Command::SetOnline(name, online) => {
                if let Some(unit) = self.units.get_mut(&name) {
                    unit.online = online;
                }
                self.publish(&name);
            }
        }
    }
}

/// Client commands that change a service's state; held back while a reload is applied.
fn changes_state(command: &Command) -> bool {
    matches!(
        command,
        Command::Start(..)
            | Command::Stop(..)
            | Command::Restart(..)
            | Command::Revert(..)
            | Command::Pause(..)
            | Command::Resume(..)
            | Command::Kill(..)
    )
}
