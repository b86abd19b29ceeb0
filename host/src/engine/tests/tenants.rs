//! Tenants in the engine: quotas refuse whole submissions and keep nothing of them, the counts
//! follow the tasks (and are rebuilt at load), and a tenant in use is not deleted.

use super::*;
use crate::store::{Role, TaskWrite, TokenRecord};
use crate::task::Task;
use crate::wire::tenant::{NewTenant, QuotaLimit, Tenant, TenantPatch, TenantView};

async fn views(fixture: &Fixture) -> Vec<TenantView> {
    fixture
        .engine
        .ask(|reply| Command::ListTenants { reply })
        .await
        .expect("listed")
}

async fn view(fixture: &Fixture, name: &str) -> TenantView {
    views(fixture)
        .await
        .into_iter()
        .find(|v| v.tenant.name == name)
        .unwrap_or_else(|| panic!("no tenant {name}"))
}

async fn submit_n(fixture: &Fixture, n: usize) -> Result<Vec<Submitted>, EngineError> {
    fixture
        .engine
        .ask(|reply| Command::Submit {
            tasks: (0..n)
                .map(|i| NewTask::with_description(format!("t{i}")))
                .collect(),
            submitted_by: "tester".into(),
            tenant: crate::wire::tenant::default_tenant(),
            reply,
        })
        .await
}

#[tokio::test]
async fn max_queued_refuses_whole_batches_and_counts_follow_assignments() {
    let fixture = Fixture::with_defaults();
    let patch = TenantPatch {
        max_queued: Some(Some(3)),
        ..TenantPatch::default()
    };
    fixture
        .engine
        .ask(|reply| Command::UpdateTenant {
            name: DEFAULT.into(),
            patch,
            reply,
        })
        .await
        .expect("updated");
    submit_n(&fixture, 2).await.expect("room for 2");
    let refused = submit_n(&fixture, 2).await.expect_err("no room for 2 more");
    let EngineError::Quota(refusal) = refused else {
        panic!("{refused:?}")
    };
    assert_eq!(
        (refusal.limit, refusal.current, refusal.requested),
        (QuotaLimit::MaxQueued, 2, 2)
    );
    let default = view(&fixture, DEFAULT).await;
    assert_eq!((default.queued, default.assigned), (2, 0), "nothing kept");

    let mut agent = fixture.connect("a1", &[]).await;
    assert_eq!(agent.frame().await["type"], "task_assign");
    let default = view(&fixture, DEFAULT).await;
    assert_eq!(
        (default.queued, default.assigned, default.share),
        (1, 1, 1.0)
    );
    submit_n(&fixture, 2).await.expect("room again");
    assert!(submit_n(&fixture, 1).await.is_err());
    let refusals = fixture.engine.stats().quota_refusals();
    assert_eq!(
        refusals,
        [(DEFAULT.to_owned(), QuotaLimit::MaxQueued, 2)],
        "each refusal counted"
    );
}

#[tokio::test]
async fn submit_rate_takes_a_batch_whole_or_not_at_all() {
    let fixture = Fixture::with_defaults();
    let tenant = NewTenant {
        name: "unused".into(),
        weight: 2.0,
        max_queued: None,
        submit_rate: None,
    };
    fixture
        .engine
        .ask(|reply| Command::CreateTenant { tenant, reply })
        .await
        .expect("created");
    let patch = TenantPatch {
        submit_rate: Some(Some(3.0)),
        ..TenantPatch::default()
    };
    fixture
        .engine
        .ask(|reply| Command::UpdateTenant {
            name: DEFAULT.into(),
            patch,
            reply,
        })
        .await
        .expect("updated");
    submit_n(&fixture, 2).await.expect("2 of 3");
    let refused = submit_n(&fixture, 2).await.expect_err("only 1 left");
    let EngineError::Quota(refusal) = refused else {
        panic!("{refused:?}")
    };
    assert_eq!(refusal.limit, QuotaLimit::SubmitRate);
    assert_eq!(refusal.retry_after_secs, Some(1));
    assert_eq!(view(&fixture, DEFAULT).await.queued, 2);
    // The other tenant's quotas are its own.
    assert_eq!(view(&fixture, "unused").await.queued, 0);
}

/// A store with tenant `x` holding one queued task and tenant `y` holding one token, made
/// before the engine starts: the engine counts what it loads.
#[tokio::test]
async fn a_tenant_in_use_is_not_deleted_and_counts_are_rebuilt_at_load() {
    let store = Arc::new(Store::open(&temp_dir(), 64 << 20).expect("store opens"));
    let mut txn = store.write_txn().unwrap();
    for name in ["x", "y"] {
        let tenant = Tenant {
            name: name.into(),
            weight: 1.0,
            max_queued: None,
            submit_rate: None,
            created_at: 1,
        };
        store.put_tenant(&mut txn, &tenant).unwrap();
    }
    let task = Task::new(
        TaskId(1),
        NewTask::with_description("x's"),
        "tester",
        "x",
        1,
    );
    store
        .write_task(&mut txn, &TaskWrite::new(&task, None))
        .unwrap();
    store.set_next_seq(&mut txn, 2).unwrap();
    let token = TokenRecord {
        tenant: "y".into(),
        agent_id: "y-agent".into(),
        role: Role::Agent,
        token_prefix: "abcd".into(),
        created_at: 1,
    };
    store.put_token(&mut txn, &"f".repeat(64), &token).unwrap();
    txn.commit().unwrap();
    let policy = PolicyHost::load(PolicySource::Builtin("greedy".into()), json!({})).unwrap();
    let (engine, _thread) = Engine::start(store.clone(), policy, EngineConfig::default()).unwrap();
    let fixture = Fixture { engine, store };

    assert_eq!(view(&fixture, "x").await.queued, 1, "counted at load");
    let delete = |name: &str| {
        let name = name.to_owned();
        let engine = fixture.engine.clone();
        async move {
            engine
                .ask(|reply| Command::DeleteTenant { name, reply })
                .await
        }
    };
    let refused = delete("x").await.expect_err("a live task");
    assert!(
        matches!(&refused, EngineError::TenantInUse { why, .. } if why.contains("1 tasks queued")),
        "{refused:?}"
    );
    let refused = delete("y").await.expect_err("a token");
    assert!(
        matches!(&refused, EngineError::TenantInUse { why, .. } if why.contains("1 tokens")),
        "{refused:?}"
    );
    assert!(matches!(
        delete(DEFAULT).await,
        Err(EngineError::TenantInUse { .. })
    ));
    assert_eq!(
        delete("z").await,
        Err(EngineError::TenantNotFound("z".into()))
    );

    fixture
        .engine
        .ask(|reply| Command::Cancel {
            task: TaskId(1),
            reply,
        })
        .await
        .expect("cancelled");
    delete("x").await.expect("nothing holds x now");
    let txn = fixture.store.read_txn().unwrap();
    assert!(
        fixture.store.tenant(&txn, "x").unwrap().is_none(),
        "deleted durably"
    );
}

const DEFAULT: &str = crate::wire::tenant::DEFAULT_TENANT;
