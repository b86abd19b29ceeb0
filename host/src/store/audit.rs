//! The audit log: admin actions, numbered in commit order, read newest first.

use super::{decode, Result, Store};
use crate::wire::http::AuditRecord;
use heed::{RoTxn, RwTxn};
use std::ops::Bound;

/// One page of the audit log, newest first. `next_cursor` is set when older records follow.
#[derive(Debug, Clone)]
pub struct AuditPage {
    pub records: Vec<AuditRecord>,
    pub next_cursor: Option<u64>,
}

impl Store {
    /// Appends `records` in order, numbering them after the last record kept.
    pub fn append_audit(&self, txn: &mut RwTxn, records: &[AuditRecord]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let first = match self.audit.last(txn)? {
            Some((key, _)) => u64::from_be_bytes(key.try_into().unwrap_or([0; 8])) + 1,
            None => 1,
        };
        for (id, record) in (first..).zip(records) {
            let record = AuditRecord {
                id,
                ..record.clone()
            };
            let json = serde_json::to_vec(&record).expect("audit records serialize");
            self.audit.put(txn, &id.to_be_bytes(), &json)?;
        }
        Ok(())
    }

    /// Up to `limit` records older than `before` (all records without it), newest first.
    pub fn audit_page(&self, txn: &RoTxn, before: Option<u64>, limit: usize) -> Result<AuditPage> {
        let end = before.map(u64::to_be_bytes);
        let range = match &end {
            Some(end) => (Bound::Unbounded, Bound::Excluded(&end[..])),
            None => (Bound::Unbounded, Bound::Unbounded),
        };
        let mut records = Vec::new();
        for entry in self.audit.rev_range(txn, &range)? {
            if records.len() == limit {
                let next_cursor = records.last().map(|r: &AuditRecord| r.id);
                return Ok(AuditPage {
                    records,
                    next_cursor,
                });
            }
            records.push(decode("audit record", entry?.1)?);
        }
        Ok(AuditPage {
            records,
            next_cursor: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::store::test_support::temp_store;
    use crate::wire::http::{AuditAction, AuditRecord};

    fn record(target: &str) -> AuditRecord {
        AuditRecord {
            id: 0,
            at: 1,
            actor: "admin".into(),
            token_prefix: "abcd1234".into(),
            action: AuditAction::TaskCancel,
            target: target.into(),
        }
    }

    #[test]
    fn records_are_numbered_in_order_and_paged_newest_first() {
        let store = temp_store();
        let mut txn = store.write_txn().unwrap();
        store
            .append_audit(&mut txn, &[record("a"), record("b")])
            .unwrap();
        store.append_audit(&mut txn, &[record("c")]).unwrap();
        txn.commit().unwrap();
        let txn = store.read_txn().unwrap();
        let page = store.audit_page(&txn, None, 2).unwrap();
        let seen: Vec<(u64, &str)> = page
            .records
            .iter()
            .map(|r| (r.id, r.target.as_str()))
            .collect();
        assert_eq!(seen, [(3, "c"), (2, "b")]);
        assert_eq!(page.next_cursor, Some(2));
        let rest = store.audit_page(&txn, page.next_cursor, 2).unwrap();
        assert_eq!(rest.records.len(), 1);
        assert_eq!(rest.records[0].target, "a");
        assert_eq!(rest.next_cursor, None);
    }
}
