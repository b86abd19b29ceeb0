//! Admin tokens, the audit log and capability names, in-process.

use super::*;
use crate::store::{Role, TokenRecord};
use crate::wire::http::{AuditAction, AuditRecord};

fn admin_record(prefix: &str) -> TokenRecord {
    TokenRecord {
        tenant: crate::wire::tenant::default_tenant(),
        agent_id: "admin".into(),
        role: Role::Admin,
        token_prefix: prefix.into(),
        created_at: 1,
    }
}

fn admins(store: &Store) -> Vec<String> {
    let txn = store.read_txn().unwrap();
    let mut prefixes: Vec<String> = store
        .tokens(&txn)
        .unwrap()
        .into_iter()
        .filter(|t| t.role == Role::Admin)
        .map(|t| t.token_prefix)
        .collect();
    prefixes.sort();
    prefixes
}

async fn revoke(hub: &Fixture, agent_id: &str, prefix: Option<&str>) -> Result<usize, EngineError> {
    hub.engine
        .ask(|reply| Command::RevokeTokens {
            agent_id: agent_id.into(),
            prefix: prefix.map(str::to_owned),
            reply,
        })
        .await
}

#[tokio::test]
async fn admin_tokens_are_revoked_one_by_one_but_never_the_last_and_rotation_replaces_all() {
    let hub = Fixture::with_defaults();
    let mut txn = hub.store.write_txn().unwrap();
    for (token, prefix) in [
        ("first-admin-token", "first-ad"),
        ("second-admin", "second-a"),
    ] {
        hub.store
            .put_token(&mut txn, token, &admin_record(prefix))
            .unwrap();
    }
    txn.commit().unwrap();

    assert_eq!(revoke(&hub, "admin", Some("first-ad")).await, Ok(1));
    assert_eq!(admins(&hub.store), ["second-a"]);
    assert_eq!(
        revoke(&hub, "admin", None).await,
        Err(EngineError::LastAdminToken)
    );
    assert_eq!(
        revoke(&hub, "admin", Some("second-a")).await,
        Err(EngineError::LastAdminToken)
    );
    assert_eq!(admins(&hub.store), ["second-a"], "refused: nothing changed");

    let token = hub
        .engine
        .ask(|reply| Command::RotateAdmin { reply })
        .await
        .unwrap();
    assert_eq!(admins(&hub.store), [token[..8].to_string()]);
    let txn = hub.store.read_txn().unwrap();
    assert!(hub
        .store
        .find_token(&txn, "second-admin")
        .unwrap()
        .is_none());
    assert_eq!(
        hub.store.find_token(&txn, &token).unwrap().unwrap().role,
        Role::Admin
    );
}

#[tokio::test]
async fn an_audited_command_is_recorded_with_its_commit_only_if_it_succeeds() {
    let hub = Fixture::with_defaults();
    let record = |action, target: &str| AuditRecord {
        id: 0,
        at: 0,
        actor: "admin".into(),
        token_prefix: "abcdefgh".into(),
        action,
        target: target.into(),
    };
    let missing = TaskId(12345);
    let refused = hub
        .engine
        .ask_audited(record(AuditAction::TaskCancel, "missing"), |reply| {
            Command::Cancel {
                task: missing,
                reply,
            }
        })
        .await;
    assert_eq!(refused, Err(EngineError::TaskNotFound(missing)));
    let before = crate::wire::now_ms();
    hub.engine
        .ask_audited(record(AuditAction::TokenCreate, "w"), |reply| {
            Command::CreateToken {
                request: crate::wire::http::TokenRequest::agent("w"),
                reply,
            }
        })
        .await
        .unwrap();
    let txn = hub.store.read_txn().unwrap();
    let page = hub.store.audit_page(&txn, None, 10).unwrap();
    assert_eq!(page.records.len(), 1, "{:?}", page.records);
    let kept = &page.records[0];
    assert_eq!((kept.id, kept.action), (1, AuditAction::TokenCreate));
    assert!(kept.at >= before, "stamped by the engine");
}

#[tokio::test]
async fn capability_names_no_longer_used_are_released_and_matching_still_works() {
    let hub = Fixture::with_defaults();
    let per_agent = 60;
    let rounds = 3 * crate::engine::feed::SWEEP_FLOOR / per_agent;
    for round in 0..rounds {
        let names: Vec<String> = (0..per_agent).map(|i| format!("r{round}-{i}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let agent_id = format!("churn-{}", round % 3);
        let agent = hub.connect(&agent_id, &names).await;
        hub.engine.send(Command::Disconnected {
            conn: agent.conn,
            agent: agent_id,
        });
    }
    let interned = hub.engine.stats().capability_names();
    assert!(
        interned < crate::engine::feed::SWEEP_FLOOR + per_agent,
        "{interned} names interned after {} sent",
        rounds * per_agent
    );
    let mut agent = hub.connect("late", &["gpu", "rust"]).await;
    let id = hub.submit("needs rust", &["rust"]).await;
    let assign = agent.frame().await;
    assert_eq!(assign["task_id"], id.to_string());
}
