//! Jobs across replicas: agents pulling through two servers on one catalogue claim every job
//! exactly once; the scheduler of both queues a due policy once per due time; jobs whose
//! runner stops reporting fail.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use common::{AgentCreds, Backend, Method, StatusCode, TestServer};
use serde_json::{Value, json};

async fn jobs(srv: &TestServer, token: &str) -> Vec<Value> {
    srv.get("/api/v1/tenants/alpha/jobs", token)
        .await
        .ok()
        .as_array()
        .unwrap()
        .clone()
}

async fn claim(srv: &TestServer, agent: &AgentCreds) -> Option<Value> {
    let r = srv
        .call(
            Method::POST,
            "/api/v1/tenants/alpha/agent/jobs/claim",
            Some(&agent.token),
            None,
        )
        .await;
    match r.status {
        StatusCode::NO_CONTENT => None,
        _ => Some(r.ok()),
    }
}

async fn report(srv: &TestServer, agent: &AgentCreds, job: &str, state: &str) -> common::Resp {
    srv.post(
        &format!("/api/v1/tenants/alpha/agent/jobs/{job}/report"),
        &agent.token,
        json!({ "state": state, "snapshot": if state == "succeeded" { Some("0123abcd") } else { None } }),
    )
    .await
}

/// Many queued jobs, agents claiming concurrently through two replicas: each job is handed
/// out exactly once, to its own agent.
async fn two_replicas_claim_each_job_once(backend: Backend) {
    let a = common::start(backend).await;
    let b = a.replica(|_| {}).await;
    let sys = a.admin("sysadmin").await;
    let alpha = a.tenant_fixture(&sys, "alpha").await;
    let op = alpha.operator.clone();
    let mut agents = vec![alpha.agent.clone()];
    for i in 1..3 {
        agents.push(a.register_agent("alpha", &op, &format!("host-{i}")).await);
    }
    let mut owner: HashMap<String, String> =
        HashMap::from([(alpha.job.clone(), alpha.agent.id.clone())]);
    for (i, agent) in agents.iter().enumerate() {
        for j in 0..8 {
            let srv = if j % 2 == 0 { &a } else { &b };
            let name = format!("p-{i}-{j}");
            srv.create_policy("alpha", &op, &name, &agent.id, &alpha.repo, "0 0 3 1 1 *")
                .await;
            let job = srv.queue_job("alpha", &op, &name).await;
            owner.insert(job["id"].as_str().unwrap().to_owned(), agent.id.clone());
        }
    }
    // A second backup of a policy with one pending is refused.
    a.queue_job_refused(&op, "p-0-0").await;
    assert_eq!(owner.len(), 25);

    let mut tasks = Vec::new();
    for agent in &agents {
        for k in 0..4 {
            let srv = if k % 2 == 0 { &a } else { &b };
            let client = srv.client.clone();
            let url = format!("{}/api/v1/tenants/alpha/agent/jobs/claim", srv.base);
            let agent = agent.clone();
            tasks.push(tokio::spawn(async move {
                let mut got = Vec::new();
                loop {
                    let r = client
                        .post(&url)
                        .bearer_auth(&agent.token)
                        .send()
                        .await
                        .unwrap();
                    match r.status() {
                        StatusCode::NO_CONTENT => break,
                        StatusCode::OK => {
                            let job: Value = r.json_value().await;
                            got.push((job["id"].as_str().unwrap().to_owned(), agent.id.clone()));
                        }
                        other => panic!("claim answered {other}"),
                    }
                }
                got
            }));
        }
    }
    let mut claimed = Vec::new();
    for t in tasks {
        claimed.extend(t.await.unwrap());
    }
    // Whatever a lost race left queued is claimed now (there should be nothing).
    for agent in &agents {
        while let Some(job) = claim(&a, agent).await {
            claimed.push((job["id"].as_str().unwrap().to_owned(), agent.id.clone()));
        }
    }
    let ids: HashSet<&String> = claimed.iter().map(|(id, _)| id).collect();
    assert_eq!(
        ids.len(),
        claimed.len(),
        "a job was claimed twice: {claimed:?}"
    );
    assert_eq!(claimed.len(), owner.len(), "every job claimed once");
    for (id, agent) in &claimed {
        assert_eq!(owner.get(id), Some(agent), "job {id} went to another agent");
    }
    for j in jobs(&a, &op).await {
        assert_eq!(j["state"], "running", "{j}");
    }
    // Reports go through either replica.
    for (n, (id, agent)) in claimed.iter().enumerate() {
        let agent = agents.iter().find(|x| &x.id == agent).unwrap();
        let srv = if n % 2 == 0 { &a } else { &b };
        report(srv, agent, id, "succeeded").await.ok();
        report(srv, agent, id, "succeeded")
            .await
            .assert_error(409, "job_not_running");
    }
    // An agent reports only its own jobs.
    let (id, agent) = &claimed[0];
    let other = agents.iter().find(|x| &x.id != agent).unwrap();
    report(&a, other, id, "failed")
        .await
        .assert_error(404, "not_found");
    let overview = a.get("/api/v1/tenants/alpha/overview", &op).await.ok();
    assert!(
        overview
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["within_target"] == true),
        "{overview}"
    );
}

/// Both replicas run the scheduler every second; policies due every second get one pending
/// job each, never two, and a new one once the last has finished.
async fn scheduler_queues_due_policies_once(backend: Backend) {
    let a = common::start_with(backend, |c| c.scheduler_interval_secs = 1).await;
    let b = a.replica(|_| {}).await;
    let sys = a.admin("sysadmin").await;
    a.create_tenant(&sys, "alpha").await;
    a.create_user(
        &sys,
        "alpha-op",
        zaibei_types::Role::TenantOperator,
        Some("alpha"),
    )
    .await;
    let op = a.login("alpha-op", common::PASSWORD).await;
    a.create_repo("alpha", &op, "main").await;
    let agent = a.register_agent("alpha", &op, "host").await;
    const N: usize = 12;
    for i in 0..N {
        let srv = if i % 2 == 0 { &a } else { &b };
        srv.create_policy(
            "alpha",
            &op,
            &format!("every-second-{i}"),
            &agent.id,
            "main",
            "*/1 * * * * *",
        )
        .await;
    }
    let per_policy = |jobs: &[Value]| {
        let mut m: HashMap<String, Vec<Value>> = HashMap::new();
        for j in jobs {
            m.entry(j["policy"].as_str().unwrap().to_owned())
                .or_default()
                .push(j.clone());
        }
        m
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while per_policy(&jobs(&a, &op).await).len() < N {
        assert!(
            Instant::now() < deadline,
            "the scheduler did not queue every policy"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Several more ticks of both replicas: still one pending job per policy.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let first = jobs(&a, &op).await;
    let by_policy = per_policy(&first);
    assert_eq!(by_policy.len(), N);
    for (p, js) in &by_policy {
        assert_eq!(js.len(), 1, "policy {p} was queued more than once: {js:?}");
    }
    // Finish them all; each policy is queued again, once.
    while let Some(job) = claim(&b, &agent).await {
        report(&a, &agent, job["id"].as_str().unwrap(), "succeeded")
            .await
            .ok();
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let all = jobs(&a, &op).await;
        if all.len() >= 2 * N {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the scheduler did not queue the policies again"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let all = jobs(&a, &op).await;
    for (p, js) in per_policy(&all) {
        assert_eq!(js.len(), 2, "policy {p}: {js:?}");
        let pending = js
            .iter()
            .filter(|j| j["state"] == "queued" || j["state"] == "running")
            .count();
        assert_eq!(pending, 1, "policy {p}: {js:?}");
    }
    let aud = a.admin("auditadmin").await;
    let created = a.audit_records(&aud, "job_created").await;
    let by_scheduler = created
        .iter()
        .filter(|r| r["event"]["actor"] == "scheduler")
        .count();
    assert_eq!(by_scheduler, 2 * N, "one audit record per queued job");
}

/// A running job whose agent stops reporting fails; one that keeps reporting runs on.
async fn silent_runners_fail(backend: Backend) {
    let srv = common::start_with(backend, |c| {
        c.scheduler_interval_secs = 1;
        c.job_stale_secs = 2;
    })
    .await;
    let sys = srv.admin("sysadmin").await;
    let alpha = srv.tenant_fixture(&sys, "alpha").await;
    let agent = &alpha.agent;
    let job = claim(&srv, agent).await.unwrap();
    let id = job["id"].as_str().unwrap().to_owned();
    assert_eq!(id, alpha.job);
    let path = format!("/api/v1/tenants/alpha/jobs/{id}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let j = srv.get(&path, &alpha.operator).await.ok();
        if j["state"] == "failed" {
            assert_eq!(j["error"], "the runner stopped reporting");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the silent job did not fail: {j}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    report(&srv, agent, &id, "succeeded")
        .await
        .assert_error(409, "job_not_running");

    // A runner that reports progress keeps its job.
    let job = srv.queue_job("alpha", &alpha.operator, &alpha.policy).await;
    let id = job["id"].as_str().unwrap().to_owned();
    assert_eq!(claim(&srv, agent).await.unwrap()["id"], id.as_str());
    for _ in 0..10 {
        srv.post(
            &format!("/api/v1/tenants/alpha/agent/jobs/{id}/report"),
            &agent.token,
            json!({ "state": "running", "progress": { "files": 1, "bytes": 2 } }),
        )
        .await
        .ok();
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    let j = srv
        .get(&format!("/api/v1/tenants/alpha/jobs/{id}"), &alpha.operator)
        .await
        .ok();
    assert_eq!(j["state"], "running", "{j}");
    report(&srv, agent, &id, "succeeded").await.ok();
    let j = srv
        .get(&format!("/api/v1/tenants/alpha/jobs/{id}"), &alpha.operator)
        .await
        .ok();
    assert_eq!(j["state"], "succeeded", "{j}");
    assert_eq!(j["snapshot"], "0123abcd");
}

trait QueueRefused {
    async fn queue_job_refused(&self, operator: &str, policy: &str);
}

impl QueueRefused for TestServer {
    async fn queue_job_refused(&self, operator: &str, policy: &str) {
        self.post(
            "/api/v1/tenants/alpha/jobs",
            operator,
            json!({ "kind": "backup", "policy": policy }),
        )
        .await
        .assert_error(409, "already_pending");
    }
}

trait JsonValue {
    async fn json_value(self) -> Value;
}

impl JsonValue for reqwest::Response {
    async fn json_value(self) -> Value {
        serde_json::from_slice(&self.bytes().await.unwrap()).unwrap()
    }
}

both_backends!(
    two_replicas_claim_each_job_once,
    scheduler_queues_due_policies_once,
    silent_runners_fail,
);
