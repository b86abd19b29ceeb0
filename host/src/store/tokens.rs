//! Tokens, stored only as SHA-256 hashes, and the agents they belong to.

use super::{decode, Result, Store};
use heed::{RoTxn, RwTxn};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use crate::wire::role::Role;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// The agent the token belongs to (`admin` for admin tokens).
    pub agent_id: String,
    pub role: Role,
    /// The tenant its tasks belong to (`default` for tokens from before tenants).
    #[serde(default = "crate::wire::tenant::default_tenant")]
    pub tenant: String,
    /// The token's first characters, to tell tokens apart in listings.
    pub token_prefix: String,
    pub created_at: u64,
}

/// The key a token is stored under.
pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The agent id admin tokens belong to.
pub const ADMIN_AGENT_ID: &str = "admin";

/// Characters of a token shown in listings.
pub const PREFIX_LEN: usize = 8;

/// Agents as last seen, so the hub can name them after a restart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentRecord {
    pub agent_id: String,
    pub name: String,
    pub capabilities: Vec<String>,
    pub last_seen: u64,
}

impl Store {
    pub fn put_token(&self, txn: &mut RwTxn, token: &str, record: &TokenRecord) -> Result<()> {
        let json = serde_json::to_vec(record).expect("token records serialize");
        Ok(self.tokens.put(txn, &hash_token(token), &json)?)
    }

    pub fn find_token(&self, txn: &RoTxn, token: &str) -> Result<Option<TokenRecord>> {
        self.tokens
            .get(txn, &hash_token(token))?
            .map(|bytes| decode("token", bytes))
            .transpose()
    }

    pub fn tokens(&self, txn: &RoTxn) -> Result<Vec<TokenRecord>> {
        let mut records = Vec::new();
        for entry in self.tokens.iter(txn)? {
            records.push(decode("token", entry?.1)?);
        }
        Ok(records)
    }

    /// Every token record with the hash it is stored under.
    pub fn token_entries(&self, txn: &RoTxn) -> Result<Vec<([u8; 32], TokenRecord)>> {
        let mut records = Vec::new();
        for entry in self.tokens.iter(txn)? {
            let (key, bytes) = entry?;
            let hash: [u8; 32] = key.try_into().unwrap_or([0; 32]);
            records.push((hash, decode("token", bytes)?));
        }
        Ok(records)
    }

    /// Deletes the token stored under `hash`; returns whether there was one.
    pub fn delete_token(&self, txn: &mut RwTxn, hash: &[u8; 32]) -> Result<bool> {
        Ok(self.tokens.delete(txn, hash)?)
    }

    /// Deletes every agent and client token of `agent_id` (admin tokens go one by one, by
    /// hash); returns how many.
    pub fn revoke_tokens(&self, txn: &mut RwTxn, agent_id: &str) -> Result<usize> {
        let mut doomed = Vec::new();
        for entry in self.tokens.iter(txn)? {
            let (key, bytes) = entry?;
            let record: TokenRecord = decode("token", bytes)?;
            if record.agent_id == agent_id && record.role != Role::Admin {
                doomed.push(key.to_vec());
            }
        }
        for key in &doomed {
            self.tokens.delete(txn, key)?;
        }
        Ok(doomed.len())
    }

    pub fn has_admin_token(&self, txn: &RoTxn) -> Result<bool> {
        Ok(self.tokens(txn)?.iter().any(|t| t.role == Role::Admin))
    }

    pub fn put_agent(&self, txn: &mut RwTxn, record: &AgentRecord) -> Result<()> {
        let json = serde_json::to_vec(record).expect("agent records serialize");
        Ok(self.agents.put(txn, record.agent_id.as_bytes(), &json)?)
    }

    pub fn agents(&self, txn: &RoTxn) -> Result<Vec<AgentRecord>> {
        let mut records = Vec::new();
        for entry in self.agents.iter(txn)? {
            records.push(decode("agent", entry?.1)?);
        }
        Ok(records)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::temp_store;

    #[test]
    fn tokens_are_found_by_hash_and_revoked_by_agent() {
        let store = temp_store();
        let mut txn = store.write_txn().unwrap();
        let record = |agent: &str, role| TokenRecord {
            tenant: crate::wire::tenant::default_tenant(),
            agent_id: agent.into(),
            role,
            token_prefix: "abcd1234".into(),
            created_at: 1,
        };
        store
            .put_token(&mut txn, "secret-a", &record("a", Role::Agent))
            .unwrap();
        store
            .put_token(&mut txn, "secret-a2", &record("a", Role::Agent))
            .unwrap();
        store
            .put_token(&mut txn, "secret-admin", &record("admin", Role::Admin))
            .unwrap();
        assert_eq!(
            store
                .find_token(&txn, "secret-a")
                .unwrap()
                .unwrap()
                .agent_id,
            "a"
        );
        assert!(store.find_token(&txn, "nope").unwrap().is_none());
        assert_eq!(store.revoke_tokens(&mut txn, "a").unwrap(), 2);
        assert!(store.find_token(&txn, "secret-a").unwrap().is_none());
        assert!(store.has_admin_token(&txn).unwrap());
        txn.commit().unwrap();
    }

    #[test]
    fn records_from_before_tenants_authenticate_as_the_default_tenant() {
        let store = temp_store();
        let mut txn = store.write_txn().unwrap();
        // A token record as the previous version wrote it: no tenant field.
        let old = br#"{"agent_id":"a","role":"agent","token_prefix":"abcd1234","created_at":5}"#;
        store
            .tokens
            .put(&mut txn, &hash_token("old-secret"), old)
            .unwrap();
        let found = store.find_token(&txn, "old-secret").unwrap().unwrap();
        assert_eq!(found.tenant, crate::wire::tenant::DEFAULT_TENANT);
        assert_eq!((found.agent_id.as_str(), found.role), ("a", Role::Agent));
    }

    #[test]
    fn client_tokens_are_revoked_with_the_agent_id() {
        let store = temp_store();
        let mut txn = store.write_txn().unwrap();
        let record = TokenRecord {
            tenant: "team-a".into(),
            agent_id: "ci".into(),
            role: Role::Client,
            token_prefix: "abcd1234".into(),
            created_at: 1,
        };
        store.put_token(&mut txn, "client-secret", &record).unwrap();
        assert_eq!(
            store.find_token(&txn, "client-secret").unwrap(),
            Some(record)
        );
        assert_eq!(store.revoke_tokens(&mut txn, "ci").unwrap(), 1);
        assert!(store.find_token(&txn, "client-secret").unwrap().is_none());
    }

    #[test]
    fn nothing_but_the_hash_is_stored() {
        let store = temp_store();
        let mut txn = store.write_txn().unwrap();
        let record = TokenRecord {
            tenant: crate::wire::tenant::default_tenant(),
            agent_id: "a".into(),
            role: Role::Agent,
            token_prefix: "plainpre".into(),
            created_at: 1,
        };
        store
            .put_token(&mut txn, "plainpre-the-rest-of-the-secret", &record)
            .unwrap();
        let raw: Vec<Vec<u8>> = store
            .tokens
            .iter(&txn)
            .unwrap()
            .map(|e| [e.as_ref().unwrap().0, e.as_ref().unwrap().1].concat())
            .collect();
        let needle = b"the-rest-of-the-secret";
        assert!(raw
            .iter()
            .all(|r| !r.windows(needle.len()).any(|w| w == needle)));
    }
}
