//! The data layer against real databases: a SQLite file and a throwaway PostgreSQL database.

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use codeflux_db::{NewFragment, NewProject};
use codeflux_protocol::{MessageKind, Role, RunEvent, RunStatus, Template};
use codeflux_test_support::{Backend, TestDb};
use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, Statement};

async fn table_names(db: &codeflux_db::Db, backend: Backend) -> Vec<String> {
    let sql = match backend {
        Backend::Sqlite => "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name",
        Backend::Postgres => {
            "SELECT table_name AS name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY table_name"
        }
    };
    db.query_all_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap()
        .iter()
        .map(|row| row.try_get::<String>("", "name").unwrap())
        .collect()
}

async fn migrations_go_up_down_up(backend: Backend) {
    let tdb = TestDb::new(backend).await.unwrap();
    let db = tdb.connect().await.unwrap();
    Migrator::up(&db, None).await.unwrap();
    let tables = table_names(&db, backend).await;
    for t in ["projects", "messages", "fragments"] {
        assert!(
            tables.contains(&t.to_owned()),
            "{t} missing after up: {tables:?}"
        );
    }
    Migrator::down(&db, None).await.unwrap();
    let tables = table_names(&db, backend).await;
    assert!(!tables.contains(&"projects".to_owned()), "{tables:?}");
    assert!(
        Migrator::get_applied_migrations(&db)
            .await
            .unwrap()
            .is_empty()
    );
    Migrator::up(&db, None).await.unwrap();
    assert!(
        Migrator::get_pending_migrations(&db)
            .await
            .unwrap()
            .is_empty()
    );
    // the schema works after the round trip
    codeflux_db::create_project(
        &db,
        NewProject {
            name: "a".into(),
            template: Template::ViteReact,
            prompt: "p".into(),
            owner_id: None,
        },
    )
    .await
    .unwrap();
}

async fn projects_and_messages_round_trip(backend: Backend) {
    let tdb = TestDb::new(backend).await.unwrap();
    let db = tdb.migrated().await.unwrap();
    let prompt = "Build a habit tracker with dark mode ü \"quoted\" \\ ".repeat(10);
    let (p1, m1) = codeflux_db::create_project(
        &db,
        NewProject {
            name: "brave-otter".into(),
            template: Template::NextJs,
            prompt: prompt.clone(),
            owner_id: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(p1.template, Template::NextJs);
    assert_eq!(m1.content, prompt);
    assert_eq!(m1.role, Role::User);
    assert!(p1.description.chars().count() <= 281);
    let (p2, _) = codeflux_db::create_project(
        &db,
        NewProject {
            name: "calm-heron".into(),
            template: Template::ViteReact,
            prompt: "second".into(),
            owner_id: None,
        },
    )
    .await
    .unwrap();

    let list = codeflux_db::list_projects(&db, None).await.unwrap();
    assert_eq!(
        list.iter().map(|p| p.id).collect::<Vec<_>>(),
        vec![p2.id, p1.id],
        "newest first"
    );
    assert_eq!(
        codeflux_db::find_project(&db, p1.id).await.unwrap(),
        Some(p1.clone())
    );
    assert_eq!(
        codeflux_db::find_project(&db, codeflux_db::new_id())
            .await
            .unwrap(),
        None
    );

    let files = BTreeMap::from([
        (
            "src/App.tsx".to_owned(),
            "export default () => <p>\"hi\" ü \\</p>\n".to_owned(),
        ),
        ("package.json".to_owned(), "{}".to_owned()),
    ]);
    let reply = codeflux_db::insert_result(
        &db,
        p1.id,
        "Here it is.".into(),
        NewFragment {
            sandbox_url: "http://x.preview.localhost:3000/".into(),
            title: "Habit Tracker".into(),
            files: files.clone(),
        },
        codeflux_db::MessageMeta::default(),
    )
    .await
    .unwrap();
    let err = codeflux_db::insert_message(
        &db,
        p1.id,
        "boom".into(),
        Role::Assistant,
        MessageKind::Error,
    )
    .await
    .unwrap();
    let msgs = codeflux_db::list_messages(&db, p1.id).await.unwrap();
    assert_eq!(
        msgs.iter().map(|m| m.id).collect::<Vec<_>>(),
        vec![m1.id, reply.id, err.id]
    );
    assert!(msgs[0].fragment.is_none());
    let frag = msgs[1].fragment.as_ref().expect("fragment");
    assert_eq!(frag.files, files);
    assert_eq!(frag.title, "Habit Tracker");
    assert_eq!(msgs[2].kind, MessageKind::Error);
    let after = codeflux_db::find_project(&db, p1.id)
        .await
        .unwrap()
        .unwrap();
    assert!(after.updated_at >= p1.updated_at);
    assert!(codeflux_db::list_messages(&db, p2.id).await.unwrap().len() == 1);

    // a message for a project that does not exist is refused by the foreign key
    assert!(
        codeflux_db::insert_message(
            &db,
            codeflux_db::new_id(),
            "x".into(),
            Role::User,
            MessageKind::Result
        )
        .await
        .is_err()
    );
    codeflux_db::ping(&db).await.unwrap();
}

#[tokio::test]
async fn sqlite_migrations_up_down_up() {
    migrations_go_up_down_up(Backend::Sqlite).await;
}

#[tokio::test]
async fn postgres_migrations_up_down_up() {
    migrations_go_up_down_up(Backend::Postgres).await;
}

#[tokio::test]
async fn sqlite_round_trip() {
    projects_and_messages_round_trip(Backend::Sqlite).await;
}

#[tokio::test]
async fn postgres_round_trip() {
    projects_and_messages_round_trip(Backend::Postgres).await;
}

/// Runs change state only from where the caller saw them: a cancel and a start never overwrite
/// each other; event numbers come from the database, gap-free, with many writers at once.
async fn runs_claims_and_event_numbers(backend: Backend) {
    let tdb = TestDb::new(backend).await.unwrap();
    let db = tdb.migrated().await.unwrap();
    let (p, m) = codeflux_db::create_project(
        &db,
        NewProject {
            name: "quick-lynx".into(),
            template: Template::ViteReact,
            prompt: "x".into(),
            owner_id: None,
        },
    )
    .await
    .unwrap();
    let status = |id| {
        let db = db.clone();
        async move {
            codeflux_db::find_run(&db, id)
                .await
                .unwrap()
                .unwrap()
                .status
        }
    };
    // Cancelled first: it never starts.
    let r1 = codeflux_db::insert_run(&db, p.id, m.id, None)
        .await
        .unwrap();
    assert!(codeflux_db::cancel_queued(&db, r1.id).await.unwrap());
    assert!(!codeflux_db::mark_running(&db, r1.id).await.unwrap());
    assert_eq!(status(r1.id).await, RunStatus::Cancelled);
    // Started first: the cancel of a queued run does not touch it.
    let r2 = codeflux_db::insert_run(&db, p.id, m.id, None)
        .await
        .unwrap();
    assert!(codeflux_db::mark_running(&db, r2.id).await.unwrap());
    assert!(!codeflux_db::cancel_queued(&db, r2.id).await.unwrap());
    assert_eq!(status(r2.id).await, RunStatus::Running);

    // 40 events written by 8 concurrent writers: numbered 1..=40, none lost, none twice.
    let mut tasks = Vec::new();
    for w in 0..8 {
        let db = db.clone();
        let (pid, rid) = (p.id, r2.id);
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for i in 0..5 {
                let ev = RunEvent::Notice {
                    message: format!("writer {w} event {i}"),
                };
                got.push(
                    codeflux_db::append_event(&db, pid, rid, codeflux_db::now(), &ev, None)
                        .await
                        .unwrap(),
                );
            }
            got
        }));
    }
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.extend(t.await.unwrap());
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=40).collect::<Vec<i64>>());
    let stored = codeflux_db::events_after(&db, p.id, 0, 100).await.unwrap();
    assert_eq!(stored.len(), 40);
    assert!(stored.iter().zip(1..).all(|(e, n)| e.seq == n));
}

#[tokio::test]
async fn sqlite_runs_claims_and_event_numbers() {
    runs_claims_and_event_numbers(Backend::Sqlite).await;
}

#[tokio::test]
async fn postgres_runs_claims_and_event_numbers() {
    runs_claims_and_event_numbers(Backend::Postgres).await;
}

/// The cluster's queue: six nodes claiming at once take each claimable run exactly once (one
/// running run per project, a project's runs in order); leases fence late writers; a cancel
/// and a claim of the same queued run never both win.
async fn the_queue_under_concurrent_claims(backend: Backend) {
    use codeflux_db::cluster;
    let tdb = TestDb::new(backend).await.unwrap();
    let db = tdb.migrated().await.unwrap();
    let mut runs = Vec::new();
    let mut first_of = Vec::new();
    for (name, n) in [("a", 2), ("b", 1), ("c", 1)] {
        let (p, m) = codeflux_db::create_project(
            &db,
            NewProject {
                name: name.into(),
                template: Template::default(),
                prompt: "go".into(),
                owner_id: None,
            },
        )
        .await
        .unwrap();
        for i in 0..n {
            let r = codeflux_db::insert_run(&db, p.id, m.id, None)
                .await
                .unwrap();
            if i == 0 {
                first_of.push(r.id);
            }
            runs.push(r);
        }
    }
    let until = cluster::now_ms() + 60_000;
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            let node = uuid::Uuid::now_v7();
            let mut got = Vec::new();
            for _ in 0..4 {
                if let Some(c) = cluster::claim_run(&db, node, until).await.unwrap() {
                    got.push(c);
                }
            }
            got
        }));
    }
    let mut claims = Vec::new();
    for t in tasks {
        claims.extend(t.await.unwrap());
    }
    let mut claimed: Vec<_> = claims.iter().map(|c| c.run.id).collect();
    claimed.sort();
    let mut expected = first_of.clone();
    expected.sort();
    assert_eq!(claimed, expected, "each project's first run, once each");
    assert!(
        claims
            .iter()
            .all(|c| c.fence.generation == 1 && c.taken_from.is_none())
    );

    // Project a's second run waits for its first; the first ends (fenced), then it is claimed.
    let a1 = claims
        .iter()
        .find(|c| c.run.id == runs[0].id)
        .unwrap()
        .clone();
    let node = uuid::Uuid::now_v7();
    assert!(
        cluster::claim_run(&db, node, until)
            .await
            .unwrap()
            .is_none()
    );
    let stale = cluster::Fence {
        generation: 0,
        ..a1.fence
    };
    assert_eq!(
        cluster::renew_lease(&db, stale, until).await.unwrap(),
        cluster::Lease::Lost
    );
    assert!(cluster::request_cancel(&db, a1.run.id).await.unwrap());
    assert_eq!(
        cluster::renew_lease(&db, a1.fence, until).await.unwrap(),
        cluster::Lease::Held { cancel: true }
    );
    assert!(matches!(
        cluster::end_run(&db, stale, RunStatus::Finished, None, None, None).await,
        Err(codeflux_db::DbError::Fenced)
    ));
    cluster::end_run(&db, a1.fence, RunStatus::Cancelled, None, None, None)
        .await
        .unwrap();
    let a2 = cluster::claim_run(&db, node, until).await.unwrap().unwrap();
    assert_eq!(a2.run.id, runs[1].id);

    // A lease that ran out (1: long ago; 0 would be a lease given back by a clean stop, which
    // is not counted as a takeover) is taken over with the next generation; the old one is
    // fenced out of events and checkpoints.
    let b1 = claims
        .iter()
        .find(|c| c.run.id == runs[2].id)
        .unwrap()
        .clone();
    db.execute_raw(Statement::from_sql_and_values(
        db.get_database_backend(),
        if backend == Backend::Postgres {
            "UPDATE runs SET lease_until_ms = 1 WHERE id = $1"
        } else {
            "UPDATE runs SET lease_until_ms = 1 WHERE id = ?"
        },
        [b1.run.id.into()],
    ))
    .await
    .unwrap();
    let taken = cluster::claim_run(&db, node, until).await.unwrap().unwrap();
    assert_eq!(
        (taken.run.id, taken.fence.generation, taken.resumes),
        (b1.run.id, 2, 1)
    );
    assert!(taken.taken_from.is_some());
    let cp = cluster::Checkpoint {
        step: 3,
        state: serde_json::json!({"k": 1}),
        files: serde_json::json!({"src/App.tsx": "x"}),
    };
    assert!(matches!(
        cluster::save_checkpoint(&db, b1.fence, &cp).await,
        Err(codeflux_db::DbError::Fenced)
    ));
    assert!(
        !cluster::save_checkpoint_state(&db, taken.fence, 3, &cp.state)
            .await
            .unwrap(),
        "no checkpoint yet: a whole one is needed"
    );
    cluster::save_checkpoint(&db, taken.fence, &cp)
        .await
        .unwrap();
    assert_eq!(
        cluster::load_checkpoint(&db, b1.run.id).await.unwrap(),
        Some(cp.clone())
    );
    // The next step, files unchanged: the state moves on, the files stay.
    let state4 = serde_json::json!({"k": 2});
    assert!(
        cluster::save_checkpoint_state(&db, taken.fence, 4, &state4)
            .await
            .unwrap()
    );
    assert!(matches!(
        cluster::save_checkpoint_state(&db, b1.fence, 5, &state4).await,
        Err(codeflux_db::DbError::Fenced)
    ));
    assert_eq!(
        cluster::load_checkpoint(&db, b1.run.id).await.unwrap(),
        Some(cluster::Checkpoint {
            step: 4,
            state: state4,
            files: cp.files.clone(),
        })
    );
    // A clean stop gives the lease back: the next node resumes at once, not counted.
    assert_eq!(
        cluster::node_stopped(&db, node).await.unwrap(),
        2,
        "a2 and b1"
    );
    let next = uuid::Uuid::now_v7();
    for _ in 0..2 {
        let again = cluster::claim_run(&db, next, until).await.unwrap().unwrap();
        let before = if again.run.id == b1.run.id { 1 } else { 0 };
        assert_eq!(again.resumes, before, "{again:?}");
    }
    let late = codeflux_db::append_event(
        &db,
        b1.run.project_id,
        b1.run.id,
        codeflux_db::now(),
        &RunEvent::Notice {
            message: "late".into(),
        },
        Some(taken.fence),
    )
    .await;
    assert!(
        matches!(late, Err(codeflux_db::DbError::Fenced)),
        "the second takeover fenced the first"
    );

    // A cancel and a claim of the same queued run: exactly one wins, 20 times over.
    let (p, m) = codeflux_db::create_project(
        &db,
        NewProject {
            name: "d".into(),
            template: Template::default(),
            prompt: "go".into(),
            owner_id: None,
        },
    )
    .await
    .unwrap();
    for _ in 0..20 {
        let r = codeflux_db::insert_run(&db, p.id, m.id, None)
            .await
            .unwrap();
        let (cdb, kdb) = (db.clone(), db.clone());
        let cancel = tokio::spawn(async move { codeflux_db::cancel_queued(&cdb, r.id).await });
        let claim =
            tokio::spawn(
                async move { cluster::claim_run(&kdb, uuid::Uuid::now_v7(), until).await },
            );
        let cancelled = cancel.await.unwrap().unwrap();
        let claimed = claim.await.unwrap().unwrap();
        let won = claimed.as_ref().is_some_and(|c| c.run.id == r.id);
        assert!(cancelled != won, "cancel {cancelled}, claim {won}");
        if let Some(c) = claimed {
            cluster::end_run(&db, c.fence, RunStatus::Finished, None, None, None)
                .await
                .unwrap();
        }
    }
}

#[tokio::test]
async fn sqlite_the_queue_under_concurrent_claims() {
    the_queue_under_concurrent_claims(Backend::Sqlite).await;
}

#[tokio::test]
async fn postgres_the_queue_under_concurrent_claims() {
    the_queue_under_concurrent_claims(Backend::Postgres).await;
}
