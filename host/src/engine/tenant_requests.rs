//! Tenant requests in the engine: admitting a submission under its tenant's quotas, and the
//! admin's create, update, delete and list. The table they work on is [`super::tenants`]; a
//! change of weight is told to the policy through the feed here.

use crate::engine::command::EngineError;
use crate::engine::state::EngineState;
use crate::engine::tenants::Counts;
use crate::engine::writer::TenantWrite;
use crate::wire::tenant::{
    NewTenant, QuotaLimit, QuotaRefusal, Tenant, TenantPatch, TenantView, DEFAULT_TENANT,
};
use std::collections::HashMap;

impl EngineState {
    /// Tells what schedules by tenant weight that tenant `name` was created or its weight
    /// changed (`Some`), or that it was deleted (`None`). Called once per change, after the
    /// table holds it, and before the batch is committed (the change applies at once, like a
    /// submission does): the policy and the shadow are told through the feed.
    pub(super) fn tenant_weight_changed(&mut self, name: &str, weight: Option<f64>) {
        tracing::debug!(tenant = name, ?weight, "tenant weight changed");
        match weight {
            Some(weight) => self.feed.tenant_weight(name, weight),
            None => self.feed.tenant_removed(name),
        }
    }

    /// The counts of `tenant` including the changes of the open batch: exact at this moment.
    pub(super) fn tenant_counts(&self, tenant: &str) -> Counts {
        let mut counts = self.tenants.counts(tenant);
        for (id, previous) in &self.dirty {
            if let Some(task) = self.tasks.get(id) {
                if task.tenant == tenant {
                    counts.moved(*previous, task.status);
                }
            }
        }
        counts
    }

    /// Checks a submission of `n` tasks by `tenant` against its quotas, all or nothing: on
    /// success its submit-rate bucket is charged `n`; on refusal nothing is, and the refusal
    /// is counted for `/metrics`.
    pub(super) fn admit(&mut self, tenant: &str, n: usize, now: u64) -> Result<(), EngineError> {
        let n = n as u64;
        let result = self.check_quotas(tenant, n, now);
        if let Err(refusal) = &result {
            self.stats.quota_refused(tenant, refusal.limit);
            tracing::debug!(tenant, limit = refusal.limit.as_str(), "submission refused");
        }
        result.map_err(|refusal| EngineError::Quota(Box::new(refusal)))
    }

    fn check_quotas(&mut self, tenant: &str, n: u64, now: u64) -> Result<(), QuotaRefusal> {
        let max_queued = self.tenants.get(tenant).and_then(|t| t.max_queued);
        if let Some(max) = max_queued {
            let current = self.tenant_counts(tenant).queued;
            if current + n > max {
                return Err(QuotaRefusal {
                    error: QuotaLimit::MaxQueued.code(),
                    tenant: tenant.to_owned(),
                    limit: QuotaLimit::MaxQueued,
                    max: max.into(),
                    current,
                    requested: n,
                    retry_after_secs: None,
                    detail: format!(
                        "tenant {tenant} may have {max} tasks queued and has {current}; \
                         {n} more would be over its max_queued"
                    ),
                });
            }
        }
        self.tenants.take(tenant, n, now)
    }

    pub(super) fn create_tenant(
        &mut self,
        new: NewTenant,
        now: u64,
    ) -> Result<Tenant, EngineError> {
        if self.tenants.get(&new.name).is_some() {
            return Err(EngineError::TenantExists(new.name));
        }
        let tenant = new.into_tenant(now);
        self.tenants.put(tenant.clone(), now);
        self.writes.tenants.push(TenantWrite::Put(tenant.clone()));
        self.tenant_weight_changed(&tenant.name, Some(tenant.weight));
        Ok(tenant)
    }

    pub(super) fn update_tenant(
        &mut self,
        name: &str,
        patch: &TenantPatch,
        now: u64,
    ) -> Result<Tenant, EngineError> {
        let old = self
            .tenants
            .get(name)
            .ok_or_else(|| EngineError::TenantNotFound(name.to_owned()))?;
        let tenant = patch.apply(old);
        let weight_changed = tenant.weight != old.weight;
        self.tenants.put(tenant.clone(), now);
        self.writes.tenants.push(TenantWrite::Put(tenant.clone()));
        if weight_changed {
            self.tenant_weight_changed(name, Some(tenant.weight));
        }
        Ok(tenant)
    }

    /// Deletes a tenant that has no tokens and no live tasks; `default` never.
    pub(super) fn delete_tenant(&mut self, name: &str) -> Result<(), EngineError> {
        let in_use = |why: String| EngineError::TenantInUse {
            tenant: name.to_owned(),
            why,
        };
        if name == DEFAULT_TENANT {
            return Err(in_use(
                "the default tenant always exists: tokens and tasks that name no tenant belong \
                 to it"
                    .into(),
            ));
        }
        if self.tenants.get(name).is_none() {
            return Err(EngineError::TenantNotFound(name.to_owned()));
        }
        let counts = self.tenant_counts(name);
        if counts.queued + counts.assigned > 0 {
            return Err(in_use(format!(
                "it has {} tasks queued and {} assigned; cancel them or let them finish first",
                counts.queued, counts.assigned
            )));
        }
        let stored = self
            .store
            .read_txn()
            .and_then(|txn| self.store.tokens(&txn))
            .map_err(|_| EngineError::Unavailable)?;
        let tokens = stored.iter().filter(|t| t.tenant == name).count()
            + self
                .writes
                .tokens
                .iter()
                .filter(|(_, t)| t.tenant == name)
                .count();
        if tokens > 0 {
            return Err(in_use(format!(
                "{tokens} tokens belong to it; revoke them first (DELETE /admin/tokens/:agent_id)"
            )));
        }
        self.tenants.remove(name);
        self.writes
            .tenants
            .push(TenantWrite::Delete(name.to_owned()));
        self.tenant_weight_changed(name, None);
        Ok(())
    }

    /// Every tenant with its counts and share, by name.
    pub(super) fn tenant_views(&self) -> Vec<TenantView> {
        let mut counts: HashMap<&str, Counts> = HashMap::new();
        for tenant in self.tenants.records() {
            counts.insert(&tenant.name, self.tenants.counts(&tenant.name));
        }
        for (id, previous) in &self.dirty {
            if let Some(task) = self.tasks.get(id) {
                if let Some(c) = counts.get_mut(task.tenant.as_str()) {
                    c.moved(*previous, task.status);
                }
            }
        }
        let assigned: u64 = counts.values().map(|c| c.assigned).sum();
        self.tenants
            .records()
            .into_iter()
            .map(|tenant| {
                let c = counts[tenant.name.as_str()];
                TenantView {
                    tenant: tenant.clone(),
                    queued: c.queued,
                    assigned: c.assigned,
                    share: match assigned {
                        0 => 0.0,
                        total => c.assigned as f64 / total as f64,
                    },
                }
            })
            .collect()
    }
}
