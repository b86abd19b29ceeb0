//! The lab against the real bundled policies: what each predicts on the scenarios whose outcome
//! the policies' documentation states, determinism, and the host's refusals.

use super::*;

fn builtin(name: &str) -> LabPolicy {
    LabPolicy::parse(&format!("builtin:{name}")).unwrap()
}

fn share(run: &RunReport, group: &str) -> f64 {
    run.groups
        .iter()
        .find(|g| g.name == group)
        .unwrap()
        .share_of_assignments
}

/// The report with the wall-clock figures (the only ones allowed to vary) zeroed.
fn without_wall_clock(mut report: LabReport) -> LabReport {
    for s in &mut report.scenarios {
        for run in &mut s.runs {
            run.decisions.latency_us = metrics::LatencyReport {
                p50: 0.0,
                p99: 0.0,
                max: 0.0,
            };
        }
    }
    report
}

/// A run's share of agent time per tenant, by name.
fn tenant_time(run: &RunReport) -> Vec<(&str, f64)> {
    run.tenants
        .iter()
        .map(|t| (t.name.as_str(), t.share_of_agent_time))
        .collect()
}

#[test]
fn fair_shares_agent_time_between_tenants_by_weight_and_greedy_does_not() {
    let scenarios = [load_scenario("tenants").unwrap()];
    let report = run(
        &scenarios,
        &[builtin("greedy"), builtin("fair")],
        1,
        &mut |_| {},
    )
    .unwrap();
    let runs = &report.scenarios[0].runs;
    let (greedy, fair) = (&runs[0], &runs[1]);
    let want = [
        ("team-a", 3.0 / 6.0),
        ("team-b", 2.0 / 6.0),
        ("team-c", 1.0 / 6.0),
    ];
    let within = |run: &RunReport| {
        tenant_time(run)
            .iter()
            .zip(want)
            .all(|((name, got), (wanted_name, share))| {
                *name == wanted_name && (got - share).abs() <= 0.03
            })
    };
    assert!(within(fair), "fair: {:?}", tenant_time(fair));
    assert!(!within(greedy), "greedy: {:?}", tenant_time(greedy));
    for t in &fair.tenants {
        let weight = want.iter().find(|w| w.0 == t.name).unwrap().1;
        assert!((t.weight_share - weight).abs() < 1e-9, "{t:?}");
    }
    // Everyone stayed backlogged: the shares are the policy's, not the demand's.
    assert!(
        fair.groups.iter().all(|g| g.unserved > 0),
        "{:?}",
        fair.groups
    );
    assert!(fair.refusals.is_empty() && fair.failures.traps == 0);
}

#[test]
fn greedy_and_fair_on_skew_and_weighted() {
    let scenarios = [
        load_scenario("skew").unwrap(),
        load_scenario("weighted").unwrap(),
    ];
    let report = run(
        &scenarios,
        &[builtin("greedy"), builtin("fair")],
        1,
        &mut |_| {},
    )
    .unwrap();
    let skew = &report.scenarios[0];
    assert_eq!(skew.tasks, 1600);
    let (greedy, fair) = (&skew.runs[0], &skew.runs[1]);
    // 4 agents, 1 s tasks, 150 s: 600 assignments.
    assert_eq!(greedy.assignments, 600);
    assert_eq!(share(greedy, "heavy"), 1.0);
    assert_eq!(share(greedy, "light-a"), 0.0);
    for group in ["heavy", "light-a", "light-b", "light-c"] {
        assert!(
            (share(fair, group) - 0.25).abs() < 0.01,
            "{group}: {}",
            share(fair, group)
        );
    }
    assert!(greedy.jain_index < 0.3, "{}", greedy.jain_index);
    assert!(fair.jain_index > 0.99, "{}", fair.jain_index);
    assert_eq!(greedy.worst_served.as_ref().unwrap().served_over_fair, 0.0);

    let weighted = &report.scenarios[1];
    let fair = &weighted.runs[1];
    for (group, expected) in [("w5", 0.5), ("w3", 0.3), ("w2", 0.2)] {
        assert!(
            (share(fair, group) - expected).abs() < 0.01,
            "{group}: {}",
            share(fair, group)
        );
    }
    let greedy = &weighted.runs[0];
    assert!((share(greedy, "w5") - 400.0 / 600.0).abs() < 1e-9);
    for run in skew.runs.iter().chain(&weighted.runs) {
        assert!(run.refusals.is_empty(), "{:?}", run.refusals);
        assert_eq!(run.failures.traps, 0);
    }
}

#[test]
fn same_seed_same_report() {
    let scenarios = [
        load_scenario("capabilities").unwrap(),
        load_scenario("long-tasks").unwrap(),
    ];
    let policies = [builtin("greedy"), builtin("fair")];
    let a = run(&scenarios, &policies, 42, &mut |_| {}).unwrap();
    let b = run(&scenarios, &policies, 42, &mut |_| {}).unwrap();
    let c = run(&scenarios, &policies, 43, &mut |_| {}).unwrap();
    let (a, b, c) = (
        without_wall_clock(a),
        without_wall_clock(b),
        without_wall_clock(c),
    );
    assert_eq!(
        serde_json::to_string(&a).unwrap(),
        serde_json::to_string(&b).unwrap()
    );
    assert_ne!(a, c, "another seed draws another workload");
}

#[test]
fn greedy_starves_low_priority_and_fair_does_not() {
    let scenarios = [load_scenario("priority-starvation").unwrap()];
    let report = run(
        &scenarios,
        &[builtin("greedy"), builtin("fair")],
        1,
        &mut |_| {},
    )
    .unwrap();
    let low = |run: &RunReport| {
        run.priorities
            .iter()
            .find(|p| p.priority.name() == "low")
            .cloned()
            .unwrap()
    };
    let (greedy, fair) = (&report.scenarios[0].runs[0], &report.scenarios[0].runs[1]);
    assert!(low(greedy).unserved > 150, "{:?}", low(greedy));
    assert_eq!(low(fair).unserved, 0, "{:?}", low(fair));
}

#[test]
fn policy_arguments_and_scenario_names() {
    let p = LabPolicy::parse(r#"builtin:fair={"aging_ms": 5000}"#).unwrap();
    assert_eq!(p.source, PolicySource::Builtin("fair".into()));
    assert_eq!(p.config["aging_ms"], 5000);
    let err = LabPolicy::parse("builtin:fair={oops")
        .unwrap_err()
        .to_string();
    assert!(err.contains("not valid JSON"), "{err}");
    let err = load_scenario("skwe").unwrap_err().to_string();
    assert!(
        err.contains("no built-in scenario `skwe`") && err.contains("skew"),
        "{err}"
    );
    let err = LabPolicy::parse(r#"builtin:greedy={"x":1}"#)
        .unwrap()
        .load()
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown config field `x`"), "{err}");
}
