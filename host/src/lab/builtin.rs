//! The scenarios built into the binary (`--scenario NAME`). Each is a TOML file in
//! `scenarios/`, parsed like a user's file, so each is also an example of the format.

use super::scenario::{Scenario, ScenarioError};

/// `(name, TOML text)`, in the order `docs/policy-lab.md` presents them.
const BUILTIN: &[(&str, &str)] = &[
    ("balanced", include_str!("scenarios/balanced.toml")),
    ("skew", include_str!("scenarios/skew.toml")),
    ("weighted", include_str!("scenarios/weighted.toml")),
    ("burst", include_str!("scenarios/burst.toml")),
    ("trickle", include_str!("scenarios/trickle.toml")),
    ("sybil", include_str!("scenarios/sybil.toml")),
    ("long-tasks", include_str!("scenarios/long-tasks.toml")),
    (
        "priority-starvation",
        include_str!("scenarios/priority-starvation.toml"),
    ),
    ("capabilities", include_str!("scenarios/capabilities.toml")),
    ("tenants", include_str!("scenarios/tenants.toml")),
    ("smoke", include_str!("scenarios/smoke.toml")),
];

/// The names of the built-in scenarios.
pub fn builtin_scenarios() -> impl Iterator<Item = &'static str> {
    BUILTIN.iter().map(|(name, _)| *name)
}

/// The built-in scenario `name`, if there is one.
pub fn builtin_scenario(name: &str) -> Option<Result<Scenario, ScenarioError>> {
    BUILTIN
        .iter()
        .find(|(known, _)| *known == name)
        .map(|(name, text)| Scenario::from_toml(text, &format!("builtin:{name}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_parses_under_its_own_name() {
        for name in builtin_scenarios() {
            let scenario = builtin_scenario(name).unwrap().unwrap();
            assert_eq!(scenario.name, name);
            assert!(
                !scenario.description.is_empty(),
                "{name} has no description"
            );
        }
    }
}
