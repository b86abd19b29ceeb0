//! Tenants, by name. The `default` tenant always exists: it is stored only once an admin
//! changes it, so a data folder from before tenants opens unchanged.

use super::{decode, Result, Store};
use crate::wire::tenant::{Tenant, DEFAULT_TENANT};
use heed::{RoTxn, RwTxn};

impl Store {
    /// The tenant named `name`, if it exists.
    pub fn tenant(&self, txn: &RoTxn, name: &str) -> Result<Option<Tenant>> {
        match self.tenants.get(txn, name.as_bytes())? {
            Some(bytes) => decode("tenant", bytes).map(Some),
            None if name == DEFAULT_TENANT => Ok(Some(Tenant::default_tenant())),
            None => Ok(None),
        }
    }

    /// Every tenant, by name (`default` among them).
    pub fn tenants(&self, txn: &RoTxn) -> Result<Vec<Tenant>> {
        let mut tenants = Vec::new();
        for entry in self.tenants.iter(txn)? {
            tenants.push(decode::<Tenant>("tenant", entry?.1)?);
        }
        if !tenants.iter().any(|t| t.name == DEFAULT_TENANT) {
            let at = tenants.partition_point(|t| t.name.as_str() < DEFAULT_TENANT);
            tenants.insert(at, Tenant::default_tenant());
        }
        Ok(tenants)
    }

    pub fn put_tenant(&self, txn: &mut RwTxn, tenant: &Tenant) -> Result<()> {
        let json = serde_json::to_vec(tenant).expect("tenant records serialize");
        Ok(self.tenants.put(txn, tenant.name.as_bytes(), &json)?)
    }

    /// Deletes the tenant `name`; returns whether it was stored. (The `default` tenant cannot
    /// be deleted: deleting its record only restores its defaults.)
    pub fn delete_tenant(&self, txn: &mut RwTxn, name: &str) -> Result<bool> {
        Ok(self.tenants.delete(txn, name.as_bytes())?)
    }
}

#[cfg(test)]
mod tests {
    use crate::store::test_support::temp_store;
    use crate::wire::tenant::{Tenant, DEFAULT_TENANT};

    #[test]
    fn the_default_tenant_exists_before_it_is_stored_and_tenants_list_by_name() {
        let store = temp_store();
        let rtxn = store.read_txn().unwrap();
        assert_eq!(
            store.tenants(&rtxn).unwrap(),
            vec![Tenant::default_tenant()]
        );
        drop(rtxn);
        let mut wtxn = store.write_txn().unwrap();
        for (name, weight) in [("zeta", 1.0), ("alpha", 3.0)] {
            let tenant = Tenant {
                name: name.into(),
                weight,
                max_queued: Some(10),
                submit_rate: None,
                created_at: 5,
            };
            store.put_tenant(&mut wtxn, &tenant).unwrap();
        }
        wtxn.commit().unwrap();
        let rtxn = store.read_txn().unwrap();
        let names: Vec<_> = store
            .tenants(&rtxn)
            .unwrap()
            .into_iter()
            .map(|t| t.name)
            .collect();
        assert_eq!(names, ["alpha", DEFAULT_TENANT, "zeta"]);
        assert_eq!(store.tenant(&rtxn, "alpha").unwrap().unwrap().weight, 3.0);
        assert!(store.tenant(&rtxn, "nobody").unwrap().is_none());
    }
}
